//! Redis that fails over: a master, a replica and a sentinel (real `redis-server` and
//! `redis-sentinel` on free loopback ports), two ephaptic servers on
//! `redis+sentinel://.../mymaster`, a user on each. The master is killed (SIGKILL) while events
//! cross between the servers every 100 ms: delivery must resume by itself, and each client's
//! events plus the `resync`s it was sent must cover every event emitted: none silently lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::redis_sentinel::Sentinel;
use common::redis_server::{RedisServer, node};
use common::tab::{Tab, messages};
use common::*;
use ephaptic::{Value, expose};

// parity's functions (notify, ...).
use parity as _;

/// This server's Redis figures: outages, failovers and resyncs sent.
#[expose]
async fn faults() -> Value {
    let m = ephaptic::metrics().expect("a server runs");
    map(vec![
        ("outages", Value::from(m.redis_outages)),
        ("failovers", Value::from(m.redis_failovers)),
        ("resyncs", Value::from(m.redis_resyncs)),
    ])
}

/// What a tab saw: each event's number and when, each `resync` and how many events had been
/// emitted by then.
#[derive(Default)]
struct Seen {
    events: Vec<(u32, Instant)>,
    resyncs: Vec<u32>,
}

/// Reads `tab` until `stop`, noting what it sees against the `emitted` count.
fn watch(
    mut tab: Tab,
    emitted: Arc<AtomicU32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while !stop.load(SeqCst) {
            let Some(raw) = tab.c.recv_raw_within(Duration::from_millis(100)).await else {
                continue;
            };
            let frame = decode(&raw);
            tab.note_frame(&frame);
            match get(&frame, "type").as_str() {
                Some("event") => {
                    for m in messages(&[frame]) {
                        seen.events.push((m.parse().unwrap(), Instant::now()));
                    }
                }
                Some("resync") => seen.resyncs.push(emitted.load(SeqCst)),
                _ => {}
            }
        }
        seen
    })
}

/// Every event `0..emitted` that `seen` lacks must have been emitted before a resync it got.
fn assert_covered(who: &str, seen: &Seen, emitted: u32) {
    let got: std::collections::BTreeSet<u32> = seen.events.iter().map(|(i, _)| *i).collect();
    let mut numbers: Vec<u32> = seen.events.iter().map(|(i, _)| *i).collect();
    let before = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), before, "{who}: an event arrived twice");
    for i in 0..emitted {
        if got.contains(&i) {
            continue;
        }
        assert!(
            seen.resyncs.iter().any(|&at| at > i),
            "{who}: event {i} never arrived and no resync followed it (resyncs at {:?}, got {got:?})",
            seen.resyncs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_followed_and_no_event_is_silently_lost() {
    fail_over_while_events_cross(How::Kill).await;
}

/// `SENTINEL FAILOVER`: the old master still answers, as a replica now (its writes refused);
/// the servers find the move at a probe tick and follow it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_the_sentinel_is_told_to_make_is_followed_too() {
    fail_over_while_events_cross(How::Command).await;
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    /// SIGKILL of the master.
    Kill,
    /// `SENTINEL FAILOVER mymaster`.
    Command,
}

async fn fail_over_while_events_cross(how: How) {
    if !RedisServer::installed() {
        return;
    }
    let mut master = RedisServer::start();
    let _replica = RedisServer::replica_of(master.port);
    let sentinel = Sentinel::start(master.port, "mymaster");
    sentinel.wait_replicas("mymaster", 1);
    let url = sentinel.url("mymaster");
    let (a, b) = (node(&url).await, node(&url).await);
    let (alice, _, _) = Tab::open(&a, "alice", vec![]).await;
    let (bob, _, _) = Tab::open(&b, "bob", vec![]).await;
    let (mut from_a, mut from_b) = (Client::connect(&a).await, Client::connect(&b).await);
    // Both servers hear each other before the test starts.
    let (mut probe_a, mut probe_b) = (Client::connect(&a).await, Client::connect(&b).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while master_subscribers(master.port, "ephaptic:u:s:alice") < 1
        || master_subscribers(master.port, "ephaptic:u:s:bob") < 1
    {
        assert!(Instant::now() < deadline, "the servers never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let emitted = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_alice = watch(alice, emitted.clone(), stop.clone());
    let watch_bob = watch(bob, emitted.clone(), stop.clone());

    // Every 100 ms, event i crosses servers: from B to alice (on A) and from A to bob (on B).
    let mut killed_at = None;
    let mut i = 0u32;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        send(&mut from_b, "alice", i).await;
        send(&mut from_a, "bob", i).await;
        emitted.store(i + 1, SeqCst);
        i += 1;
        if i == 15 {
            match how {
                How::Kill => master.kill9(),
                How::Command => {
                    let said = common::redis_server::cli(
                        sentinel.port,
                        &["SENTINEL", "FAILOVER", "mymaster"],
                    );
                    assert!(said.contains("OK"), "SENTINEL FAILOVER: {said}");
                }
            }
            killed_at = Some((Instant::now(), i));
        }
        // Ten more once the sentinel named the new master and both servers follow it.
        if let Some((_, at)) = killed_at
            && i > at + 10
            && sentinel.master_port("mymaster") != Some(master.port)
            && follows(&mut probe_a).await
            && follows(&mut probe_b).await
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "the servers never followed the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ten more after both follow: these must all arrive.
    let resumed_from = i;
    for _ in 0..10 {
        send(&mut from_b, "alice", i).await;
        send(&mut from_a, "bob", i).await;
        i += 1;
        emitted.store(i, SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    let (alice, bob) = (watch_alice.await.unwrap(), watch_bob.await.unwrap());
    let (killed_at, killed_after) = killed_at.unwrap();
    let total = emitted.load(SeqCst);

    for (who, seen) in [("alice", &alice), ("bob", &bob)] {
        let missing: Vec<u32> = (0..total)
            .filter(|n| !seen.events.iter().any(|(i, _)| i == n))
            .collect();
        eprintln!(
            "{who}: {} of {total} events live, missing {missing:?}, resyncs after {:?} events",
            seen.events.len(),
            seen.resyncs
        );
        assert_covered(who, seen, total);
        // Everything sent once both servers followed arrived, live.
        let got: Vec<u32> = seen.events.iter().map(|(i, _)| *i).collect();
        for n in resumed_from..total {
            assert!(
                got.contains(&n),
                "{who}: event {n}, sent after the failover, is missing"
            );
        }
        // Delivery across servers resumed within 10 s of the kill.
        let first_after = seen
            .events
            .iter()
            .find(|(n, _)| *n >= killed_after)
            .map(|(_, at)| *at)
            .expect("an event sent after the kill arrived");
        assert!(
            first_after.duration_since(killed_at) < Duration::from_secs(10),
            "{who}: delivery resumed {:?} after the kill",
            first_after.duration_since(killed_at)
        );
    }
    // The failover was noticed, counted, and what it cost was resynced.
    for (probe, who) in [(&mut probe_a, "A"), (&mut probe_b, "B")] {
        let f = probe.ok("faults", vec![]).await;
        assert!(
            get(&f, "failovers").as_u64() >= Some(1),
            "{who} counted no failover: {f}"
        );
    }
}

/// Calls `notify(user, "<i>")` without waiting for the answer.
async fn send(c: &mut Client, user: &str, i: u32) {
    c.send(&rpc(i, "notify", vec![v(user), v(&i.to_string())]))
        .await;
}

/// Whether the server behind `probe` has followed a failover (and answers).
async fn follows(probe: &mut Client) -> bool {
    let f = probe.ok("faults", vec![]).await;
    get(&f, "failovers").as_u64() >= Some(1)
}

fn master_subscribers(port: u16, channel: &str) -> i64 {
    common::redis_server::cli(port, &["PUBSUB", "NUMSUB", channel])
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
