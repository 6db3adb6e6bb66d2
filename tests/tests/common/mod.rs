//! A raw protocol client for the integration tests: real WebSocket on loopback, frames built and
//! read by hand, so the tests see exactly what any client would see on the wire.
#![allow(dead_code)]

pub mod child;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod tab;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts `server` on a free loopback port; returns the WebSocket URL.
pub async fn start(server: ephaptic::Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve_listener(listener));
    format!("ws://{addr}/_ephaptic")
}

pub fn v(json_like: &str) -> Value {
    // A tiny helper: strings only; richer values are built with rmpv directly.
    Value::from(json_like)
}

pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

pub fn decode(mut bytes: &[u8]) -> Value {
    let v = rmpv::decode::read_value(&mut bytes).unwrap();
    assert!(bytes.is_empty(), "trailing bytes after a frame");
    v
}

/// `frame[key]`, nil when absent.
pub fn get<'a>(frame: &'a Value, key: &str) -> &'a Value {
    static NIL: Value = Value::Nil;
    frame
        .as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v)
        })
        .unwrap_or(&NIL)
}

pub fn has(frame: &Value, key: &str) -> bool {
    frame
        .as_map()
        .is_some_and(|m| m.iter().any(|(k, _)| k.as_str() == Some(key)))
}

pub fn rpc(id: impl Into<Value>, name: &str, args: Vec<Value>) -> Value {
    map(vec![
        ("type", v("rpc")),
        ("id", id.into()),
        ("name", v(name)),
        ("args", Value::Array(args)),
    ])
}

/// `frame` (a map) with one more key: the optional keys extensions add to a call (`key`,
/// `traceparent`).
pub fn with(frame: Value, key: &str, value: Value) -> Value {
    let Value::Map(mut entries) = frame else {
        panic!("a frame is a map");
    };
    entries.push((v(key), value));
    Value::Map(entries)
}

pub fn rpc_kw(
    id: impl Into<Value>,
    name: &str,
    args: Vec<Value>,
    kwargs: Vec<(&str, Value)>,
) -> Value {
    map(vec![
        ("type", v("rpc")),
        ("id", id.into()),
        ("name", v(name)),
        ("args", Value::Array(args)),
        ("kwargs", map(kwargs)),
    ])
}

pub struct Client {
    pub ws: Ws,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Client { ws }
    }

    /// Connects and sends `init` with `auth`.
    pub async fn connect_as(url: &str, auth: Value) -> Client {
        let mut c = Client::connect(url).await;
        c.send(&map(vec![("type", v("init")), ("auth", auth)]))
            .await;
        c
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_raw(encode(frame)).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next binary frame's bytes; panics after 10 s.
    pub async fn recv_raw(&mut self) -> Vec<u8> {
        self.recv_raw_within(Duration::from_secs(10))
            .await
            .expect("no frame within 10 s")
    }

    /// The next binary frame within `limit`, or `None`.
    pub async fn recv_raw_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
                Some(Err(e)) => panic!("socket error {e}"),
                None => panic!("connection closed"),
            }
        }
    }

    /// The close code and reason the server sends within `limit`, skipping any frame before it;
    /// `None` when the connection is still open then, 1006 when it ended without a close frame.
    pub async fn closed_within(&mut self, limit: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Some((frame.code.into(), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) => return Some((1005, String::new())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some((1006, String::new())),
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        decode(&self.recv_raw().await)
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(frame) = self.recv_raw_within(quiet).await {
            panic!("expected no frame, got {}", decode(&frame));
        }
    }

    /// Sends a call and returns its reply frame (no other traffic may be in flight).
    pub async fn call(&mut self, name: &str, args: Vec<Value>) -> Value {
        self.send(&rpc(1, name, args)).await;
        self.recv().await
    }

    /// The `result` of a call, panicking on an error reply.
    pub async fn ok(&mut self, name: &str, args: Vec<Value>) -> Value {
        let reply = self.call(name, args).await;
        assert!(
            has(&reply, "result"),
            "{name}: expected a result, got {reply}"
        );
        get(&reply, "result").clone()
    }

    /// The `result` of a call, skipping the events that arrive before it.
    pub async fn ok_skipping_events(&mut self, name: &str, args: Vec<Value>) -> Value {
        self.send(&rpc(1, name, args)).await;
        loop {
            let reply = self.recv().await;
            if get(&reply, "type") == &Value::from("event") {
                continue;
            }
            assert!(
                has(&reply, "result"),
                "{name}: expected a result, got {reply}"
            );
            return get(&reply, "result").clone();
        }
    }

    /// The `error` map of a call, panicking on a result.
    pub async fn err(&mut self, name: &str, args: Vec<Value>) -> Value {
        let reply = self.call(name, args).await;
        assert!(
            has(&reply, "error"),
            "{name}: expected an error, got {reply}"
        );
        get(&reply, "error").clone()
    }
}
