//! One client connection: its identity, its outbound queue, its calls in flight, and how each
//! frame it sends is handled. Transport-agnostic: frames come in as bytes and go out through a
//! bounded queue that the transport's connection task drains.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;

use crate::queue::{self, TrySendError};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::task::AbortHandle;

use crate::dispatch;
use crate::error::Error;
use crate::identity::Identity;
use crate::protocol::{self, FrameKind};
use crate::server::{Shared, SlowClient};

/// WebSocket close code 1008, "policy violation": used for slow clients.
pub(crate) const CLOSE_POLICY: u16 = 1008;

pub(crate) struct Connection {
    id: u64,
    peer: Option<SocketAddr>,
    identity: OnceLock<Identity>,
    out: queue::Sender,
    /// Set once when the server decides to close the connection; the writer watches it, so a
    /// close gets through even when the outbound queue is full.
    close: Arc<CloseSignal>,
    /// Groups (rooms) this connection has joined.
    groups: Mutex<Vec<Arc<str>>>,
    /// Calls in flight, by the encoded id the client chose, so `cancel` and disconnect can
    /// stop them. The sequence number tells a finished call from a newer one that reused its id.
    calls: Mutex<HashMap<Bytes, (u64, AbortHandle)>>,
    call_seq: AtomicU64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("identity", &self.identity.get())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn new(shared: Arc<Shared>, peer: Option<SocketAddr>, out: queue::Sender) -> Arc<Self> {
        let id = shared.next_connection_id();
        Arc::new(Connection {
            id,
            peer,
            identity: OnceLock::new(),
            out,
            close: Arc::new(CloseSignal::default()),
            groups: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
            call_seq: AtomicU64::new(0),
            shared,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Queues a frame, waiting for room. `false` when the connection is gone.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.out.send(frame).await
    }

    /// Queues a frame if there is room; gives it back when the queue is full. A closed
    /// connection takes (and drops) it.
    pub fn try_queue(&self, frame: Bytes) -> Result<(), Bytes> {
        match self.out.try_send(frame) {
            Ok(()) | Err(TrySendError::Closed) => Ok(()),
            Err(TrySendError::Full(frame)) => Err(frame),
        }
    }

    /// Answers a call that finished on its first poll, inside [`on_frame`](Self::on_frame):
    /// into `out` (written as soon as `on_frame` returns, skipping the queue) when nothing of
    /// this connection is queued, so nothing the handler queued itself (an event it emitted to
    /// its caller) can be overtaken; otherwise behind it in the queue. A full queue gives the
    /// frame back.
    pub fn answer(&self, frame: Bytes, out: &mut Outbox) -> Result<(), Bytes> {
        if self.queued() == 0 {
            out.push(frame);
            Ok(())
        } else {
            self.try_queue(frame)
        }
    }

    /// Queues a frame without waiting; on a full queue, applies the slow-client policy.
    /// `true` when the frame was queued.
    pub fn offer(&self, frame: Bytes) -> bool {
        match self.out.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Closed) => false,
            Err(TrySendError::Full(_)) => {
                let shared = &self.shared;
                match shared.config.slow_client {
                    SlowClient::Disconnect => {
                        if !self.close.is_set() {
                            tracing::warn!(
                                connection = self.id,
                                capacity = shared.config.outbound_capacity,
                                "closing a slow client: its outbound queue is full"
                            );
                            shared
                                .metrics
                                .slow_client_closes
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        self.close(
                            CLOSE_POLICY,
                            "outbound queue full: the client reads too slowly",
                        );
                    }
                    SlowClient::DropEvents => {
                        shared
                            .metrics
                            .events_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
        }
    }

    /// How many frames wait in the outbound queue.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Closes the connection with a WebSocket close code and reason; the first call wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.close.set(code, reason);
    }

    /// The signal the transport's writer watches.
    pub fn close_signal(&self) -> Arc<CloseSignal> {
        self.close.clone()
    }

    pub fn join(self: &Arc<Self>, group: &str) -> bool {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if groups.iter().any(|g| &**g == group) {
            return false;
        }
        let name: Arc<str> = Arc::from(group);
        groups.push(name.clone());
        self.shared.hub.join(self, name);
        true
    }

    pub fn leave(self: &Arc<Self>, group: &str) -> bool {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = groups.iter().position(|g| &**g == group) else {
            return false;
        };
        groups.swap_remove(at);
        self.shared.hub.leave(self.id, group);
        true
    }

    pub fn groups(&self) -> Vec<Arc<str>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn next_call_seq(&self) -> u64 {
        self.call_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `spawn` while holding the call table, so the task cannot finish (and try to remove
    /// itself) before it has been recorded.
    pub fn spawn_call(&self, key: Bytes, seq: u64, spawn: impl FnOnce() -> AbortHandle) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let handle = spawn();
        calls.insert(key, (seq, handle));
    }

    pub fn finish_call(&self, key: &Bytes, seq: u64) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.get(key).is_some_and(|(s, _)| *s == seq) {
            calls.remove(key);
        }
    }

    fn cancel_call(&self, key: &[u8]) {
        let entry = self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some((_, handle)) = entry {
            handle.abort();
        }
    }

    /// Stops every call and stream of the connection; called when it closes.
    pub fn abort_all(&self) {
        let calls = std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, (_, handle)) in calls {
            handle.abort();
        }
    }

    /// Handles one binary frame from the client, without waiting: a call's first poll runs
    /// here, anything longer in a task of its own. Immediate answers go into `out`, which the
    /// caller writes right after. `first` is true for the connection's first
    /// frame, the only one that may be `init`; for it, the result is the `auth` to run the
    /// identity loader on ([`authenticate`](Self::authenticate)) before the next frame is read.
    pub fn on_frame(self: &Arc<Self>, frame: Bytes, first: bool, out: &mut Outbox) -> Option<Init> {
        let limit = self.shared.config.max_frame_size;
        if frame.len() > limit {
            tracing::warn!(
                connection = self.id,
                size = frame.len(),
                limit,
                "skipping a frame larger than the limit"
            );
            if let Some(id) = protocol::salvage_id(&frame) {
                let e = Error::new(
                    "FRAME_TOO_LARGE",
                    format!(
                        "The frame is {} bytes; this server accepts at most {limit}.",
                        frame.len()
                    ),
                )
                .with_data(&FrameSize {
                    size: frame.len(),
                    limit,
                });
                out.push(e.to_frame(&frame[id], false));
            }
            return None;
        }
        let mut raw = protocol::RawFrame::default();
        if let Err(why) = protocol::parse(&frame, &mut raw) {
            tracing::warn!(connection = self.id, "skipping a bad frame: {why}");
            if let Some(id) = protocol::salvage_id(&frame) {
                let e = Error::new("BAD_FRAME", format!("The frame could not be read: {why}."));
                out.push(e.to_frame(&frame[id], false));
            }
            return None;
        }
        match raw.kind {
            FrameKind::Rpc => dispatch::start(self, &frame, &raw, out),
            FrameKind::Init if first => {
                let auth = (!raw.auth.is_empty()).then(|| frame.slice(raw.auth.range()));
                return Some(Init(auth));
            }
            FrameKind::Cancel => {
                if !raw.id.is_empty() {
                    self.cancel_call(raw.id.of(&frame));
                }
            }
            // A later `init` and unknown frame types are ignored, which is what lets clients
            // add frame types safely.
            FrameKind::Init | FrameKind::Other => {}
        }
        None
    }

    /// Runs the identity loader on `init.auth`; its failure leaves the connection anonymous.
    pub async fn authenticate(self: &Arc<Self>, Init(auth): Init) {
        let Some(loader) = self.shared.loader.clone() else {
            return;
        };
        let result = dispatch::CatchUnwind(loader(auth)).await;
        match result {
            Ok(Ok(Some(identity))) => {
                if self.identity.set(identity).is_ok() {
                    let identity = self.identity.get().expect("just set");
                    self.shared.hub.identify(self, identity);
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(
                connection = self.id,
                "the identity loader failed; the connection is anonymous: {e}"
            ),
            Err(_) => tracing::error!(
                connection = self.id,
                "the identity loader panicked; the connection is anonymous"
            ),
        }
    }
}

/// Frames answered by the connection's own task while it handles what it read; written
/// before the next read, ahead of the queue.
pub(crate) type Outbox = Vec<Bytes>;

/// An `init` frame's `auth` (absent when the client sent none), for the identity loader.
#[derive(Debug)]
pub(crate) struct Init(Option<Bytes>);

#[derive(serde::Serialize)]
struct FrameSize {
    size: usize,
    limit: usize,
}

/// A one-shot "close this connection" with its code and reason, shared with the connection's
/// task (which must not hold the connection itself, or its queue would never close). One task
/// waits on it, so an `AtomicWaker` does: re-polling it is lock-free, which matters because
/// the connection's task polls it before everything else it does.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    waker: AtomicWaker,
    reason: OnceLock<(u16, String)>,
}

impl CloseSignal {
    pub fn set(&self, code: u16, reason: &str) {
        if self.reason.set((code, reason.to_owned())).is_ok() {
            self.waker.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.reason.get().is_some()
    }

    /// Resolves once the signal is set; yields the code and reason. One waiter at a time.
    pub async fn wait(&self) -> (u16, String) {
        std::future::poll_fn(|cx| {
            if let Some(reason) = self.reason.get() {
                return Poll::Ready(reason.clone());
            }
            self.waker.register(cx.waker());
            match self.reason.get() {
                Some(reason) => Poll::Ready(reason.clone()),
                None => Poll::Pending,
            }
        })
        .await
    }
}
