//! Sending events: to an [`Audience`] (everyone, identities, a group) and on channels. Each
//! event is encoded once, here, and handed to the server's [delivery seam](super::delivery).

use serde::Serialize;

use super::delivery::{Keep, Outgoing};
use super::scope::current;
use crate::handler::{Audience, Emit, Event, Recover, Sent, encode, too_large_to_send};
use crate::session::NameRules;
use crate::session::names::{Every, RESERVED, for_log};

/// The most bytes a stream's position adds to an event frame (a 256-byte stream name, a
/// 64-bit offset, an epoch, their keys).
const STAMP_ROOM: usize = 320;

/// Every connected client, for the free [`emit`], whose future must not borrow a temporary.
static EVERYONE: Audience = Audience::Everyone;

impl Audience {
    /// Sends `event` to this audience; returns what it reached ([`Sent`]: this server's
    /// connections, and whether it went to the other servers). Nothing is sent until the
    /// returned future is awaited.
    pub fn emit<E: Event>(&self, event: E) -> Emit<'_> {
        let keep = match E::RECOVER {
            Recover::None => Keep::Not,
            Recover::Latest => Keep::Latest(E::NAME),
            _ => Keep::All,
        };
        Emit::new(self.deliver(E::NAME, self.encode(E::NAME, &event), keep))
    }

    fn encode<T: Serialize + ?Sized>(&self, name: &str, payload: &T) -> Option<bytes::Bytes> {
        if matches!(self, Audience::Nobody) {
            None
        } else {
            encode(name, payload)
        }
    }

    /// Sends a payload under any event name, as channels do. A payload that serialises as a
    /// map (a struct) travels as the event's `kwargs`; anything else travels as its only
    /// positional argument. Nothing is sent until the returned future is awaited.
    pub fn emit_named<'a, T: Serialize + ?Sized>(&'a self, name: &'a str, payload: &T) -> Emit<'a> {
        Emit::new(self.deliver(name, self.encode(name, payload), Keep::All))
    }

    /// Hands an encoded event to the running server's delivery (not generic, so the futures
    /// above name no event type).
    async fn deliver(&self, name: &str, frame: Option<bytes::Bytes>, keep: Keep) -> Sent {
        let Some(state) = current() else {
            tracing::warn!(
                event = name,
                "an event was emitted but no ephaptic server is running in this process"
            );
            return Sent::default();
        };
        let Some(frame) = frame else {
            return Sent::default();
        };
        // Room for the position a stream's event gets on its way (`stream`, `seq`, `epoch`).
        if too_large_to_send(name, frame.len(), STAMP_ROOM, state.config.max_sent_frame) {
            return Sent::default();
        }
        let checked;
        let audience = match checked_audience(self, name, state.hub.rules()) {
            Ok(None) => self,
            Ok(Some(fewer)) => {
                checked = fewer;
                &checked
            }
            Err(why) => {
                static LOGGED: Every = Every::new();
                if LOGGED.ready() {
                    tracing::warn!(event = %for_log(name), "an event was not sent: {why}");
                }
                return Sent::default();
            }
        };
        if let Some(t) = &state.telemetry {
            for stream in audience.streams() {
                t.event(stream.kind().name());
            }
        }
        let reached = state.delivery.deliver(Outgoing {
            audience,
            name,
            frame,
            keep,
        });
        // Give the writers a turn, so a task emitting in a tight loop cannot outrun healthy
        // clients and get them treated as slow.
        tokio::task::yield_now().await;
        reached
    }
}

/// Checks an audience and event name that application code chose (often from a client's
/// input): no `__ephaptic.` name (the runtime's own: presence diffs and their watchers), no
/// group name past the bound, and no identity longer than any connection's can be (it would
/// reach no one, but keep a stream). `Ok(Some(..))`: the audience without such identities.
fn checked_audience(
    audience: &Audience,
    name: &str,
    rules: &NameRules,
) -> Result<Option<Audience>, String> {
    if name.starts_with(RESERVED) {
        return Err(format!(
            "event names starting with \"{RESERVED}\" are the server's own; rename the event"
        ));
    }
    match audience {
        Audience::Group(group) => rules
            .group(group)
            .map(|()| None)
            .map_err(|why| format!("to group \"{}\": {why}", for_log(group))),
        Audience::Users(ids) if ids.iter().any(|id| id.too_long()) => Ok(Some(Audience::Users(
            ids.iter().filter(|id| !id.too_long()).cloned().collect(),
        ))),
        _ => Ok(None),
    }
}

/// Sends `event` to every connected client; returns what it reached ([`Sent`]: this server's
/// connections, and whether it went to the other servers). Nothing is sent until the returned
/// future is awaited.
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run() {
/// let sent = ephaptic::emit(Notice { message: "deploy at 5pm".into() }).await;
/// # }
/// ```
///
/// Inside a handler this is the server that runs the handler; elsewhere (a background task),
/// the server started most recently in this process.
pub fn emit<E: Event>(event: E) -> Emit<'static> {
    EVERYONE.emit(event)
}

/// Sends a function's value on each of its channels to the audience (what
/// `#[expose(broadcast = [..])]` generates a call to).
pub async fn announce<T: Serialize + ?Sized>(value: &T, audience: &Audience, channels: &[&str]) {
    for channel in channels {
        audience.emit_named(channel, value).await;
    }
}
