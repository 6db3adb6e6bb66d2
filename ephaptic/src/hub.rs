//! Every open connection of a server, by connection id and by identity.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::connection::Connection;
use crate::identity::Identity;

#[derive(Debug, Default)]
pub(crate) struct Hub {
    conns: RwLock<HashMap<u64, Arc<Connection>>>,
    users: RwLock<HashMap<Identity, Vec<Arc<Connection>>>>,
}

impl Hub {
    pub fn add(&self, conn: &Arc<Connection>) {
        self.conns.write().unwrap_or_else(|e| e.into_inner()).insert(conn.id(), conn.clone());
    }

    /// Indexes a connection under the identity it was just given.
    pub fn identify(&self, conn: &Arc<Connection>, identity: &Identity) {
        self.users.write().unwrap_or_else(|e| e.into_inner()).entry(identity.clone()).or_default().push(conn.clone());
    }

    pub fn remove(&self, conn: &Arc<Connection>) {
        self.conns.write().unwrap_or_else(|e| e.into_inner()).remove(&conn.id());
        if let Some(identity) = conn.identity() {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = users.get_mut(identity) {
                list.retain(|c| c.id() != conn.id());
                if list.is_empty() {
                    users.remove(identity);
                }
            }
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
