//! socketioxide doing the work of examples/parity: `add` is an event with an acknowledgement
//! (`42<id>["add",a,b]` -> `43<id>[a+b]`), `shout` broadcasts one `notice` to every socket of
//! the namespace (`42["notice",message]`) and acknowledges.
//!
//! ```text
//! peer-socketioxide --addr 127.0.0.1:0 [--redis redis://127.0.0.1:6379]
//! ```
//! prints `listening on ws://127.0.0.1:N/socket.io/` first. WebSocket transport only, the
//! default parser, no tracing feature: socketioxide's setup for speed.

use std::io::Write;

use socketioxide::SocketIo;
use socketioxide::TransportType;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    s.on(
        "add",
        async |Data::<(i64, i64)>((a, b)), ack: AckSender<A>| {
            let _ = ack.send(&(a + b));
        },
    );
    s.on(
        "shout",
        async |io: SocketIo<A>, Data::<String>(message), ack: AckSender<A>| {
            let _ = io.emit("notice", &message).await;
            let _ = ack.send(&());
        },
    );
}

fn usage() -> ! {
    eprintln!("usage: peer-socketioxide [--addr HOST:PORT] [--redis URL]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:8000".to_string();
    let mut redis_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().unwrap_or_else(|| usage()),
            "--redis" => redis_url = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let app = match redis_url {
        None => {
            let (layer, io) = SocketIo::builder()
                .transports([TransportType::Websocket])
                .build_layer();
            io.ns("/", on_connect);
            axum::Router::new().layer(layer)
        }
        Some(url) => {
            // socketioxide-redis receives through RESP3 push messages.
            let url = if url.contains("protocol=") {
                url
            } else if url.contains('?') {
                format!("{url}&protocol=resp3")
            } else {
                format!("{url}?protocol=resp3")
            };
            let client = redis::Client::open(url)?;
            let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
            let (layer, io) = SocketIo::builder()
                .transports([TransportType::Websocket])
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns("/", on_connect).await?;
            axum::Router::new().layer(layer)
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on ws://{local}/socket.io/")?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
