//! Calls that take effect once (docs/PROTOCOL.md 5.12), over real loopback WebSockets: a call of
//! an `#[expose(idempotent)]` function sent with a key runs once per caller and key; its repeat
//! (after the connection was cut before the reply was read, or while it still runs) gets the
//! first call's answer, and its channel is announced once. Across two servers on one Redis:
//! `redis.rs`. The memory 100,000 keys cost: `a_hundred_thousand_keys_cost_bounded_memory`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::child::Parity;
use common::*;
use ephaptic::{IdempotencySettings, Server, Value, expose};

/// The token is the identity.
#[ephaptic::identity_loader]
async fn load(token: Option<String>) -> Option<String> {
    token
}

static MADE: AtomicU64 = AtomicU64::new(0);

#[ephaptic::model]
#[derive(Debug, Clone)]
pub struct Thing {
    pub id: u64,
    pub title: String,
}

/// Makes a thing after `ms` milliseconds, and announces it on `thingMade`.
#[expose(idempotent, broadcast = ["thingMade"])]
async fn make(title: String, ms: u64) -> Thing {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Thing {
        id: MADE.fetch_add(1, Ordering::SeqCst) + 1,
        title,
    }
}

/// The same, not idempotent: a key changes nothing.
#[expose]
async fn make_plain(title: String) -> Thing {
    Thing {
        id: MADE.fetch_add(1, Ordering::SeqCst) + 1,
        title,
    }
}

#[derive(Debug)]
#[ephaptic::error(code = "SOLD_OUT", message = "Sold out.")]
pub struct SoldOut;

/// Fails, counting the attempt: an error is an answer like a result.
#[expose(idempotent)]
async fn buy() -> Result<u64, SoldOut> {
    MADE.fetch_add(1, Ordering::SeqCst);
    Err(SoldOut)
}

/// A long text.
#[expose(idempotent)]
async fn big(n: usize) -> String {
    MADE.fetch_add(1, Ordering::SeqCst);
    "x".repeat(n)
}

/// How many things were made (and attempts counted) in this process.
#[expose]
async fn made() -> u64 {
    MADE.load(Ordering::SeqCst)
}

/// A call with an idempotency key.
fn call(id: i64, name: &str, args: Vec<Value>, key: &str) -> Value {
    with(rpc(id, name, args), "key", v(key))
}

async fn user(url: &str, name: &str) -> Client {
    let mut c = Client::connect_as(url, v(name)).await;
    assert!(c.ok("made", vec![]).await.as_u64().is_some());
    c
}

/// The reply to the call with `id`, skipping events.
async fn reply_to(c: &mut Client, id: i64) -> Value {
    loop {
        let frame = c.recv().await;
        if get(&frame, "id") == &Value::from(id) {
            return frame;
        }
    }
}

/// Every `thingMade` event `c` gets within `quiet` of silence.
async fn announced(c: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(raw) = c.recv_raw_within(quiet).await {
        let frame = decode(&raw);
        if get(&frame, "name") == &v("thingMade") {
            got.push(frame);
        }
    }
    got
}

#[tokio::test]
async fn a_call_cut_before_its_reply_is_read_runs_once_and_its_retry_gets_the_answer() {
    let url = start(Server::new()).await;
    let mut watcher = user(&url, "watcher").await;
    let mut counter = user(&url, "counter").await;
    let before = counter.ok("made", vec![]).await.as_u64().unwrap();

    // Sent, then the connection is gone before the reply (the function takes 300 ms).
    let mut first = user(&url, "alice").await;
    first
        .send(&call(1, "make", vec![v("milk"), Value::from(300)], "k-1"))
        .await;
    // Let the frame be read, then cut: the call must go on without its connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(first);

    // The client comes back and sends the call again with the same key (a new id).
    let mut again = user(&url, "alice").await;
    again
        .send(&call(7, "make", vec![v("milk"), Value::from(300)], "k-1"))
        .await;
    let reply = reply_to(&mut again, 7).await;
    let thing = get(&reply, "result");
    assert_eq!(get(thing, "title"), &v("milk"), "{reply}");
    let id = get(thing, "id").clone();

    // Once more, after it finished: the same answer at once.
    again
        .send(&call(8, "make", vec![v("milk"), Value::from(300)], "k-1"))
        .await;
    assert_eq!(
        get(get(&reply_to(&mut again, 8).await, "result"), "id"),
        &id
    );

    let made = counter.ok_skipping_events("made", vec![]).await;
    assert_eq!(made.as_u64().unwrap() - before, 1, "one thing made");
    let events = announced(&mut watcher, Duration::from_millis(300)).await;
    assert_eq!(events.len(), 1, "announced once: {events:?}");
    assert_eq!(get(get(get(&events[0], "payload"), "kwargs"), "id"), &id);
}

#[tokio::test]
async fn a_repeat_while_the_first_still_runs_waits_for_it_and_gets_the_same_answer() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "bob").await;
    let before = c.ok("made", vec![]).await.as_u64().unwrap();
    c.send(&call(1, "make", vec![v("a"), Value::from(300)], "same"))
        .await;
    c.send(&call(2, "make", vec![v("a"), Value::from(300)], "same"))
        .await;
    let (mut one, mut two) = (None, None);
    while one.is_none() || two.is_none() {
        let frame = c.recv().await;
        match get(&frame, "id").as_i64() {
            Some(1) => one = Some(frame),
            Some(2) => two = Some(frame),
            _ => {}
        }
    }
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(get(&one, "result"), get(&two, "result"), "{one} / {two}");
    assert_eq!(c.ok("made", vec![]).await.as_u64().unwrap() - before, 1);
}

#[tokio::test]
async fn keys_belong_to_their_caller_and_errors_are_answers_too() {
    let url = start(Server::new()).await;
    let mut alice = user(&url, "alice").await;
    let mut bob = user(&url, "bob").await;
    let before = alice.ok("made", vec![]).await.as_u64().unwrap();
    alice
        .send(&call(1, "make", vec![v("a"), Value::from(0)], "shared-key"))
        .await;
    let a = reply_to(&mut alice, 1).await;
    bob.send(&call(1, "make", vec![v("b"), Value::from(0)], "shared-key"))
        .await;
    let b = reply_to(&mut bob, 1).await;
    assert_eq!(
        get(get(&b, "result"), "title"),
        &v("b"),
        "bob's own call ran"
    );
    assert_ne!(get(get(&a, "result"), "id"), get(get(&b, "result"), "id"));

    // A typed error is the answer a repeat gets, without running again.
    for id in [2, 3] {
        alice.send(&call(id, "buy", vec![], "buy-1")).await;
        let reply = reply_to(&mut alice, id).await;
        assert_eq!(get(get(&reply, "error"), "code"), &v("SOLD_OUT"));
    }
    assert_eq!(
        alice.ok("made", vec![]).await.as_u64().unwrap() - before,
        3,
        "alice's make, bob's make, one buy"
    );
}

#[tokio::test]
async fn a_key_on_another_function_changes_nothing_and_a_bad_key_is_refused() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "carol").await;
    let before = c.ok("made", vec![]).await.as_u64().unwrap();
    for id in [1, 2] {
        c.send(&call(id, "make_plain", vec![v("p")], "k")).await;
        assert!(has(&reply_to(&mut c, id).await, "result"));
    }
    assert_eq!(c.ok("made", vec![]).await.as_u64().unwrap() - before, 2);

    let long = "k".repeat(129);
    for bad in [Value::from(""), Value::from(long.as_str()), Value::from(7)] {
        c.send(&with(
            rpc(3, "make", vec![v("x"), Value::from(0)]),
            "key",
            bad,
        ))
        .await;
        let reply = reply_to(&mut c, 3).await;
        assert_eq!(get(get(&reply, "error"), "code"), &v("VALIDATION_ERROR"));
    }
    assert_eq!(c.ok("made", vec![]).await.as_u64().unwrap() - before, 2);
}

#[tokio::test]
async fn a_repeat_of_a_call_whose_answer_was_too_large_to_keep_is_told_it_ran() {
    let server = Server::new().idempotency(IdempotencySettings::default().max_answer(1024));
    let url = start(server).await;
    let mut c = user(&url, "dave").await;
    let before = c.ok("made", vec![]).await.as_u64().unwrap();
    c.send(&call(1, "big", vec![Value::from(5000)], "big-1"))
        .await;
    let first = reply_to(&mut c, 1).await;
    assert_eq!(get(&first, "result").as_str().map(str::len), Some(5000));
    c.send(&call(2, "big", vec![Value::from(5000)], "big-1"))
        .await;
    let repeat = reply_to(&mut c, 2).await;
    assert_eq!(get(get(&repeat, "error"), "code"), &v("ALREADY_DONE"));
    assert_eq!(c.ok("made", vec![]).await.as_u64().unwrap() - before, 1);
}

#[tokio::test]
async fn the_window_keeps_at_most_its_bound_of_answers() {
    let server = Server::new().idempotency(IdempotencySettings::default().max_keys(50));
    let url = start(server).await;
    let mut c = user(&url, "erin").await;
    for i in 0..200 {
        let key = format!("key-{i}");
        c.send(&call(i, "make", vec![v("t"), Value::from(0)], &key))
            .await;
        assert!(has(&reply_to(&mut c, i).await, "result"));
    }
    let kept = ephaptic::metrics().unwrap().idempotency_answers;
    assert!(kept <= 50, "{kept}");
    // The newest are still answered from the window; the oldest ran long ago and went.
    let before = c.ok("made", vec![]).await.as_u64().unwrap();
    c.send(&call(500, "make", vec![v("t"), Value::from(0)], "key-199"))
        .await;
    reply_to(&mut c, 500).await;
    c.send(&call(501, "make", vec![v("t"), Value::from(0)], "key-0"))
        .await;
    reply_to(&mut c, 501).await;
    assert_eq!(c.ok("made", vec![]).await.as_u64().unwrap() - before, 1);
}

/// 100,000 `create_todo` calls with distinct keys from one client against parity (a child
/// process, default settings: at most 100,000 answers, 32 MiB): what the server holds is
/// bounded. Measured: about +25 MiB of RSS for the 100,000 answers (the answers, their slots,
/// and the allocator's keep), given back as they expire; the bound asserted is +64 MiB.
#[tokio::test]
async fn a_hundred_thousand_keys_cost_bounded_memory() {
    let mut server = Parity::start("warn");
    let mut c = Client::connect(&server.url).await;
    c.ok("add", vec![Value::from(1), Value::from(2)]).await;
    let start = server.rss_mib();
    server.reset_peak();
    const N: i64 = 100_000;
    // Each call is answered and announced to this client too: two frames, within its queue.
    const BATCH: i64 = 250;
    let mut next = 0;
    while next < N {
        for i in next..next + BATCH {
            c.send(&call(i, "create_todo", vec![v("t")], &format!("{i:032}")))
                .await;
        }
        let mut replies = 0;
        while replies < BATCH {
            if has(&c.recv().await, "id") {
                replies += 1;
            }
        }
        next += BATCH;
    }
    let grown = server.peak_mib() - start;
    eprintln!("RSS {start:.1} MiB, peak +{grown:.1} MiB for {N} keys");
    assert!(grown < 64.0, "+{grown:.1} MiB");
    server.assert_alive();
    // The server still answers.
    assert_eq!(
        c.ok_skipping_events("add", vec![Value::from(2), Value::from(3)])
            .await,
        Value::from(5)
    );
}
