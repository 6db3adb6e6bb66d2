//! The WebSocket transport (axum): upgrades requests, then pumps frames between the socket and
//! a [`Connection`]. The only module that knows about WebSockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::queue;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{Sink, SinkExt, Stream};
use tokio::time::Instant;

use crate::connection::{CloseSignal, Connection, Init, Outbox};
use crate::server::Shared;

/// Close code for a message too large to buffer (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;
/// How many frames are written before a flush even if more are waiting, so one busy connection
/// cannot starve its own socket of flushes.
const MAX_BATCH: usize = 64;
/// How much the socket's write buffer may hold before a `feed` writes on its own. The writer
/// flushes after every batch anyway; this only has to exceed a batch, so that a batch really is
/// one write. (Zero would make every frame its own syscall.) Frames larger than this are
/// written as they are fed.
const WRITE_BUFFER: usize = 64 * 1024;
/// The most answers' room an idle connection keeps in its outbox (32 bytes each).
const OUTBOX_KEPT: usize = 8;

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let path = shared.config.path.clone();
    axum::Router::new()
        .route(&path, get(upgrade))
        .with_state(shared)
}

/// The peer address, when the app was served with connect info.
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let (Some(allowed), Some(origin)) =
        (&shared.config.allowed_origins, headers.get(header::ORIGIN))
    {
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|a| a == origin) {
            tracing::warn!(
                origin,
                "refused a WebSocket upgrade from an origin that is not allowed"
            );
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    let cfg = &shared.config;
    let hard_limit = cfg.max_frame_size.saturating_mul(16);
    ws.read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| {
            // The server is the task-local "current server" for the connection's whole task,
            // so the handlers it polls inline can `emit` without a scope per call.
            crate::emit::in_scope(shared.clone(), run(shared, socket, peer))
        })
}

/// Serves one WebSocket until either side closes it.
///
/// One task does everything for a connection: it reads frames (running each call's first poll
/// inline, see `dispatch::start`), drains the outbound queue into the socket and flushes when
/// it has nothing else to do, sends pings and watches for idleness. Replies to the frames of
/// one read therefore leave in one write, and a call that finishes at once costs no task and
/// no wake-up of another thread. The queue still carries every frame (so events, streams and
/// calls running in their own tasks are ordered and bounded exactly as before); only its
/// consumer moved into this task. A close request wins over everything, even a write stuck on
/// a client that stopped reading.
async fn run(shared: Arc<Shared>, ws: WebSocket, peer: Option<SocketAddr>) {
    let (tx, rx) = queue::channel(shared.config.outbound_capacity);
    let conn = Connection::new(shared.clone(), peer, tx);
    shared.hub.add(&conn);
    tracing::debug!(connection = conn.id(), ?peer, "connected");

    let close = conn.close_signal();
    // Pinned once: waiting on it registers with the signal once, not once per frame.
    let closing = std::pin::pin!(close.wait());
    let ticker = shared
        .config
        .ping_interval
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    let read_wake = Arc::new(ReadWake {
        ready: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let mut pump = Pump {
        read_waker: Waker::from(read_wake.clone()),
        read_wake,
        ws,
        rx,
        closing,
        ticker,
        first: true,
        unflushed: 0,
        outbox: Outbox::new(),
        sent: 0,
        read_since_tick: false,
        silent_ticks: 0,
    };

    let end = loop {
        match std::future::poll_fn(|cx| pump.poll(cx, &conn)).await {
            Step::Init(init) => {
                // Boxed: it happens once, and unboxed it would grow every connection's task
                // by the loader's future.
                Box::pin(conn.authenticate(init)).await;
                hook(&conn, shared.on_connect.as_ref());
            }
            Step::End(end) => break end,
        }
    };

    shared.hub.remove(&conn);
    conn.abort_all();
    if !pump.first {
        hook(&conn, shared.on_disconnect.as_ref());
    }
    drop(conn);
    let Pump {
        ws,
        rx,
        mut outbox,
        sent,
        ..
    } = pump;
    outbox.drain(..sent);
    // Boxed: it runs once, and inline it would grow every connection's task.
    Box::pin(finish(ws, rx, outbox, &close, end)).await;
    tracing::debug!("disconnected");
}

/// The state of a connection's task between wake-ups. Its [`poll`](Pump::poll) does all the
/// work there is (writes, reads, a flush, a ping) and returns only when the connection ends,
/// when an `init` needs the identity loader, or when there is nothing to do. Written as a poll
/// function rather than a `select!` loop so that each source is polled once per wake-up: a
/// socket read that found nothing is not retried until the socket is readable again (each
/// attempt costs the WebSocket layer a 4 KiB buffer clear), and the queue, the close signal and
/// the ping timer are not re-registered per frame.
struct Pump<C> {
    ws: WebSocket,
    /// Whether the socket may have something to read, and the waker its reads register.
    read_wake: Arc<ReadWake>,
    read_waker: Waker,
    rx: queue::Receiver,
    closing: C,
    ticker: Option<tokio::time::Interval>,
    /// No frame has been read yet: the first may be `init`.
    first: bool,
    /// Frames written into the socket's buffer since the last flush.
    unflushed: usize,
    /// Immediate answers to what was read; `sent` of them are written.
    outbox: Outbox,
    sent: usize,
    /// Idleness, checked at each ping: whether anything was read since the last one, and for
    /// how many pings in a row nothing was.
    read_since_tick: bool,
    silent_ticks: u32,
}

/// The waker a connection's socket reads register: it notes that the socket may be readable,
/// then wakes the connection's task.
struct ReadWake {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Why a connection's task stopped pumping.
enum Step {
    /// The first frame was `init`: run the identity loader, then go on.
    Init(Init),
    End(End),
}

impl<C: Future<Output = (u16, String)> + Unpin> Pump<C> {
    fn poll(&mut self, cx: &mut Context<'_>, conn: &Arc<Connection>) -> Poll<Step> {
        // The socket's read waker wakes this task through `read_wake`: registered once per
        // poll, before the readable flag is first looked at.
        self.read_wake.task.register(cx.waker());
        loop {
            if let Poll::Ready(why) = Pin::new(&mut self.closing).poll(cx) {
                return Poll::Ready(Step::End(End::Close(why)));
            }

            // 1. Write what waits: the answers to the last read, then the queue.
            let blocked = match self.write(cx) {
                Ok(blocked) => blocked,
                Err(end) => return Poll::Ready(Step::End(end)),
            };

            // 2. Read, unless the socket will not take more: a client that does not read its
            // answers is not read from (its own backpressure), and nothing else waits on it.
            // Only when the socket may have something: a wake-up for a queued event does not
            // try a read that would find nothing (and cost the WebSocket layer a 4 KiB buffer
            // clear per attempt).
            if !blocked && self.read_wake.ready.swap(false, Ordering::AcqRel) {
                let mut handled = 0;
                let mut read_cx = Context::from_waker(&self.read_waker);
                loop {
                    if handled == MAX_BATCH {
                        // More may be buffered: look again after writing the answers.
                        self.read_wake.ready.store(true, Ordering::Release);
                        break;
                    }
                    match Pin::new(&mut self.ws).poll_next(&mut read_cx) {
                        Poll::Ready(msg) => {
                            handled += 1;
                            let step = on_message(msg, conn, &mut self.first, &mut self.outbox);
                            if let Some(step) = step {
                                // Whatever follows is read when the pump resumes.
                                self.read_wake.ready.store(true, Ordering::Release);
                                return Poll::Ready(step);
                            }
                        }
                        Poll::Pending => break,
                    }
                }
                if handled > 0 {
                    self.read_since_tick = true;
                    // Write the answers, then read again.
                    continue;
                }
            }

            // 3. Nothing more to read or write now: flush.
            if self.unflushed > 0 {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = 0,
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::End(End::Failed)),
                    Poll::Pending => {}
                }
            }

            // 4. The ping timer.
            if let Some(ticker) = &mut self.ticker
                && ticker.poll_tick(cx).is_ready()
            {
                // A client that sent nothing, not even a pong, for three intervals is gone.
                if self.read_since_tick {
                    self.silent_ticks = 0;
                } else {
                    self.silent_ticks += 1;
                }
                self.read_since_tick = false;
                if self.silent_ticks >= 3 {
                    tracing::debug!(
                        connection = conn.id(),
                        "no traffic for three pings; closing"
                    );
                    return Poll::Ready(Step::End(End::Read));
                }
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if Pin::new(&mut self.ws)
                            .start_send(Message::Ping(Bytes::new()))
                            .is_err()
                        {
                            return Poll::Ready(Step::End(End::Failed));
                        }
                        self.unflushed += 1;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::End(End::Failed)),
                    // A socket that takes nothing gets no ping; the close path handles it.
                    Poll::Pending => {}
                }
                continue;
            }

            // 5. Sleep until a frame is queued (or the socket, the timer or a close wakes us).
            match self.rx.poll_ready(cx) {
                Poll::Ready(true) if !blocked => continue,
                // Frames wait but the socket is full: its readiness wakes us.
                Poll::Ready(true) => {}
                // The connection's last handle is gone (it closed).
                Poll::Ready(false) => return Poll::Ready(Step::End(End::Read)),
                Poll::Pending => {}
            }
            if self.sent == self.outbox.len() && self.outbox.capacity() > OUTBOX_KEPT {
                // An idle connection keeps a small outbox buffer at most (a busy one reuses
                // it from wake-up to wake-up instead of allocating it each time).
                self.outbox = Outbox::new();
                self.sent = 0;
            }
            return Poll::Pending;
        }
    }

    /// Writes the outbox, then the queue, into the socket's buffer while it takes them,
    /// flushing every `MAX_BATCH` frames. `Ok(true)` when the socket stopped taking them.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        loop {
            let from_outbox = self.sent < self.outbox.len();
            if !from_outbox && !self.rx.has_frames() {
                if self.sent > 0 {
                    self.outbox.clear();
                    self.sent = 0;
                }
                return Ok(false);
            }
            if self.unflushed >= MAX_BATCH {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = 0,
                    Poll::Ready(Err(_)) => return Err(End::Failed),
                    Poll::Pending => return Ok(true),
                }
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Err(End::Failed),
                Poll::Pending => return Ok(true),
            }
            let frame = if from_outbox {
                self.sent += 1;
                std::mem::take(&mut self.outbox[self.sent - 1])
            } else {
                match self.rx.try_recv() {
                    Some(frame) => frame,
                    None => continue,
                }
            };
            if Pin::new(&mut self.ws)
                .start_send(Message::Binary(frame))
                .is_err()
            {
                return Err(End::Failed);
            }
            self.unflushed += 1;
        }
    }
}

/// Handles one message read from the socket; `Some` when the pump must stop.
fn on_message(
    msg: Option<Result<Message, axum::Error>>,
    conn: &Arc<Connection>,
    first: &mut bool,
    outbox: &mut Outbox,
) -> Option<Step> {
    match msg {
        Some(Ok(Message::Binary(frame))) => {
            let init = conn.on_frame(frame, *first, outbox);
            let first = std::mem::replace(first, false);
            match init {
                Some(init) => return Some(Step::Init(init)),
                None if first => hook(conn, conn.shared().on_connect.as_ref()),
                None => {}
            }
        }
        Some(Ok(Message::Text(_))) => {
            tracing::warn!(
                connection = conn.id(),
                "skipping a text frame; ephaptic frames are binary MessagePack"
            );
            if std::mem::replace(first, false) {
                hook(conn, conn.shared().on_connect.as_ref());
            }
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        Some(Ok(Message::Close(_))) | None => return Some(Step::End(End::Read)),
        Some(Err(e)) => {
            tracing::debug!(connection = conn.id(), "socket error: {e}");
            if e.to_string().to_ascii_lowercase().contains("too long") {
                conn.close(CLOSE_TOO_BIG, "message too big");
            }
            return Some(Step::End(End::Read));
        }
    }
    None
}

/// Ends a connection: sends the close frame the server asked for, or gives what is queued
/// (the last replies, a close frame) a moment to leave. The queue ends when the connection and
/// the tasks of its calls are gone.
async fn finish(
    mut ws: WebSocket,
    mut rx: queue::Receiver,
    mut outbox: Outbox,
    close: &CloseSignal,
    end: End,
) {
    match end {
        End::Close(why) => send_close(&mut ws, why).await,
        End::Failed => {}
        End::Read => {
            let drain = async {
                for frame in outbox.drain(..) {
                    if ws.feed(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                loop {
                    let next = tokio::select! {
                        biased;
                        why = close.wait() => {
                            send_close(&mut ws, why).await;
                            return;
                        }
                        frame = rx.recv() => frame,
                    };
                    match next {
                        Some(frame) => {
                            if ws.feed(Message::Binary(frame)).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let _ = ws.close().await;
                            return;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        }
    }
}

/// Why a connection's loop ended.
enum End {
    /// The server closes it with this code and reason.
    Close((u16, String)),
    /// The client closed it, went idle, or sent something unreadable.
    Read,
    /// A write failed.
    Failed,
}

async fn send_close(ws: &mut WebSocket, (code, reason): (u16, String)) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ =
        tokio::time::timeout(Duration::from_secs(1), ws.send(Message::Close(Some(frame)))).await;
}

/// Runs a connection hook in a task of its own, with the connection's server current (so
/// `ephaptic::emit` inside it reaches that server).
fn hook(conn: &Arc<Connection>, hook: Option<&crate::server::Hook>) {
    if let Some(hook) = hook {
        let run = hook(crate::Caller::new(conn.clone()));
        tokio::spawn(crate::emit::in_scope(conn.shared().clone(), run));
    }
}
