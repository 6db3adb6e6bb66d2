//! The benchmark floor: what a careful hand-written server does with no framework at all.
//!
//! ```text
//! cargo run --release -p floor -- --addr 127.0.0.1:0
//! ```
//! prints `listening on ws://127.0.0.1:N/_ephaptic` as its first line of stdout, like the parity
//! server, and serves two functions of the parity fixture over the same wire protocol:
//!
//! * `add(a, b)` -> `a + b` (positional or keyword arguments);
//! * `shout(message)` -> emits `Notice {message, level: 2}` to every connection, encoded once,
//!   and returns how many connections it reached.
//!
//! It is honestly good rather than a strawman: one task per connection that handles every
//! frame already read before it flushes the replies in one write (`write_buffer_size` keeps
//! `feed` from writing), 4 KiB read buffers, TCP_NODELAY, MessagePack read and written by hand
//! with no allocation beyond the reply itself. It has none of what a framework adds: no
//! registry, no per-call task (so no cancellation and no concurrency within a connection), no
//! typed argument binding, no validation errors, no identity, no pings, no slow-client policy.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

#[derive(Default)]
struct Hub {
    next: AtomicU64,
    conns: RwLock<HashMap<u64, mpsc::Sender<Bytes>>>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:8001".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            _ => {
                eprintln!("usage: floor [--addr HOST:PORT]   (port 0 picks a free port)");
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("listening on ws://{local}/_ephaptic");
    std::io::stdout().flush()?;
    let app = axum::Router::new()
        .route("/_ephaptic", get(upgrade))
        .with_state(Arc::new(Hub::default()));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| connection(hub, socket))
}

async fn connection(hub: Arc<Hub>, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    let id = hub.next.fetch_add(1, Ordering::Relaxed);
    hub.conns.write().unwrap().insert(id, tx);
    let mut unflushed = false;
    loop {
        // Everything already readable or queued is handled first; the flush happens only when
        // the connection would otherwise wait, so a burst of replies costs one write.
        let ok = tokio::select! {
            biased;
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(frame))) => match handle(&hub, &frame) {
                    Some(reply) => {
                        unflushed = true;
                        ws.feed(Message::Binary(reply)).await.is_ok()
                    }
                    None => true,
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => false,
                Some(Ok(_)) => true,
            },
            Some(event) = rx.recv() => {
                unflushed = true;
                ws.feed(Message::Binary(event)).await.is_ok()
            },
            () = std::future::ready(()), if unflushed => {
                unflushed = false;
                ws.flush().await.is_ok()
            },
        };
        if !ok {
            break;
        }
    }
    hub.conns.write().unwrap().remove(&id);
}

/// Answers one frame; `None` for frames that get no reply (`init`, unknown types, garbage).
fn handle(hub: &Hub, frame: &[u8]) -> Option<Bytes> {
    let call = parse(frame)?;
    let id = call.id.map_or(&[0xc0][..], |r| &frame[r]);
    let arg = |i: usize, name: &[u8]| {
        call.args
            .get(i)
            .or_else(|| {
                call.kwargs
                    .iter()
                    .find(|(k, _)| &frame[k.clone()] == name)
                    .map(|(_, v)| v)
            })
            .map(|r| &frame[r.clone()])
    };
    let mut out = BytesMut::with_capacity(32 + id.len());
    out.put_u8(0x82);
    out.put_slice(b"\xa2id");
    out.put_slice(id);
    match &frame[call.name?] {
        b"add" => {
            let a = arg(0, b"a").and_then(read_int);
            let b = arg(1, b"b").and_then(read_int);
            match (a, b) {
                (Some(a), Some(b)) => {
                    put_str(&mut out, b"result");
                    put_int(&mut out, a.wrapping_add(b));
                }
                _ => put_error(&mut out, b"VALIDATION_ERROR", b"add(a: int, b: int)"),
            }
        }
        b"shout" => match arg(0, b"message").and_then(read_str) {
            Some(message) => {
                let event = notice(message);
                let reached = hub
                    .conns
                    .read()
                    .unwrap()
                    .values()
                    .filter(|tx| tx.try_send(event.clone()).is_ok())
                    .count();
                put_str(&mut out, b"result");
                put_int(&mut out, reached as i64);
            }
            None => put_error(&mut out, b"VALIDATION_ERROR", b"shout(message: str)"),
        },
        _ => put_error(&mut out, b"NOT_FOUND", b"Function not found."),
    }
    Some(out.freeze())
}

/// `{type: "event", name: "Notice", payload: {args: [], kwargs: {message, level: 2}}}`.
fn notice(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(80 + message.len());
    b.put_u8(0x83);
    put_str(&mut b, b"type");
    put_str(&mut b, b"event");
    put_str(&mut b, b"name");
    put_str(&mut b, b"Notice");
    put_str(&mut b, b"payload");
    b.put_u8(0x82);
    put_str(&mut b, b"args");
    b.put_u8(0x90);
    put_str(&mut b, b"kwargs");
    b.put_u8(0x82);
    put_str(&mut b, b"message");
    put_str(&mut b, message);
    put_str(&mut b, b"level");
    b.put_u8(2);
    b.freeze()
}

fn put_error(out: &mut BytesMut, code: &[u8], message: &[u8]) {
    put_str(out, b"error");
    out.put_u8(0x83);
    put_str(out, b"code");
    put_str(out, code);
    put_str(out, b"message");
    put_str(out, message);
    put_str(out, b"data");
    out.put_u8(0xc0);
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    match s.len() {
        n if n < 32 => out.put_u8(0xa0 | n as u8),
        n if n < 256 => {
            out.put_u8(0xd9);
            out.put_u8(n as u8);
        }
        n if n <= 0xffff => {
            out.put_u8(0xda);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0xdb);
            out.put_u32(n as u32);
        }
    }
    out.put_slice(s);
}

fn put_int(out: &mut BytesMut, v: i64) {
    match v {
        0..=0x7f => out.put_u8(v as u8),
        -32..=-1 => out.put_u8(v as u8),
        _ if i32::try_from(v).is_ok() => {
            out.put_u8(0xd2);
            out.put_i32(v as i32);
        }
        _ => {
            out.put_u8(0xd3);
            out.put_i64(v);
        }
    }
}

type Span = std::ops::Range<usize>;

struct RpcFrame {
    id: Option<Span>,
    name: Option<Span>,
    args: Vec<Span>,
    kwargs: Vec<(Span, Span)>,
}

/// Finds `id`, `name`, `args` and `kwargs` of an `rpc` frame; `None` for anything else.
fn parse(frame: &[u8]) -> Option<RpcFrame> {
    let mut r = Reader { b: frame, p: 0 };
    let n = r.map_len()?;
    let mut rpc = false;
    let mut call = RpcFrame {
        id: None,
        name: None,
        args: Vec::new(),
        kwargs: Vec::new(),
    };
    for _ in 0..n {
        let key = r.str()?;
        let start = r.p;
        match &frame[key] {
            b"type" => rpc = r.str().is_some_and(|t| &frame[t] == b"rpc"),
            b"id" => {
                r.skip()?;
                call.id = Some(start..r.p);
            }
            b"name" => call.name = r.str(),
            b"args" => {
                for _ in 0..r.array_len()? {
                    let s = r.p;
                    r.skip()?;
                    call.args.push(s..r.p);
                }
            }
            b"kwargs" => {
                for _ in 0..r.map_len()? {
                    let k = r.str()?;
                    let s = r.p;
                    r.skip()?;
                    call.kwargs.push((k, s..r.p));
                }
            }
            _ => r.skip()?,
        }
    }
    rpc.then_some(call)
}

fn read_int(b: &[u8]) -> Option<i64> {
    let be = |s: &[u8]| s.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    Some(match *b.first()? {
        x @ 0x00..=0x7f => i64::from(x),
        x @ 0xe0..=0xff => i64::from(x as i8),
        0xcc => be(b.get(1..2)?) as i64,
        0xcd => be(b.get(1..3)?) as i64,
        0xce => be(b.get(1..5)?) as i64,
        0xcf => i64::try_from(be(b.get(1..9)?)).ok()?,
        0xd0 => i64::from(*b.get(1)? as i8),
        0xd1 => i64::from(be(b.get(1..3)?) as u16 as i16),
        0xd2 => i64::from(be(b.get(1..5)?) as u32 as i32),
        0xd3 => be(b.get(1..9)?) as i64,
        _ => return None,
    })
}

fn read_str(b: &[u8]) -> Option<&[u8]> {
    let mut r = Reader { b, p: 0 };
    let s = r.str()?;
    Some(&b[s])
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl Reader<'_> {
    fn be(&mut self, n: usize) -> Option<usize> {
        let s = self.b.get(self.p..self.p + n)?;
        self.p += n;
        Some(s.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x)))
    }

    fn header(
        &mut self,
        fix: std::ops::RangeInclusive<u8>,
        mask: u8,
        codes: [u8; 2],
    ) -> Option<usize> {
        let b = *self.b.get(self.p)?;
        self.p += 1;
        if fix.contains(&b) {
            Some(usize::from(b & mask))
        } else if b == codes[0] {
            self.be(2)
        } else if b == codes[1] {
            self.be(4)
        } else {
            self.p -= 1;
            None
        }
    }

    fn map_len(&mut self) -> Option<usize> {
        self.header(0x80..=0x8f, 0x0f, [0xde, 0xdf])
    }

    fn array_len(&mut self) -> Option<usize> {
        self.header(0x90..=0x9f, 0x0f, [0xdc, 0xdd])
    }

    /// A string's content span; on anything else the value is skipped.
    fn str(&mut self) -> Option<Span> {
        let len = match *self.b.get(self.p)? {
            b @ 0xa0..=0xbf => {
                self.p += 1;
                usize::from(b & 0x1f)
            }
            0xd9 => {
                self.p += 1;
                self.be(1)?
            }
            0xda => {
                self.p += 1;
                self.be(2)?
            }
            0xdb => {
                self.p += 1;
                self.be(4)?
            }
            _ => {
                self.skip()?;
                return None;
            }
        };
        let start = self.p;
        self.p = self.p.checked_add(len).filter(|e| *e <= self.b.len())?;
        Some(start..self.p)
    }

    fn skip(&mut self) -> Option<()> {
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let b = *self.b.get(self.p)?;
            self.p += 1;
            let (skip, children) = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
                0x90..=0x9f => (0, usize::from(b & 0x0f)),
                0xa0..=0xbf => (usize::from(b & 0x1f), 0),
                0xc1 => return None,
                0xc4 | 0xd9 => (self.be(1)?, 0),
                0xc5 | 0xda => (self.be(2)?, 0),
                0xc6 | 0xdb => (self.be(4)?, 0),
                0xc7 => (self.be(1)? + 1, 0),
                0xc8 => (self.be(2)? + 1, 0),
                0xc9 => (self.be(4)? + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)?),
                0xdd => (0, self.be(4)?),
                0xde => (0, 2 * self.be(2)?),
                0xdf => (0, 2 * self.be(4)?),
            };
            let rest = self.b.len() - self.p;
            if skip > rest || children > rest - skip {
                return None;
            }
            self.p += skip;
            pending += children;
        }
        Some(())
    }
}
