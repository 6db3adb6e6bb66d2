//! Whether the engine answers: connected or not, and since when it has not (an outage, logged
//! once, counted, and ended by the first answer, which starts a resync).

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Whether the engine answered the last command, and since when it has not.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Whether it answered the last command (false until it first does).
    pub connected: AtomicBool,
    /// Since when it has been unreachable, and the drop count then.
    pub outage: Mutex<Option<(Instant, u64)>>,
    /// A part of it (a cluster's node) lost its connection since the connection was last
    /// renewed.
    pub parted: AtomicBool,
}
