//! Running one call: find the function, check access, run it in its own task, and send what it
//! answers (a result, an error, or a stream of chunks).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::bind::Binder;
use crate::caller::Caller;
use crate::connection::{Connection, Outbox};
use crate::error::Error;
use crate::protocol::{self, RawFrame};
use crate::registry::FunctionDef;

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

/// One call as the generated shim sees it: the frame it came in, where its arguments are, and
/// who made it.
#[doc(hidden)]
pub struct Call {
    frame: Bytes,
    raw: RawFrame,
    id: Range<usize>,
    def: &'static FunctionDef,
    conn: Arc<Connection>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("function", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The encoded `id`, echoed in every reply.
    pub fn id(&self) -> &[u8] {
        if self.id.is_empty() {
            protocol::NIL
        } else {
            &self.frame[self.id.clone()]
        }
    }

    /// The id as a cheap shared handle, for streams that outlive the borrow.
    fn id_bytes(&self) -> Bytes {
        if self.id.is_empty() {
            Bytes::from_static(protocol::NIL)
        } else {
            self.frame.slice(self.id.clone())
        }
    }

    /// Starts binding the call's arguments to the function's parameters.
    pub fn bind(&self) -> Binder<'_> {
        Binder::new(self.def, &self.frame, &self.raw)
    }

    /// The caller's context.
    pub fn caller(&self) -> Caller {
        Caller::new(self.conn.clone())
    }

    /// Encodes a successful result.
    pub fn reply<T: serde::Serialize + ?Sized>(&self, value: &T) -> Outcome {
        match protocol::result_frame(self.id(), value) {
            Ok(frame) => Outcome::Reply(frame),
            Err(e) => Outcome::Error(Error::internal(format_args!(
                "the result of '{}' could not be encoded: {e}",
                self.def.name
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
        let id = self.id_bytes();
        let name = self.def.name;
        Outcome::Stream(Box::pin(Chunks {
            inner: Box::pin(stream),
            id,
            name,
        }))
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
                Poll::Ready(Some(protocol::chunk_frame(&this.id, &item).map_err(|e| {
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

/// The functions a server serves, by wire name, for the lookup every call makes: keyed by the
/// name's bytes as they arrive (no UTF-8 conversion) with a cheap FNV-1a hash instead of the
/// default DoS-resistant SipHash, which is not needed for a fixed set of keys chosen by the
/// application. Built once from the registry.
#[derive(Debug, Default)]
pub(crate) struct FunctionIndex(
    HashMap<&'static [u8], &'static FunctionDef, BuildHasherDefault<Fnv>>,
);

impl FunctionIndex {
    pub fn new(functions: &HashMap<&'static str, &'static FunctionDef>) -> Self {
        FunctionIndex(
            functions
                .iter()
                .map(|(name, def)| (name.as_bytes(), *def))
                .collect(),
        )
    }

    pub fn get(&self, name: &[u8]) -> Option<&'static FunctionDef> {
        self.0.get(name).copied()
    }
}

/// FNV-1a, 64 bits.
#[derive(Debug)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Starts a call read from `frame`, without waiting: answers at once when it cannot run or
/// finishes on its first poll, otherwise runs it on in a task of its own that the connection
/// can cancel.
pub(crate) fn start(conn: &Arc<Connection>, frame: Bytes, raw: RawFrame, out: &mut Outbox) {
    let id = raw.id.clone().unwrap_or(0..0);
    let id_bytes: &[u8] = if id.is_empty() {
        protocol::NIL
    } else {
        &frame[id.clone()]
    };
    let shared = conn.shared();

    let name = match &raw.name {
        Some(r) => &frame[r.clone()],
        None => {
            let why = if raw.name_not_string {
                "'name' must be a string"
            } else {
                "the frame has no 'name'"
            };
            let e = Error::new("VALIDATION_ERROR", format!("Invalid call: {why}."));
            out.push(e.to_frame(id_bytes, false));
            return;
        }
    };

    let Some(def) = shared.functions.get(name) else {
        // `parse` checked that the name is UTF-8.
        let name = std::str::from_utf8(name).unwrap_or_default();
        tracing::warn!(
            function = name,
            "call to unknown function '{name}'; the server serves {} function(s). If it is defined with \
             #[ephaptic::expose], make sure its crate or module is linked (`use my_handlers as _;`) or \
             register it explicitly with `Server::new().register::<{name}>()`",
            shared.registry.functions.len()
        );
        let mut e = Error::not_found(name);
        if shared.config.debug {
            e = Error::new(
                "NOT_FOUND",
                format!(
                    "Function '{name}' not found. Is the module that defines it linked, or registered with Server::register?"
                ),
            );
        }
        out.push(e.to_frame(id_bytes, false));
        return;
    };

    if def.requires_login && conn.identity().is_none() {
        out.push(Error::unauthorized().to_frame(id_bytes, false));
        return;
    }
    if let Err(e) = shared.limiter.check(def, conn) {
        out.push(e.to_frame(id_bytes, false));
        return;
    }

    let key = frame.slice(id.clone());
    let id_bytes = if id.is_empty() {
        Bytes::from_static(protocol::NIL)
    } else {
        key.clone()
    };
    let call = Call {
        frame,
        raw,
        id,
        def,
        conn: conn.clone(),
    };
    let mut handler = (def.handler)(call);

    // Fast path: poll the handler once, right here. Most functions (`add`) finish on their
    // first poll; their reply is written with the other answers to this read, without a
    // task, a call-table entry, a trip through the queue or a cross-thread wake-up. A handler that is not ready yet moves into a task of its own,
    // exactly as if it had been spawned at first: the task polls it again at once, with the
    // task's own waker (so the no-op waker of this first poll is never relied on), it stays
    // concurrent with the connection's other calls, and it can be cancelled.
    let shared = conn.shared().clone();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let first = crate::emit::sync_in_scope(shared.clone(), || {
        Pin::new(&mut CatchUnwind(&mut handler)).poll(&mut cx)
    });
    let pending = match first {
        Poll::Ready(result) => {
            let outcome = result.unwrap_or_else(|panic| Outcome::Error(panicked(panic)));
            let frame = match outcome {
                Outcome::Reply(frame) => frame,
                Outcome::Error(e) => {
                    log_internal(def, &e);
                    e.to_frame(&id_bytes, shared.config.debug)
                }
                stream @ Outcome::Stream(_) => {
                    spawn_call(
                        conn,
                        key,
                        shared,
                        deliver(conn.clone(), def, id_bytes, stream),
                    );
                    return;
                }
            };
            match conn.answer(frame, out) {
                Ok(()) => return,
                // The queue is full: wait for room in a task, so that only this call waits.
                Err(frame) => Box::pin(deliver(conn.clone(), def, id_bytes, Outcome::Reply(frame)))
                    as Pin<Box<dyn Future<Output = ()> + Send>>,
            }
        }
        Poll::Pending => {
            let conn = conn.clone();
            Box::pin(async move {
                let outcome = match CatchUnwind(handler).await {
                    Ok(outcome) => outcome,
                    Err(panic) => Outcome::Error(panicked(panic)),
                };
                deliver(conn, def, id_bytes, outcome).await;
            })
        }
    };
    spawn_call(conn, key, shared, pending);
}

/// Runs the rest of a call in a task of its own that the connection can cancel (by `key`).
fn spawn_call<F>(conn: &Arc<Connection>, key: Bytes, shared: Arc<crate::server::Shared>, rest: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let seq = conn.next_call_seq();
    let task_conn = conn.clone();
    let task_key = key.clone();
    conn.spawn_call(key, seq, move || {
        tokio::spawn(crate::emit::in_scope(shared, async move {
            rest.await;
            task_conn.finish_call(&task_key, seq);
        }))
        .abort_handle()
    });
}

/// Sends every frame a call's outcome answers with.
async fn deliver(conn: Arc<Connection>, def: &'static FunctionDef, id: Bytes, outcome: Outcome) {
    let debug = conn.shared().config.debug;
    match outcome {
        Outcome::Reply(frame) => {
            conn.send(frame).await;
        }
        Outcome::Error(e) => {
            log_internal(def, &e);
            conn.send(e.to_frame(&id, debug)).await;
        }
        Outcome::Stream(stream) => {
            if !conn.send(protocol::stream_open_frame(&id)).await {
                return;
            }
            let mut stream = CatchUnwind(stream);
            loop {
                match std::future::poll_fn(|cx| stream.poll_next_caught(cx)).await {
                    Ok(Some(Ok(frame))) => {
                        // Awaiting room in the connection's queue is the stream's backpressure:
                        // a client that reads slowly slows its own stream, nothing else.
                        if !conn.send(frame).await {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        log_internal(def, &e);
                        conn.send(e.to_frame(&id, debug)).await;
                        return;
                    }
                    Ok(None) => {
                        conn.send(protocol::stream_done_frame(&id)).await;
                        return;
                    }
                    Err(panic) => {
                        let e = panicked(panic);
                        log_internal(def, &e);
                        conn.send(e.to_frame(&id, debug)).await;
                        return;
                    }
                }
            }
        }
    }
}

fn log_internal(def: &FunctionDef, e: &Error) {
    if e.is_internal() {
        tracing::error!(
            function = def.name,
            "'{}' failed: {}",
            def.name,
            e.detail().unwrap_or("no detail")
        );
    }
}

fn panicked(panic: Box<dyn Any + Send>) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into());
    Error::internal(format_args!("panicked: {what}"))
}

/// What a caught panic carries.
type Panic = Box<dyn Any + Send>;

/// Polls a future or stream and turns a panic inside it into an `Err`, so a panicking handler
/// costs its own call only.
pub(crate) struct CatchUnwind<F>(pub F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

impl<S: Stream + Unpin> CatchUnwind<S> {
    fn poll_next_caught(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<S::Item>, Panic>> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll_next(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
