//! What travels as an event, and how it is encoded: once, for all its targets.

use bytes::Bytes;
use serde::Serialize;

use crate::session::names::{Every, for_log};
use crate::wire::reply;

/// A type that travels as an event. `#[ephaptic::event]` implements it; the event's `name` is
/// what clients listen for (`client.on("Name", ...)`), and its fields arrive as the callback's
/// data.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "mark the type with `#[ephaptic::event]` (a struct, or an enum serde represents as a map)"
)]
pub trait Event: Serialize {
    /// The event name on the wire.
    const NAME: &'static str;
    /// Whether a client that reconnects is sent it again if it missed it
    /// (`#[event(recover = "...")]`; docs/PROTOCOL.md 5.6).
    const RECOVER: Recover = Recover::Stream;
}

impl<T: Event + ?Sized> Event for &T {
    const NAME: &'static str = T::NAME;
    const RECOVER: Recover = T::RECOVER;
}

/// What a reconnecting client gets of an event it missed: `#[event(recover = "stream")]` (the
/// default), `"latest"` or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recover {
    /// Kept in its stream's history and replayed to a client that missed it.
    Stream,
    /// Kept, but a replay sends only the newest event of this name (for signals such as "the
    /// list changed", where only the last one matters).
    Latest,
    /// Never kept nor replayed, and sent without a position (presence diffs, typing
    /// indicators, progress ticks).
    None,
}

/// Whether an event frame of `size` bytes, with `room` more for what it gains on its way (a
/// stream's position), is past `limit`, the largest frame the server sends
/// ([`Server::max_sent_frame`](crate::Server::max_sent_frame)): then it is not sent, which is
/// logged a few times a minute (the one check for `emit`, `to`, groups, channels and
/// `Caller::emit`).
pub(crate) fn too_large_to_send(name: &str, size: usize, room: usize, limit: usize) -> bool {
    if size + room <= limit {
        return false;
    }
    static LOGGED: Every = Every::new();
    if LOGGED.ready() {
        tracing::warn!(
            event = %for_log(name),
            size,
            limit,
            "an event larger than Server::max_sent_frame was not sent"
        );
    }
    true
}

/// Encodes an event once for all its targets; a payload that cannot be encoded is logged and
/// not sent (the one policy for `emit`, `to`, groups, channels and `Caller::emit`).
pub(crate) fn encode<T: Serialize + ?Sized>(name: &str, payload: &T) -> Option<Bytes> {
    reply::event_frame(name, payload)
        .map_err(|e| {
            tracing::error!(
                event = name,
                "the event could not be encoded, so it was not sent: {e}"
            )
        })
        .ok()
}
