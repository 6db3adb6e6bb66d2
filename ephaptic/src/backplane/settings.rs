//! What the backplane's parts share from the bottom: the settings, a bound, the node's name,
//! and the lock helper.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a new connection waits at most for the subscription to its identity's channel.
pub(super) const READY_WAIT: Duration = Duration::from_secs(2);

/// The Redis settings of a server.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub url: String,
    /// Deliver `to(user)` events through the reference's channel, so that Python ephaptic
    /// servers on the same Redis send to and receive from this one.
    pub compat: bool,
    /// How often the liveness probe runs.
    pub probe_every: Duration,
}

impl Settings {
    pub fn new(url: String) -> Self {
        Settings {
            url,
            compat: false,
            probe_every: Duration::from_secs(5),
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name for this server in messages, unique enough for a cluster's lifetime.
pub(super) fn node_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "rs-{:x}-{:x}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        SEQ.fetch_add(1, Relaxed)
    )
}
