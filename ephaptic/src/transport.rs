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
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;

use crate::connection::{CloseSignal, Connection, Outbox};
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
        .on_upgrade(move |socket| run(shared, socket, peer))
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
async fn run(shared: Arc<Shared>, mut ws: WebSocket, peer: Option<SocketAddr>) {
    let (tx, mut rx) = queue::channel(shared.config.outbound_capacity);
    let conn = Connection::new(shared.clone(), peer, tx);
    shared.hub.add(&conn);
    tracing::debug!(connection = conn.id(), ?peer, "connected");

    let close = conn.close_signal();
    // Pinned once: waiting on it registers with the signal once, not once per frame.
    let mut closing = std::pin::pin!(close.wait());
    let ping = shared.config.ping_interval;
    let mut ticker = ping.map(|every| tokio::time::interval_at(Instant::now() + every, every));
    // Idleness is checked at each ping: no timer of its own, and a read just notes the time.
    let idle_limit = ping.map(|p| p * 3);
    let mut last_seen = Instant::now();
    let mut first = true;
    // Frames written into the socket's buffer since the last flush.
    let mut unflushed = 0usize;

    // Runs one write, unless a close request comes first.
    macro_rules! guarded {
        ($op:expr) => {
            tokio::select! {
                biased;
                why = &mut closing => Err(why),
                r = $op => Ok(r.is_ok()),
            }
        };
    }

    let mut outbox = Outbox::new();
    let end = 'conn: loop {
        let event = tokio::select! {
            biased;
            why = &mut closing => Event::Close(why),
            frame = rx.recv() => Event::Out(frame),
            msg = ws.next() => Event::In(msg),
            _ = tick(&mut ticker) => Event::Ping,
            () = std::future::ready(()), if unflushed > 0 => Event::Flush,
        };
        let written = match event {
            Event::Close(why) => break End::Close(why),
            Event::Out(None) => break End::Read,
            Event::Out(Some(frame)) => {
                // Everything queued goes into the socket's buffer; the flush comes when
                // there is nothing else to do, or after MAX_BATCH frames.
                let mut next = Some(frame);
                let mut result = Ok(true);
                while let Some(frame) = next.take() {
                    result = guarded!(ws.feed(Message::Binary(frame)));
                    if !matches!(result, Ok(true)) {
                        break;
                    }
                    unflushed += 1;
                    if unflushed >= MAX_BATCH {
                        result = guarded!(ws.flush());
                        unflushed = 0;
                        break;
                    }
                    next = rx.try_recv();
                }
                result
            }
            Event::In(msg) => {
                if idle_limit.is_some() {
                    last_seen = Instant::now();
                }
                // Every frame already read is handled before anything is written, so the
                // answers to one read leave together.
                let mut msg = msg;
                let mut handled = 0;
                loop {
                    match msg {
                        Some(Ok(Message::Binary(frame))) => {
                            if let Some(init) = conn.on_frame(frame, first, &mut outbox) {
                                // Boxed: it happens once, and unboxed it would grow every
                                // connection's task by the loader's future.
                                Box::pin(conn.authenticate(init)).await;
                            }
                            if first {
                                hook(&conn, shared.on_connect.as_ref());
                            }
                            first = false;
                        }
                        Some(Ok(Message::Text(_))) => {
                            tracing::warn!(
                                connection = conn.id(),
                                "skipping a text frame; ephaptic frames are binary MessagePack"
                            );
                            if first {
                                hook(&conn, shared.on_connect.as_ref());
                            }
                            first = false;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break 'conn End::Read,
                        Some(Err(e)) => {
                            tracing::debug!(connection = conn.id(), "socket error: {e}");
                            if e.to_string().to_ascii_lowercase().contains("too long") {
                                conn.close(CLOSE_TOO_BIG, "message too big");
                            }
                            break 'conn End::Read;
                        }
                    }
                    handled += 1;
                    if handled >= MAX_BATCH {
                        break;
                    }
                    match ws.next().now_or_never() {
                        Some(next) => msg = next,
                        None => break,
                    }
                }
                let mut result = Ok(true);
                // Taken, not drained: an idle connection keeps no buffer.
                for frame in std::mem::take(&mut outbox) {
                    if matches!(result, Ok(true)) {
                        result = guarded!(ws.feed(Message::Binary(frame)));
                        unflushed += 1;
                    }
                }
                if matches!(result, Ok(true)) && unflushed >= MAX_BATCH {
                    unflushed = 0;
                    result = guarded!(ws.flush());
                }
                result
            }
            Event::Ping => {
                // A client that sent nothing, not even a pong, for three intervals is gone.
                if let Some(limit) = idle_limit
                    && last_seen.elapsed() >= limit
                {
                    tracing::debug!(connection = conn.id(), "no traffic for {limit:?}; closing");
                    break End::Read;
                }
                unflushed = 0;
                guarded!(ws.send(Message::Ping(Bytes::new())))
            }
            Event::Flush => {
                unflushed = 0;
                guarded!(ws.flush())
            }
        };
        match written {
            Ok(true) => {}
            // The socket failed: nothing more can be sent.
            Ok(false) => break End::Failed,
            Err(why) => break End::Close(why),
        }
    };

    shared.hub.remove(&conn);
    conn.abort_all();
    if !first {
        hook(&conn, shared.on_disconnect.as_ref());
    }
    drop(conn);
    // Boxed: it runs once, and inline it would grow every connection's task.
    Box::pin(finish(ws, rx, outbox, &close, end)).await;
    tracing::debug!("disconnected");
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

enum Event {
    Close((u16, String)),
    Out(Option<Bytes>),
    In(Option<Result<Message, axum::Error>>),
    Ping,
    Flush,
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

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
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
