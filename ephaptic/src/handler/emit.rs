//! What sending an event returns: [`Emit`], a future that sends it when awaited. Here, beside
//! the handles that return it ([`Caller::emit`](crate::Caller::emit), [`Audience::emit`]), so
//! that they need nothing of the runtime that delivers it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What `emit` returns: a future that sends the event when awaited, and how many connections
/// (for [`Caller::emit`](crate::Caller::emit): whether the connection) it reached. The event is
/// already encoded, so the future names no event type (a type that is not an event is reported
/// once, at the argument); nothing is sent until it is awaited, which the compiler flags.
#[must_use = "the event is not sent until this is awaited: add `.await`"]
pub struct Emit<'a, T = usize>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

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
