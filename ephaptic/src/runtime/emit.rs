//! Sending events: to an [`Audience`] (everyone, identities, a group) and on channels. Each
//! event is encoded once, here, and handed to the server's [delivery seam](super::delivery).

use serde::Serialize;

use super::delivery::Outgoing;
use super::scope::current;
use crate::handler::{Audience, Event, encode};

impl Audience {
    /// Sends `event` to this audience; returns how many connections on this server it reached.
    pub async fn emit<E: Event>(&self, event: E) -> usize {
        self.emit_named(E::NAME, &event).await
    }

    /// Sends a payload under any event name, as channels do. A payload that serialises as a
    /// map (a struct) travels as the event's `kwargs`; anything else travels as its only
    /// positional argument.
    pub async fn emit_named<T: Serialize + ?Sized>(&self, name: &str, payload: &T) -> usize {
        let Some(state) = current() else {
            tracing::warn!(
                event = name,
                "an event was emitted but no ephaptic server is running in this process"
            );
            return 0;
        };
        if matches!(self, Audience::Nobody) {
            return 0;
        }
        let Some(frame) = encode(name, payload) else {
            return 0;
        };
        let reached = state.delivery.deliver(Outgoing {
            audience: self,
            name,
            frame,
        });
        // Give the writers a turn, so a task emitting in a tight loop cannot outrun healthy
        // clients and get them treated as slow.
        tokio::task::yield_now().await;
        reached
    }
}

/// Sends `event` to every connected client; returns how many connections it reached on this
/// server.
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run() {
/// let reached = ephaptic::emit(Notice { message: "deploy at 5pm".into() }).await;
/// # }
/// ```
///
/// Inside a handler this is the server that runs the handler; elsewhere (a background task),
/// the server started most recently in this process.
pub async fn emit<E: Event>(event: E) -> usize {
    Audience::Everyone.emit(event).await
}

/// Sends a function's value on each of its channels to the audience (what
/// `#[expose(broadcast = [..])]` generates a call to).
pub async fn announce<T: Serialize + ?Sized>(value: &T, audience: &Audience, channels: &[&str]) {
    for channel in channels {
        audience.emit_named(channel, value).await;
    }
}
