//! What travels as an event, and how it is encoded: once, for all its targets.

use bytes::Bytes;
use serde::Serialize;

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
