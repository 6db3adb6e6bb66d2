//! `bench`: a load generator for any server that speaks the ephaptic protocol
//! (docs/PROTOCOL.md): the Rust runtime, the floor server, the Python reference.
//!
//! ```text
//! bench calls  ws://127.0.0.1:N/_ephaptic --conns 100 --inflight 8 --duration 5 --server-pid PID
//! bench fanout ws://127.0.0.1:N/_ephaptic --conns 1000 [--rate 0] [--window 4] --duration 5
//!              [--also ws://127.0.0.1:M/_ephaptic --also-pid PID2] [--redis-pid PID3]
//!              (--also: half the subscribers on a second server, the emitter stays on the first)
//! bench idle   ws://127.0.0.1:N/_ephaptic --conns 10000 --server-pid PID
//! bench replay ws://127.0.0.1:N/_ephaptic --events 1000 --rounds 10 --server-pid PID
//! bench spread ws://127.0.0.1:N/_ephaptic --conns 64 --events 20 --also ws://127.0.0.1:M/_ephaptic
//!              [--redis-pid PID ...] (one per Redis process: a cluster's shards apart)
//! ```
//!
//! * **calls**: `conns` connections, each keeping `inflight` calls of `add(a, b)` in flight for
//!   `duration` seconds (after `warmup`): calls/s and latency percentiles; with `--server-pid`,
//!   the server's CPU time per call (utime + stime from `/proc/PID/stat`).
//! * **fanout**: `conns` idle subscribers (each sends `init` with auth `bench`, so servers that
//!   deliver by identity reach them), one emitter calling `shout(message)`, which emits one event
//!   to every connection. The message carries the send time, so each delivery's latency is
//!   known. `--rate 0` (default) emits as fast as the subscribers take it, with at most
//!   `--window` events not yet delivered to everyone; `--rate R` emits R events/s.
//! * **idle**: opens `conns` connections, makes one call on each, holds them and reads the
//!   server's VmRSS before and after: server memory per idle connection.
//!
//! * **replay**: sessions (docs/PROTOCOL.md 5.6) against the parity fixture: per round, a user
//!   connects with `v: 2`, notes its position and leaves; `events` events are sent to it
//!   (`burst_to`); it reconnects asking to resume, and the time from the connect to the last
//!   missed event received (replayed before the hello's answer, or, with Redis, live after it
//!   for those Redis had not kept yet when the history was read) is the replay time. With
//!   `--server-pid`, the server's CPU during the replays, per replayed event.
//!
//! * **spread**: events to many users at once, for scale-out on a Redis Cluster: `conns` users
//!   (auth `spread-<k>`), each with one connection on the `--also` server (the first without
//!   it); per round the emitter, on the first server, calls `burst_to(user, 0, events)` for
//!   every user at once and waits until each user has its events. Each user's events are its own
//!   stream, so on a cluster they spread over the shards by their hash tag. Events/s, the
//!   servers' CPU per event, and each `--redis-pid`'s CPU per event (one per shard).
//!
//! * **--proto**: `ephaptic` (default), `ephaptic-python` (the Python client's frames: `kwargs`
//!   always there), or a peer's (examples/bench/peers/): `socketio` (engine.io v4 / socket.io
//!   v5 over WebSocket; `add` an event with an ack, `shout` a broadcast), `jsonrpc` (JSON-RPC
//!   2.0: `add` a method, a `subscribe_notice` subscription), `trpc` (tRPC 11's WebSocket
//!   messages: `add` a mutation, an `onNotice` subscription). Same pipelining, same figures.
//! * **--unbatched**: each call is its own frame, written and flushed on its own, as browsers,
//!   the TS client and the Python client send them (the default batches: replies already read
//!   are all answered before one flush, as a pipelining client would).
//!
//! Progress goes to stderr; the result is one JSON line on stdout. Every loop is bounded in
//! time; every wait has a timeout. For 10,000 connections the open-file limit is raised to its
//! hard limit (run `ulimit -n 20000` first where the hard limit is lower).

mod hist;
mod proto;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use hist::Histogram;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// The id of the readiness probe after a socket.io connect; a late answer to a repeated probe
/// is ignored by the call loop.
const PROBE_ID: u64 = 1 << 40;

/// How long any single wait on the server may take before the run is declared failed.
const STALL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Opts {
    mode: String,
    url: String,
    conns: usize,
    inflight: usize,
    duration: f64,
    warmup: f64,
    server_pid: Option<u32>,
    rate: f64,
    window: u64,
    hold: f64,
    threads: usize,
    label: String,
    /// A second server for half of the fan-out subscribers, its process, and Redis's.
    also: Option<String>,
    also_pid: Option<u32>,
    redis_pid: Option<u32>,
    /// spread: every Redis process (a cluster's shards), in the order given.
    redis_pids: Vec<u32>,
    /// replay: events missed per round, and rounds.
    events: u64,
    rounds: usize,
    /// Flush every call on its own instead of batching the ones ready together.
    unbatched: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench <calls|fanout|idle|replay|spread> <ws-url> [--conns N] [--inflight N] [--duration S] \
         [--warmup S] [--server-pid PID] [--rate EVENTS_PER_S] [--window N] [--hold S] \
         [--threads N] [--label TEXT] [--also WS_URL] [--also-pid PID] [--redis-pid PID] \
         [--events N] [--rounds N] [--proto ephaptic|ephaptic-python|socketio|jsonrpc|trpc] \
         [--unbatched]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    if !matches!(
        mode.as_str(),
        "calls" | "fanout" | "idle" | "replay" | "spread"
    ) {
        usage();
    }
    let url = args.next().unwrap_or_else(|| usage());
    let mut o = Opts {
        mode,
        url,
        conns: 1,
        inflight: 1,
        duration: 5.0,
        warmup: 1.0,
        server_pid: None,
        rate: 0.0,
        window: 4,
        hold: 3.0,
        threads: 1,
        label: String::new(),
        also: None,
        also_pid: None,
        redis_pid: None,
        redis_pids: Vec::new(),
        events: 1000,
        rounds: 10,
        unbatched: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--unbatched" {
            o.unbatched = true;
            continue;
        }
        let value = args.next().unwrap_or_else(|| usage());
        let num = || -> f64 { value.parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--conns" => o.conns = num() as usize,
            "--inflight" => o.inflight = num() as usize,
            "--duration" => o.duration = num(),
            "--warmup" => o.warmup = num(),
            "--server-pid" => o.server_pid = Some(num() as u32),
            "--rate" => o.rate = num(),
            "--window" => o.window = num() as u64,
            "--hold" => o.hold = num(),
            "--threads" => o.threads = num() as usize,
            "--label" => o.label = value,
            "--also" => o.also = Some(value),
            "--also-pid" => o.also_pid = Some(num() as u32),
            "--redis-pid" => {
                o.redis_pid.get_or_insert(num() as u32);
                o.redis_pids.push(num() as u32);
            }
            "--events" => o.events = num() as u64,
            "--rounds" => o.rounds = num() as usize,
            "--proto" => proto::set(proto::parse(&value).unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    o.conns = o.conns.max(1);
    o.inflight = o.inflight.clamp(1, 65_536);
    o.window = o.window.max(1);
    o.threads = o.threads.max(1);
    o
}

fn main() {
    let o = parse_opts();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < o.conns + 64 => eprintln!(
            "warning: the open-file limit is {n}; {} connections need more (ulimit -n)",
            o.conns
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e}"),
    }
    let rt = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let result = rt.block_on(async {
        match o.mode.as_str() {
            "calls" => calls(&o).await,
            "fanout" => fanout(&o).await,
            "replay" => replay(&o).await,
            "spread" => spread(&o).await,
            _ => idle(&o).await,
        }
    });
    match result {
        // Which protocol and client shape made these figures, first in every line.
        Ok(json) => println!(
            "{}",
            json.replacen(
                '{',
                &format!(
                    "{{\"proto\":\"{}\",\"unbatched\":{},",
                    proto::name(),
                    o.unbatched
                ),
                1
            )
        ),
        Err(e) => {
            eprintln!("bench {} failed: {e}", o.mode);
            println!(
                "{{\"mode\":\"{}\",\"label\":\"{}\",\"error\":\"{}\"}}",
                o.mode,
                esc(&o.label),
                esc(&e)
            );
            std::process::exit(1);
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(64 * 1024)
}

async fn connect(url: &str, read_buffer: usize) -> Result<Ws, String> {
    let url = &proto::url(url);
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(ws_config(read_buffer)), true);
    let mut ws = match tokio::time::timeout(STALL, fut).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Err(format!("connect to {url} failed: {e}")),
        Err(_) => return Err(format!("connect to {url} timed out")),
    };
    if proto::needs_handshake() {
        // socket.io: the server's open packet, then our namespace connect and its answer.
        ws.send(proto::handshake_open())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let m = tokio::time::timeout(STALL, ws.next())
                .await
                .map_err(|_| format!("no handshake answer from {url}"))?;
            match m {
                Some(Ok(m)) => match proto::classify(&m) {
                    wire::Frame::Connected => break,
                    wire::Frame::Error { .. } => return Err(format!("{url} refused the connect")),
                    _ => {}
                },
                _ => return Err(format!("{url} closed during the handshake")),
            }
        }
        // socketioxide answers the connect before the namespace handler has registered the
        // socket's event handlers, and drops an event that comes in between: a probe call,
        // repeated until one is answered, makes sure the socket is ready.
        let deadline = Instant::now() + STALL;
        'ready: loop {
            ws.send(proto::call(PROBE_ID, 0, 0))
                .await
                .map_err(|e| e.to_string())?;
            let again = Instant::now() + Duration::from_millis(300);
            while let Ok(m) = tokio::time::timeout_at(again.into(), ws.next()).await {
                match m {
                    Some(Ok(m)) => {
                        if let wire::Frame::Result { id: PROBE_ID, .. } = proto::classify(&m) {
                            break 'ready;
                        }
                    }
                    _ => return Err(format!("{url} closed during the handshake")),
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{url} never answered a call after the connect"));
            }
        }
    }
    Ok(ws)
}

/// Opens `n` connections, at most 64 handshakes at a time.
async fn connect_many(url: &str, n: usize, read_buffer: usize) -> Result<Vec<Ws>, String> {
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = gate.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            connect(&url, read_buffer).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// utime + stime of a process, in seconds (all its threads).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server's CPU seconds; with `--also`, both servers' together.
fn server_cpu(o: &Opts) -> Option<f64> {
    let first = cpu_seconds(&o.server_pid?.to_string())?;
    match o.also_pid {
        Some(pid) => Some(first + cpu_seconds(&pid.to_string())?),
        None => Some(first),
    }
}

/// Redis's CPU seconds: every `--redis-pid` together (a cluster's shards).
fn redis_cpu(o: &Opts) -> Option<f64> {
    o.redis_pid?;
    redis_each(o).into_iter().sum()
}

/// Each `--redis-pid`'s CPU seconds, in the order given.
fn redis_each(o: &Opts) -> Vec<Option<f64>> {
    o.redis_pids
        .iter()
        .map(|p| cpu_seconds(&p.to_string()))
        .collect()
}

/// CPU per event in microseconds of each process, from its seconds `before` and now.
fn per_process(o: &Opts, before: &[Option<f64>], events: f64) -> String {
    redis_each(o)
        .iter()
        .zip(before)
        .map(|(b, a)| opt(b.zip(*a).map(|(b, a)| (b - a) * 1e6 / events.max(1.0))))
        .collect::<Vec<_>>()
        .join(",")
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn opt(v: Option<f64>) -> String {
    v.map_or("null".into(), |v| format!("{v:.3}"))
}

// ---------------------------------------------------------------------------------------------
// calls

#[derive(Default)]
struct CallStats {
    hist: Histogram,
    calls: u64,
    errors: u64,
    wrong: u64,
}

async fn calls(o: &Opts) -> Result<String, String> {
    eprintln!(
        "calls: {} connection(s) x {} in flight, {}s (+{}s warm-up) against {}",
        o.conns, o.inflight, o.duration, o.warmup, o.url
    );
    let read_buffer = if o.conns > 100 { 4096 } else { 16 * 1024 };
    let conns = connect_many(&o.url, o.conns, read_buffer).await?;
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|ws| tokio::spawn(call_loop(ws, o.inflight, o.unbatched, phase.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    let cpu0 = server_cpu(o);
    let me0 = cpu_seconds("self");
    let t0 = Instant::now();
    phase.store(MEASURE, Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(o.duration)).await;
    phase.store(STOP, Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = server_cpu(o);
    let me1 = cpu_seconds("self");
    let mut total = CallStats::default();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())??;
        total.hist.merge(&s.hist);
        total.calls += s.calls;
        total.errors += s.errors;
        total.wrong += s.wrong;
    }
    let h = &total.hist;
    let rate = total.calls as f64 / elapsed;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let per_call = cpu.map(|c| c * 1e6 / total.calls.max(1) as f64);
    eprintln!(
        "calls: {:.0} calls/s, p50 {:.1} us, p99 {:.1} us, server CPU {} us/call",
        rate,
        us(h.quantile(0.5)),
        us(h.quantile(0.99)),
        opt(per_call)
    );
    Ok(format!(
        "{{\"mode\":\"calls\",\"label\":\"{}\",\"conns\":{},\"inflight\":{},\"duration_s\":{:.3},\
         \"calls\":{},\"calls_per_s\":{:.1},\"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\
         \"max_us\":{:.2},\"errors\":{},\"wrong\":{},\"server_cpu_s\":{},\"server_cpu_us_per_call\":{},\
         \"client_cpu_s\":{}}}",
        esc(&o.label),
        o.conns,
        o.inflight,
        elapsed,
        total.calls,
        rate,
        us(h.quantile(0.5)),
        us(h.quantile(0.9)),
        us(h.quantile(0.99)),
        us(h.max()),
        total.errors,
        total.wrong,
        opt(cpu),
        opt(per_call),
        opt(me0.zip(me1).map(|(a, b)| b - a)),
    ))
}

fn add_frame(id: u64) -> Message {
    // a = id, b = 1: the reply must be id + 1.
    proto::call(id, id as i64, 1)
}

/// One connection keeping `inflight` calls in flight. Replies that are already buffered are
/// all handled before one flush sends their successors, as a real pipelining client would.
async fn call_loop(
    mut ws: Ws,
    inflight: usize,
    unbatched: bool,
    phase: Arc<AtomicU8>,
) -> Result<CallStats, String> {
    let mut st = CallStats::default();
    let n = inflight as u64;
    let mut rounds = vec![0u64; inflight];
    let mut sent = vec![Instant::now(); inflight];
    for (slot, at) in sent.iter_mut().enumerate() {
        *at = Instant::now();
        ws.feed(add_frame(slot as u64))
            .await
            .map_err(|e| e.to_string())?;
        if unbatched {
            ws.flush().await.map_err(|e| e.to_string())?;
        }
    }
    let mut outstanding = inflight;
    while outstanding > 0 {
        let msg = match ws.next().now_or_never() {
            Some(m) => m,
            None => {
                ws.flush().await.map_err(|e| e.to_string())?;
                tokio::time::timeout(STALL, ws.next())
                    .await
                    .map_err(|_| "timed out waiting for a reply".to_string())?
            }
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("connection failed: {e}")),
            None => return Err("the server closed the connection".into()),
        };
        let now = Instant::now();
        let id = match proto::classify(&msg) {
            wire::Frame::Result { id, value } => {
                if value != Some(id as i64 + 1) {
                    st.wrong += 1;
                }
                id
            }
            wire::Frame::Error { id: Some(id) } => {
                st.errors += 1;
                id
            }
            wire::Frame::Error { id: None } => return Err("an error frame without id".into()),
            wire::Frame::Ping => {
                ws.feed(proto::pong()).await.map_err(|e| e.to_string())?;
                continue;
            }
            _ => continue,
        };
        if id >= PROBE_ID {
            continue;
        }
        let slot = (id % n) as usize;
        match phase.load(Relaxed) {
            MEASURE => {
                st.hist.record(ns(now - sent[slot]));
                st.calls += 1;
            }
            STOP => {
                outstanding -= 1;
                continue;
            }
            _ => {}
        }
        rounds[slot] += 1;
        sent[slot] = Instant::now();
        ws.feed(add_frame(rounds[slot] * n + slot as u64))
            .await
            .map_err(|e| e.to_string())?;
        if unbatched {
            ws.flush().await.map_err(|e| e.to_string())?;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(st)
}

// ---------------------------------------------------------------------------------------------
// fan-out

const RING: usize = 1 << 16;

struct Fan {
    phase: AtomicU8,
    subs: u32,
    epoch: Instant,
    /// Deliveries per event (by sequence number, modulo RING).
    counts: Vec<AtomicU32>,
    /// Events delivered to every subscriber.
    done: AtomicU64,
    notify: Notify,
}

#[derive(Default)]
struct SubStats {
    hist: Histogram,
    deliveries: u64,
}

async fn fanout(o: &Opts) -> Result<String, String> {
    eprintln!(
        "fanout: {} subscriber(s), {}, {}s (+{}s warm-up) against {}",
        o.conns,
        if o.rate > 0.0 {
            format!("{} events/s", o.rate)
        } else {
            format!("as fast as possible (window {})", o.window)
        },
        o.duration,
        o.warmup,
        o.url
    );
    let fan = Arc::new(Fan {
        phase: AtomicU8::new(WARMUP),
        subs: o.conns as u32,
        epoch: Instant::now(),
        counts: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        done: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let started = Instant::now();
    let mut subs = match &o.also {
        None => connect_many(&o.url, o.conns, 4096).await?,
        Some(_) => connect_many(&o.url, o.conns - o.conns / 2, 4096).await?,
    };
    if let Some(also) = &o.also {
        subs.extend(connect_many(also, o.conns / 2, 4096).await?);
    }
    eprintln!(
        "fanout: {} subscribers connected in {:.1}s",
        subs.len(),
        started.elapsed().as_secs_f64()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let init = proto::subscribe();
    let mut tasks = Vec::with_capacity(subs.len());
    for ws in subs {
        tasks.push(tokio::spawn(subscriber(
            ws,
            init.clone(),
            fan.clone(),
            stop_rx.clone(),
        )));
    }
    let emitter = connect(&o.url, 16 * 1024).await?;
    let (mut sink, mut stream) = emitter.split();
    let drain_stop = stop_rx.clone();
    let drain = tokio::spawn(async move {
        let mut stop = drain_stop;
        let mut errors = 0u64;
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(m)) => {
                        if matches!(proto::classify(&m), wire::Frame::Error { .. }) {
                            errors += 1;
                        }
                    }
                    _ => break,
                },
                _ = stop.changed() => break,
            }
        }
        errors
    });

    let mut seq = 0u64;
    let mut buf = Vec::new();
    let shout = |seq: u64, buf: &mut Vec<u8>| {
        fan.counts[seq as usize % RING].store(0, Relaxed);
        let ts = ns(fan.epoch.elapsed());
        buf.clear();
        proto::shout(seq + 1, &format!("b:{seq}:{ts}"))
    };

    // Probe until one event reaches every subscriber: all are registered (a server that
    // delivers by identity registers a connection when it has read its `init`).
    let mut ready = false;
    for _ in 0..20 {
        sink.send(shout(seq, &mut buf))
            .await
            .map_err(|e| e.to_string())?;
        seq += 1;
        let deadline = Instant::now() + Duration::from_secs(3);
        while fan.done.load(Acquire) == 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), fan.notify.notified()).await;
        }
        if fan.done.load(Acquire) > 0 {
            ready = true;
            break;
        }
    }
    if !ready {
        let _ = stop_tx.send(true);
        return Err("the probe event never reached every subscriber".into());
    }
    eprintln!(
        "fanout: every subscriber reached after {:.1}s; emitting",
        started.elapsed().as_secs_f64()
    );

    let done_base = fan.done.load(Acquire);
    let mut sent = 0u64;
    let warmup_end = Instant::now() + Duration::from_secs_f64(o.warmup);
    let mut t0 = None;
    let mut cpu0 = None;
    let mut redis0 = None;
    let mut each0 = Vec::new();
    let mut me0 = None;
    let mut ticker = (o.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut skipped = 0u64;
    let mut stalled = None;
    loop {
        let now = Instant::now();
        if t0.is_none() && now >= warmup_end {
            cpu0 = server_cpu(o);
            redis0 = redis_cpu(o);
            each0 = redis_each(o);
            me0 = cpu_seconds("self");
            t0 = Some(now);
            fan.phase.store(MEASURE, Relaxed);
        }
        if let Some(t) = t0
            && now - t >= Duration::from_secs_f64(o.duration)
        {
            break;
        }
        let outstanding = |fan: &Fan| sent.saturating_sub(fan.done.load(Acquire) - done_base);
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
            if outstanding(&fan) >= 1024 {
                skipped += 1;
                continue;
            }
        } else if outstanding(&fan) >= o.window {
            let waited = tokio::time::timeout(Duration::from_millis(100), fan.notify.notified())
                .await
                .is_ok();
            if waited || outstanding(&fan) < o.window {
                stalled = None;
            } else if stalled.get_or_insert(now).elapsed() > STALL {
                let _ = stop_tx.send(true);
                return Err(format!(
                    "stalled: {} events not delivered to every subscriber for {}s",
                    outstanding(&fan),
                    STALL.as_secs()
                ));
            }
            continue;
        }
        sink.send(shout(seq, &mut buf))
            .await
            .map_err(|e| e.to_string())?;
        seq += 1;
        sent += 1;
    }
    fan.phase.store(STOP, Relaxed);
    let elapsed = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let cpu = server_cpu(o).zip(cpu0).map(|(b, a)| b - a);
    let redis = redis_cpu(o).zip(redis0).map(|(b, a)| b - a);
    let me = cpu_seconds("self").zip(me0).map(|(b, a)| b - a);
    let _ = stop_tx.send(true);
    let mut total = SubStats::default();
    let mut lost = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                total.hist.merge(&s.hist);
                total.deliveries += s.deliveries;
            }
            _ => lost += 1,
        }
    }
    let emitter_errors = drain.await.unwrap_or(0);
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    let h = &total.hist;
    let rate = total.deliveries as f64 / elapsed.max(1e-9);
    let per_delivery = cpu.map(|c| c * 1e6 / total.deliveries.max(1) as f64);
    let events = (total.deliveries as f64 / o.conns as f64).max(1.0);
    let redis_per_event = redis.map(|c| c * 1e6 / events);
    let server_per_event = cpu.map(|c| c * 1e6 / events);
    eprintln!(
        "fanout: {:.0} deliveries/s ({:.1} events/s), p50 {:.1} us, p99 {:.1} us, {} subscriber(s) lost",
        rate,
        rate / o.conns as f64,
        us(h.quantile(0.5)),
        us(h.quantile(0.99)),
        lost
    );
    Ok(format!(
        "{{\"mode\":\"fanout\",\"label\":\"{}\",\"conns\":{},\"rate\":{},\"window\":{},\"duration_s\":{:.3},\
         \"events_sent\":{},\"deliveries\":{},\"deliveries_per_s\":{:.1},\"events_per_s\":{:.2},\
         \"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"max_us\":{:.2},\"lost_subscribers\":{},\
         \"emitter_errors\":{},\"skipped_ticks\":{},\"server_cpu_s\":{},\"server_cpu_us_per_delivery\":{},\
         \"server_cpu_us_per_event\":{},\"redis_cpu_s\":{},\"redis_cpu_us_per_event\":{},\"servers\":{},\
         \"client_cpu_s\":{},\"redis_cpu_us_per_event_by_process\":[{}]}}",
        esc(&o.label),
        o.conns,
        o.rate,
        o.window,
        elapsed,
        sent,
        total.deliveries,
        rate,
        rate / o.conns as f64,
        us(h.quantile(0.5)),
        us(h.quantile(0.9)),
        us(h.quantile(0.99)),
        us(h.max()),
        lost,
        emitter_errors,
        skipped,
        opt(cpu),
        opt(per_delivery),
        opt(server_per_event),
        opt(redis),
        opt(redis_per_event),
        1 + usize::from(o.also.is_some()),
        opt(me),
        per_process(o, &each0, events),
    ))
}

fn parse_message(m: &str) -> Option<(u64, u64)> {
    let mut parts = m.strip_prefix("b:")?.split(':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

async fn subscriber(
    mut ws: Ws,
    init: Option<Message>,
    fan: Arc<Fan>,
    mut stop: watch::Receiver<bool>,
) -> Result<SubStats, String> {
    let mut st = SubStats::default();
    if let Some(init) = init {
        ws.send(init).await.map_err(|e| e.to_string())?;
    }
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        };
        let frame = proto::classify(&msg);
        if frame == wire::Frame::Ping {
            ws.send(proto::pong()).await.map_err(|e| e.to_string())?;
        } else if let wire::Frame::Event { message: Some(m) } = frame
            && let Some((seq, ts)) = parse_message(m)
        {
            if fan.phase.load(Relaxed) == MEASURE {
                st.hist.record(ns(fan.epoch.elapsed()).saturating_sub(ts));
                st.deliveries += 1;
            }
            let c = fan.counts[seq as usize % RING].fetch_add(1, AcqRel) + 1;
            if c == fan.subs {
                fan.done.fetch_add(1, Release);
                fan.notify.notify_one();
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    Ok(st)
}

// ---------------------------------------------------------------------------------------------
// idle

async fn idle(o: &Opts) -> Result<String, String> {
    let pid = o
        .server_pid
        .ok_or("idle mode needs --server-pid to read the server's memory")?;
    eprintln!(
        "idle: {} connection(s) against {} (server pid {pid})",
        o.conns, o.url
    );
    let rss0 = rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(64));
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let (gate, ready, failed, url) =
            (gate.clone(), ready.clone(), failed.clone(), o.url.clone());
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = async {
                let mut ws = connect(&url, 4096).await?;
                ws.send(add_frame(i as u64))
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    match tokio::time::timeout(STALL, ws.next()).await {
                        Ok(Some(Ok(m))) => {
                            if matches!(proto::classify(&m), wire::Frame::Result { .. }) {
                                return Ok(ws);
                            }
                        }
                        _ => return Err("no reply to the first call".to_string()),
                    }
                }
            };
            let mut ws = match opened.await {
                Ok(ws) => ws,
                Err(e) => {
                    if failed.fetch_add(1, Relaxed) == 0 {
                        eprintln!("idle: first failure: {e}");
                    }
                    return Err(e);
                }
            };
            drop(permit);
            ready.fetch_add(1, Relaxed);
            // Hold the connection, answering pings, until told to stop.
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(m)) => if proto::classify(&m) == wire::Frame::Ping {
                            ws.send(proto::pong()).await.map_err(|e| e.to_string())?;
                        },
                        _ => return Err("dropped".to_string()),
                    },
                    _ = stop.changed() => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
            Ok(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while ready.load(Relaxed) + failed.load(Relaxed) < o.conns && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = ready.load(Relaxed);
    eprintln!(
        "idle: {open} open, {} failed after {:.1}s; holding {}s",
        failed.load(Relaxed),
        started.elapsed().as_secs_f64(),
        o.hold
    );
    tokio::time::sleep(Duration::from_secs_f64(o.hold)).await;
    let rss1 = rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    let _ = stop_tx.send(true);
    let mut dropped = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            dropped += 1;
        }
    }
    let per_conn = (rss1.saturating_sub(rss0) * 1024) as f64 / open.max(1) as f64;
    eprintln!(
        "idle: server RSS {rss0} KiB -> {rss1} KiB: {:.0} bytes per connection",
        per_conn
    );
    Ok(format!(
        "{{\"mode\":\"idle\",\"label\":\"{}\",\"conns\":{},\"open\":{},\"failed_or_dropped\":{},\
         \"rss_before_kib\":{},\"rss_after_kib\":{},\"bytes_per_conn\":{:.0}}}",
        esc(&o.label),
        o.conns,
        open,
        dropped,
        rss0,
        rss1,
        per_conn
    ))
}

// ---------------------------------------------------------------------------------------------
// replay

/// Reads frames until the answer to call `id` (0: the hello), counting the events before it;
/// returns that count and the answer's bytes.
async fn until_answer(ws: &mut Ws, id: u64) -> Result<(u64, Vec<u8>), String> {
    let mut events = 0;
    loop {
        let msg = tokio::time::timeout(STALL, ws.next())
            .await
            .map_err(|_| "no answer within the stall limit".to_string())?
            .ok_or("the connection closed")?
            .map_err(|e| e.to_string())?;
        let Message::Binary(b) = msg else { continue };
        match wire::classify(&b) {
            wire::Frame::Event { .. } => events += 1,
            wire::Frame::Result { id: got, .. } if got == id => return Ok((events, b.to_vec())),
            wire::Frame::Error { id: Some(got) } if got == id => {
                return Err(format!(
                    "call {id} failed: {:?}",
                    rmpv::decode::read_value(&mut &b[..])
                ));
            }
            _ => {}
        }
    }
}

/// The `u` stream's epoch and offset from a hello's answer, and whether it was recovered.
fn user_stream(answer: &[u8]) -> Result<(String, u64, bool), String> {
    let v = rmpv::decode::read_value(&mut &answer[..]).map_err(|e| e.to_string())?;
    let field = |m: &rmpv::Value, k: &str| -> Option<rmpv::Value> {
        m.as_map()?
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    let u = field(&v, "result")
        .and_then(|r| field(&r, "streams"))
        .and_then(|s| field(&s, "u"))
        .ok_or(
            "the server answered the hello without a `u` stream: is it a server with sessions?",
        )?;
    let epoch = field(&u, "epoch")
        .and_then(|e| e.as_str().map(str::to_owned))
        .ok_or("no epoch")?;
    let offset = field(&u, "offset")
        .and_then(|o| o.as_u64())
        .ok_or("no offset")?;
    let recovered = field(&u, "recovered")
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    Ok((epoch, offset, recovered))
}

async fn replay(o: &Opts) -> Result<String, String> {
    let events = o.events.max(1);
    let rounds = o.rounds.max(1);
    let mut emitter = connect(&o.url, 64 * 1024).await?;
    let mut times = Vec::with_capacity(rounds);
    let mut cpu = 0.0;
    for r in 0..rounds {
        let user = format!("replay-{}-{r}", std::process::id());
        let hello = wire::rpc(0, "__ephaptic.hello", &[]);
        // Where it stands, then away.
        let mut tab = connect(&o.url, 64 * 1024).await?;
        tab.send(Message::Binary(wire::init_v2(&user, None).into()))
            .await
            .map_err(|e| e.to_string())?;
        tab.send(Message::Binary(hello.clone().into()))
            .await
            .map_err(|e| e.to_string())?;
        let (_, answer) = until_answer(&mut tab, 0).await?;
        let (epoch, offset, _) = user_stream(&answer)?;
        let _ = tab.close(None).await;
        drop(tab);
        // What it misses.
        let call = wire::rpc(
            1,
            "burst_to",
            &[
                wire::Arg::Str(&user),
                wire::Arg::Int(0),
                wire::Arg::Int(events),
            ],
        );
        emitter
            .send(Message::Binary(call.into()))
            .await
            .map_err(|e| e.to_string())?;
        until_answer(&mut emitter, 1).await?;
        // With Redis, `burst_to` returns once its events are queued for Redis: wait until the
        // stream holds them all, so that what is timed is the replay alone.
        let waiting = Instant::now();
        loop {
            let mut probe = connect(&o.url, 64 * 1024).await?;
            let init = wire::init_v2(&user, None);
            probe
                .send(Message::Binary(init.into()))
                .await
                .map_err(|e| e.to_string())?;
            probe
                .send(Message::Binary(hello.clone().into()))
                .await
                .map_err(|e| e.to_string())?;
            let (_, answer) = until_answer(&mut probe, 0).await?;
            let _ = probe.close(None).await;
            if user_stream(&answer)?.1 >= offset + events {
                break;
            }
            if waiting.elapsed() > STALL {
                return Err(format!(
                    "round {r}: the stream never held the {events} events"
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Back, resuming.
        let cpu_before = server_cpu(o);
        let start = Instant::now();
        let mut back = connect(&o.url, 64 * 1024).await?;
        back.send(Message::Binary(
            wire::init_v2(&user, Some((&epoch, offset))).into(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        back.send(Message::Binary(hello.into()))
            .await
            .map_err(|e| e.to_string())?;
        let (mut got, answer) = until_answer(&mut back, 0).await?;
        // With Redis, `burst_to` returns once its events are queued for Redis: those Redis had
        // not kept when the history was read arrive live, after the answer.
        while got < events {
            let msg = tokio::time::timeout(STALL, back.next())
                .await
                .map_err(|_| format!("round {r}: only {got} of {events} events arrived"))?
                .ok_or("the connection closed")?
                .map_err(|e| e.to_string())?;
            if let Message::Binary(b) = msg
                && matches!(wire::classify(&b), wire::Frame::Event { .. })
            {
                got += 1;
            }
        }
        let took = start.elapsed();
        if let (Some(a), Some(b)) = (cpu_before, server_cpu(o)) {
            cpu += b - a;
        }
        let (_, _, recovered) = user_stream(&answer)?;
        if !recovered {
            return Err(format!(
                "round {r}: the stream was not recovered; is the history big enough (--history-size, --max-replay)?"
            ));
        }
        times.push(took);
        let _ = back.close(None).await;
        eprintln!(
            "replay round {r}: {events} events in {:.2} ms",
            took.as_secs_f64() * 1e3
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = times[times.len() / 2];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    let cpu_per_event = o
        .server_pid
        .map(|_| cpu / (events as f64 * rounds as f64) * 1e6);
    Ok(format!(
        "{{\"mode\":\"replay\",\"label\":\"{}\",\"events\":{events},\"rounds\":{rounds},\
         \"replay_ms_p50\":{:.3},\"replay_ms_p90\":{:.3},\"replay_us_per_event\":{:.3},\
         \"server_cpu_us_per_event\":{}}}",
        esc(&o.label),
        ms(median),
        ms(p90),
        ms(median) * 1e3 / events as f64,
        opt(cpu_per_event),
    ))
}

// ---------------------------------------------------------------------------------------------
// spread

/// Reads a user's connection, counting its events into `count`, until `stop`.
async fn spread_reader(
    mut ws: Ws,
    count: Arc<AtomicU64>,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(Ok(msg)) = msg else {
            return Err("a user's connection closed".into());
        };
        let frame = proto::classify(&msg);
        if frame == wire::Frame::Ping {
            ws.send(proto::pong()).await.map_err(|e| e.to_string())?;
        } else if matches!(frame, wire::Frame::Event { .. }) {
            count.fetch_add(1, Release);
            notify.notify_one();
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    Ok(())
}

async fn spread(o: &Opts) -> Result<String, String> {
    let users = o.conns;
    let per = o.events.max(1);
    let there = o.also.clone().unwrap_or_else(|| o.url.clone());
    let tag = std::process::id();
    let mut readers = Vec::with_capacity(users);
    let count = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    for k in 0..users {
        let mut ws = connect(&there, 64 * 1024).await?;
        let user = format!("spread-{tag}-{k}");
        ws.send(Message::Binary(wire::init(&user).into()))
            .await
            .map_err(|e| e.to_string())?;
        // Settled: the answer to a call comes after the identity (and its subscription).
        ws.send(Message::Binary(wire::rpc(1, "whoami", &[]).into()))
            .await
            .map_err(|e| e.to_string())?;
        until_answer(&mut ws, 1).await?;
        readers.push(tokio::spawn(spread_reader(
            ws,
            count.clone(),
            notify.clone(),
            stop_rx.clone(),
        )));
    }
    let mut emitter = connect(&o.url, 64 * 1024).await?;
    let mut expected = 0u64;
    let mut round = async |emitter: &mut Ws| {
        expected += per * users as u64;
        spread_round(emitter, users, per, tag, expected, &count, &notify).await
    };
    // The answers to burst_to come back on the emitter: read them off as they come.
    let warm_until = Instant::now() + Duration::from_secs_f64(o.warmup);
    while Instant::now() < warm_until {
        round(&mut emitter).await?;
        drain(&mut emitter).await;
    }
    let cpu0 = server_cpu(o);
    let redis0 = redis_each(o);
    let start = Instant::now();
    let from = count.load(Acquire);
    let until = start + Duration::from_secs_f64(o.duration);
    while Instant::now() < until {
        round(&mut emitter).await?;
        drain(&mut emitter).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let events = count.load(Acquire) - from;
    let cpu = server_cpu(o).zip(cpu0).map(|(b, a)| b - a);
    let per_event = |s: f64| s * 1e6 / events.max(1) as f64;
    let shards = per_process(o, &redis0, events as f64);
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    Ok(format!(
        "{{\"mode\":\"spread\",\"label\":\"{}\",\"users\":{users},\"per_round\":{per},\"events\":{events},\"events_total\":{},\"events_per_s\":{:.1},\"server_cpu_us_per_event\":{},\"redis_cpu_us_per_event_by_process\":[{}]}}",
        esc(&o.label),
        count.load(Acquire),
        events as f64 / elapsed,
        opt(cpu.map(per_event)),
        shards
    ))
}

/// One round: `burst_to` for every user at once, then a wait until `target` events arrived.
async fn spread_round(
    emitter: &mut Ws,
    users: usize,
    per: u64,
    tag: u32,
    target: u64,
    count: &AtomicU64,
    notify: &Notify,
) -> Result<(), String> {
    for k in 0..users {
        let user = format!("spread-{tag}-{k}");
        let call = wire::rpc(
            k as u64 + 10,
            "burst_to",
            &[
                wire::Arg::Str(&user),
                wire::Arg::Int(0),
                wire::Arg::Int(per),
            ],
        );
        emitter
            .feed(Message::Binary(call.into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    emitter.flush().await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + STALL;
    while count.load(Acquire) < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{} of {target} events arrived within the stall limit",
                count.load(Acquire)
            ));
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notify.notified()).await;
    }
    Ok(())
}

/// Reads what waits on `ws` (answers, pings) without blocking.
async fn drain(ws: &mut Ws) {
    while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
        if proto::classify(&msg) == wire::Frame::Ping {
            let _ = ws.send(proto::pong()).await;
        }
    }
}
