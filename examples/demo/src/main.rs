//! Serves the demo: the ephaptic endpoint (`/_ephaptic`) and the built pages, on one port.
//!
//! ```text
//! examples/demo/run.sh                      # builds the pages (npm ci + vite build), then runs this
//! cargo run -p demo -- --addr 127.0.0.1:0   # port 0 picks a free port
//! ```
//! The first line of stdout is `demo on http://HOST:PORT/`.
//!
//! | path | what |
//! |---|---|
//! | `/_ephaptic` | the WebSocket endpoint: `demo::server().router()` merged into this app |
//! | `/` | the landing page (`frontend/dist/index.html`), which links to both frontends |
//! | `/react/` | the React page (`frontend/dist/react/index.html`) |
//! | `/svelte/` | the Svelte page (`frontend/dist/svelte/index.html`) |
//! | `/assets/*` | the scripts and styles Vite built |
//!
//! Files are read from `frontend/dist` at request time (the path is fixed at compile time), so
//! rebuilding the frontend (`npm run build` in `frontend/`) needs no server restart.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;

// The functions live in the library target; linking it registers them.
use demo as _;

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/frontend/dist");

const USAGE: &str = "usage: demo [--addr HOST:PORT] [--redis URL]   (default 127.0.0.1:8000; port 0 picks a free port; \
     --redis shares events with every demo on that Redis)";

fn parse_args() -> (String, Option<String>) {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:8000".to_string();
    let mut redis = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value, e.g. 127.0.0.1:0"),
            "--redis" => {
                redis = Some(
                    args.next()
                        .expect("--redis needs a URL, e.g. redis://127.0.0.1:6379"),
                )
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    (addr, redis)
}

/// Answers with `dir/rel`, read now. `rel` must be a plain relative path (no `..`, no root).
async fn send_file(dir: &'static str, rel: String) -> Response {
    let rel_path = PathBuf::from(&rel);
    let plain = !rel.is_empty()
        && rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let path = Path::new(dir).join(rel_path);
    let content_type = content_type(&path);
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            format!("{rel} not found under {dir}: build the pages with examples/demo/run.sh (or npm run build in examples/demo/frontend)"),
        )
            .into_response(),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("map" | "json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The built pages: a path names a file under `frontend/dist`; a folder (`/`, `/react/`, or
/// `/react` without the slash) its `index.html`. The ephaptic endpoint is merged in by `main`.
fn pages() -> axum::Router {
    axum::Router::new().fallback(get(|uri: axum::http::Uri| async move {
        let rel = uri.path().trim_start_matches('/');
        let rel = if rel.is_empty() || rel.ends_with('/') {
            format!("{rel}index.html")
        } else if !rel.rsplit('/').next().unwrap_or("").contains('.') {
            format!("{rel}/index.html")
        } else {
            rel.to_owned()
        };
        send_file(DIST, rel).await
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let level = match std::env::var("EPHAPTIC_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();

    let (addr, redis) = parse_args();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;

    // Only this page may open the WebSocket (the default: the server's own origin and
    // loopback pages): another site open in the same browser cannot connect and act under a
    // name.
    let mut server = demo::server();
    if let Some(url) = redis {
        server = server.redis(url);
    }
    let app = pages().merge(server.router());

    println!("demo on http://{addr}/");
    std::io::stdout().flush()?;

    // Replies and events are small frames that should leave at once: no Nagle delay (what
    // `Server::serve` does for itself).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
