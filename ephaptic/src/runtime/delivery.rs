//! The one seam where events leave the process's handlers: every event sent by `emit`, `to`,
//! `group`, a channel announcement or a hook passes through [`Delivery::deliver`], encoded
//! once. Events to the caller alone (`Caller::emit`) are the exception on purpose: they are
//! ordered with that caller's replies and concern no other connection or server.
//!
//! [`Local`] delivers to this server's connections and is the only implementation today. The
//! seam is shaped for what comes next:
//! - a backplane to other servers publishes the same frame for the same audience, and hands
//!   what it receives from them to [`Local`];
//! - a replay log appends each event once with one position. An event frame is a MessagePack
//!   map whose header counts its keys, so a position can be added as extra keys (which old
//!   clients ignore) by rewriting the header and appending, without encoding the payload again.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::handler::Audience;
use crate::session::{Hub, Interest};

use super::ratelimit::Remote;

/// An event on its way out: for whom, under which name, and its frame as every target
/// receives it.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub audience: &'a Audience,
    /// The event's (or channel's) name, for routing and logs; the frame carries it too.
    pub name: &'a str,
    pub frame: Bytes,
}

/// Where events leave the process.
pub(crate) trait Delivery: Send + Sync + fmt::Debug {
    /// Sends `event` to its audience; returns how many connections of this server queued it.
    fn deliver(&self, event: Outgoing<'_>) -> usize;

    /// Called as each connection opens: a backplane starts its tasks at the first (a server
    /// may be built before a runtime runs).
    fn opened(&self) {}

    /// What crossed to other servers, for [`Metrics`](crate::Metrics).
    fn stats(&self) -> DeliveryStats {
        DeliveryStats::default()
    }
}

/// Counts a backplane keeps (all zero, and `connected: None`, without one).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeliveryStats {
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub outages: u64,
    pub connected: Option<bool>,
}

/// A way for events to reach other servers, chosen by the server's settings (Redis). It
/// watches what this server holds ([`Interest`]), may share rate limits ([`Remote`]), and
/// becomes the server's [`Delivery`] once the hub exists.
pub(crate) trait Backplane: Send {
    fn interest(&self) -> Option<Arc<dyn Interest>>;
    fn limiter(&self) -> Option<Arc<dyn Remote>>;
    fn into_delivery(self: Box<Self>, hub: Arc<Hub>) -> Box<dyn Delivery>;
}

/// Delivery to this server's own connections, through its hub.
#[derive(Debug)]
pub(crate) struct Local {
    hub: Arc<Hub>,
}

impl Local {
    pub fn new(hub: Arc<Hub>) -> Self {
        Local { hub }
    }
}

impl Delivery for Local {
    fn deliver(&self, event: Outgoing<'_>) -> usize {
        let reached = match event.audience {
            Audience::Everyone => self.hub.offer_all(&event.frame),
            Audience::Users(ids) => self.hub.offer_users(ids, &event.frame),
            Audience::Group(name) => self.hub.offer_group(name, &event.frame),
            Audience::Nobody => 0,
        };
        tracing::trace!(event = event.name, reached, "delivered");
        reached
    }
}
