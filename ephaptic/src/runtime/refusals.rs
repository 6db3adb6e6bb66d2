//! What the transport refused, counted: the one piece of state the transport writes and
//! [`metrics`](super::metrics) reads, kept apart so that the server's `State` holds it without
//! reaching up to the metrics that read the state.

use std::sync::atomic::AtomicU64;

/// What the transport refused, counted for [`Metrics`](super::Metrics).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Connections closed at accept by a connection cap.
    pub connections: AtomicU64,
    /// Connections closed for not finishing the upgrade, or not sending a first message, in
    /// time.
    pub timeouts: AtomicU64,
    /// Connections closed for having more connections of their identity than allowed.
    pub identity: AtomicU64,
}
