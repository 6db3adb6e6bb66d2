//! Publishing: one bounded queue and one task, so the events one task emits reach every server
//! in emit order; what the engine cannot take is dropped and counted, and the streams it
//! belonged to are noted (lost) so that the other servers' clients are told to refetch.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::driver::Job;
use super::stream_set::StreamSet;

/// Events that may wait to be published before new ones are dropped (and counted).
pub(super) const PUBLISH_QUEUE: usize = 16 * 1024;

/// Publishes sent to Redis in one round trip at most.
pub(super) const BATCH: usize = 256;

/// At most one round of notices of lost events per this long: the first goes out as soon as
/// Redis takes publishes again, the next ones (while Redis stays too slow) once a second, so
/// that the other servers' clients do not refetch the same streams again and again.
pub(super) const LOST_EVERY: Duration = Duration::from_secs(1);

/// A round of notices after this long without one is logged as a warning again.
pub(super) const LOST_QUIET: Duration = Duration::from_secs(10);

/// What the publisher owns: its queue and the streams that lost events on their way out.
pub(super) struct Publisher {
    pub publish_tx: mpsc::Sender<Job>,
    /// Channels of streams whose events never reached the engine from here (the publish queue
    /// was full, a batch failed), to tell the other servers about, and whether there are any.
    pub lost: Mutex<StreamSet>,
    pub lost_any: AtomicBool,
    /// When notices of lost events last went out.
    pub lost_told: Mutex<Option<Instant>>,
}
