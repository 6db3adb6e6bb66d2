//! The protocols the load generator speaks: ephaptic's MessagePack frames (as the Rust and TS
//! clients write them, or as the Python client does, with `kwargs` always there), and the
//! peers' (examples/bench/peers/): socket.io (engine.io v4 + socket.io v5 text packets),
//! JSON-RPC 2.0 (jsonrpsee), tRPC 11's WebSocket messages. Each does parity's two jobs: `add`,
//! a call with a reply, and `shout`, one event to every connection.
//!
//! The peers' frames are JSON text. They are written with `format!` and read by looking for
//! the few keys the bench needs, not by a JSON parser: the load generator shares the machine
//! with the server it measures, and its frames are its own shapes.

use std::sync::OnceLock;

use tokio_tungstenite::tungstenite::Message;

use crate::wire::{self, Frame};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Ephaptic,
    /// ephaptic, with the frames the Python client writes (`kwargs` always present).
    EphapticPython,
    SocketIo,
    JsonRpc,
    Trpc,
}

static PROTO: OnceLock<Proto> = OnceLock::new();

pub fn set(p: Proto) {
    let _ = PROTO.set(p);
}

pub fn get() -> Proto {
    *PROTO.get().unwrap_or(&Proto::Ephaptic)
}

pub fn name() -> &'static str {
    match get() {
        Proto::Ephaptic => "ephaptic",
        Proto::EphapticPython => "ephaptic-python",
        Proto::SocketIo => "socketio",
        Proto::JsonRpc => "jsonrpc",
        Proto::Trpc => "trpc",
    }
}

pub fn parse(name: &str) -> Option<Proto> {
    Some(match name {
        "ephaptic" => Proto::Ephaptic,
        "ephaptic-python" | "python-client" => Proto::EphapticPython,
        "socketio" => Proto::SocketIo,
        "jsonrpc" => Proto::JsonRpc,
        "trpc" => Proto::Trpc,
        _ => return None,
    })
}

/// The URL to open: socket.io's server wants the engine.io version and transport in the query.
pub fn url(url: &str) -> String {
    match get() {
        Proto::SocketIo if !url.contains('?') => format!("{url}?EIO=4&transport=websocket"),
        _ => url.to_owned(),
    }
}

/// A call of `add(a, b)` with id `id`.
pub fn call(id: u64, a: i64, b: i64) -> Message {
    match get() {
        Proto::Ephaptic => {
            let mut buf = Vec::with_capacity(40);
            wire::rpc_add(&mut buf, id, a, b);
            Message::Binary(buf.into())
        }
        Proto::EphapticPython => {
            let mut buf = Vec::with_capacity(48);
            wire::rpc_add_kwargs(&mut buf, id, a, b);
            Message::Binary(buf.into())
        }
        // An event with an acknowledgement: `42<ack id>["add",a,b]`.
        Proto::SocketIo => Message::text(format!("42{id}[\"add\",{a},{b}]")),
        Proto::JsonRpc => Message::text(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"add\",\"params\":[{a},{b}]}}"
        )),
        Proto::Trpc => Message::text(format!(
            "{{\"id\":{id},\"method\":\"mutation\",\"params\":{{\"path\":\"add\",\"input\":{{\"a\":{a},\"b\":{b}}}}}}}"
        )),
    }
}

/// A call of `shout(message)` (the message needs no JSON escaping: it is `b:SEQ:NS`).
pub fn shout(id: u64, message: &str) -> Message {
    match get() {
        Proto::Ephaptic => {
            let mut buf = Vec::new();
            wire::rpc_shout(&mut buf, id, message);
            Message::Binary(buf.into())
        }
        Proto::EphapticPython => {
            let mut buf = Vec::new();
            wire::rpc_shout_kwargs(&mut buf, id, message);
            Message::Binary(buf.into())
        }
        Proto::SocketIo => Message::text(format!("42{id}[\"shout\",\"{message}\"]")),
        Proto::JsonRpc => Message::text(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"shout\",\"params\":[\"{message}\"]}}"
        )),
        Proto::Trpc => Message::text(format!(
            "{{\"id\":{id},\"method\":\"mutation\",\"params\":{{\"path\":\"shout\",\"input\":{{\"message\":\"{message}\"}}}}}}"
        )),
    }
}

/// What a fan-out subscriber sends once connected to receive every `shout`: ephaptic's
/// `init` (auth `bench`, for servers that deliver by identity), a JSON-RPC or tRPC
/// subscription; nothing for socket.io, where every socket of the namespace gets a broadcast.
pub fn subscribe() -> Option<Message> {
    match get() {
        Proto::Ephaptic | Proto::EphapticPython => {
            Some(Message::Binary(wire::init("bench").into()))
        }
        Proto::SocketIo => None,
        Proto::JsonRpc => Some(Message::text(
            "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"subscribe_notice\",\"params\":[]}",
        )),
        Proto::Trpc => Some(Message::text(
            "{\"id\":0,\"method\":\"subscription\",\"params\":{\"path\":\"onNotice\",\"input\":null}}",
        )),
    }
}

/// Whether the connection needs a handshake before its first call (socket.io's namespace
/// connect: the server's engine.io `0{...}` open packet, our `40`, its `40{"sid":...}`).
pub fn needs_handshake() -> bool {
    get() == Proto::SocketIo
}

pub fn handshake_open() -> Message {
    Message::text("40")
}

/// The answer to a `Frame::Ping` (engine.io's `2` -> `3`).
pub fn pong() -> Message {
    Message::text("3")
}

/// What a server frame was.
pub fn classify(msg: &Message) -> Frame<'_> {
    match msg {
        Message::Binary(b) => wire::classify(b),
        Message::Text(t) => {
            let s: &str = t;
            match get() {
                Proto::SocketIo => socketio(s),
                Proto::JsonRpc => jsonrpc(s),
                Proto::Trpc => trpc(s),
                _ => Frame::Other,
            }
        }
        _ => Frame::Other,
    }
}

fn socketio(s: &str) -> Frame<'_> {
    if s == "2" {
        return Frame::Ping;
    }
    if let Some(rest) = s.strip_prefix("43") {
        // `43<id>[value]`
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(id) = rest[..digits].parse() else {
            return Frame::Other;
        };
        let value = rest[digits..]
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .and_then(|v| v.parse().ok());
        return Frame::Result { id, value };
    }
    if let Some(rest) = s.strip_prefix("42[\"notice\",\"") {
        return Frame::Event {
            message: rest.split('"').next(),
        };
    }
    if s.starts_with("44") {
        return Frame::Error { id: None };
    }
    if s.starts_with("40") {
        return Frame::Connected;
    }
    Frame::Other
}

fn jsonrpc(s: &str) -> Frame<'_> {
    if s.contains("\"method\":\"notice\"") {
        return Frame::Event {
            message: str_after(s, "\"result\":"),
        };
    }
    let id = int_after(s, "\"id\":").map(|v| v as u64);
    if s.contains("\"error\":") {
        return Frame::Error { id };
    }
    match id {
        Some(id) if s.contains("\"result\":") => Frame::Result {
            id,
            value: int_after(s, "\"result\":"),
        },
        _ => Frame::Other,
    }
}

fn trpc(s: &str) -> Frame<'_> {
    let id = int_after(s, "\"id\":").map(|v| v as u64);
    if s.contains("\"error\":") {
        return Frame::Error { id };
    }
    if !s.contains("\"type\":\"data\"") {
        return Frame::Other; // `started`, `stopped`, `reconnect`
    }
    // The subscription's data is the message string; a call's data is its result.
    if let Some(m) = str_after(s, "\"data\":") {
        return Frame::Event { message: Some(m) };
    }
    match id {
        Some(id) => Frame::Result {
            id,
            value: int_after(s, "\"data\":"),
        },
        None => Frame::Other,
    }
}

fn int_after(s: &str, key: &str) -> Option<i64> {
    let rest = s[s.find(key)? + key.len()..].trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

fn str_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let rest = s[s.find(key)? + key.len()..].trim_start();
    rest.strip_prefix('"')?.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peers_frames() {
        assert_eq!(
            socketio("437[8]"),
            Frame::Result {
                id: 7,
                value: Some(8)
            }
        );
        assert_eq!(socketio("2"), Frame::Ping);
        assert_eq!(
            socketio("42[\"notice\",\"b:1:2\"]"),
            Frame::Event {
                message: Some("b:1:2")
            }
        );
        assert_eq!(
            jsonrpc("{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":6}"),
            Frame::Result {
                id: 5,
                value: Some(6)
            }
        );
        assert_eq!(
            jsonrpc(
                "{\"jsonrpc\":\"2.0\",\"method\":\"notice\",\"params\":{\"subscription\":\"x\",\"result\":\"b:3:4\"}}"
            ),
            Frame::Event {
                message: Some("b:3:4")
            }
        );
        assert_eq!(
            trpc("{\"id\":9,\"result\":{\"type\":\"data\",\"data\":10}}"),
            Frame::Result {
                id: 9,
                value: Some(10)
            }
        );
        assert_eq!(
            trpc("{\"id\":0,\"result\":{\"type\":\"data\",\"data\":\"b:5:6\"}}"),
            Frame::Event {
                message: Some("b:5:6")
            }
        );
        assert_eq!(
            trpc("{\"id\":0,\"result\":{\"type\":\"started\"}}"),
            Frame::Other
        );
        assert_eq!(int_after("\"id\": -3,", "\"id\":"), Some(-3));
    }
}
