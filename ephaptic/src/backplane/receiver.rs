//! What arrives from the engine: the driver hands it to the [`Inbox`] (bounded: a full queue
//! drops and makes this server's clients refetch), and one task delivers it to this server's
//! connections, positioned when it is an event of a stream.

use tokio::sync::mpsc;

/// Messages from Redis that may wait to be delivered before new ones are dropped.
pub(super) const RECEIVE_QUEUE: usize = 16 * 1024;

/// Where the driver's messages wait for the receiver task.
pub(super) struct Receiving {
    /// What arrives from the driver, bounded: (channel, body).
    pub push_tx: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
}
