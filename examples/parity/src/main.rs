//! The parity fixture server.
//!
//! ```text
//! cargo run -p parity -- --addr 127.0.0.1:0
//! ```
//! prints `listening on ws://127.0.0.1:N/_ephaptic` as its first line of stdout.

use std::io::Write;

// The functions live in the library target; linking it registers them.
use parity as _;

fn parse_addr() -> String {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:8000".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value, e.g. 127.0.0.1:0"),
            "--help" | "-h" => {
                println!("usage: parity [--addr HOST:PORT]   (port 0 picks a free port)");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}; usage: parity [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    addr
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
    let listener = tokio::net::TcpListener::bind(parse_addr()).await?;
    let addr = listener.local_addr()?;
    println!("listening on ws://{addr}/_ephaptic");
    std::io::stdout().flush()?;
    ephaptic::Server::new().serve_listener(listener).await
}
