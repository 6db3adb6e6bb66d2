//! Telling this server's clients that speak sessions to refetch: after an outage or a deaf
//! subscription (every stream), or when another server says a stream's events never reached
//! the engine. Requests that come while one is on its way join it.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::stream_set::StreamSet;
use crate::session::Hub;

/// What the resync owns.
#[derive(Default)]
pub(super) struct Resync {
    /// Streams (keys) whose clients here are to be told to refetch, and whether a resync task
    /// that will take them is on its way.
    pub wanted: Mutex<StreamSet>,
    pub scheduled: AtomicBool,
    /// How many resyncs were asked for (a request joining a waiting resync extends its wait).
    pub asked: AtomicU64,
    /// When a resync was last logged at info (seconds since the epoch).
    pub logged: AtomicU64,
    /// The server's hub, whose connections are told.
    pub hub: Mutex<Weak<Hub>>,
    /// With sessions on: how long a stream's position is kept (`None`: no history, no resync).
    pub meta_ttl: Mutex<Option<Duration>>,
}
