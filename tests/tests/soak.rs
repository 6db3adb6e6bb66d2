//! A bounded soak against the parity fixture as a child process (default settings): for
//! `EPHAPTIC_SOAK_SECS` seconds (default 45) healthy clients make ordinary calls and `shout`
//! events while hostile ones churn connections (some dropped mid-call), send garbage frames,
//! oversized frames (`FRAME_TOO_LARGE`), fragmented messages past the hard limit (1009), and
//! hold connections that never read while events flow.
//!
//! It asserts that every healthy client got every reply and every event, that the hostile
//! clients got the answers the protocol promises, that the server did not exit, and that its
//! RSS and open descriptors come back near their baseline once the hostile clients are gone.
//! Its figures go to stderr (`--nocapture` shows them; CI prints them) and into RELIABILITY.md.
//!
//! ```text
//! EPHAPTIC_SOAK_SECS=600 cargo test -p ephaptic-tests --test soak -- --nocapture
//! ```

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::child::*;
use common::*;
use rmpv::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn int(n: i64) -> Value {
    Value::from(n)
}

/// What happened, by kind.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    shouts: AtomicU64,
    churned: AtomicU64,
    dropped_mid_call: AtomicU64,
    garbage: AtomicU64,
    oversized: AtomicU64,
    fragmented: AtomicU64,
    slow_readers: AtomicU64,
    slow_closed: AtomicU64,
    /// Rounds of client-chosen names and sizes (issue 23): long user and room names, many
    /// groups, an oversized presence meta, a deeply nested argument.
    names: AtomicU64,
    /// Fragmented messages answered with a 1009 close frame (the others ended without one: a
    /// server that closes with unread input resets the socket, which can discard the frame).
    closed_1009: AtomicU64,
    /// Hostile clients that did not get the answer the protocol promises, and why.
    wrong: AtomicU64,
    why: std::sync::Mutex<Vec<String>>,
}

impl Counts {
    fn wrong(&self, why: String) {
        bump(&self.wrong);
        let mut w = self.why.lock().unwrap();
        if w.len() < 10 {
            w.push(why);
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads until the reply to `id`; returns it and the events read meanwhile.
async fn reply_to(c: &mut Client, id: i64) -> (Value, u64) {
    let mut events = 0;
    loop {
        let f = c.recv().await;
        if get(&f, "type") == &v("event") {
            events += 1;
        } else if get(&f, "id") == &int(id) {
            return (f, events);
        } else {
            panic!("a healthy client got an unexpected frame {f}");
        }
    }
}

/// A healthy client: `add` calls, and (the announcer) a `shout` every tenth. Returns the client
/// and the events it has read.
async fn healthy(
    url: String,
    announcer: bool,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> (Client, u64) {
    let mut c = Client::connect_as(&url, v("healthy")).await;
    let mut events = 0;
    let mut id = 0i64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        if announcer && id % 10 == 0 {
            // 64 KiB a shout: a client that does not read fills its 8 MiB in a few seconds.
            c.send(&rpc(id, "shout", vec![v(&"s".repeat(64 * 1024))]))
                .await;
            let (reply, e) = reply_to(&mut c, id).await;
            assert!(has(&reply, "result"), "shout: {reply}");
            events += e;
            bump(&counts.shouts);
        } else {
            c.send(&rpc(id, "add", vec![int(id), int(1)])).await;
            let (reply, e) = reply_to(&mut c, id).await;
            assert_eq!(get(&reply, "result"), &int(id + 1), "{reply}");
            events += e;
            bump(&counts.calls);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (c, events)
}

/// Connect, `init`, one call, close; every third drops the socket while a call runs.
async fn churn(url: &str, n: u64, counts: &Counts) {
    let mut c = Client::connect_as(url, v(&format!("churn{}", n % 50))).await;
    if n.is_multiple_of(3) {
        c.send(&rpc(1, "sleepy", vec![int(1000)])).await;
        drop(c);
        bump(&counts.dropped_mid_call);
        return;
    }
    c.send(&rpc(1, "add", vec![int(2), int(3)])).await;
    let (reply, _) = reply_to(&mut c, 1).await;
    if get(&reply, "result") != &int(5) {
        counts.wrong(format!("churn: {reply}"));
    }
    let _ = c.ws.close(None).await;
    bump(&counts.churned);
}

/// A value nested `depth` arrays deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::from(0), |inner, _| Value::Array(vec![inner]))
}

/// A call's reply, skipping events (the joined rooms' own traffic).
async fn answer(c: &mut Client, name: &str, args: Vec<Value>) -> Value {
    c.send(&rpc(1, name, args)).await;
    reply_to(c, 1).await.0
}

/// One round of names and sizes a client chooses: a `to(..)` a 200 KB name, a 200 KB room
/// (refused), 200 short rooms of its own, a 100 KB presence meta (refused), and an argument
/// nested 120 deep. Each gets the answer the bounds promise, and none of it stays.
async fn namer(url: &str, n: u64, counts: &Counts) {
    let mut c = Client::connect_as(url, v(&format!("namer{}", n % 20))).await;
    let long = |tag: &str| format!("{tag}{n}{}", "x".repeat(200_000));
    let checks = [
        ("notify", vec![v(&long("user")), v("hi")], "result", int(0)),
        (
            "enter_room",
            vec![v(&long("room"))],
            "result",
            Value::from(false),
        ),
    ];
    for (name, args, key, want) in checks {
        let reply = answer(&mut c, name, args).await;
        if get(&reply, key) != &want {
            counts.wrong(format!("names: {name}: {reply}"));
        }
    }
    for room in 0..200 {
        let reply = answer(&mut c, "enter_room", vec![v(&format!("soak:{n}:{room}"))]).await;
        if get(&reply, "result") != &Value::from(true) {
            counts.wrong(format!("names: a short room: {reply}"));
        }
    }
    let meta = "m".repeat(100_000);
    let reply = answer(&mut c, "presence_track", vec![v("soak:lobby"), v(&meta)]).await;
    if get(get(&reply, "error"), "code") != &v("META_TOO_LARGE") {
        counts.wrong(format!("names: a large meta: {reply}"));
    }
    // Answered either way (echoed, or refused for its depth), and the connection goes on.
    let reply = answer(&mut c, "echo", vec![nested(120)]).await;
    if !has(&reply, "result") && !has(&reply, "error") {
        counts.wrong(format!("names: a deep argument: {reply}"));
    }
    let _ = c.ws.close(None).await;
    bump(&counts.names);
}

/// A raw client's next reply (skipping events), decoded.
async fn raw_reply(c: &mut Raw) -> Option<Value> {
    loop {
        let (op, bytes) = c.next(Duration::from_secs(10)).await?;
        if op != OP_BINARY {
            return None;
        }
        let f = decode(&bytes);
        if get(&f, "type") != &v("event") {
            return Some(f);
        }
    }
}

/// Frames that are not calls, then a call that must still be answered.
async fn garbage(addr: &str, counts: &Counts) {
    let mut c = Raw::connect(addr).await;
    let mut frames = Vec::new();
    for bad in [&[0xc1][..], &[0x82, 0xa2], &[0x05], &[0x91, 0x01]] {
        frames.extend_from_slice(&binary_frame(bad));
    }
    let mut text = header(true, OP_TEXT, 14);
    text.extend_from_slice(b"{\"type\":\"rpc\"}");
    frames.extend_from_slice(&text);
    c.write(&frames).await;
    c.send(&rpc(9, "add", vec![int(1), int(1)])).await;
    if raw_reply(&mut c)
        .await
        .is_none_or(|r| get(&r, "result") != &int(2))
    {
        bump(&counts.wrong);
    }
    bump(&counts.garbage);
}

/// A 1.5 MiB frame (past the 1 MiB frame limit, within the 2 MiB hard one): FRAME_TOO_LARGE,
/// and the connection lives.
async fn oversized(addr: &str, frame: &[u8], counts: &Counts) {
    let mut c = Raw::connect(addr).await;
    c.write(frame).await;
    let code = raw_reply(&mut c)
        .await
        .map(|r| get(get(&r, "error"), "code").clone());
    c.send(&rpc(2, "add", vec![int(1), int(1)])).await;
    let lives = raw_reply(&mut c)
        .await
        .is_some_and(|r| get(&r, "result") == &int(2));
    if code != Some(v("FRAME_TOO_LARGE")) || !lives {
        counts.wrong(format!("oversized: {code:?}, lives {lives}"));
    }
    bump(&counts.oversized);
}

/// A fragmented message that grows past the 2 MiB hard limit: closed with 1009.
async fn fragmented(addr: &str, counts: &Counts) {
    let mut c = Raw::connect(addr).await;
    let fragment = vec![0x90u8; 128 * 1024];
    for i in 0..17 {
        let mut f = header(
            false,
            if i == 0 { OP_BINARY } else { OP_CONT },
            fragment.len(),
        );
        f.extend_from_slice(&fragment);
        if !c.write(&f).await {
            break;
        }
    }
    match c.close_code(Duration::from_secs(10)).await {
        Some(Some(1009)) => bump(&counts.closed_1009),
        Some(None) => {}
        other => counts.wrong(format!("fragmented: {other:?}")),
    }
    bump(&counts.fragmented);
}

/// A client that sends `init` and never reads while events flow; held until the server closes
/// it (the byte budget) or the soak ends.
async fn slow_reader(addr: &str, counts: &Counts, stop: &AtomicBool) {
    let mut c = Raw::connect(addr).await;
    c.send(&map(vec![("type", v("init")), ("auth", v("slow"))]))
        .await;
    bump(&counts.slow_readers);
    // Write now and then without reading: the server's close shows once a write fails.
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !c
            .write(&binary_frame(&encode(&rpc(1, "add", vec![int(1), int(1)]))))
            .await
        {
            bump(&counts.slow_closed);
            return;
        }
    }
}

/// Runs `f` in a loop until `stop`.
fn spawn_loop<F, Fut>(stop: &Arc<AtomicBool>, f: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            f(n).await;
            n += 1;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_soak_leaves_healthy_clients_served_and_the_server_back_at_its_baseline() {
    let secs: u64 = std::env::var("EPHAPTIC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let mut server = Parity::start("warn");
    let counts = Arc::new(Counts::default());

    // Warm up: what the first connections and calls allocate once is part of the baseline.
    for n in 0..20 {
        churn(&server.url, n, &counts).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let healthy_tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(healthy(
                server.url.clone(),
                i == 0,
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss_mib();
    let baseline_fds = server.fds();
    server.reset_peak();

    let hostile_stop = Arc::new(AtomicBool::new(false));
    let mut hostile = Vec::new();
    let url = server.url.clone();
    let c = counts.clone();
    hostile.push(spawn_loop(&hostile_stop, move |n| {
        let (url, c) = (url.clone(), c.clone());
        async move { churn(&url, n, &c).await }
    }));
    let (addr, c) = (server.addr.clone(), counts.clone());
    hostile.push(spawn_loop(&hostile_stop, move |_| {
        let (addr, c) = (addr.clone(), c.clone());
        async move { garbage(&addr, &c).await }
    }));
    let big = Arc::new(binary_frame(&encode(&rpc(
        1,
        "echo",
        vec![Value::Binary(vec![1; 1536 * 1024])],
    ))));
    let (addr, c) = (server.addr.clone(), counts.clone());
    hostile.push(spawn_loop(&hostile_stop, move |_| {
        let (addr, c, big) = (addr.clone(), c.clone(), big.clone());
        async move {
            oversized(&addr, &big, &c).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    let (addr, c) = (server.addr.clone(), counts.clone());
    hostile.push(spawn_loop(&hostile_stop, move |_| {
        let (addr, c) = (addr.clone(), c.clone());
        async move {
            fragmented(&addr, &c).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    let (url, c) = (server.url.clone(), counts.clone());
    hostile.push(spawn_loop(&hostile_stop, move |n| {
        let (url, c) = (url.clone(), c.clone());
        async move { namer(&url, n, &c).await }
    }));
    for _ in 0..3 {
        let (addr, c, s) = (server.addr.clone(), counts.clone(), hostile_stop.clone());
        hostile.push(spawn_loop(&hostile_stop, move |_| {
            let (addr, c, s) = (addr.clone(), c.clone(), s.clone());
            async move { slow_reader(&addr, &c, &s).await }
        }));
    }

    let started = Instant::now();
    let mut max_fds = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.assert_alive();
        max_fds = max_fds.max(server.fds());
    }
    hostile_stop.store(true, Ordering::Relaxed);
    for t in hostile {
        // A loop finishes its current round and stops.
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a hostile loop stops")
            .unwrap();
    }
    let peak = server.peak_mib();
    stop.store(true, Ordering::Relaxed);
    let mut healthy_clients = Vec::new();
    for t in healthy_tasks {
        healthy_clients.push(t.await.unwrap());
    }
    // Every healthy client gets every shout: read what is still on its way.
    let shouts = counts.shouts.load(Ordering::Relaxed);
    for (c, events) in &mut healthy_clients {
        let until = Instant::now() + Duration::from_secs(10);
        while *events < shouts {
            match tokio::time::timeout_at(until, c.ws.next_msg()).await {
                Ok(Some(f)) if get(&f, "type") == &v("event") => *events += 1,
                Ok(Some(f)) => panic!("unexpected {f}"),
                _ => break,
            }
        }
    }
    let events: Vec<u64> = healthy_clients.iter().map(|(_, e)| *e).collect();

    // Once the hostile clients are gone, what they cost is given back.
    let fds = server
        .settle_fds(baseline_fds, Duration::from_secs(10))
        .await;
    // Measured: +0.5 to +1 MiB after the soak (peak about +12 MiB); before the fixes of issue
    // 16 one unfinished message alone could leave 16 MiB behind.
    let margin = 16.0;
    let after = server
        .settle_rss(baseline + margin, Duration::from_secs(10))
        .await;
    server.assert_alive();
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "soak {secs} s: healthy calls {} and shouts {shouts} (events per healthy client \
         {events:?}); hostile: churned {} + dropped mid-call {}, garbage {}, oversized {}, \
         fragmented past the limit {} ({} with a 1009 frame), slow readers {} ({} closed by the \
         server), names and sizes {}; wrong answers {} {:?}; RSS baseline {baseline:.1} MiB, peak {peak:.1}, after {after:.1}; fds baseline \
         {baseline_fds}, max {max_fds}, after {fds}",
        n(&counts.calls),
        n(&counts.churned),
        n(&counts.dropped_mid_call),
        n(&counts.garbage),
        n(&counts.oversized),
        n(&counts.fragmented),
        n(&counts.closed_1009),
        n(&counts.slow_readers),
        n(&counts.slow_closed),
        n(&counts.names),
        n(&counts.wrong),
        counts.why.lock().unwrap(),
    );
    assert!(shouts > 0 && n(&counts.calls) > 0);
    assert!(
        events.iter().all(|&e| e == shouts),
        "events per healthy client {events:?}, shouts {shouts}"
    );
    assert_eq!(n(&counts.wrong), 0, "hostile clients answered wrongly");
    assert!(n(&counts.fragmented) > 0 && n(&counts.oversized) > 0 && n(&counts.garbage) > 0);
    assert!(n(&counts.closed_1009) > 0, "no 1009 close frame was seen");
    assert!(n(&counts.slow_closed) > 0, "no slow reader was closed");
    assert!(n(&counts.names) > 0, "no round of names and sizes");
    assert!(fds <= baseline_fds, "fds {baseline_fds} -> {fds}");
    assert!(
        after <= baseline + margin,
        "RSS {baseline:.1} -> {after:.1} MiB after the hostile clients left"
    );
}

/// The next data frame of a healthy client, decoded; `None` at the end.
trait NextMsg {
    async fn next_msg(&mut self) -> Option<Value>;
}

impl NextMsg for Ws {
    async fn next_msg(&mut self) -> Option<Value> {
        use futures_util::StreamExt;
        loop {
            match self.next().await? {
                Ok(Message::Binary(b)) => return Some(decode(&b)),
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                _ => return None,
            }
        }
    }
}
