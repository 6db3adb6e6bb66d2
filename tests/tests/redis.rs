//! Many servers on one Redis: every test starts its own `redis-server` on a free loopback port
//! and two or three ephaptic servers (parity's functions plus a few of this binary's) in this
//! process, each with its own Redis backplane, and drives them over real WebSockets.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{RedisServer, free_port, node};
use common::*;
use ephaptic::{Audience, Caller, Value, event, expose};

// The functions every test here serves: parity's (notify, shout, create_todo, limited, ...).
use parity as _;

/// One numbered event of a burst.
#[event]
#[derive(Debug)]
pub struct Tick {
    pub i: u32,
}

/// A message to a room.
#[event]
#[derive(Debug)]
pub struct RoomNote {
    pub text: String,
}

#[expose]
async fn join_room(caller: Caller, room: String) -> bool {
    caller.join(&room)
}

/// Joins and answers only once the room's events from other servers reach this one.
#[expose]
async fn join_room_ready(caller: Caller, room: String) -> bool {
    caller.join_ready(&room).await
}

/// Joins the caller to `room` (in the background, as `join` does) and at once sends the room an
/// event: the caller, a member now, must get it.
#[expose]
async fn join_and_tell(caller: Caller, room: String, text: String) -> bool {
    caller.join(&room);
    ephaptic::group(room).emit(RoomNote { text }).await;
    true
}

#[expose]
async fn tell_room(room: String, text: String) -> usize {
    ephaptic::group(room).emit(RoomNote { text }).await.local
}

/// Emits `n` numbered events to everyone, in order.
/// What `emit` says it reached: this server's connections, and whether it went to the others.
#[expose]
async fn tell_room_sent(room: String, text: String) -> Value {
    let sent = ephaptic::group(room).emit(RoomNote { text }).await;
    map(vec![
        ("local", Value::from(sent.local)),
        ("published", Value::from(sent.published)),
    ])
}

#[expose]
async fn burst(n: u32) -> u32 {
    for i in 0..n {
        ephaptic::emit(Tick { i }).await;
    }
    n
}

/// Emits to `ghost` (an identity nobody holds: its events only fill this server's publish
/// queue) until the queue is full, then to `user` while it is: returns how many of `user`'s
/// events never reached Redis (3, or fewer if the queue did not stay full).
#[expose]
async fn flood_then_tell(user: String, ghost: String) -> u32 {
    let dropped = || ephaptic::metrics().map_or(0, |m| m.redis_dropped);
    let mut lost = 0;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    for round in 0..1_000u32 {
        if std::time::Instant::now() > until {
            break;
        }
        let before = dropped();
        for i in 0..1_000 {
            ephaptic::to(ghost.as_str())
                .emit(Tick {
                    i: round * 1_000 + i,
                })
                .await;
        }
        if dropped() == before {
            continue;
        }
        let before = dropped();
        ephaptic::to(user.as_str()).emit(Tick { i: u32::MAX }).await;
        if dropped() > before {
            lost += 1;
            if lost == 3 {
                break;
            }
        }
    }
    lost
}

fn room_of(_caller: &Caller, note: &RoomNote) -> Audience {
    Audience::group(note.text.split(':').next().unwrap_or_default().to_owned())
}

/// Announces `room:text` on the `roomNoted` channel, to that room only.
#[expose(broadcast = ["roomNoted"], broadcast_to = room_of)]
async fn note_room(text: String) -> RoomNote {
    RoomNote { text }
}

/// This server's Redis figures.
#[expose]
async fn redis_figures() -> Value {
    let m = ephaptic::metrics().expect("a server runs");
    map(vec![
        ("connected", Value::from(m.redis_connected.unwrap_or(false))),
        ("published", Value::from(m.redis_published)),
        ("received", Value::from(m.redis_received)),
        ("dropped", Value::from(m.redis_dropped)),
        ("outages", Value::from(m.redis_outages)),
    ])
}

/// A client whose calls keep the events that arrive before their replies, for later.
struct Peer {
    c: Client,
    events: std::collections::VecDeque<Value>,
}

impl Peer {
    async fn connect(url: &str) -> Peer {
        Peer {
            c: Client::connect(url).await,
            events: Default::default(),
        }
    }

    /// Connects as `name` and waits for the round trip that says the identity is settled.
    async fn user(url: &str, name: &str) -> Peer {
        let mut p = Peer {
            c: Client::connect_as(url, v(name)).await,
            events: Default::default(),
        };
        assert_eq!(p.ok("whoami", vec![]).await, v(name));
        p
    }

    /// A call's reply, the events before it kept.
    async fn reply(&mut self, name: &str, args: Vec<Value>) -> Value {
        self.c.send(&rpc(1, name, args)).await;
        loop {
            let frame = self.c.recv().await;
            if get(&frame, "type") == &v("event") {
                self.events.push_back(frame);
            } else {
                return frame;
            }
        }
    }

    async fn ok(&mut self, name: &str, args: Vec<Value>) -> Value {
        let reply = self.reply(name, args).await;
        assert!(
            has(&reply, "result"),
            "{name}: expected a result, got {reply}"
        );
        get(&reply, "result").clone()
    }

    async fn err(&mut self, name: &str, args: Vec<Value>) -> Value {
        let reply = self.reply(name, args).await;
        assert!(
            has(&reply, "error"),
            "{name}: expected an error, got {reply}"
        );
        get(&reply, "error").clone()
    }

    /// The next frame within `limit`: a kept event first.
    async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.c.recv_raw_within(limit).await.map(|raw| decode(&raw))
    }

    /// The next event named `name` (other frames are skipped), within a few seconds.
    async fn event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("no {name} event arrived"));
            if is_event(&frame, name) {
                return frame;
            }
        }
    }

    /// The `key` field of the next event named `name`.
    async fn kwarg(&mut self, name: &str, key: &str) -> Value {
        get(kwargs(&self.event(name).await), key).clone()
    }

    /// Asserts that no event named `name` arrives for a while.
    async fn no_event(&mut self, name: &str) {
        let until = Instant::now() + Duration::from_millis(400);
        while let Some(frame) = self
            .next_within(until.saturating_duration_since(Instant::now()))
            .await
        {
            assert!(!is_event(&frame, name), "unexpected {name}: {frame}");
        }
    }
}

/// Calls `notify(alice, "<label> N")` from `here` until a Notice reaches `alice` (at most
/// 20 s); returns it and how many tries it took.
async fn notify_until_it_arrives(here: &mut Peer, alice: &mut Peer, label: &str) -> (Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let text = Value::from(format!("{label} {n}"));
        here.ok("notify", vec![v("alice"), text]).await;
        if let Some(frame) = alice.next_within(Duration::from_millis(250)).await
            && is_event(&frame, "Notice")
        {
            return (frame, n);
        }
        assert!(
            Instant::now() < deadline,
            "no Notice reached alice in 20 s ({label})"
        );
    }
}

fn is_event(frame: &Value, name: &str) -> bool {
    get(frame, "type") == &v("event") && get(frame, "name") == &v(name)
}

fn kwargs(frame: &Value) -> &Value {
    get(get(frame, "payload"), "kwargs")
}

// ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn to_user_reaches_every_connection_of_that_user_on_every_server_once() {
    let redis = redis_or_skip!();
    let (a, b, c) = (
        node(&redis.url()).await,
        node(&redis.url()).await,
        node(&redis.url()).await,
    );
    let mut tabs = vec![
        Peer::user(&b, "alice").await,
        Peer::user(&b, "alice").await,
        Peer::user(&c, "alice").await,
    ];
    let mut bob = Peer::user(&c, "bob").await;
    let mut sender = Peer::connect(&a).await;
    // Reached here: none of alice's connections is on A.
    assert_eq!(
        sender.ok("notify", vec![v("alice"), v("hi")]).await,
        Value::from(0)
    );
    for tab in &mut tabs {
        let e = tab.event("Notice").await;
        assert_eq!(get(kwargs(&e), "message"), &v("hi"));
        tab.no_event("Notice").await;
    }
    bob.no_event("Notice").await;
}

#[tokio::test]
async fn shout_reaches_every_connection_of_every_server_once() {
    let redis = redis_or_skip!();
    let (a, b, c) = (
        node(&redis.url()).await,
        node(&redis.url()).await,
        node(&redis.url()).await,
    );
    let mut everyone = Vec::new();
    for url in [&a, &b, &c] {
        for _ in 0..2 {
            let mut conn = Peer::connect(url).await;
            conn.ok("add", vec![Value::from(1), Value::from(1)]).await;
            everyone.push(conn);
        }
    }
    redis.wait_subscribers("ephaptic:all", 3).await;
    // The emitting server counts its own two connections.
    assert_eq!(
        everyone[0].ok("shout", vec![v("fire drill")]).await,
        Value::from(2)
    );
    for conn in &mut everyone {
        let e = conn.event("Notice").await;
        assert_eq!(get(kwargs(&e), "message"), &v("fire drill"));
        conn.no_event("Notice").await;
    }
}

#[tokio::test]
async fn groups_and_channels_cross_servers_and_reach_members_only() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut member_a = Peer::connect(&a).await;
    let mut member_b = Peer::connect(&b).await;
    let mut outsider = Peer::connect(&b).await;
    assert_eq!(
        member_a.ok("join_room", vec![v("lobby")]).await,
        Value::from(true)
    );
    assert_eq!(
        member_b.ok("join_room", vec![v("lobby")]).await,
        Value::from(true)
    );
    outsider
        .ok("add", vec![Value::from(1), Value::from(1)])
        .await;
    // B subscribes to the room's channel when its first member joins; A already has one.
    redis.wait_subscribers("ephaptic:g:lobby", 2).await;

    let mut sender = Peer::connect(&a).await;
    assert_eq!(
        sender.ok("tell_room", vec![v("lobby"), v("hello")]).await,
        Value::from(1)
    );
    for m in [&mut member_a, &mut member_b] {
        assert_eq!(&m.kwarg("RoomNote", "text").await, &v("hello"));
    }
    outsider.no_event("RoomNote").await;
    // What `emit` says: one member on this server, and on to the others through Redis (whose
    // member it does not count, though it gets the event).
    let sent = sender
        .ok("tell_room_sent", vec![v("lobby"), v("again")])
        .await;
    assert_eq!(get(&sent, "local"), &Value::from(1), "{sent}");
    assert_eq!(get(&sent, "published"), &Value::from(true), "{sent}");
    for m in [&mut member_a, &mut member_b] {
        assert_eq!(&m.kwarg("RoomNote", "text").await, &v("again"));
    }

    // A channel sent to the room by `broadcast_to`.
    sender.ok("note_room", vec![v("lobby:done")]).await;
    for m in [&mut member_a, &mut member_b] {
        assert_eq!(&m.kwarg("roomNoted", "text").await, &v("lobby:done"));
    }
    outsider.no_event("roomNoted").await;

    // A channel to everyone (parity's `create_todo`).
    sender.ok("create_todo", vec![v("milk")]).await;
    for m in [&mut member_a, &mut member_b, &mut outsider] {
        assert_eq!(&m.kwarg("todoCreated", "title").await, &v("milk"));
    }

    // The last member leaving B unsubscribes B; A's member keeps A subscribed.
    drop(member_b);
    redis.wait_subscribers("ephaptic:g:lobby", 1).await;
}

#[tokio::test]
async fn a_member_that_joined_ready_is_subscribed_when_the_join_returns() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut sender = Peer::connect(&a).await;
    sender.ok("add", vec![Value::from(1), Value::from(1)]).await;
    for i in 0..5 {
        let room = format!("fresh-{i}");
        let mut member = Peer::connect(&b).await;
        assert_eq!(
            member.ok("join_room_ready", vec![v(&room)]).await,
            Value::from(true)
        );
        // Asked once, not waited for: with `join` alone B subscribes in the background, and
        // Redis has often not seen it yet when the reply arrives.
        assert_eq!(
            redis.subscribers(&format!("ephaptic:g:{room}")).await,
            1,
            "{room}: B is subscribed when join_ready returns"
        );
        sender.ok("tell_room", vec![v(&room), v("first")]).await;
        assert_eq!(&member.kwarg("RoomNote", "text").await, &v("first"));
    }
}

#[tokio::test]
async fn a_thousand_events_from_one_emitter_arrive_in_order_everywhere() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut listeners = Vec::new();
    for url in [&a, &b, &b] {
        let mut conn = Peer::connect(url).await;
        conn.ok("add", vec![Value::from(1), Value::from(1)]).await;
        listeners.push(conn);
    }
    redis.wait_subscribers("ephaptic:all", 2).await;
    let mut emitter = Peer::connect(&a).await;
    assert_eq!(
        emitter.ok("burst", vec![Value::from(1000)]).await,
        Value::from(1000)
    );
    for conn in &mut listeners {
        for i in 0..1000u64 {
            let e = conn.event("Tick").await;
            assert_eq!(
                get(kwargs(&e), "i"),
                &Value::from(i),
                "out of order or lost"
            );
        }
        conn.no_event("Tick").await;
    }
    let figures = emitter.ok("redis_figures", vec![]).await;
    assert!(
        get(&figures, "published").as_u64().unwrap() >= 1000,
        "{figures}"
    );
    assert_eq!(get(&figures, "dropped"), &Value::from(0u64));
}

#[tokio::test]
async fn rate_limits_are_counted_across_servers() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut on_a = Peer::user(&a, "rl-user").await;
    let mut on_b = Peer::user(&b, "rl-user").await;
    assert_eq!(on_a.ok("limited", vec![]).await, v("ok"));
    assert_eq!(on_b.ok("limited", vec![]).await, v("ok"));
    let e = on_a.err("limited", vec![]).await;
    assert_eq!(get(&e, "code"), &v("RATELIMIT"));
    let retry = get(get(&e, "data"), "retry_after").as_u64().unwrap();
    assert!(
        (1..=30).contains(&retry),
        "one call every 30 s after the burst: {retry}"
    );
    // Another caller is counted apart.
    let mut other = Peer::user(&b, "rl-other").await;
    assert_eq!(other.ok("limited", vec![]).await, v("ok"));
    // A long identity (just under the 1 KiB cap) is counted across servers under a digest.
    let long = format!("rl-{}", "x".repeat(1000));
    let (mut long_a, mut long_b) = (Peer::user(&a, &long).await, Peer::user(&b, &long).await);
    assert_eq!(long_a.ok("limited", vec![]).await, v("ok"));
    assert_eq!(long_b.ok("limited", vec![]).await, v("ok"));
    let e = long_b.err("limited", vec![]).await;
    assert_eq!(get(&e, "code"), &v("RATELIMIT"));
    let keys = redis.keys("ephaptic:rl:*").await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(
        keys[1..],
        [
            "ephaptic:rl:limited:u:s:rl-other",
            "ephaptic:rl:limited:u:s:rl-user"
        ]
    );
    let digest = keys[0]
        .strip_prefix("ephaptic:rl:limited:#")
        .unwrap_or_else(|| panic!("{keys:?}"));
    assert!(
        digest.len() == 40 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest}"
    );
}

#[tokio::test]
async fn a_server_starts_without_redis_and_joins_the_others_when_it_comes_up() {
    if common::redis_server::cluster_mode() {
        eprintln!("skipped on a Redis Cluster: this test starts its one Redis late");
        return;
    }
    if !RedisServer::installed() {
        return;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let (a, b) = (node(&url).await, node(&url).await);
    // No Redis: calls and local events work.
    let mut local = Peer::connect(&a).await;
    assert_eq!(
        local.ok("add", vec![Value::from(2), Value::from(3)]).await,
        Value::from(5)
    );
    assert_eq!(local.ok("shout", vec![v("alone")]).await, Value::from(1));
    assert_eq!(&local.kwarg("Notice", "message").await, &v("alone"));
    let figures = local.ok("redis_figures", vec![]).await;
    assert_eq!(get(&figures, "connected"), &Value::from(false), "{figures}");

    let redis = RedisServer::start_on(port);
    redis.wait_subscribers("ephaptic:all", 2).await;
    // Redis counts a subscription before the server has read its reply: wait for the server
    // to know it is connected too (until then it drops what it would publish).
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&local.ok("redis_figures", vec![]).await, "connected") != &Value::from(true) {
        assert!(
            Instant::now() < deadline,
            "the server never saw Redis come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut remote = Peer::connect(&b).await;
    remote.ok("add", vec![Value::from(1), Value::from(1)]).await;
    local.ok("shout", vec![v("together")]).await;
    assert_eq!(&remote.kwarg("Notice", "message").await, &v("together"));
}

#[tokio::test]
async fn a_redis_killed_mid_run_costs_only_remote_events_and_delivery_resumes_by_itself() {
    let mut redis = single_redis_or_skip!();
    let port = redis.port;
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut alice = Peer::user(&b, "alice").await;
    let mut here = Peer::connect(&a).await;
    here.ok("notify", vec![v("alice"), v("before")]).await;
    assert_eq!(&alice.kwarg("Notice", "message").await, &v("before"));

    redis.kill9();
    // Calls and this server's own events go on.
    for n in 0..20 {
        assert_eq!(
            here.ok("add", vec![Value::from(n), Value::from(1)]).await,
            Value::from(n + 1)
        );
        assert_eq!(here.ok("shout", vec![v("local")]).await, Value::from(1));
        assert_eq!(&here.kwarg("Notice", "message").await, &v("local"));
        here.ok("notify", vec![v("alice"), v("lost")]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let figures = here.ok("redis_figures", vec![]).await;
    assert!(
        get(&figures, "dropped").as_u64().unwrap() > 0,
        "drops are counted: {figures}"
    );
    assert!(get(&figures, "outages").as_u64().unwrap() >= 1, "{figures}");
    // And `emit` says the event did not go to the other servers.
    let sent = here.ok("tell_room_sent", vec![v("den"), v("x")]).await;
    assert_eq!(get(&sent, "published"), &Value::from(false), "{sent}");
    assert_eq!(get(&figures, "connected"), &Value::from(false), "{figures}");

    // Back on the same port: delivery resumes without restarting either server, within a few
    // probe intervals (300 ms here), not at some later check.
    let _redis = RedisServer::start_on(port);
    let back = Instant::now();
    let (got, _) = notify_until_it_arrives(&mut here, &mut alice, "after").await;
    let text = get(kwargs(&got), "message").as_str().unwrap().to_owned();
    assert!(
        text.starts_with("after"),
        "nothing from the outage is replayed: {text}"
    );
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "resumed {:?} after Redis was back",
        back.elapsed()
    );
    let figures = here.ok("redis_figures", vec![]).await;
    assert_eq!(get(&figures, "connected"), &Value::from(true), "{figures}");
}

/// A TCP proxy in front of Redis that can swap its upstream connection behind a client's back:
/// the client's connection stays up and its commands keep working, but the new upstream knows
/// nothing of its subscriptions. What a failover behind a proxy does, and the silent failure
/// the liveness probe exists for.
struct SwappingProxy {
    port: u16,
    swap: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl SwappingProxy {
    async fn start(upstream: u16) -> SwappingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (swap, _) = tokio::sync::watch::channel(0u64);
        let swap = std::sync::Arc::new(swap);
        let swaps = swap.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut swapped = swaps.subscribe();
                tokio::spawn(async move {
                    let mut up = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                        .await
                        .unwrap();
                    let (mut a, mut b) = ([0u8; 16384], [0u8; 16384]);
                    loop {
                        tokio::select! {
                            n = down.read(&mut a) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if up.write_all(&a[..n]).await.is_err() { return },
                            },
                            n = up.read(&mut b) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if down.write_all(&b[..n]).await.is_err() { return },
                            },
                            changed = swapped.changed() => {
                                if changed.is_err() { return }
                                // A fresh upstream: same client socket, no subscriptions. (It
                                // must say HELLO 3 again for RESP3, so send it the way the
                                // client's first one went; Redis answers with a map the
                                // client does not expect, so swallow that answer.)
                                up = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                                up.write_all(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await.unwrap();
                                let mut hello = [0u8; 4096];
                                let _ = tokio::time::timeout(Duration::from_millis(200), up.read(&mut hello)).await;
                            }
                        }
                    }
                });
            }
        });
        SwappingProxy { port, swap }
    }

    fn swap(&self) {
        self.swap.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn a_subscription_that_went_deaf_is_found_by_the_probe_and_replaced() {
    let redis = single_redis_or_skip!();
    let proxy = SwappingProxy::start(redis.port).await;
    let a = node(&redis.url()).await;
    let b = node(&format!("redis://127.0.0.1:{}", proxy.port)).await;
    let mut alice = Peer::user(&b, "alice").await;
    let mut here = Peer::connect(&a).await;
    here.ok("notify", vec![v("alice"), v("before")]).await;
    assert_eq!(&alice.kwarg("Notice", "message").await, &v("before"));

    proxy.swap();
    // B's connection still answers, but hears nothing; within a few probe intervals (300 ms
    // here) B notices, reconnects and subscribes again.
    let (_, n) = notify_until_it_arrives(&mut here, &mut alice, "try").await;
    assert!(
        n > 1,
        "the swap did silence B for a while (else this test proves nothing)"
    );
}

#[tokio::test]
async fn a_user_who_reconnects_at_once_is_reached_by_the_first_event_after() {
    let redis = single_redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut here = Peer::connect(&a).await;
    let tab = Peer::user(&b, "alice").await;
    // Redis holds every command for a moment, so B's unsubscribe (its only alice tab leaves)
    // is still on its way when a new alice tab arrives: that tab must not be settled before B
    // has subscribed again, or the event below would be published in between and lost.
    redis.pause(Duration::from_millis(400)).await;
    drop(tab);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut tab = Peer::user(&b, "alice").await;
    here.ok("notify", vec![v("alice"), v("welcome back")]).await;
    assert_eq!(&tab.kwarg("Notice", "message").await, &v("welcome back"));
}

#[tokio::test]
async fn what_a_server_left_during_an_outage_it_unsubscribes_from_when_redis_is_back() {
    let mut redis = single_redis_or_skip!();
    let port = redis.port;
    let b = node(&redis.url()).await;
    let mut member = Peer::connect(&b).await;
    member.ok("join_room", vec![v("attic")]).await;
    redis.wait_subscribers("ephaptic:g:attic", 1).await;
    redis.kill9();
    drop(member);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis = RedisServer::start_on(port);
    // The server re-subscribes what it holds (ephaptic:all) and leaves the room it no longer
    // has members of, whatever the connection manager re-subscribed by itself.
    redis.wait_subscribers("ephaptic:all", 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.subscribers("ephaptic:g:attic").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the server stayed subscribed to a room it left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions across servers (docs/PROTOCOL.md 5.6): the history is in Redis, so a client that
/// comes back on another server gets what it missed there, once, in order.
#[tokio::test]
async fn a_client_that_comes_back_on_another_server_resumes_there() {
    use common::tab::{Tab, burst, messages, numbers, stream};
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let (mut tab, _, _) = Tab::open(&a, "alice", vec![]).await;
    let (mut stays, _, _) = Tab::open(&b, "alice", vec![]).await;
    redis.wait_subscribers("ephaptic:u:s:alice", 2).await;
    burst(&a, "alice", 0, 2).await;
    for t in [&mut tab, &mut stays] {
        for _ in 0..2 {
            t.next().await;
        }
    }
    let pos = tab.pos.clone();
    drop(tab);
    // Sent from the server it left while it is away.
    burst(&a, "alice", 2, 40).await;
    let (mut back, before, hello) = Tab::open(&b, "alice", pos).await;
    assert_eq!(
        get(stream(&hello, "u"), "recovered"),
        &Value::from(true),
        "{hello}"
    );
    assert_eq!(messages(&before), numbers(2, 40));
    burst(&a, "alice", 42, 1).await;
    let live = back.next().await;
    assert_eq!(messages(&[live]), ["42"]);
    let mut seen = Vec::new();
    while seen.len() < 41 {
        let e = stays.next().await;
        seen.extend(messages(&[e]));
    }
    assert_eq!(
        seen,
        numbers(2, 41),
        "the tab on the other server saw each once"
    );
}

/// A deploy: the server drains (calls in flight finish or say SHUTTING_DOWN, then 1001) while
/// events keep coming through another server; the client resumes on that one and loses none.
#[tokio::test]
async fn a_drain_loses_no_event_for_a_client_that_resumes_elsewhere() {
    use common::tab::{Tab, burst, int, messages, numbers, stream};
    let redis = redis_or_skip!();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let a = start(
        ephaptic::Server::new()
            .redis(redis.url())
            .redis_probe_interval(Duration::from_millis(300))
            .drain_timeout(Duration::from_millis(500))
            .graceful_shutdown(async move {
                let _ = stopped.await;
            }),
    )
    .await;
    let b = node(&redis.url()).await;
    let (mut tab, _, _) = Tab::open(&a, "gina", vec![]).await;
    redis.wait_subscribers("ephaptic:u:s:gina", 1).await;
    burst(&b, "gina", 0, 1).await;
    tab.next().await;
    // One call that finishes within the drain, one that does not.
    tab.c.send(&rpc(10, "sleepy", vec![int(100)])).await;
    tab.c.send(&rpc(11, "sleepy", vec![int(5_000)])).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    stop.send(()).unwrap();
    let mut replies = Vec::new();
    let closed = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut tab.c.ws),
        )
        .await
        .expect("the drain ends within its deadline")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                let f = decode(&b);
                tab.note_frame(&f);
                if has(&f, "id") {
                    replies.push(f);
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c))) => break c,
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(1001));
    let reply = |id: i64| {
        replies
            .iter()
            .find(|r| get(r, "id") == &int(id))
            .unwrap_or_else(|| panic!("no reply to call {id}: {replies:?}"))
    };
    assert_eq!(
        get(reply(10), "result"),
        &int(100),
        "finished within the drain"
    );
    assert_eq!(
        get(get(reply(11), "error"), "code"),
        &v("SHUTTING_DOWN"),
        "stopped at the deadline, with a clear code"
    );
    // Events while it reconnects.
    burst(&b, "gina", 1, 30).await;
    let (_back, before, hello) = Tab::open(&b, "gina", tab.pos.clone()).await;
    assert_eq!(
        get(stream(&hello, "u"), "recovered"),
        &Value::from(true),
        "{hello}"
    );
    assert_eq!(messages(&before), numbers(1, 30));
}

/// Events other servers sent while Redis was away never reached this one: once it is back, a
/// client that speaks sessions is told, per stream, to refetch (a `resync` frame).
#[tokio::test]
async fn after_an_outage_clients_that_speak_sessions_are_told_to_refetch() {
    use common::tab::Tab;
    let mut redis = single_redis_or_skip!();
    let port = redis.port;
    let a = node(&redis.url()).await;
    let (mut tab, _, _) = Tab::open(&a, "hana", vec![]).await;
    tab.c.ok("enter_room", vec![v("den")]).await;
    let mut old = Peer::user(&a, "ivan").await;
    redis.kill9();
    // The server notices (a publish or a probe fails).
    old.ok("shout", vec![v("alone")]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _redis = RedisServer::start_on(port);
    let mut resyncs = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while resyncs.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = tab
            .c
            .recv_raw_within(left)
            .await
            .map(|raw| decode(&raw))
            .unwrap_or_else(|| panic!("resyncs so far: {resyncs:?}"));
        if get(&f, "type") == &v("resync") {
            assert_eq!(get(&f, "reason"), &v("gap"));
            assert!(get(&f, "epoch").as_str().is_some() && get(&f, "offset").as_u64().is_some());
            resyncs.insert(get(&f, "stream").as_str().unwrap().to_owned(), f);
        }
    }
    assert_eq!(
        resyncs.keys().collect::<Vec<_>>(),
        ["b", "g:den", "u"],
        "every stream of the connection"
    );
    // The old client (no `v: 2`) sees its own server's event, and nothing of the resync.
    assert_eq!(&old.kwarg("Notice", "message").await, &v("alone"));
    old.c.expect_silence(Duration::from_millis(300)).await;
}

/// With sessions, a server's own listeners hear its events from Redis: a member that joined a
/// moment before an event to its group must still get it (the publish waits for the new
/// subscription), on this server as on any other.
#[tokio::test]
async fn a_member_hears_an_event_sent_to_its_group_right_after_it_joined() {
    let redis = redis_or_skip!();
    let a = node(&redis.url()).await;
    let mut member = Peer::connect(&a).await;
    for i in 0..20 {
        let room = format!("fresh-{i}");
        assert_eq!(
            member
                .ok("join_and_tell", vec![v(&room), v(&format!("n{i}"))])
                .await,
            Value::from(true)
        );
        assert_eq!(
            &member.kwarg("RoomNote", "text").await,
            &v(&format!("n{i}")),
            "the event right after the join, room {room}"
        );
    }
}

/// An event that never reached Redis (the emitting server's publish queue was full) is lost for
/// the other servers' clients of its stream: they are told to refetch that stream, and only it.
#[tokio::test]
async fn events_that_never_reached_redis_make_the_other_servers_clients_refetch() {
    use common::tab::Tab;
    let redis = single_redis_or_skip!();
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    let (mut tab, _, _) = Tab::open(&b, "kim", vec![]).await;
    let mut old = Peer::user(&b, "kim").await;
    let mut emitter = Peer::connect(&a).await;
    redis.wait_subscribers("ephaptic:u:s:kim", 1).await;
    // Redis holds every command for a while (well under the servers' 2 s timeouts, so neither
    // takes it for an outage): the emitter's publish queue fills.
    redis.pause(Duration::from_millis(700)).await;
    let lost = emitter
        .ok("flood_then_tell", vec![v("kim"), v("ghost")])
        .await;
    assert!(
        lost.as_u64().unwrap() >= 1,
        "the publish queue never filled: {lost:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resyncs = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if resyncs.is_empty() {
            left
        } else {
            left.min(Duration::from_millis(800))
        };
        let Some(raw) = tab.c.recv_raw_within(wait).await else {
            // Quiet for 800 ms after the first resync: what came is all there is.
            assert!(
                !resyncs.is_empty(),
                "kim's tab on the other server was not told to refetch"
            );
            break;
        };
        let f = decode(&raw);
        if get(&f, "type") == &v("resync") {
            assert_eq!(get(&f, "reason"), &v("gap"));
            resyncs.push(get(&f, "stream").as_str().unwrap().to_owned());
        }
    }
    // (Twice at most: a round of notices may have gone out while the queue was still filling.)
    resyncs.dedup();
    assert_eq!(resyncs, ["u"], "only the stream that lost events");
    // The old client of the same identity sees kim's events that made it, nothing else.
    while let Some(raw) = old.c.recv_raw_within(Duration::from_millis(300)).await {
        let f = decode(&raw);
        assert!(is_event(&f, "Tick"), "an old client got {f:?}");
    }
}

/// Issue 23's first finding, across servers: a member that left a group on one server and is
/// let in again on another is not replayed what the group was sent after it left (its tenure
/// is kept in Redis beside the stream), while a member that was only disconnected is.
#[tokio::test]
async fn a_group_resume_elsewhere_never_replays_what_was_sent_after_a_leave() {
    use common::tab::{Tab, int, messages};
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let (mut eve, _, _) = Tab::open(&a, "eve", vec![]).await;
    let (mut dan, _, _) = Tab::open(&a, "dan", vec![]).await;
    for t in [&mut eve, &mut dan] {
        t.c.ok("enter_room", vec![v("vault")]).await;
    }
    let mut speaker = Client::connect(&a).await;
    speaker.ok("room_say", vec![v("vault"), v("public")]).await;
    for t in [&mut eve, &mut dan] {
        let mut seen = Vec::new();
        while seen.is_empty() {
            seen.extend(messages(&[t.next().await]));
        }
        assert_eq!(seen, ["public"]);
    }
    eve.c.ok("leave_room", vec![v("vault")]).await;
    let (eve_pos, dan_pos) = (eve.pos.clone(), dan.pos.clone());
    drop((eve, dan));
    for i in 0..20 {
        speaker
            .ok("room_say", vec![v("vault"), v(&format!("secret {i}"))])
            .await;
    }
    // Both come back on the other server with their positions from before.
    for (user, pos, recovered) in [("eve", eve_pos, false), ("dan", dan_pos, true)] {
        let (mut tab, _, _) = Tab::open(&b, user, pos).await;
        tab.c.send(&rpc(5, "enter_room", vec![v("vault")])).await;
        let mut got = Vec::new();
        let position = loop {
            let f = tab.next().await;
            got.extend(messages(std::slice::from_ref(&f)));
            if get(&f, "type") == &v("position") {
                break f;
            }
        };
        assert_eq!(
            get(&position, "recovered"),
            &Value::from(recovered),
            "{user}"
        );
        if recovered {
            while got.len() < 20 {
                got.extend(messages(&[tab.next().await]));
            }
            assert_eq!(got.len(), 20, "{user}");
        } else {
            assert_eq!(get(&position, "reason"), &v("membership"));
            assert_eq!(get(&position, "replayed"), &int(0));
            assert!(got.is_empty(), "{user} was replayed {got:?}");
        }
    }
}

/// `kick` (parity's: `ephaptic::disconnect(to(user), reason)`) ends alice's three sessions on
/// two servers, with the session-ended code and the reason, within a second; bob, on both,
/// keeps answering calls and receiving events.
#[tokio::test]
async fn kick_ends_a_user_everywhere_and_nobody_else() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let mut alice = vec![
        Peer::user(&a, "alice").await,
        Peer::user(&a, "alice").await,
        Peer::user(&b, "alice").await,
    ];
    let mut bob_a = Peer::user(&a, "bob").await;
    let mut bob_b = Peer::user(&b, "bob").await;

    let started = Instant::now();
    assert_eq!(
        bob_a.ok("kick", vec![v("alice"), v("revoked")]).await,
        Value::from(2),
        "two of alice's connections are on this server"
    );
    for tab in &mut alice {
        let left = Duration::from_secs(1).saturating_sub(started.elapsed());
        assert_eq!(
            tab.c.closed_within(left).await,
            Some((4401, "revoked".to_owned())),
            "closed within 1 s of the kick"
        );
    }
    // Bob, on both servers, is untouched: calls answer, and events cross servers to him.
    assert_eq!(bob_b.ok("whoami", vec![]).await, v("bob"));
    assert_eq!(
        bob_b.ok("notify", vec![v("bob"), v("still here")]).await,
        Value::from(1)
    );
    assert_eq!(bob_a.kwarg("Notice", "message").await, v("still here"));
    assert_eq!(bob_b.kwarg("Notice", "message").await, v("still here"));
}

static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a thing made after `ms` milliseconds; returns its number. Idempotent.
#[expose(idempotent)]
async fn slow_make(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
}

/// A call with an idempotency key (docs/PROTOCOL.md 5.12).
fn keyed(id: i64, name: &str, args: Vec<Value>, key: &str) -> Value {
    with(rpc(id, name, args), "key", v(key))
}

/// A call cut before its reply is read on one server, and sent again with its key on another
/// while it still runs, runs once: the retry waits for the first and gets its answer; a later
/// repeat on the first server gets it too.
#[tokio::test]
async fn a_retry_that_lands_on_another_server_runs_the_call_once() {
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let before = MADE.load(std::sync::atomic::Ordering::SeqCst);
    let mut first = Peer::user(&a, "alice").await;
    first
        .c
        .send(&keyed(1, "slow_make", vec![Value::from(400)], "k-9"))
        .await;
    // Read by the server, then cut.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(first);

    let mut retry = Peer::user(&b, "alice").await;
    retry
        .c
        .send(&keyed(2, "slow_make", vec![Value::from(400)], "k-9"))
        .await;
    let answer = retry.c.recv().await;
    assert_eq!(get(&answer, "id"), &Value::from(2));
    let n = get(&answer, "result").clone();

    let mut later = Peer::user(&a, "alice").await;
    later
        .c
        .send(&keyed(3, "slow_make", vec![Value::from(400)], "k-9"))
        .await;
    assert_eq!(get(&later.c.recv().await, "result"), &n);
    assert_eq!(
        MADE.load(std::sync::atomic::Ordering::SeqCst) - before,
        1,
        "made once across two servers"
    );
    // Another caller's same key is its own.
    let mut bob = Peer::user(&b, "bob").await;
    bob.c
        .send(&keyed(4, "slow_make", vec![Value::from(0)], "k-9"))
        .await;
    assert_ne!(get(&bob.c.recv().await, "result"), &n);
}

/// On a Redis Cluster (`EPHAPTIC_TEST_REDIS=cluster`), each stream travels on its own shard
/// channel (`SPUBLISH` from the append script, `SSUBSCRIBE`), never on classic pub/sub, which a
/// cluster copies to every node; and the streams of many users spread over the shards.
#[tokio::test]
async fn on_a_cluster_streams_travel_on_shard_channels_spread_over_the_shards() {
    only_on_a_cluster!();
    let redis = redis_or_skip!();
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let users = twelve_users();
    let mut tabs = Vec::new();
    for user in &users {
        tabs.push(Peer::user(&b, user).await);
    }
    subscribed(&redis, &users).await;
    let mut sender = Peer::connect(&a).await;
    for user in &users {
        sender.ok("notify", vec![v(user), v("hi")]).await;
    }
    for tab in &mut tabs {
        assert_eq!(&tab.kwarg("Notice", "message").await, &v("hi"));
    }
    let per_node: Vec<u64> = redis
        .ports()
        .iter()
        .map(|p| common::redis_server::calls_on(*p, "spublish"))
        .collect();
    assert!(
        per_node.iter().sum::<u64>() >= users.len() as u64,
        "every event went out with SPUBLISH: {per_node:?}"
    );
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "twelve users' streams spread over more than one shard: {per_node:?}"
    );
    assert_eq!(redis.calls("publish"), 0, "no classic pub/sub on a cluster");
    assert_eq!(redis.calls("subscribe"), 0);
    assert!(redis.calls("ssubscribe") >= users.len() as u64);
}

/// On a Redis Cluster, a dead shard costs only the streams on it: the events of the other
/// shards' streams keep arriving live, the dead shard's listeners are told to refetch once it is
/// back (nothing silently lost), and then hear their stream live again.
#[tokio::test]
async fn on_a_cluster_a_dead_shard_costs_only_its_own_streams() {
    only_on_a_cluster!();
    let mut redis = redis_or_skip!();
    let (users, mut tabs, mut sender) = twelve_tabs(&redis).await;
    let cluster = redis.cluster().unwrap();
    let holders: Vec<u16> = users
        .iter()
        .map(|u| cluster.holder(&format!("ephaptic:{{u:s:{u}}}:m")).unwrap())
        .collect();
    let victim = holders[0];
    assert!(
        holders.iter().any(|h| *h != victim),
        "twelve streams on one shard: {holders:?}"
    );
    cluster.kill9(victim);
    three_rounds(&mut sender, &users).await;
    // The other shards' streams: every event, live and in order (a resync may come beside them:
    // this server lost a node's connection and cannot tell which of its streams it carried).
    for ((tab, holder), user) in tabs.iter_mut().zip(&holders).zip(&users) {
        if *holder != victim {
            live_throughout(tab, user).await;
        }
    }
    cluster.restart(victim);
    for (i, (tab, holder)) in tabs.iter_mut().zip(&holders).enumerate() {
        if *holder == victim {
            // Told to refetch its stream (what it missed is not silently gone)...
            let got = frames_until(tab, "resync u", Duration::from_secs(15)).await;
            assert!(
                got.iter().any(|g| g == "resync u"),
                "{}: no resync after its shard came back: {got:?}",
                users[i]
            );
            assert!(
                got.iter().all(|g| g.starts_with("resync")),
                "{}: events of a dead shard arrived: {got:?}",
                users[i]
            );
            // ...and hears it live again.
            hears_live_again(tab, &mut sender, &users[i]).await;
        }
    }
}

/// Sends `user` events until one arrives live (at most 20 tries, a second each): its stream
/// works again. Each sent before it that did not arrive must be followed by a `resync`: nothing
/// is silently lost. (After a lost node, at the latest once the server's connection to the
/// cluster is renewed, which tells it to refetch once more.)
async fn hears_live_again(tab: &mut common::tab::Tab, sender: &mut Peer, user: &str) -> bool {
    let mut resynced = false;
    let mut missed = Vec::new();
    for n in 0..20 {
        let after = format!("after {n}");
        sender.ok("notify", vec![v(user), v(&after)]).await;
        let got = frames_until(tab, &after, Duration::from_secs(1)).await;
        if got.iter().any(|g| g.starts_with("resync u")) {
            missed.clear();
            resynced = true;
        }
        if got.contains(&after) {
            assert!(
                missed.is_empty(),
                "{user}: {missed:?} never arrived and no resync followed"
            );
            return resynced;
        }
        missed.push(after);
    }
    panic!("{user}: never heard live again");
}

/// On a Redis Cluster, a slot that moves to another shard (a reshard) costs only the streams in
/// it: the others flow live throughout, and a stream that moved is heard live again, anything
/// it missed followed by a `resync`.
#[tokio::test]
async fn on_a_cluster_a_moved_slot_costs_only_its_own_streams() {
    only_on_a_cluster!();
    let mut redis = redis_or_skip!();
    let (users, mut tabs, mut sender) = twelve_tabs(&redis).await;
    let cluster = redis.cluster().unwrap();
    cluster.move_slot_of("ephaptic:{u:s:user0}:m");
    three_rounds(&mut sender, &users).await;
    for (tab, user) in tabs.iter_mut().zip(&users).skip(1) {
        let got = frames_until(tab, "3", Duration::from_secs(15)).await;
        let events: Vec<&String> = got.iter().filter(|g| !g.starts_with("resync")).collect();
        assert_eq!(
            events,
            ["1", "2", "3"],
            "{user}, whose slot stayed: {got:?}"
        );
        assert!(
            got.iter().all(|g| !g.starts_with("resync")),
            "{user}, whose slot stayed, was told to refetch: {got:?}"
        );
    }
    // The moved stream: what it was sent since the move arrived, or a resync follows.
    nothing_silently_lost(&mut tabs[0], &mut sender, "user0").await;
}

/// What `tab` receives until `want` (an event's message, or `resync <stream>`), at most `limit`.
async fn frames_until(tab: &mut common::tab::Tab, want: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while !got.iter().any(|g| g == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(raw) = tab.c.recv_raw_within(left).await else {
            break;
        };
        let f = decode(&raw);
        tab.note_frame(&f);
        match get(&f, "type").as_str() {
            Some("event") => got.extend(common::tab::messages(&[f])),
            Some("resync") => got.push(format!("resync {}", get(&f, "stream").as_str().unwrap())),
            _ => {}
        }
    }
    got
}

/// A Sentinel or Cluster URL that cannot be read stops the start with a message that says what
/// to write (and never shows the password); so does compatibility mode on a cluster, which the
/// Python servers cannot use.
#[tokio::test]
async fn a_url_that_cannot_be_used_stops_the_start_saying_what_to_write() {
    async fn refused(server: ephaptic::Server) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), server.serve_listener(listener))
            .await
            .expect("the start is refused at once")
            .expect_err("the start is refused")
            .to_string()
    }
    let e =
        refused(ephaptic::Server::new().redis("redis+sentinel://:s3cret@127.0.0.1:26379")).await;
    assert!(
        e.contains("names no master") && e.contains("MASTER_NAME") && !e.contains("s3cret"),
        "{e}"
    );
    let e = refused(ephaptic::Server::new().redis("redis+cluster://127.0.0.1:7000/0")).await;
    assert!(e.contains("no databases"), "{e}");
    let e = refused(
        ephaptic::Server::new()
            .redis("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
            .redis_compat(true),
    )
    .await;
    assert!(
        e.contains("Redis Cluster") && e.contains("compatibility"),
        "{e}"
    );
}

/// Two servers on `redis`, a tab of each of twelve users on the second, and a sender on the
/// first that has sent each user one event (so every stream has its keys on its shard).
async fn twelve_tabs(redis: &RedisServer) -> (Vec<String>, Vec<common::tab::Tab>, Peer) {
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let users = twelve_users();
    let mut tabs = Vec::new();
    for user in &users {
        tabs.push(common::tab::Tab::open(&b, user, vec![]).await.0);
    }
    subscribed(redis, &users).await;
    let mut sender = Peer::connect(&a).await;
    for user in &users {
        sender.ok("notify", vec![v(user), v("0")]).await;
    }
    for tab in &mut tabs {
        assert_eq!(common::tab::messages(&[tab.next().await]), ["0"]);
    }
    (users, tabs, sender)
}

/// Events "1", "2" and "3" to each of `users`.
async fn three_rounds(sender: &mut Peer, users: &[String]) {
    for round in 1..=3 {
        for user in users {
            sender
                .ok("notify", vec![v(user), v(&round.to_string())])
                .await;
        }
    }
}

/// `user`'s stream, on a shard that stayed up, got "1", "2" and "3" live and in order (a resync
/// may come beside them: a server that lost a node's connection cannot tell which streams it
/// carried).
async fn live_throughout(tab: &mut common::tab::Tab, user: &str) {
    let got = frames_until(tab, "3", Duration::from_secs(15)).await;
    let events: Vec<&String> = got.iter().filter(|g| !g.starts_with("resync")).collect();
    assert_eq!(events, ["1", "2", "3"], "{user}, on a live shard: {got:?}");
}

/// `user`'s stream, whose shard failed over or whose slot moved: it got "1", "2" and "3", or a
/// resync follows; and it is heard live again.
async fn nothing_silently_lost(tab: &mut common::tab::Tab, sender: &mut Peer, user: &str) {
    let got = frames_until(tab, "3", Duration::from_secs(3)).await;
    let whole = ["1", "2", "3"].iter().all(|n| got.iter().any(|g| g == n));
    let resynced = got.iter().any(|g| g == "resync u");
    let resynced_later = hears_live_again(tab, sender, user).await;
    assert!(
        whole || resynced || resynced_later,
        "{user} lost events silently: {got:?}"
    );
}

/// Twelve users: enough streams that a three-shard cluster holds some on each shard.
fn twelve_users() -> Vec<String> {
    (0..12).map(|i| format!("user{i}")).collect()
}

/// Waits until a server subscribes to each of `users`' channels.
async fn subscribed(redis: &RedisServer, users: &[String]) {
    for user in users {
        redis
            .wait_subscribers(&format!("ephaptic:u:s:{user}"), 1)
            .await;
    }
}

/// On a Redis Cluster with replicas, a master that dies is replaced by its replica (the cluster
/// fails the shard over): the other shards' streams flow live throughout, and the failed-over
/// shard's streams are heard live again, anything they missed followed by a `resync`.
#[tokio::test]
async fn on_a_cluster_a_failed_over_shard_costs_only_its_own_streams() {
    use common::redis_cluster::Cluster;
    only_on_a_cluster!();
    if !RedisServer::installed() {
        return;
    }
    let mut redis = RedisServer::of(Cluster::start_with_replicas(3, 1));
    let (users, mut tabs, mut sender) = twelve_tabs(&redis).await;
    let cluster = redis.cluster().unwrap();
    let holders: Vec<u16> = users
        .iter()
        .map(|u| cluster.holder(&format!("ephaptic:{{u:s:{u}}}:m")).unwrap())
        .collect();
    let victim = holders[0];
    cluster.kill9(victim);
    // The replica takes over (cluster-node-timeout 2 s, then an election).
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster
        .holder("ephaptic:{u:s:user0}:m")
        .is_none_or(|h| h == victim)
    {
        assert!(Instant::now() < deadline, "the replica never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    three_rounds(&mut sender, &users).await;
    for ((tab, holder), user) in tabs.iter_mut().zip(&holders).zip(&users) {
        if *holder != victim {
            live_throughout(tab, user).await;
        }
    }
    for ((tab, holder), user) in tabs.iter_mut().zip(&holders).zip(&users) {
        if *holder == victim {
            nothing_silently_lost(tab, &mut sender, user).await;
        }
    }
}
