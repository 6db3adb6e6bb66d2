//! jsonrpsee doing the work of examples/parity over JSON-RPC 2.0 on a WebSocket: `add` is a
//! method (`{"method":"add","params":[a,b]}` -> `{"result":a+b}`); `shout` sends one `notice`
//! notification to every `subscribe_notice` subscription and answers `null`.
//!
//! ```text
//! peer-jsonrpsee --addr 127.0.0.1:0
//! ```
//! prints `listening on ws://127.0.0.1:N/` first. WebSocket only, limits raised so that
//! 10,000 connections are accepted (the default is 100), no logging middleware.

use std::io::Write;

use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, ServerConfig, SubscriptionMessage};
use jsonrpsee::types::ErrorObjectOwned;
use tokio::sync::broadcast;

fn usage() -> ! {
    eprintln!("usage: peer-jsonrpsee [--addr HOST:PORT]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:8000".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    // jsonrpsee's own broadcast pattern (examples/ws_pubsub_broadcast.rs): one tokio
    // broadcast channel, each subscription forwarding from it. The payload is serialized once
    // per event, not once per subscriber.
    let (tx, _) = broadcast::channel::<SubscriptionMessage>(1024);
    let mut module = RpcModule::new(tx);
    module.register_method("add", |params, _, _| {
        let (a, b): (i64, i64) = params.parse()?;
        Ok::<_, ErrorObjectOwned>(a + b)
    })?;
    module.register_method("shout", |params, tx, _| {
        let message: String = params.one()?;
        let raw = serde_json::value::to_raw_value(&message).expect("a string serializes");
        let _ = tx.send(SubscriptionMessage::from(raw));
        Ok::<_, ErrorObjectOwned>(())
    })?;
    module.register_subscription(
        "subscribe_notice",
        "notice",
        "unsubscribe_notice",
        |_, pending, tx, _| async move {
            let mut rx = tx.subscribe();
            let sink = pending.accept().await?;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(msg) => if sink.send(msg).await.is_err() { break },
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = sink.closed() => break,
                }
            }
            Ok(())
        },
    )?;
    let config = ServerConfig::builder()
        .ws_only()
        .max_connections(100_000)
        .build();
    let server = Server::builder().set_config(config).build(&addr).await?;
    let local = server.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on ws://{local}/")?;
    out.flush()?;
    let handle = server.start(module);
    handle.stopped().await;
    Ok(())
}
