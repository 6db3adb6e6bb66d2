//! Pushing events to clients: to everyone, to the connections of chosen identities, to a group,
//! or to the caller. Each event is encoded once; every target gets the same bytes.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde::Serialize;

use crate::identity::Identity;
use crate::protocol;
use crate::server::Shared;

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
}

impl<T: Event + ?Sized> Event for &T {
    const NAME: &'static str = T::NAME;
}

tokio::task_local! {
    /// The server whose handler is running, so `emit` inside a handler reaches that server's
    /// clients even when a process runs several servers.
    static CURRENT: Arc<Shared>;
}

/// The server `emit` uses outside handlers: the one started most recently.
static DEFAULT: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

pub(crate) fn set_default(shared: &Arc<Shared>) {
    *DEFAULT.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(shared);
}

/// Runs `fut` with `shared` as the current server: a call's own task, or a whole connection's
/// task (whose frames run their handlers' first polls inline).
pub(crate) fn in_scope<F: Future>(shared: Arc<Shared>, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(shared, fut)
}

/// Runs `f` with `shared` as the current server.
pub(crate) fn sync_in_scope<R>(shared: Arc<Shared>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(shared, f)
}

fn current() -> Option<Arc<Shared>> {
    CURRENT
        .try_with(|s| s.clone())
        .ok()
        .or_else(|| DEFAULT.lock().unwrap_or_else(|e| e.into_inner()).upgrade())
}

/// Encodes an event once for all its targets; a payload that cannot be encoded is logged and
/// not sent (the one policy for `emit`, `to`, groups, channels and `Caller::emit`).
pub(crate) fn encode<T: Serialize + ?Sized>(name: &str, payload: &T) -> Option<Bytes> {
    protocol::event_frame(name, payload)
        .map_err(|e| {
            tracing::error!(
                event = name,
                "the event could not be encoded, so it was not sent: {e}"
            )
        })
        .ok()
}

/// Who an event goes to. Built by [`to`], [`group`] and the constructors below; also what a
/// `broadcast_to` function returns for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// Every connected client.
    Everyone,
    /// Every connection of each of these identities (all their tabs and devices).
    Users(Vec<Identity>),
    /// Every connection that joined this group (see [`Caller::join`](crate::Caller::join)).
    Group(String),
    /// Nobody: the event is not sent.
    Nobody,
}

impl Audience {
    /// Every connected client.
    pub fn everyone() -> Self {
        Audience::Everyone
    }

    /// The connections of these identities.
    pub fn users(ids: impl IntoTargets) -> Self {
        Audience::Users(ids.into_targets())
    }

    /// The connections in a group.
    pub fn group(name: impl Into<String>) -> Self {
        Audience::Group(name.into())
    }

    /// Nobody.
    pub fn nobody() -> Self {
        Audience::Nobody
    }

    /// Sends `event` to this audience; returns how many connections on this server it reached.
    pub async fn emit<E: Event>(&self, event: E) -> usize {
        self.emit_named(E::NAME, &event).await
    }

    /// Sends a payload under any event name, as channels do. A payload that serialises as a
    /// map (a struct) travels as the event's `kwargs`; anything else travels as its only
    /// positional argument.
    pub async fn emit_named<T: Serialize + ?Sized>(&self, name: &str, payload: &T) -> usize {
        let Some(shared) = current() else {
            tracing::warn!(
                event = name,
                "an event was emitted but no ephaptic server is running in this process"
            );
            return 0;
        };
        let Some(frame) = encode(name, payload) else {
            return 0;
        };
        let reached = self.deliver(&shared, &frame);
        // Give the writers a turn, so a task emitting in a tight loop cannot outrun healthy
        // clients and get them treated as slow.
        tokio::task::yield_now().await;
        reached
    }

    fn deliver(&self, shared: &Shared, frame: &Bytes) -> usize {
        match self {
            Audience::Everyone => shared.hub.offer_all(frame),
            Audience::Users(ids) => shared.hub.offer_users(ids, frame),
            Audience::Group(name) => shared.hub.offer_group(name, frame),
            Audience::Nobody => 0,
        }
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

/// Addresses every connection of one or more identities: `to(7)`, `to("alice")`,
/// `to([1, 2, 3])`, `to(vec_of_ids)`, `to(&ids[..])`. Integer and string identities never
/// match each other: `to(7)` does not reach `"7"`.
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run() {
/// ephaptic::to([1, 2, 3]).emit(Notice { message: "your order shipped".into() }).await;
/// # }
/// ```
pub fn to(ids: impl IntoTargets) -> Audience {
    Audience::Users(ids.into_targets())
}

/// Addresses every connection in a group (see [`Caller::join`](crate::Caller::join)).
pub fn group(name: impl Into<String>) -> Audience {
    Audience::Group(name.into())
}

/// One identity or a collection of them, for [`to`].
pub trait IntoTargets {
    /// The identities.
    fn into_targets(self) -> Vec<Identity>;
}

macro_rules! targets {
    ($($t:ty),*) => {$(
        impl IntoTargets for $t {
            fn into_targets(self) -> Vec<Identity> {
                vec![Identity::from(self)]
            }
        }
        impl<const N: usize> IntoTargets for [$t; N] {
            fn into_targets(self) -> Vec<Identity> {
                self.into_iter().map(Identity::from).collect()
            }
        }
        impl IntoTargets for Vec<$t> {
            fn into_targets(self) -> Vec<Identity> {
                self.into_iter().map(Identity::from).collect()
            }
        }
        impl IntoTargets for &[$t] {
            fn into_targets(self) -> Vec<Identity> {
                self.iter().cloned().map(Identity::from).collect()
            }
        }
        impl IntoTargets for &Vec<$t> {
            fn into_targets(self) -> Vec<Identity> {
                self.iter().cloned().map(Identity::from).collect()
            }
        }
    )*};
}

targets!(
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    isize,
    usize,
    bool,
    String,
    &str,
    uuid::Uuid,
    Identity
);

impl IntoTargets for &String {
    fn into_targets(self) -> Vec<Identity> {
        vec![Identity::from(self)]
    }
}

impl IntoTargets for &Identity {
    fn into_targets(self) -> Vec<Identity> {
        vec![self.clone()]
    }
}

/// Numbers a server reports about itself; see [`metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Open connections.
    pub connections: usize,
    /// Distinct identities connected.
    pub identities: usize,
    /// The longest outbound queue of any connection right now, in frames.
    pub max_queued: usize,
    /// The outbound queue capacity per connection.
    pub queue_capacity: usize,
    /// Connections closed because they could not keep up with events.
    pub slow_client_closes: u64,
    /// Events dropped for slow clients under [`SlowClient::DropEvents`](crate::SlowClient).
    pub events_dropped: u64,
}

/// The current server's numbers (inside a handler, its server; elsewhere the one started most
/// recently); `None` when no server runs.
pub fn metrics() -> Option<Metrics> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = current()?;
    Some(Metrics {
        connections: s.hub.len(),
        identities: s.hub.identities(),
        max_queued: s.hub.max_queued(),
        queue_capacity: s.config.outbound_capacity,
        slow_client_closes: s.metrics.slow_client_closes.load(Relaxed),
        events_dropped: s.metrics.events_dropped.load(Relaxed),
    })
}
