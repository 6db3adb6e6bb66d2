//! Running one call: find the function, check access, run it in its own task, and send what it
//! answers (a result, an error, or a stream of chunks).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
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

/// A call as the generated shim first sees it, borrowed from the frame it came in: what it
/// needs to bind the arguments. The shim binds them at once, then keeps only a [`Call`] (and
/// the bound values) in the function's future, so that future stays small.
#[doc(hidden)]
pub struct Request<'a> {
    frame: &'a [u8],
    raw: &'a RawFrame,
    def: &'static FunctionDef,
    conn: &'a Arc<Connection>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("function", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    /// Starts binding the call's arguments to the function's parameters.
    #[inline]
    pub fn bind(&self) -> Binder<'a> {
        Binder::new(self.def, self.frame, self.raw)
    }

    /// The caller's context.
    pub fn caller(&self) -> Caller {
        Caller::new(self.conn.clone())
    }

    /// What the rest of the call needs: the id to answer with and the function's name.
    #[inline]
    pub fn call(&self) -> Call {
        Call {
            id: CallId::new(self.raw.id(self.frame)),
            def: self.def,
        }
    }
}

/// What a running call keeps: the id its answers echo, and which function it is.
#[doc(hidden)]
pub struct Call {
    id: CallId,
    def: &'static FunctionDef,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("function", &self.def.name)
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
        let id = Bytes::copy_from_slice(self.id());
        let name = self.def.name;
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
    Running(crate::registry::BoxFuture<Outcome>),
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

    // A slice hashes its length first; one step for it instead of eight.
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Starts a call read from `frame`, without waiting: answers at once when it cannot run or
/// finishes on its first poll, otherwise runs it on in a task of its own that the connection
/// can cancel. Runs inside the server's task-local scope (the connection's task sets it).
pub(crate) fn start(conn: &Arc<Connection>, frame: &Bytes, raw: &RawFrame, out: &mut Outbox) {
    let id_bytes = raw.id(frame);
    let shared = conn.shared();

    let name = match raw.name {
        Some(r) => r.of(frame),
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

    // Fast path: bind the arguments and poll the function once, right here. Most functions
    // (`add`) finish on their first poll; their reply is written with the other answers to
    // this read, without a task, a call-table entry, a trip through the queue or a
    // cross-thread wake-up. A function that is not ready yet moves into a task of its own,
    // exactly as if it had been spawned at first: the task polls it again at once, with the
    // task's own waker (so the no-op waker of this first poll is never relied on), it stays
    // concurrent with the connection's other calls, and it can be cancelled.
    let request = Request {
        frame,
        raw,
        def,
        conn,
    };
    let first = catch_unwind(AssertUnwindSafe(|| match (def.handler)(&request) {
        Started::Done(outcome) => Ok(outcome),
        Started::Running(mut fut) => {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(outcome) => Ok(outcome),
                Poll::Pending => Err(fut),
            }
        }
    }));
    let debug = shared.config.debug;
    let outcome = match first {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(running)) => {
            let (key, id) = keys(frame, raw);
            let task_conn = conn.clone();
            spawn_call(conn, key, async move {
                let outcome = match CatchUnwind(running).await {
                    Ok(outcome) => outcome,
                    Err(panic) => Outcome::Error(panicked(panic)),
                };
                deliver(task_conn, def, id, outcome).await;
            });
            return;
        }
        Err(panic) => Outcome::Error(panicked(panic)),
    };
    let reply = match outcome {
        Outcome::Reply(reply) => reply,
        Outcome::Error(e) => {
            log_internal(def, &e);
            e.to_frame(id_bytes, debug)
        }
        stream @ Outcome::Stream(_) => {
            let (key, id) = keys(frame, raw);
            spawn_call(conn, key, deliver(conn.clone(), def, id, stream));
            return;
        }
    };
    if let Err(reply) = conn.answer(reply, out) {
        // The queue is full: wait for room in a task, so that only this call waits.
        let (key, id) = keys(frame, raw);
        spawn_call(
            conn,
            key,
            deliver(conn.clone(), def, id, Outcome::Reply(reply)),
        );
    }
}

/// A running call's key in the connection's call table (the encoded id, empty without one)
/// and the id its later answers echo.
fn keys(frame: &Bytes, raw: &RawFrame) -> (Bytes, Bytes) {
    let key = frame.slice(raw.id.range());
    let id = if key.is_empty() {
        Bytes::from_static(protocol::NIL)
    } else {
        key.clone()
    };
    (key, id)
}

/// Runs the rest of a call in a task of its own that the connection can cancel (by `key`).
fn spawn_call<F>(conn: &Arc<Connection>, key: Bytes, rest: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let shared = conn.shared().clone();
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
