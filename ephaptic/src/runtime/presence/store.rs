//! Where presence entries live: this server's memory ([`Memory`]), or a store shared by every
//! server (Redis, in `backplane/presence.rs`), behind one small trait.
//!
//! An entry is one connection tracked in one group: `(group, member, connection) -> meta`, the
//! member being the identity's key (`s:alice`), so that one user's tabs make one member, and
//! the meta the encoded MessagePack the app gave. The store decides, atomically, whether an
//! entry is its member's first or last (across tabs and servers), and counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use crate::handler::BoxFuture;

/// A connection that joined (or changed its meta in) a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    pub member: String,
    pub conn: String,
    pub meta: Bytes,
    /// Its member's first connection in the group.
    pub first: bool,
}

/// A connection that left a group (untracked, closed, or expired with its server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Left {
    pub member: String,
    pub conn: String,
    /// Its member's last connection in the group.
    pub last: bool,
}

/// What one store operation changed in one group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    pub joined: Vec<Joined>,
    pub left: Vec<Left>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

/// One connection's entry, as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub member: String,
    pub conn: String,
    pub meta: Bytes,
}

/// A group's entries (at most those of `cap` members), with its counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Listing {
    /// Sorted by member, then connection.
    pub entries: Vec<Entry>,
    pub truncated: bool,
    pub users: u64,
    pub connections: u64,
    /// Entries found expired while listing (their leaves must be told).
    pub expired: Changes,
}

/// This server's entries in one group, for a heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct Mine {
    pub group: String,
    // Read by the stores that expire entries (Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub entries: Vec<Entry>,
}

/// Where presence entries are kept. Errors are texts for the log and for the caller's
/// `INTERNAL` error.
pub(crate) trait Store: Send + Sync + fmt::Debug {
    /// Adds or replaces a connection's entry.
    fn track(&self, group: &str, entry: Entry) -> BoxFuture<Result<Changes, String>>;
    /// Removes a connection's entry (nothing changes when it has none).
    fn untrack(&self, group: &str, member: &str, conn: &str) -> BoxFuture<Result<Changes, String>>;
    /// The entries of at most `cap` members (none for 0: the counts only), and the counts.
    fn list(&self, group: &str, cap: usize) -> BoxFuture<Result<Listing, String>>;
    /// How often this server must refresh its entries; `None`: they never expire (memory).
    fn heartbeat_every(&self) -> Option<Duration> {
        None
    }
    /// Refreshes this server's entries (restoring any the store lost), and removes the expired
    /// entries of `sweep` and of the refreshed groups: what changed, by group.
    fn heartbeat(
        &self,
        _mine: Vec<Mine>,
        _sweep: Vec<String>,
    ) -> BoxFuture<Vec<(String, Changes)>> {
        Box::pin(async { Vec::new() })
    }
}

/// Presence on one server: its own connections only, nothing expires (a connection that
/// closes is untracked by the runtime).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    groups: Mutex<HashMap<String, Group>>,
}

#[derive(Debug, Default)]
struct Group {
    /// member -> connection -> meta.
    members: BTreeMap<String, BTreeMap<String, Bytes>>,
    connections: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Memory {
    fn track_now(&self, group: &str, entry: Entry) -> Changes {
        let mut groups = lock(&self.groups);
        let g = groups.entry(group.to_owned()).or_default();
        let conns = g.members.entry(entry.member.clone()).or_default();
        let first = conns.is_empty();
        if conns
            .insert(entry.conn.clone(), entry.meta.clone())
            .is_none()
        {
            g.connections += 1;
        }
        Changes {
            joined: vec![Joined {
                member: entry.member,
                conn: entry.conn,
                meta: entry.meta,
                first,
            }],
            left: Vec::new(),
        }
    }

    fn untrack_now(&self, group: &str, member: &str, conn: &str) -> Changes {
        let mut groups = lock(&self.groups);
        let Some(g) = groups.get_mut(group) else {
            return Changes::default();
        };
        let Some(conns) = g.members.get_mut(member) else {
            return Changes::default();
        };
        if conns.remove(conn).is_none() {
            return Changes::default();
        }
        g.connections -= 1;
        let last = conns.is_empty();
        if last {
            g.members.remove(member);
        }
        if g.members.is_empty() {
            groups.remove(group);
        }
        Changes {
            joined: Vec::new(),
            left: vec![Left {
                member: member.to_owned(),
                conn: conn.to_owned(),
                last,
            }],
        }
    }

    fn list_now(&self, group: &str, cap: usize) -> Listing {
        let groups = lock(&self.groups);
        let Some(g) = groups.get(group) else {
            return Listing::default();
        };
        let mut entries = Vec::new();
        for (member, conns) in g.members.iter().take(cap) {
            for (conn, meta) in conns {
                entries.push(Entry {
                    member: member.clone(),
                    conn: conn.clone(),
                    meta: meta.clone(),
                });
            }
        }
        Listing {
            entries,
            truncated: g.members.len() > cap && cap > 0,
            users: g.members.len() as u64,
            connections: g.connections,
            expired: Changes::default(),
        }
    }
}

impl Store for Memory {
    fn track(&self, group: &str, entry: Entry) -> BoxFuture<Result<Changes, String>> {
        let changes = self.track_now(group, entry);
        Box::pin(async move { Ok(changes) })
    }

    fn untrack(&self, group: &str, member: &str, conn: &str) -> BoxFuture<Result<Changes, String>> {
        let changes = self.untrack_now(group, member, conn);
        Box::pin(async move { Ok(changes) })
    }

    fn list(&self, group: &str, cap: usize) -> BoxFuture<Result<Listing, String>> {
        let listing = self.list_now(group, cap);
        Box::pin(async move { Ok(listing) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(member: &str, conn: &str) -> Entry {
        Entry {
            member: member.into(),
            conn: conn.into(),
            meta: Bytes::from_static(b"\x80"),
        }
    }

    #[test]
    fn a_member_joins_with_its_first_connection_and_leaves_with_its_last() {
        let store = Memory::default();
        let firsts: Vec<bool> = ["c1", "c2", "c3"]
            .iter()
            .map(|c| store.track_now("room", entry("s:alice", c)).joined[0].first)
            .collect();
        assert_eq!(firsts, [true, false, false]);
        store.track_now("room", entry("s:bob", "c4"));
        let listing = store.list_now("room", 10);
        assert_eq!((listing.users, listing.connections), (2, 4));
        let lasts: Vec<bool> = ["c1", "c2", "c3"]
            .iter()
            .map(|c| store.untrack_now("room", "s:alice", c).left[0].last)
            .collect();
        assert_eq!(lasts, [false, false, true]);
        assert!(store.untrack_now("room", "s:alice", "c1").is_empty());
        assert_eq!(store.list_now("room", 10).users, 1);
    }

    #[test]
    fn a_listing_is_capped_by_members_and_says_so() {
        let store = Memory::default();
        for i in 0..5 {
            store.track_now("big", entry(&format!("s:u{i}"), "c"));
            store.track_now("big", entry(&format!("s:u{i}"), "d"));
        }
        let listing = store.list_now("big", 3);
        assert!(listing.truncated);
        assert_eq!(
            listing.entries.len(),
            6,
            "three members, both connections each"
        );
        assert_eq!((listing.users, listing.connections), (5, 10));
        assert!(!store.list_now("big", 5).truncated);
    }
}
