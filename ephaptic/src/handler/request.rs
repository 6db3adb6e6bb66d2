//! The call contract generated code compiles against: a [`Request`] to bind, the [`Call`] a
//! running function keeps, and the [`Outcome`] it answers with.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use super::bind::{Binder, CallSig};
use super::caller::Caller;
use crate::error::Error;
use crate::session::{Connection, Hub};
use crate::wire::{RawFrame, reply};

/// A boxed, sendable future; what generated shims return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A boxed stream of encoded chunk frames, as a streaming function's outcome.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send + 'static>>;

/// What a function answered, already encoded where it could be.
#[doc(hidden)]
pub enum Outcome {
    /// A complete `{id, result}` frame.
    Reply(Bytes),
    /// An error, encoded when sent (the debug setting decides what it carries).
    Error(Error),
    /// A stream of `{id, chunk}` frames.
    Stream(ChunkStream),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reply(b) => f.debug_tuple("Reply").field(b).finish(),
            Outcome::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Outcome::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// A call as the generated shim first sees it, borrowed from the frame it came in: what it
/// needs to bind the arguments. The shim binds them at once, then keeps only a [`Call`] (and
/// the bound values) in the function's future, so that future stays small.
#[doc(hidden)]
pub struct Request<'a> {
    frame: &'a [u8],
    raw: &'a RawFrame,
    sig: CallSig,
    conn: &'a Arc<Connection>,
    hub: &'a Arc<Hub>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("function", &self.sig.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    /// A call of the function `sig` describes, read from `frame` (parsed into `raw`) on `conn`, a connection of the
    /// server whose connections `hub` indexes.
    #[inline]
    pub(crate) fn new(
        frame: &'a [u8],
        raw: &'a RawFrame,
        sig: CallSig,
        conn: &'a Arc<Connection>,
        hub: &'a Arc<Hub>,
    ) -> Self {
        Request {
            frame,
            raw,
            sig,
            conn,
            hub,
        }
    }

    /// Starts binding the call's arguments to the function's parameters.
    #[inline]
    pub fn bind(&self) -> Binder<'a> {
        Binder::new(self.sig, self.frame, self.raw)
    }

    /// The caller's context.
    pub fn caller(&self) -> Caller {
        Caller::new(self.conn.clone(), self.hub.clone())
    }

    /// What the rest of the call needs: the id to answer with and the function's name.
    #[inline]
    pub fn call(&self) -> Call {
        Call {
            id: CallId::new(self.raw.id(self.frame)),
            name: self.sig.name,
        }
    }
}

/// What a running call keeps: the id its answers echo, and which function it is.
#[doc(hidden)]
pub struct Call {
    id: CallId,
    /// The function's wire name, for error details.
    name: &'static str,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("function", &self.name)
            .finish_non_exhaustive()
    }
}

/// An encoded call id, kept inline when it is short (ids are almost always small integers or
/// short strings), so keeping it costs neither an allocation nor a shared reference count.
enum CallId {
    Inline { len: u8, bytes: [u8; 22] },
    Long(Bytes),
}

impl CallId {
    #[inline]
    fn new(id: &[u8]) -> Self {
        if id.len() <= 22 {
            let mut bytes = [0; 22];
            bytes[..id.len()].copy_from_slice(id);
            CallId::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            CallId::Long(Bytes::copy_from_slice(id))
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            CallId::Inline { len, bytes } => &bytes[..*len as usize],
            CallId::Long(b) => b,
        }
    }
}

impl Call {
    /// The encoded `id`, echoed in every reply.
    #[inline]
    pub fn id(&self) -> &[u8] {
        self.id.as_slice()
    }

    /// Encodes a successful result.
    pub fn reply<T: serde::Serialize + ?Sized>(&self, value: &T) -> Outcome {
        match reply::result_frame(self.id(), value) {
            Ok(frame) => Outcome::Reply(frame),
            Err(e) => Outcome::Error(Error::internal(format_args!(
                "the result of '{}' could not be encoded: {e}",
                self.name
            ))),
        }
    }

    /// Turns a stream of fallible items into a stream of encoded chunk frames.
    pub fn stream<S, T, E>(&self, stream: S) -> Outcome
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: serde::Serialize,
        E: Into<Error>,
    {
        let id = Bytes::copy_from_slice(self.id());
        let name = self.name;
        Outcome::Stream(Box::pin(Chunks {
            inner: Box::pin(stream),
            id,
            name,
        }))
    }
}

/// How a call started: answered already (its arguments did not bind), or running.
#[doc(hidden)]
pub enum Started {
    /// The outcome, without running the function.
    Done(Outcome),
    /// The function's future, not polled yet.
    Running(BoxFuture<Outcome>),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Done(o) => f.debug_tuple("Done").field(o).finish(),
            Started::Running(_) => f.write_str("Running(..)"),
        }
    }
}

/// Encodes each item of a stream as an `{id, chunk}` frame.
struct Chunks<S> {
    inner: Pin<Box<S>>,
    id: Bytes,
    name: &'static str,
}

impl<S, T, E> Stream for Chunks<S>
where
    S: Stream<Item = Result<T, E>>,
    T: serde::Serialize,
    E: Into<Error>,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                Poll::Ready(Some(reply::chunk_frame(&this.id, &item).map_err(|e| {
                    Error::internal(format_args!(
                        "a chunk of '{}' could not be encoded: {e}",
                        this.name
                    ))
                })))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
