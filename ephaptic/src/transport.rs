//! The WebSocket transport (axum): upgrades requests, then pumps frames between the socket and
//! a [`Connection`]. The only module that knows about WebSockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::connection::{CloseSignal, Connection};
use crate::server::Shared;

/// Close code for a message too large to buffer (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;
/// How many frames the writer sends before it flushes even if more are waiting, so one busy
/// connection cannot starve its own socket of flushes.
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
async fn run(shared: Arc<Shared>, socket: WebSocket, peer: Option<SocketAddr>) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(shared.config.outbound_capacity);
    let conn = Connection::new(shared.clone(), peer, tx);
    shared.hub.add(&conn);
    tracing::debug!(connection = conn.id(), ?peer, "connected");

    let ping = shared.config.ping_interval;
    let mut writer = tokio::spawn(write(sink, rx, conn.close_signal(), ping));
    let idle_limit = ping.map(|p| p * 3);
    let mut first = true;
    let mut writer_done = false;
    loop {
        let next = async {
            match idle_limit {
                Some(limit) => tokio::time::timeout(limit, stream.next()).await.ok(),
                None => Some(stream.next().await),
            }
        };
        let msg = tokio::select! {
            biased;
            // The writer stops when it closed the socket on purpose or the socket failed.
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            msg = next => match msg {
                Some(msg) => msg,
                None => {
                    tracing::debug!(connection = conn.id(), "no traffic for {idle_limit:?}; closing");
                    break;
                }
            },
        };
        match msg {
            Some(Ok(Message::Binary(frame))) => {
                conn.on_frame(frame, first).await;
                first = false;
            }
            Some(Ok(Message::Text(_))) => {
                tracing::warn!(
                    connection = conn.id(),
                    "skipping a text frame; ephaptic frames are binary MessagePack"
                );
                first = false;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                tracing::debug!(connection = conn.id(), "socket error: {e}");
                if e.to_string().to_ascii_lowercase().contains("too long") {
                    conn.close(CLOSE_TOO_BIG, "message too big");
                }
                break;
            }
        }
    }

    shared.hub.remove(&conn);
    conn.abort_all();
    // Give the writer a moment to flush what is queued (a close frame, the last replies).
    drop(conn);
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    tracing::debug!("disconnected");
}

/// Drains the outbound queue into the socket: every frame that is ready is written, then one
/// flush, so a burst of replies costs one syscall instead of one each. A close request wins
/// over everything, even a write stuck on a client that stopped reading.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Bytes>,
    close: Arc<CloseSignal>,
    ping: Option<Duration>,
) {
    let mut ticker =
        ping.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let tick = async |t: &mut Option<tokio::time::Interval>| match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    };
    loop {
        let step = tokio::select! {
            biased;
            (code, reason) = close.wait() => {
                let frame = CloseFrame { code, reason: reason.into() };
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                return;
            }
            _ = tick(&mut ticker) => Step::Ping,
            first = rx.recv() => match first {
                Some(frame) => Step::Frames(frame),
                None => Step::End,
            },
        };
        let ok = match step {
            Step::End => {
                let _ = sink.close().await;
                return;
            }
            Step::Ping => sink.send(Message::Ping(Bytes::new())).await.is_ok(),
            Step::Frames(first) => tokio::select! {
                biased;
                (code, reason) = close.wait() => {
                    // The batch was cut short; the socket is being closed anyway.
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
                ok = write_batch(&mut sink, &mut rx, first) => ok,
            },
        };
        if !ok {
            return;
        }
    }
}

enum Step {
    Frames(Bytes),
    Ping,
    End,
}

async fn write_batch(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<Bytes>,
    first: Bytes,
) -> bool {
    if sink.feed(Message::Binary(first)).await.is_err() {
        return false;
    }
    for _ in 1..MAX_BATCH {
        let Ok(next) = rx.try_recv() else { break };
        if sink.feed(Message::Binary(next)).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}
