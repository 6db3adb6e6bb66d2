//! The one seam where events leave the process's handlers: every event sent by `emit`, `to`,
//! `group`, a channel announcement or a hook passes through [`Delivery::deliver`], encoded
//! once. Events to the caller alone (`Caller::emit`) are the exception on purpose: they are
//! ordered with that caller's replies and concern no other connection or server.
//!
//! [`Local`] delivers to this server's connections; a backplane (`backplane/`) publishes the
//! same frame for the same audience to other servers and hands what it receives to the hub.
//!
//! Events of a stream (docs/PROTOCOL.md 5.6) get their position here: [`Local`] appends each to
//! its stream in the in-memory [`history`](super::history) and offers the positioned frame
//! (the event frame with `stream`, `seq` and `epoch` appended, the payload not encoded again)
//! while the stream is locked, so every listener gets a stream's events in offset order. With
//! Redis, Redis numbers them (`backplane/history.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::history::{Memory, Position, Read, Retentions};
use super::ratelimit::Remote;
use crate::handler::{Audience, Sent};
use crate::identity::Identity;
use crate::session::{Asked, Hub, Interest, Stamp, Stream};
use crate::wire::reply::positioned;

/// Whether an event is kept in its stream's history (`#[event(recover = ..)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Sent without a position, never replayed.
    Not,
    All,
    /// Kept, but only the newest of this name is replayed.
    Latest(&'static str),
}

impl Keep {
    pub fn latest(self) -> Option<&'static str> {
        match self {
            Keep::Latest(name) => Some(name),
            _ => None,
        }
    }
}

/// An event on its way out: for whom, under which name, and its frame as every target
/// receives it.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub audience: &'a Audience,
    /// The event's (or channel's) name, for routing and logs; the frame carries it too.
    pub name: &'a str,
    pub frame: Bytes,
    pub keep: Keep,
}

/// A future a history read returns.
pub(crate) type Reading<'a> = Pin<Box<dyn Future<Output = Read> + Send + 'a>>;

/// Where events leave the process.
pub(crate) trait Delivery: Send + Sync + fmt::Debug {
    /// Sends `event` to its audience; returns how many connections of this server it reaches,
    /// and whether it was handed on for the other servers.
    fn deliver(&self, event: Outgoing<'_>) -> Sent;

    /// Called as each connection opens: a backplane starts its tasks at the first (a server
    /// may be built before a runtime runs).
    fn opened(&self) {}

    /// What crossed to other servers, for [`Metrics`](crate::Metrics).
    fn stats(&self) -> DeliveryStats {
        DeliveryStats::default()
    }

    /// Whether events get positions and a history (sessions on).
    fn keeps_history(&self) -> bool {
        false
    }

    /// Reads `stream` for `reader`'s resume from `asked` (its position only, without): what to
    /// replay, or why not. A group stream's read is the reader's join: it starts the reader's
    /// tenure there (see [`Tenure`](super::history::Tenure)). Only called when
    /// [`keeps_history`](Self::keeps_history).
    fn read<'a>(
        &'a self,
        stream: Stream<'a>,
        asked: Option<&'a Asked>,
        reader: Option<&'a Identity>,
    ) -> Reading<'a> {
        let _ = (stream, asked, reader);
        Box::pin(async { unreachable!("read on a delivery without history") })
    }

    /// Where the server's metrics go, when they are on (a backplane counts its publish round
    /// trips and resyncs there).
    fn observe(&self, telemetry: Arc<super::telemetry::Telemetry>) {
        let _ = telemetry;
    }

    /// Asks the other servers to end the sessions of `stream`'s listeners with `reason`
    /// ([`disconnect`](crate::disconnect)); `true` when it was handed on. This server's own
    /// are closed by the caller.
    fn end_sessions(&self, stream: Stream<'_>, reason: &str) -> bool {
        let _ = (stream, reason);
        false
    }

    /// `member` left `group` on purpose: its tenure there ends, so a later join cannot be
    /// replayed what the group was sent meanwhile.
    fn left(&self, group: &str, member: &Identity) {
        let _ = (group, member);
    }

    /// Where the streams' positions are, for the inspector (at most `limit` of them listed).
    fn positions(&self, limit: usize) -> Positions {
        let _ = limit;
        if self.keeps_history() {
            Positions::Redis
        } else {
            Positions::Off
        }
    }
}

/// Where a server's streams keep their positions (the inspector's view).
#[derive(Debug)]
pub(crate) enum Positions {
    /// No history (`SessionSettings::resume(false)`).
    Off,
    /// Kept in Redis, for every server.
    Redis,
    /// This server's memory: how many streams, and the most recently used.
    Memory {
        total: usize,
        streams: Vec<Position>,
    },
}

/// Counts a backplane keeps (all zero, and `connected: None`, without one).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeliveryStats {
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub outages: u64,
    /// Times the engine's master moved (Redis Sentinel) and this server followed.
    pub failovers: u64,
    /// `resync`s sent to this server's connections (what they may have missed, refetched).
    pub resyncs: u64,
    pub connected: Option<bool>,
}

/// A way for events to reach other servers, chosen by the server's settings (Redis). It
/// watches what this server holds ([`Interest`]), may share rate limits ([`Remote`]), and
/// becomes the server's [`Delivery`] once the hub exists.
pub(crate) trait Backplane: Send {
    fn interest(&self) -> Option<Arc<dyn Interest>>;
    fn limiter(&self) -> Option<Arc<dyn Remote>>;
    /// Where idempotent calls' answers are shared with the other servers.
    fn answers(&self) -> Option<Arc<dyn super::window::Shared>> {
        None
    }
    fn into_delivery(
        self: Box<Self>,
        hub: Arc<Hub>,
        history: Option<Retentions>,
    ) -> Box<dyn Delivery>;
}

/// Delivery to this server's own connections, through its hub; with a history, each event of
/// a stream positioned in it.
#[derive(Debug)]
pub(crate) struct Local {
    hub: Arc<Hub>,
    history: Option<Memory>,
}

impl Local {
    pub fn new(hub: Arc<Hub>, history: Option<Memory>) -> Self {
        Local { hub, history }
    }

    /// Delivers a frame as it is, without a position (events that are not kept, and what
    /// another server positioned already is offered by the backplane itself).
    pub fn unpositioned(&self, event: &Outgoing<'_>) -> usize {
        (event.audience.streams())
            .map(|stream| self.hub.offer(stream, &event.frame, None))
            .sum()
    }

    fn positioned(&self, history: &Memory, event: &Outgoing<'_>) -> usize {
        let latest = event.keep.latest();
        let hub = &self.hub;
        let frame = &event.frame;
        let append = |of: Stream<'_>| {
            let members = || match of {
                Stream::Group(name) => hub.member_keys(name),
                _ => Vec::new(),
            };
            history.append_to(&of, frame, latest, members, |seq, epoch| {
                offer_at(hub, of, frame, seq, epoch)
            })
        };
        event.audience.streams().map(append).sum()
    }
}

/// Offers an event of stream `of`, at `seq` under `epoch`, to the stream's listeners on this
/// server (positioned here, or by Redis and received back); returns how many queued it.
pub(crate) fn offer_at(hub: &Hub, of: Stream<'_>, frame: &Bytes, seq: u64, epoch: &str) -> usize {
    let wire = of.wire();
    let stamped = stamp(frame, &wire, seq, epoch);
    hub.offer(of, &stamped, Some(Stamp { stream: &wire, seq }))
}

/// `frame` with its position; the frame as it is if it cannot take one (never, for frames
/// `encode` wrote).
pub(crate) fn stamp(frame: &Bytes, stream: &str, seq: u64, epoch: &str) -> Bytes {
    positioned(frame, stream, seq, epoch).unwrap_or_else(|| frame.clone())
}

impl Delivery for Local {
    fn deliver(&self, event: Outgoing<'_>) -> Sent {
        let reached = match &self.history {
            Some(history) if event.keep != Keep::Not => self.positioned(history, &event),
            _ => self.unpositioned(&event),
        };
        tracing::trace!(event = event.name, reached, "delivered");
        Sent::here(reached)
    }

    fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    fn positions(&self, limit: usize) -> Positions {
        match &self.history {
            Some(history) => {
                let (total, streams) = history.positions(limit);
                Positions::Memory { total, streams }
            }
            None => Positions::Off,
        }
    }

    fn left(&self, group: &str, member: &Identity) {
        if let Some(history) = &self.history {
            history.leave(group, member);
        }
    }

    fn read<'a>(
        &'a self,
        stream: Stream<'a>,
        asked: Option<&'a Asked>,
        reader: Option<&'a Identity>,
    ) -> Reading<'a> {
        let read = match &self.history {
            Some(h) => h.read_as(&stream, asked, reader),
            None => unreachable!("read on a delivery without history"),
        };
        Box::pin(async move { read })
    }
}
