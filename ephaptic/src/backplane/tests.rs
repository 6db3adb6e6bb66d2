//! The backplane's fault logic on the in-process driver: several servers in this process, no
//! `redis-server`. Each test asserts what clients receive: every event once and in order, or
//! one `resync` per affected stream. (The same logic against a real Redis: tests/tests/redis.rs.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::in_process::{Bus, InProcess};
use super::{Redis, Settings};
use crate::handler::Audience;
use crate::identity::Identity;
use crate::runtime::delivery::{Backplane, Delivery, Keep, Outgoing};
use crate::runtime::history::Retentions;
use crate::session::outbound::{self, Policy, Receiver, SlowClient};
use crate::session::{Connection, Hub};

/// One server: its hub, its delivery through the backplane, and its driver's faults.
struct Node {
    hub: Arc<Hub>,
    limiter: Arc<dyn crate::runtime::ratelimit::Remote>,
    presence: Arc<dyn crate::runtime::presence::Store>,
    answers: Arc<dyn crate::runtime::window::Shared>,
    delivery: Box<dyn Delivery>,
    driver: Arc<InProcess>,
    next_id: std::sync::atomic::AtomicU64,
}

fn node(bus: &Arc<Bus>, sessions: bool) -> Node {
    let driver = InProcess::new(bus);
    let mut settings = Settings::new("in-process://test".into());
    settings.probe_every = Duration::from_millis(100);
    let backplane = Box::new(Redis::with_driver(settings, driver.clone()));
    let hub = Arc::new(Hub::new(backplane.interest()));
    let limiter = backplane.limiter().expect("a shared limiter on any driver");
    let (presence, _) = backplane.presence_store(Duration::from_secs(30));
    let answers = backplane.answers().expect("shared answers on any driver");
    let delivery = backplane.into_delivery(hub.clone(), sessions.then(Retentions::default));
    delivery.opened();
    Node {
        hub,
        limiter,
        presence,
        answers,
        delivery,
        driver,
        next_id: std::sync::atomic::AtomicU64::new(1),
    }
}

/// A client of `node`, as `user` (anonymous without), speaking sessions or not.
struct Client {
    conn: Arc<Connection>,
    rx: Receiver,
}

impl Node {
    fn client(&self, user: Option<&str>, sessions: bool) -> Client {
        let policy = Arc::new(Policy::new(4096, SlowClient::Disconnect));
        let (out, rx) = outbound::channel(policy);
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = Connection::new(id, None, None, out);
        self.hub.add(&conn);
        if sessions {
            conn.start_session(Vec::new());
        }
        if let Some(user) = user
            && let Some(identity) = conn.set_identity(Identity::from(user))
        {
            self.hub.identify(&conn, identity);
        }
        Client { conn, rx }
    }

    fn emit(&self, audience: &Audience, message: &str, keep: Keep) -> crate::Sent {
        let frame =
            crate::handler::encode("Notice", &Notice { message }).expect("a notice encodes");
        self.delivery.deliver(Outgoing {
            audience,
            name: "Notice",
            frame,
            keep,
        })
    }
}

#[derive(serde::Serialize)]
struct Notice<'a> {
    message: &'a str,
}

/// What a client received, decoded: `("event", message)` or `("resync", stream)`.
fn frames(client: &mut Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(frame) = client.rx.try_recv() {
        out.push(read(&frame));
    }
    out
}

fn read(frame: &Bytes) -> (String, String) {
    let value: rmpv::Value = rmp_serde::from_slice(frame).expect("a frame");
    let get = |v: &rmpv::Value, k: &str| {
        v.as_map()
            .and_then(|m| m.iter().find(|(key, _)| key.as_str() == Some(k)))
            .map(|(_, v)| v.clone())
    };
    let kind = get(&value, "type")
        .and_then(|t| t.as_str().map(str::to_owned))
        .unwrap_or_default();
    let what = match kind.as_str() {
        "event" => get(&value, "payload")
            .and_then(|p| get(&p, "kwargs"))
            .and_then(|k| get(&k, "message"))
            .and_then(|m| m.as_str().map(str::to_owned)),
        _ => get(&value, "stream").and_then(|s| s.as_str().map(str::to_owned)),
    };
    (kind, what.unwrap_or_default())
}

/// Waits (at most 5 s) until `client` has received `n` frames, and returns them.
async fn receive(client: &mut Client, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.len() < n {
        got.extend(frames(client));
        if got.len() >= n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} frames: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    got
}

/// Waits until `node`'s backplane has subscribed to what it holds (its events come back).
async fn settled(nodes: &[&Node]) {
    // A round of probes: subscriptions are made within one tick of the task.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for n in nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while n.delivery.stats().connected != Some(true) {
            assert!(tokio::time::Instant::now() < deadline, "never connected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Waits for one `resync` per stream of `streams` (in any order), and asserts that is what came.
async fn assert_resyncs(client: &mut Client, streams: &[&str]) {
    let mut got = receive(client, streams.len()).await;
    got.sort();
    let want: Vec<(String, String)> = streams
        .iter()
        .map(|s| ("resync".to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(got, want);
}

fn messages(frames: &[(String, String)]) -> Vec<String> {
    frames
        .iter()
        .filter(|(kind, _)| kind == "event")
        .map(|(_, m)| m.clone())
        .collect()
}

#[tokio::test]
async fn events_cross_servers_once_each_and_in_order() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut here = a.client(Some("ann"), false);
    let mut there = b.client(Some("ann"), false);
    settled(&[&a, &b]).await;
    for i in 0..100 {
        let sent = a.emit(
            &Audience::Users(vec!["ann".into()]),
            &i.to_string(),
            Keep::All,
        );
        // What `emit` says: one connection here, and handed on for the other servers (whose
        // connections it does not count).
        assert_eq!((sent.local, sent.published), (1, true));
    }
    let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(messages(&receive(&mut there, 100).await), want);
    assert_eq!(messages(&receive(&mut here, 100).await), want);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(frames(&mut there).is_empty() && frames(&mut here).is_empty());
}

#[tokio::test]
async fn an_outage_of_the_sender_mid_publish_makes_the_other_servers_clients_refetch_once() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut kim = b.client(Some("kim"), true);
    let mut bob = b.client(Some("bob"), true);
    let _sender = a.client(None, false);
    settled(&[&a, &b]).await;
    a.emit(&Audience::Users(vec!["kim".into()]), "before", Keep::All);
    assert_eq!(messages(&receive(&mut kim, 1).await), ["before"]);

    // The engine refuses A's publishes: kim's events from A never reach it.
    a.driver.refuse_publishes(true);
    for i in 0..5 {
        a.emit(
            &Audience::Users(vec!["kim".into()]),
            &format!("lost {i}"),
            Keep::All,
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.driver.refuse_publishes(false);
    // Once A publishes again it tells the others; kim's tab is told to refetch its stream, once.
    let got = receive(&mut kim, 1).await;
    assert_eq!(got, [("resync".to_owned(), "u".to_owned())]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        frames(&mut kim).is_empty(),
        "one resync, not one per lost event"
    );
    // bob lost nothing and is told nothing.
    assert!(frames(&mut bob).is_empty());
    // And it goes on.
    a.emit(&Audience::Users(vec!["kim".into()]), "after", Keep::All);
    assert_eq!(messages(&receive(&mut kim, 1).await), ["after"]);
}

#[tokio::test]
async fn a_partition_that_heals_resyncs_each_stream_of_each_client_once() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut kim = b.client(Some("kim"), true);
    b.hub.join(&kim.conn, "den");
    let mut old = b.client(Some("old"), false);
    settled(&[&a, &b]).await;

    b.driver.partition();
    // Sent while B hears nothing.
    a.emit(&Audience::Everyone, "missed", Keep::All);
    a.emit(&Audience::Group("den".into()), "missed too", Keep::All);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(messages(&frames(&mut kim)).is_empty());
    b.driver.heal();
    // Once B is subscribed again: one resync per stream the client reads, and nothing more.
    assert_resyncs(&mut kim, &["b", "g:den", "u"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(frames(&mut kim).is_empty());
    // A client that does not speak sessions is not sent what it would not understand.
    assert!(frames(&mut old).is_empty());
    // Live again.
    a.emit(&Audience::Everyone, "back", Keep::All);
    assert_eq!(messages(&receive(&mut kim, 1).await), ["back"]);
}

#[tokio::test]
async fn a_full_publish_queue_drops_and_tells_the_other_servers_instead_of_growing() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut kim = b.client(Some("kim"), true);
    settled(&[&a, &b]).await;
    // A slow engine: the publisher waits 300 ms per batch while the queue fills.
    a.driver.delay(Duration::from_millis(300));
    let mut unpublished = 0;
    for i in 0..(super::PUBLISH_QUEUE + 2000) {
        unpublished += usize::from(
            !a.emit(&Audience::Everyone, &i.to_string(), Keep::All)
                .published,
        );
    }
    assert!(a.delivery.stats().dropped > 0, "the queue is bounded");
    assert_eq!(
        unpublished as u64,
        a.delivery.stats().dropped,
        "emit says which events did not go to the other servers"
    );
    a.driver.delay(Duration::ZERO);
    // kim hears what got through, and is told to refetch the stream that lost events: once a
    // second at most while events are lost, not once per lost event.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut got = Vec::new();
    while !got
        .iter()
        .any(|(kind, _): &(String, String)| kind == "resync")
    {
        got.extend(frames(&mut kim));
        assert!(tokio::time::Instant::now() < deadline, "no resync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    got.extend(frames(&mut kim));
    let events = messages(&got);
    let numbers: Vec<usize> = events.iter().map(|m| m.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(numbers.len() < super::PUBLISH_QUEUE + 2000);
    let resyncs: Vec<&(String, String)> = got.iter().filter(|(k, _)| k == "resync").collect();
    assert!(
        resyncs.iter().all(|(_, stream)| stream == "b"),
        "{resyncs:?}"
    );
    let seconds = started.elapsed().as_secs() as usize + 1;
    assert!(
        resyncs.len() <= seconds + 1,
        "{} resyncs in {seconds} s",
        resyncs.len()
    );
}

#[tokio::test]
async fn a_failover_is_followed_counted_and_resynced_once_per_stream() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut kim = b.client(Some("kim"), true);
    b.hub.join(&kim.conn, "den");
    settled(&[&a, &b]).await;
    a.emit(&Audience::Group("den".into()), "before", Keep::All);
    assert_eq!(messages(&receive(&mut kim, 1).await), ["before"]);

    // B's master fails over: the new one holds none of B's subscriptions, so what A sends now
    // would never reach B had B not followed.
    b.driver.fail_over();
    a.emit(&Audience::Group("den".into()), "during", Keep::All);
    // At its next probe tick B asks where the master is, follows, subscribes again, and tells
    // its client to refetch each stream it reads, once.
    assert_resyncs(&mut kim, &["b", "g:den", "u"]).await;
    let stats = b.delivery.stats();
    assert_eq!((stats.failovers, stats.resyncs), (1, 3));
    assert_eq!(a.delivery.stats().failovers, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(frames(&mut kim).is_empty(), "one resync per stream");
    a.emit(&Audience::Group("den".into()), "after", Keep::All);
    assert_eq!(messages(&receive(&mut kim, 1).await), ["after"]);
}

#[tokio::test]
async fn a_subscription_gone_deaf_is_found_by_the_probe_and_replaced() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, false), node(&bus, false));
    let mut there = b.client(Some("ann"), false);
    settled(&[&a, &b]).await;
    b.driver.go_deaf();
    a.emit(&Audience::Users(vec!["ann".into()]), "unheard", Keep::Not);
    // Two probe ticks without the probe coming back: a new connection, subscribed again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b
        .driver
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    settled(&[&b]).await;
    a.emit(&Audience::Users(vec!["ann".into()]), "heard", Keep::Not);
    let got = receive(&mut there, 1).await;
    assert_eq!(messages(&got), ["heard"]);
}

#[tokio::test]
async fn rate_limits_are_shared_by_the_servers_and_left_to_each_during_an_outage() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, false), node(&bus, false));
    let minute = Duration::from_secs(60);
    let check = |n: &Node| n.limiter.check("limited", "u:s:ann".to_owned(), 2, minute);
    assert_eq!(check(&a).await, Ok(None));
    assert_eq!(check(&b).await, Ok(None));
    // The third call in the minute is refused, whichever server it reaches.
    let wait = check(&a).await.expect("decided").expect("a wait");
    assert!(wait > Duration::from_secs(20) && wait <= minute, "{wait:?}");
    assert!(check(&b).await.expect("decided").is_some());
    // Another caller has its own limit.
    let bob = b.limiter.check("limited", "u:s:bob".to_owned(), 2, minute);
    assert_eq!(bob.await, Ok(None));
    // Cut off, a server says so at once, and the runtime decides locally.
    a.driver.partition();
    assert_eq!(check(&a).await, Err(()));
}

#[tokio::test]
async fn presence_is_one_store_for_the_servers_on_an_engine() {
    use crate::runtime::presence::Entry;
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, false), node(&bus, false));
    let entry = |member: &str, conn: &str| Entry {
        member: member.to_owned(),
        conn: conn.to_owned(),
        meta: Bytes::from_static(b"\x80"),
    };
    a.presence
        .track("room", entry("s:ann", "a:1"))
        .await
        .unwrap();
    b.presence
        .track("room", entry("s:ann", "b:1"))
        .await
        .unwrap();
    b.presence
        .track("room", entry("s:bob", "b:2"))
        .await
        .unwrap();
    // Either server lists every member with its connections on both.
    let listing = a.presence.list("room", 10).await.unwrap();
    assert_eq!((listing.users, listing.connections), (2, 3));
    a.presence.untrack("room", "s:ann", "a:1").await.unwrap();
    let listing = b.presence.list("room", 10).await.unwrap();
    assert_eq!((listing.users, listing.connections), (2, 2));
}

#[tokio::test]
async fn a_refused_batch_reaches_the_senders_own_listeners_and_a_timed_out_one_only_once() {
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, true), node(&bus, true));
    let mut here = a.client(Some("kim"), true);
    let _there = b.client(Some("kim"), true);
    settled(&[&a, &b]).await;
    let to_kim = Audience::Users(vec!["kim".into()]);

    // Refused: the events never reach the engine, so the sender delivers them to its own
    // listeners at once (without a position), and the other servers are told to resync.
    a.driver.refuse_publishes(true);
    a.emit(&to_kim, "refused", Keep::All);
    let got = receive(&mut here, 1).await;
    assert_eq!(messages(&got), ["refused"]);
    a.driver.refuse_publishes(false);
    settled(&[&a]).await;
    frames(&mut here);

    // Timed out after running: the events come back through the engine, so delivering them
    // here too would show them twice.
    a.driver.time_out_batches(true);
    a.emit(&to_kim, "maybe", Keep::All);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.driver.time_out_batches(false);
    let got = frames(&mut here);
    assert_eq!(messages(&got), ["maybe"], "once: {got:?}");
}

#[tokio::test]
async fn idempotent_answers_are_one_window_for_the_servers_and_each_ones_own_when_cut_off() {
    use crate::runtime::window::{Kept, Remote};
    let bus = Arc::new(Bus::default());
    let (a, b) = (node(&bus, false), node(&bus, false));
    let window = Duration::from_secs(60);
    let slot = || "make\0s:ann\0k-1".to_owned();
    assert_eq!(a.answers.claim(slot(), window).await, Ok(Remote::Mine));
    // The retry on the other server finds it running, then answered.
    assert_eq!(b.answers.claim(slot(), window).await, Ok(Remote::Running));
    let answer = Kept::Answer(Bytes::from_static(b"\xa6result\x07"));
    a.answers.settle(slot(), Some(answer.clone()), window).await;
    assert_eq!(
        b.answers.claim(slot(), window).await,
        Ok(Remote::Done(answer))
    );
    // Another caller's same key is free; a call that ended without an answer lets its slot go.
    let bob = || "make\0s:bob\0k-1".to_owned();
    assert_eq!(b.answers.claim(bob(), window).await, Ok(Remote::Mine));
    b.answers.settle(bob(), None, window).await;
    assert_eq!(a.answers.claim(bob(), window).await, Ok(Remote::Mine));
    // Cut off, a server says so at once, and the runtime's own window decides.
    a.driver.partition();
    assert_eq!(a.answers.claim(slot(), window).await, Err(()));
}
