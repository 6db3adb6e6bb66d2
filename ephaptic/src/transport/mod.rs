//! The WebSocket transport (axum): the route, the upgrade with its host and origin checks, and
//! the task that pumps frames between the socket and a runtime [`Session`]. The only layer that
//! knows about WebSockets; it moves frames and knows nothing of what they mean.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State as AxumState};
use axum::http::{HeaderMap, StatusCode, Uri, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::handshake::Handshake;
use crate::runtime::loglimit::{Gate, Quoted, Verdict};
use crate::runtime::{Origins, Session, State, in_scope};

mod inspector;
pub(crate) mod listener;
mod pump;

use listener::{Accepted, Meter};

/// The largest message a connection may send before it is closed (1009) instead of being
/// answered `FRAME_TOO_LARGE`: twice `max_frame_size`, or 64 KiB more than it for small limits.
/// Everything up to it is buffered whole, so it bounds what one connection's input can cost.
pub(crate) fn hard_limit(max_frame_size: usize) -> usize {
    max_frame_size
        .saturating_mul(2)
        .max(max_frame_size.saturating_add(64 * 1024))
}

/// How much the socket's write buffer may hold before a `feed` writes on its own. The pump
/// flushes after every batch anyway; this only has to exceed a batch, so that a batch really
/// is one write. (Zero would make every frame its own syscall.) Frames larger than this are
/// written as they are fed.
const WRITE_BUFFER: usize = 64 * 1024;

pub(crate) fn router(state: Arc<State>) -> axum::Router {
    // Every server is served through here: its handlers' panics are logged a few times a
    // minute, the hook's output included (`runtime/panic.rs`).
    crate::runtime::panic::install_hook();
    let path = state.config.path.clone();
    let mut router = axum::Router::new().route(&path, get(upgrade));
    if let Some(metrics) = state.config.metrics_path.clone() {
        router = router.route(&metrics, get(exposition));
    }
    if let Some(inspect_at) = state.config.inspector_path.clone() {
        for route in inspector::paths(&inspect_at) {
            router = router.route(&route, get(inspect));
        }
    }
    router.with_state(state)
}

/// The inspector (`Server::inspector`): its page, snapshot and trace, behind its access rule
/// (`inspector.rs`). Local means a loopback peer asking for a loopback host name (or one of
/// `Server::allowed_hosts`); a peer the server does not know counts as not loopback.
async fn inspect(
    AxumState(state): AxumState<Arc<State>>,
    Peer(peer, _): Peer,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let named = host.is_some_and(|h| {
        is_loopback(h)
            || (state.config.allowed_hosts.as_deref()).is_some_and(|a| host_allowed(a, Some(h)))
    });
    let local = named && peer.is_some_and(|p| p.ip().is_loopback());
    inspector::serve(&state, local, &headers, &uri)
}

/// The Prometheus exposition (`Server::metrics_endpoint`): for loopback peers only, unless
/// the server opened it to every peer (`Server::metrics_public`). A peer the server does not
/// know (an app served without connect info) counts as not loopback.
async fn exposition(AxumState(state): AxumState<Arc<State>>, Peer(peer, _): Peer) -> Response {
    let loopback = peer.is_some_and(|p| p.ip().is_loopback());
    if !loopback && !state.config.metrics_remote {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to loopback peers only: open them with \
             Server::metrics_public(true), behind your own network rules",
        )
            .into_response();
    }
    match crate::runtime::exposition::text(&state) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The peer address, when the app was served with connect info, and the socket's meter when
/// it was accepted by [`serve`](crate::Server::serve)'s own listener.
struct Peer(Option<SocketAddr>, Option<Arc<Meter>>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(ConnectInfo(accepted)) = parts.extensions.get::<ConnectInfo<Accepted>>() {
            return Ok(Peer(Some(accepted.peer), Some(accepted.meter.clone())));
        }
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            None,
        ))
    }
}

async fn upgrade(
    AxumState(state): AxumState<Arc<State>>,
    Peer(peer, meter): Peer,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    if let Some(allowed) = &state.config.allowed_hosts
        && !host_allowed(allowed, host)
    {
        static REFUSED: Gate = Gate::new();
        if let Verdict::Log { unlogged } = REFUSED.admit() {
            tracing::warn!(
                host = %Quoted(host.unwrap_or_default()),
                "refused a WebSocket upgrade for a host this server does not serve{}: list it \
                 with Server::allowed_hosts([..]) if it is one of its names. Otherwise it is a \
                 page whose name was pointed at this server (DNS rebinding), or a reverse proxy \
                 that does not pass the Host header through (nginx: proxy_set_header Host $host)",
                refused_since(unlogged)
            );
        }
        return (
            StatusCode::FORBIDDEN,
            "host not allowed: the server accepts the hosts listed with Server::allowed_hosts \
             and loopback names",
        )
            .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !origin_allowed(&state.config.origins, origin, host) {
            static REFUSED: Gate = Gate::new();
            if let Verdict::Log { unlogged } = REFUSED.admit() {
                tracing::warn!(
                    origin = %Quoted(origin),
                    host = %Quoted(host.unwrap_or_default()),
                    "refused a WebSocket upgrade from another site's page{}: list its origin \
                     with Server::allowed_origins([..]) (or Server::allow_any_origin() for a \
                     server no cookie authenticates). Behind a reverse proxy, pass the Host \
                     header through (nginx: proxy_set_header Host $host), or the server's own \
                     pages look foreign",
                    refused_since(unlogged)
                );
            }
            return (
                StatusCode::FORBIDDEN,
                "origin not allowed: the server accepts its own origin, loopback origins and \
                 those listed with Server::allowed_origins",
            )
                .into_response();
        }
    }
    // Copied now (and only when the identity loader or handlers will read it), so that nothing
    // of the request is held while the upgrade completes.
    let handshake = state
        .wants_handshake()
        .then(|| Handshake::new(&headers, &uri, peer));
    let cfg = &state.config;
    let hard_limit = hard_limit(cfg.max_frame_size);
    ws.read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket: WebSocket| {
            // Opened here rather than in an `async fn` around the pump: a wrapper future would
            // keep a second slot for the socket in every connection's task.
            if let Some(meter) = &meter {
                meter.upgraded();
            }
            let (session, rx) = Session::open(&state, peer, handshake);
            let ping = state.config.ping_interval;
            // The server is the task-local "current server" for the connection's whole task,
            // so the handlers it polls inline can `emit` without a scope per call.
            in_scope(state, pump::run(session, socket, rx, ping, meter))
        })
}

/// " (and N more since the last line)" for a refusal's line, after refusals held back.
fn refused_since(unlogged: u64) -> String {
    if unlogged == 0 {
        return String::new();
    }
    format!(" (and {unlogged} more since the last line)")
}

/// Whether an upgrade for `host` (its `Host` header) is served under `Server::allowed_hosts`:
/// a loopback name (a browser sends one only for a page on this machine, which DNS rebinding
/// cannot produce), or a listed one. An entry without a port matches any port; names compare
/// without case and without a final dot.
fn host_allowed(allowed: &[String], host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    if is_loopback(host) {
        return true;
    }
    let (name, port) = split_authority(host);
    allowed.iter().any(|entry| {
        let (entry_name, entry_port) = split_authority(entry.trim());
        !entry_name.is_empty()
            && entry_name.eq_ignore_ascii_case(name)
            && entry_port.is_none_or(|p| Some(p) == port)
    })
}

/// An authority's name (without a final dot; an IPv6 address keeps its brackets) and port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let (name, port) = match authority.rfind(':') {
        // `[::1]:80`, `example.com:80`; not a bare IPv6 address, whose colons end before `]`.
        Some(i) if !authority[..i].contains(':') || authority[..i].ends_with(']') => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    };
    (name.strip_suffix('.').unwrap_or(name), port)
}

/// Whether a page from `origin` may open a WebSocket: its own server's pages (the origin's host
/// and port are the request's `Host`, default ports aside), pages served from this machine to a
/// server on this machine (a loopback origin when the `Host` is loopback too, such as a dev
/// server on another port), those listed, or any under [`Origins::Any`].
fn origin_allowed(origins: &Origins, origin: &str, host: Option<&str>) -> bool {
    match origins {
        Origins::Any => return true,
        Origins::Listed(list)
            if list
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) =>
        {
            return true;
        }
        _ => {}
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        // `null` (sandboxed frames, files) and anything unreadable.
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return false,
    };
    let Some(host) = host else {
        return false;
    };
    let strip = |a: &str| -> String {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a)
    };
    if strip(authority) == strip(host) {
        return true;
    }
    is_loopback(authority) && is_loopback(host)
}

/// Whether an authority (`host[:port]`) names this machine.
fn is_loopback(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_takes_the_same_origin_and_loopback_pages_only() {
        let same = Origins::SameOrigin;
        let host = Some("app.example.com");
        assert!(origin_allowed(&same, "https://app.example.com", host));
        assert!(origin_allowed(&same, "https://APP.example.com", host));
        assert!(!origin_allowed(&same, "https://evil.example", host));
        assert!(!origin_allowed(
            &same,
            "https://app.example.com.evil.example",
            host
        ));
        assert!(!origin_allowed(&same, "null", host));
        assert!(!origin_allowed(&same, "https://app.example.com", None));
        // Another port of the same host is another origin...
        assert!(!origin_allowed(&same, "https://app.example.com:8443", host));
        // ...except on this machine: a dev server (Vite on :5173) talking to the API on :8000.
        let local = Some("127.0.0.1:8000");
        assert!(origin_allowed(&same, "http://localhost:5173", local));
        assert!(origin_allowed(&same, "http://127.0.0.1:5173", local));
        assert!(origin_allowed(&same, "http://[::1]:5173", local));
        assert!(!origin_allowed(
            &same,
            "http://localhost.evil.example",
            local
        ));

        let listed = Origins::Listed(vec!["https://admin.example.com/".into()]);
        assert!(origin_allowed(&listed, "https://admin.example.com", host));
        assert!(origin_allowed(&listed, "https://app.example.com", host));
        assert!(!origin_allowed(&listed, "https://evil.example", host));
        assert!(origin_allowed(&Origins::Any, "https://evil.example", host));
    }

    #[test]
    fn listed_hosts_and_loopback_names_are_served_and_no_other() {
        let listed = |hosts: &[&str]| hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let allowed = listed(&["app.example.com", "API.example.com:8443", "[2001:db8::1]"]);
        let ok = |host| host_allowed(&allowed, Some(host));
        // A name without a port matches any port, case aside, a final dot aside.
        assert!(ok("app.example.com"));
        assert!(ok("APP.Example.com:8000"));
        assert!(ok("app.example.com."));
        // A name with a port matches that port only.
        assert!(ok("api.example.com:8443"));
        assert!(!ok("api.example.com"));
        assert!(!ok("api.example.com:443"));
        assert!(ok("[2001:db8::1]:9000"));
        assert!(ok("[2001:db8::1]"));
        // DNS rebinding: the attacker's name, whatever address it points at.
        assert!(!ok("evil.example"));
        assert!(!ok("evil.example:8000"));
        assert!(!ok("app.example.com.evil.example"));
        assert!(!ok("evilapp.example.com"));
        assert!(!host_allowed(&allowed, None));
        assert!(!ok(""));
        // Loopback names are always served, with any list, an empty one too.
        for host in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:5173",
            "[::1]:8000",
        ] {
            assert!(ok(host), "{host}");
            assert!(host_allowed(&[], Some(host)), "{host}");
        }
        assert!(!host_allowed(&[], Some("app.example.com")));
        assert!(!host_allowed(&listed(&[""]), Some("")));
    }
}
