//! What presence sends and answers: the diff and list types (typed in `schema.ts`), and the
//! reserved names.

use serde::{Deserialize, Serialize};

/// The event name diffs travel under (old clients never listen for it).
pub const EVENT: &str = "__ephaptic.presence";
/// The reserved calls' common prefix.
pub(super) const CALLS: &str = "__ephaptic.presence.";
/// The internal group a group's watchers join.
pub(super) const WATCHERS: &str = "__ephaptic.presence:";

/// The most groups one connection may watch at once (each is a hub membership and, with
/// Redis, a subscription).
pub(crate) const MAX_WATCHES: usize = 256;
/// The longest group name a client may name in a presence call, in bytes.
pub(super) const MAX_GROUP: usize = 1024;

/// The hub group of `group`'s watchers.
pub(super) fn watchers(group: &str) -> String {
    format!("{WATCHERS}{group}")
}

/// One connection of a member, with its meta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceConn<M> {
    /// The connection, unique across servers (`<server>:<number>`).
    pub id: String,
    /// What the connection tracked itself with.
    pub meta: M,
}

/// A member of a group: one identity (or one anonymous connection) and its connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceMember<M> {
    /// The member: the identity's key (`s:alice`, `i:7`), or `c:<connection>` for an anonymous
    /// connection.
    pub key: String,
    /// Its connections in the group (each tab, each device), at least one.
    pub connections: Vec<PresenceConn<M>>,
}

impl<M> PresenceMember<M> {
    /// The member's identity; `None` for an anonymous connection.
    pub fn identity(&self) -> Option<crate::Identity> {
        crate::Identity::from_key(&self.key)
    }
}

/// Connections that left a group, by member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceLeave {
    /// The member.
    pub key: String,
    /// The ids of its connections that left.
    pub connections: Vec<String>,
}

/// What changed in a group since the last diff: connections that joined (or changed their
/// meta: a join of a connection already present replaces its meta) and connections that left,
/// by member. A member whose first connection joins is new; one whose last connection leaves is
/// gone. Sent to a group's watchers as the event `__ephaptic.presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceDiff<M> {
    /// The group.
    pub group: String,
    pub joins: Vec<PresenceMember<M>>,
    pub leaves: Vec<PresenceLeave>,
}

/// A group's members now, at most the list cap of them, and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceList<M> {
    /// The group.
    pub group: String,
    /// Sorted by key.
    pub members: Vec<PresenceMember<M>>,
    /// Whether members were left out (more than the server's list cap): use `users`.
    pub truncated: bool,
    /// Members in the group.
    #[ts(type = "number")]
    pub users: u64,
    /// Connections in the group.
    #[ts(type = "number")]
    pub connections: u64,
}

/// How many are in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceCount {
    /// Members (identities).
    #[ts(type = "number")]
    pub users: u64,
    /// Connections.
    #[ts(type = "number")]
    pub connections: u64,
}
