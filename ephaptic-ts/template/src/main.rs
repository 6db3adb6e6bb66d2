//! Serves the app at ws://127.0.0.1:8000/_ephaptic (or at `ADDR`).

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logging: what the server does (its start line, refused calls, slow clients) on stderr.
    tracing_subscriber::fmt().init();
    // `ADDR=0.0.0.0:8080 cargo run` serves elsewhere (port 0: a free one, said at start).
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
    // Calling into the library links it, so its functions are served. (A main.rs that named
    // nothing in it would need `use template as _;`.)
    template::server().serve(addr).await
}
