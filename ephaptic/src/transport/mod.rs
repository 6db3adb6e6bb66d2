//! The WebSocket transport (axum): the route, the upgrade with its origin check, and the task
//! that pumps frames between the socket and a runtime [`Session`]. The only layer that knows
//! about WebSockets; it moves frames and knows nothing of what they mean.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State as AxumState};
use axum::http::{HeaderMap, StatusCode, Uri, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::handshake::Handshake;
use crate::runtime::{Session, State, in_scope};

mod pump;

/// How much the socket's write buffer may hold before a `feed` writes on its own. The pump
/// flushes after every batch anyway; this only has to exceed a batch, so that a batch really
/// is one write. (Zero would make every frame its own syscall.) Frames larger than this are
/// written as they are fed.
const WRITE_BUFFER: usize = 64 * 1024;

pub(crate) fn router(state: Arc<State>) -> axum::Router {
    let path = state.config.path.clone();
    axum::Router::new()
        .route(&path, get(upgrade))
        .with_state(state)
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
    AxumState(state): AxumState<Arc<State>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if let (Some(allowed), Some(origin)) =
        (&state.config.allowed_origins, headers.get(header::ORIGIN))
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
    // Copied now (and only when the identity loader or handlers will read it), so that nothing
    // of the request is held while the upgrade completes.
    let handshake = state
        .wants_handshake()
        .then(|| Handshake::new(&headers, &uri, peer));
    let cfg = &state.config;
    let hard_limit = cfg.max_frame_size.saturating_mul(16);
    ws.read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket: WebSocket| {
            // Opened here rather than in an `async fn` around the pump: a wrapper future would
            // keep a second slot for the socket in every connection's task.
            let (session, rx) = Session::open(&state, peer, handshake);
            let ping = state.config.ping_interval;
            // The server is the task-local "current server" for the connection's whole task,
            // so the handlers it polls inline can `emit` without a scope per call.
            in_scope(state, pump::run(session, socket, rx, ping))
        })
}
