//! Every open connection of a server: by connection id, by identity, and by group.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::connection::Connection;
use crate::identity::Identity;

#[derive(Debug, Default)]
pub(crate) struct Hub {
    conns: RwLock<HashMap<u64, Arc<Connection>>>,
    users: RwLock<HashMap<Identity, Vec<Arc<Connection>>>>,
    groups: RwLock<HashMap<Arc<str>, Vec<Arc<Connection>>>>,
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Drops a connection from one index entry, and the entry itself once it is empty.
fn unindex<K, Q>(index: &mut HashMap<K, Vec<Arc<Connection>>>, key: &Q, conn_id: u64)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(list) = index.get_mut(key) {
        list.retain(|c| c.id() != conn_id);
        if list.is_empty() {
            index.remove(key);
        }
    }
}

impl Hub {
    pub fn add(&self, conn: &Arc<Connection>) {
        write(&self.conns).insert(conn.id(), conn.clone());
    }

    /// Indexes a connection under the identity it was just given.
    pub fn identify(&self, conn: &Arc<Connection>, identity: &Identity) {
        write(&self.users)
            .entry(identity.clone())
            .or_default()
            .push(conn.clone());
    }

    pub fn join(&self, conn: &Arc<Connection>, group: Arc<str>) {
        write(&self.groups)
            .entry(group)
            .or_default()
            .push(conn.clone());
    }

    pub fn leave(&self, conn_id: u64, group: &str) {
        unindex(&mut write(&self.groups), group, conn_id);
    }

    pub fn remove(&self, conn: &Arc<Connection>) {
        write(&self.conns).remove(&conn.id());
        if let Some(identity) = conn.identity() {
            unindex(&mut write(&self.users), identity, conn.id());
        }
        for group in conn.groups() {
            self.leave(conn.id(), &group);
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        read(&self.conns).len()
    }

    /// How many distinct identities are connected.
    pub fn identities(&self) -> usize {
        read(&self.users).len()
    }

    /// The longest outbound queue of any connection, in frames.
    pub fn max_queued(&self) -> usize {
        read(&self.conns)
            .values()
            .map(|c| c.queued())
            .max()
            .unwrap_or(0)
    }

    /// Offers `frame` to every connection; returns how many queued it.
    pub fn offer_all(&self, frame: &Bytes) -> usize {
        read(&self.conns)
            .values()
            .filter(|c| c.offer(frame.clone()))
            .count()
    }

    /// Offers `frame` to every connection of each identity, once per connection.
    pub fn offer_users(&self, identities: &[Identity], frame: &Bytes) -> usize {
        let users = read(&self.users);
        let mut reached = 0;
        let mut seen: Vec<u64> = Vec::new();
        for identity in identities {
            for conn in users.get(identity).map(Vec::as_slice).unwrap_or_default() {
                // Listing one identity twice must not deliver twice.
                if identities.len() > 1 {
                    if seen.contains(&conn.id()) {
                        continue;
                    }
                    seen.push(conn.id());
                }
                reached += usize::from(conn.offer(frame.clone()));
            }
        }
        reached
    }

    /// Offers `frame` to every connection in `group`.
    pub fn offer_group(&self, group: &str, frame: &Bytes) -> usize {
        read(&self.groups)
            .get(group)
            .map(|conns| conns.iter().filter(|c| c.offer(frame.clone())).count())
            .unwrap_or(0)
    }
}
