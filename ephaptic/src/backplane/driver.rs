//! The seam between the backplane's logic and the engine that carries events between servers:
//! a small [`Driver`] trait of our own. The logic (what to publish, subscriptions that follow
//! the hub, outages, lost events, resyncs, tenures) is written once against it; Redis is one
//! implementation (`redis_driver.rs`), and an in-process one (`in_process.rs`: several servers
//! in one test process, with faults on demand) tests that logic without a `redis-server`.
//!
//! A driver does what the backplane asks and reports what arrives through an [`Inbox`]: the
//! messages published on the channels it is subscribed to, and a lost connection. What an
//! operation could not do is a [`Fault`]: unreachable (an outage: the logic waits it out),
//! a timeout (it may have run), or refused (one command).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::runtime::history::Retention;

/// What a driver's operation resolves to.
pub(crate) type Done<'a, T> = Pin<Box<dyn Future<Output = Result<T, Fault>> + Send + 'a>>;

/// Why a driver could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    pub message: String,
    /// For a batch that was partly sent (a Redis Cluster, whose shards answer apart): which of
    /// its jobs were. `None`: none of them, as far as the driver knows.
    pub sent: Option<Vec<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// The engine cannot be reached: an outage.
    Unreachable,
    /// No answer in time: the operation may or may not have run.
    Timeout,
    /// The engine answered no to this operation.
    Refused,
}

impl Fault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Fault {
            kind,
            message: message.into(),
            sent: None,
        }
    }

    /// Whether the engine cannot be reached (rather than refusing one operation).
    pub fn is_outage(&self) -> bool {
        matches!(self.kind, FaultKind::Unreachable | FaultKind::Timeout)
    }

    /// Whether it is one part's of the engine (a Redis Cluster shard's: `sent` says which jobs
    /// the others took), not the whole engine's.
    pub fn is_partial(&self) -> bool {
        self.sent.is_some()
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == FaultKind::Timeout
    }
}

/// What a Redis error means for the backplane.
impl From<&::redis::RedisError> for Fault {
    fn from(e: &::redis::RedisError) -> Self {
        let kind = if e.is_timeout() {
            FaultKind::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            FaultKind::Unreachable
        } else {
            FaultKind::Refused
        };
        Fault::new(kind, e.to_string())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the publisher sends, in order.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Publish `body` on `channel`.
    Publish(String, Vec<u8>),
    /// An event of a stream: number it, keep it, publish it positioned (the head, then the
    /// epoch and offset, then the frame: `channel::unwrap_positioned` reads it back).
    Append {
        /// The stream's position hash and its kept events (`history::keys`).
        keys: (String, String),
        channel: String,
        frame: Bytes,
        /// For `recover = "latest"` events, the event's name; else "".
        latest: &'static str,
        retention: Retention,
    },
}

/// What an append needs besides its job: the head of the positioned message, how long a
/// stream's position lives after its last event, and now. (A stream without an epoch gets a new
/// one of its own.)
#[derive(Debug, Clone)]
pub(crate) struct AppendContext {
    pub head: Vec<u8>,
    pub meta_ttl_secs: u64,
    pub now_ms: u64,
}

/// A read of a stream for a resume (see `history::READ` for the Redis script that does it).
#[derive(Debug, Clone)]
pub(crate) struct ReadRequest<'a> {
    pub meta: &'a str,
    pub stream: &'a str,
    /// The first offset wanted (`u64::MAX`: the position only).
    pub from: u64,
    /// How many events at most (the most replayed, plus one).
    pub count: usize,
    /// The epoch a stream without one gets now.
    pub new_epoch: String,
    pub meta_ttl_secs: u64,
    /// The epoch the client asked for ("" for none).
    pub asked_epoch: &'a str,
    /// The reader's tenure field (`history::tenure_field`: "" for streams without tenures).
    pub tenure_field: &'a str,
    /// The reader's tenure starts afresh whatever is kept (a leave may be on its way).
    pub fresh: bool,
    pub max_tenures: usize,
}

/// What a read found: the stream's epoch and top, the kept events after the asked offset
/// (only when they could be a recovery), and where the reader's tenure began (-1: none, -2:
/// a stream without tenures).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadReply {
    pub epoch: String,
    pub top: u64,
    pub entries: Vec<KeptEntry>,
    pub since: i64,
}

/// One kept event as a read returns it.
#[derive(Debug, Clone)]
pub(crate) struct KeptEntry {
    pub seq: u64,
    /// When it was kept, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub frame: Bytes,
    /// Its name for `recover = "latest"` events, else "".
    pub latest: String,
}

/// What a store on the engine (presence) tells the backplane of the engine's health, and asks.
pub(crate) trait Reports: Send + Sync {
    fn is_down(&self) -> bool;
    fn up(&self);
    fn failed(&self, fault: &Fault);
}

/// Where a driver hands what arrives.
pub(crate) trait Inbox: Send + Sync {
    /// A message published on `channel`, which this server is subscribed to.
    fn message(&self, channel: &[u8], body: &[u8]);
    /// The connection to the engine was lost (it comes back by itself, or at `reconnect`).
    fn disconnected(&self);
    /// One part of the engine (a cluster's shard) lost its connection and comes back by
    /// itself; the others work on. What it carried meanwhile may be missing.
    fn part_lost(&self);
    /// The engine ended this server's subscription to `channel` (a cluster moved its slot to
    /// another shard); this server did not ask, unless it no longer wants it.
    fn unsubscribed(&self, channel: &[u8]);
}

/// The engine behind the backplane.
pub(crate) trait Driver: Send + Sync + fmt::Debug {
    /// Where what arrives goes (called once, before anything else).
    fn attach(&self, inbox: Weak<dyn Inbox>);
    /// Sends `batch` in order, in one round trip.
    fn send<'a>(&'a self, batch: &'a [Job], append: &'a AppendContext) -> Done<'a, ()>;
    fn subscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()>;
    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()>;
    /// Reads a stream for a resume; a group's read starts the reader's tenure.
    fn read<'a>(&'a self, request: ReadRequest<'a>) -> Done<'a, ReadReply>;
    /// A shared rate-limit check (GCRA, on the engine's clock) of the caller whose state is at
    /// `key`: 0 when the call is allowed now (and counted), else the microseconds to wait.
    fn rate<'a>(&'a self, key: &'a str, interval_us: u64, period_us: u64) -> Done<'a, u64>;
    /// The presence store every server on this engine shares, its entries expiring `ttl` after
    /// their server's last heartbeat where the engine expires them; `reports` hears of faults.
    fn presence_store(
        &self,
        ttl: Duration,
        reports: Weak<dyn Reports>,
    ) -> Arc<dyn crate::runtime::presence::Store>;
    /// Claims slot `key` of the idempotent calls' answers for `ttl_ms` unless it is taken:
    /// `None` when it was free (it holds `R` now, for "running"), else what it holds.
    fn claim<'a>(&'a self, key: &'a str, ttl_ms: u64) -> Done<'a, Option<Vec<u8>>>;
    /// Sets slot `key` to `value` for `ttl_ms`; an empty `value` lets the slot go.
    fn keep<'a>(&'a self, key: &'a str, value: &'a [u8], ttl_ms: u64) -> Done<'a, ()>;
    /// Ends tenures: `(stream hash, field)` pairs.
    fn forget<'a>(&'a self, tenures: &'a [(String, String)]) -> Done<'a, ()>;
    /// Starts, at offset 0 and unless they have one, tenures `fields` in stream hash `meta`.
    fn seed<'a>(&'a self, meta: &'a str, fields: &'a [String]) -> Done<'a, ()>;
    /// Replaces a connection that stopped receiving; the old one leaves `channels`.
    fn reconnect(&self, channels: Vec<String>);
    /// After a part of the engine was lost (a cluster's node): once every part answers, a new
    /// connection subscribed to all of `channels` replaces the one in use. `true` when it did.
    fn renew<'a>(&'a self, channels: &'a [String]) -> Done<'a, bool>;
    /// Asks where the engine is now (Redis Sentinel's master). When it moved, the driver
    /// talks to the new place from now on, without the old one's subscriptions, and returns it.
    fn follow(&self) -> Done<'_, Option<String>>;
    /// The server is gone: lets go of the connection.
    fn close(&self);
}
