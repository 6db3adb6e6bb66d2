//! Tenures ended by a leave, on their way to the engine: sent at once, again at each probe tick
//! until the engine takes them, and meanwhile a join of that identity starts afresh, so no
//! leave is lost to an outage. And tenures seeded for the members of a group whose stream
//! starts a new epoch.

use std::collections::HashSet;

/// Leaves on their way to Redis (see [`Link::leaves`]).
#[derive(Debug, Default)]
pub(super) struct Leaves {
    pub pending: HashSet<(String, String)>,
    /// More were pending than are named (a long outage with many leaves): from then on every
    /// group read of this server starts a fresh tenure (nobody is replayed a group here), since
    /// a leave that was not named may never reach Redis.
    pub overflow: bool,
}

/// The most leaves named while Redis does not take them.
pub(super) const PENDING_LEAVES: usize = 16 * 1024;
