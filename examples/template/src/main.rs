//! Serves the app at ws://127.0.0.1:8000/_ephaptic.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logging: what the server does (its start line, refused calls, slow clients) on stderr.
    tracing_subscriber::fmt().init();
    // Calling into the library links it, so its functions are served. (A main.rs that named
    // nothing in it would need `use template as _;`.)
    template::server().serve("127.0.0.1:8000").await
}
