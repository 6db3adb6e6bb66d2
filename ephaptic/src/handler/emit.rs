//! What sending an event returns: [`Emit`], a future that sends it when awaited. Here, beside
//! the handles that return it ([`Caller::emit`](crate::Caller::emit), [`Audience::emit`]), so
//! that they need nothing of the runtime that delivers it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What `emit` returns: a future that sends the event when awaited, and what it reached:
/// [`Sent`] (for [`Caller::emit`](crate::Caller::emit): whether the connection). The event is
/// already encoded, so the future names no event type (a type that is not an event is reported
/// once, at the argument); nothing is sent until it is awaited, which the compiler flags.
#[must_use = "the event is not sent until this is awaited: add `.await`"]
pub struct Emit<'a, T = Sent>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

/// What an event sent to an audience reached: this server's connections, and whether it went
/// to the other servers too. With several servers the event reaches the others' connections
/// after this returns, and none of them is counted in `local`: a cluster's `local` may be 0
/// while the event arrives elsewhere (docs/SCALING.md).
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run() {
/// let sent = ephaptic::to(1).emit(Notice { message: "hi".into() }).await;
/// if sent.local == 0 && !sent.published {
///     // Nobody of user 1 is connected to this server, and there is no other server to ask.
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// How many connections of this server it was handed to.
    pub local: usize,
    /// Whether it was handed to the backplane for every other server (queued for Redis).
    /// `false` without a backplane, and when Redis is away or its queue is full (the other
    /// servers' listeners of its streams are then told events were lost: docs/RELIABILITY.md).
    pub published: bool,
}

impl Sent {
    /// Sent to `local` connections of this server, and to no other server.
    pub(crate) fn here(local: usize) -> Sent {
        Sent {
            local,
            published: false,
        }
    }
}

impl<'a, T> Emit<'a, T> {
    pub(crate) fn new(future: impl Future<Output = T> + Send + 'a) -> Self {
        Emit(Box::pin(future))
    }
}

impl<T> Future for Emit<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.0.as_mut().poll(cx)
    }
}

impl<T> std::fmt::Debug for Emit<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emit")
    }
}
