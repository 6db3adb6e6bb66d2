//! Events over a real loopback WebSocket: emit to all, to identities, to groups, to the caller;
//! ordering; channels after a data operation; the slow-client policy.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use ephaptic::{Audience, Caller, Error, Value, event, expose};
use serde::{Deserialize, Serialize};

#[ephaptic::identity_loader]
async fn load(auth: Option<String>) -> Option<ephaptic::Identity> {
    let token = auth?;
    // "int:7" is the integer identity 7; anything else is a string identity.
    match token.strip_prefix("int:") {
        Some(n) => n.parse::<i64>().ok().map(Into::into),
        None => (!token.is_empty()).then(|| token.into()),
    }
}

#[event]
#[derive(Debug)]
pub struct Pong {
    pub ok: bool,
}

/// A notice, with serde attributes the macro must honour.
#[event]
#[derive(Debug)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub message: String,
    pub level: u8,
    #[serde(default)]
    pub is_error: bool,
    #[serde(skip)]
    pub internal: u32,
}

#[event(name = "seq")]
#[derive(Debug)]
pub struct Seq {
    pub i: u32,
    pub pad: String,
}

#[event]
#[derive(Debug)]
#[serde(tag = "kind")]
pub enum Change {
    Added { id: u64 },
    Removed { id: u64 },
}

#[expose]
async fn ping(caller: Caller) -> &'static str {
    caller.emit(Pong { ok: true }).await;
    "pong"
}

#[expose]
async fn notify(user: String, message: String) -> usize {
    ephaptic::to(user)
        .emit(Notice {
            message,
            level: 1,
            is_error: false,
            internal: 9,
        })
        .await
        .local
}

#[expose]
async fn notify_int(user: i64) -> usize {
    ephaptic::to(user)
        .emit(Notice {
            message: "int".into(),
            level: 1,
            is_error: false,
            internal: 0,
        })
        .await
        .local
}

#[expose]
async fn notify_many(users: Vec<String>) -> usize {
    ephaptic::to(users).emit(Pong { ok: false }).await.local
}

/// The Python form `to("alice", 7)`, identities of different kinds listed one by one.
#[expose]
async fn notify_listed() -> usize {
    ephaptic::to!("alice", 7, "alice")
        .emit(Pong { ok: true })
        .await
        .local
}

/// Every connection of the caller's own user; nobody for an anonymous caller.
#[expose]
async fn notify_me(caller: Caller) -> usize {
    ephaptic::to(caller.identity())
        .emit(Pong { ok: true })
        .await
        .local
}

#[expose]
async fn shout(message: String) -> usize {
    ephaptic::emit(Notice {
        message,
        level: 2,
        is_error: true,
        internal: 0,
    })
    .await
    .local
}

#[expose]
async fn change(added: bool) -> usize {
    let e = if added {
        Change::Added { id: 1 }
    } else {
        Change::Removed { id: 2 }
    };
    ephaptic::emit(e).await.local
}

/// Emits `n` numbered events to everyone from this one task, padded to `pad` bytes each.
/// Returns the longest outbound queue seen while emitting.
#[expose]
async fn burst(n: u32, pad: usize) -> usize {
    let pad = "x".repeat(pad);
    let mut longest = 0;
    for i in 0..n {
        ephaptic::emit(Seq {
            i,
            pad: pad.clone(),
        })
        .await;
        if i % 64 == 0 {
            longest = longest.max(ephaptic::metrics().unwrap().max_queued);
        }
    }
    longest
}

#[expose]
async fn metrics() -> Value {
    let m = ephaptic::metrics().unwrap();
    Value::Map(vec![
        ("connections".into(), (m.connections as u64).into()),
        ("slow_client_closes".into(), m.slow_client_closes.into()),
        ("queue_capacity".into(), (m.queue_capacity as u64).into()),
        ("events_dropped".into(), m.events_dropped.into()),
    ])
}

/// Emits to the caller and to everyone before returning: both must arrive before the result.
#[expose]
async fn emit_then_return(caller: Caller) -> u32 {
    caller.emit(Pong { ok: true }).await;
    ephaptic::emit(Notice {
        message: "all".into(),
        level: 3,
        is_error: false,
        internal: 0,
    })
    .await;
    7
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

static NEXT_TODO: AtomicUsize = AtomicUsize::new(1);

#[expose(broadcast = ["todoCreated", "todosChanged"])]
async fn create_todo(title: String) -> Result<Todo, Error> {
    if title.is_empty() {
        return Err(Error::new("EMPTY_TITLE", "A todo needs a title."));
    }
    Ok(Todo {
        id: NEXT_TODO.fetch_add(1, Ordering::SeqCst) as u64,
        title,
        done: false,
    })
}

#[expose(broadcast = ["counted"])]
async fn count(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub tenant: String,
    pub text: String,
}

/// Joins the caller to its tenant's group. (A real app would check the caller may.)
#[expose]
async fn join_tenant(caller: Caller, tenant: String) -> bool {
    caller.join(&format!("tenant:{tenant}"))
}

fn tenant_of(_caller: &Caller, note: &Note) -> Audience {
    Audience::group(format!("tenant:{}", note.tenant))
}

#[expose(broadcast = ["noteAdded"], broadcast_to = tenant_of)]
async fn add_note(tenant: String, text: String) -> Note {
    Note { tenant, text }
}

#[expose]
async fn to_group(group: String) -> usize {
    ephaptic::group(group).emit(Pong { ok: true }).await.local
}

// ----------------------------------------------------------------------------------------------

fn int(n: i64) -> Value {
    Value::from(n)
}

fn is_event(frame: &Value, name: &str) -> bool {
    get(frame, "type") == &v("event") && get(frame, "name") == &v(name)
}

fn kwargs(frame: &Value) -> &Value {
    get(get(frame, "payload"), "kwargs")
}

/// The next event frame (skipping nothing: anything else is a test failure).
async fn next_event(c: &mut Client) -> Value {
    let f = c.recv().await;
    assert_eq!(get(&f, "type"), &v("event"), "expected an event, got {f}");
    assert!(!has(&f, "id"), "events carry no id");
    f
}

#[tokio::test]
async fn event_frames_have_the_documented_shape_and_bytes() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect(&url).await;
    c.send(&rpc(1, "ping", vec![])).await;
    assert_eq!(
        c.recv_raw().await,
        b"\x83\xa4type\xa5event\xa4name\xa4Pong\xa7payload\x82\xa4args\x90\xa6kwargs\x81\xa2ok\xc3"
    );
    assert_eq!(get(&c.recv().await, "result"), &v("pong"));
}

#[tokio::test]
async fn serde_attributes_on_events_are_honoured() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect(&url).await;
    c.send(&rpc(1, "shout", vec![v("hi")])).await;
    let e = next_event(&mut c).await;
    assert!(is_event(&e, "Notice"));
    assert_eq!(
        kwargs(&e),
        &map(vec![
            ("message", v("hi")),
            ("level", int(2)),
            ("isError", Value::from(true))
        ])
    );
    assert_eq!(get(get(&e, "payload"), "args"), &Value::Array(vec![]));
    assert_eq!(get(&c.recv().await, "result"), &int(1));

    c.send(&rpc(2, "change", vec![Value::from(true)])).await;
    let e = next_event(&mut c).await;
    assert!(is_event(&e, "Change"));
    assert_eq!(kwargs(&e), &map(vec![("kind", v("Added")), ("id", int(1))]));
}

#[tokio::test]
async fn emit_reaches_every_connection_and_counts_them() {
    let url = start(ephaptic::Server::new()).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&url).await);
    }
    let mut anon = Client::connect_as(&url, v("")).await;
    // Make sure every connection is registered before emitting.
    assert_eq!(
        get(&anon.ok("metrics", vec![]).await, "connections"),
        &int(5)
    );
    clients[0].send(&rpc(1, "shout", vec![v("hello")])).await;
    for c in clients.iter_mut().chain(std::iter::once(&mut anon)) {
        let e = next_event(c).await;
        assert_eq!(get(kwargs(&e), "message"), &v("hello"));
    }
    assert_eq!(get(&clients[0].recv().await, "result"), &int(5));
}

#[tokio::test]
async fn to_reaches_every_connection_of_a_user_and_no_one_else() {
    let url = start(ephaptic::Server::new()).await;
    let mut alice = [
        Client::connect_as(&url, v("alice")).await,
        Client::connect_as(&url, v("alice")).await,
        Client::connect_as(&url, v("alice")).await,
    ];
    let mut bob = Client::connect_as(&url, v("bob")).await;
    let mut anon = Client::connect(&url).await;
    for a in alice.iter_mut() {
        // A round trip after init: the loader has run and the connection is indexed.
        a.ok("metrics", vec![]).await;
    }
    bob.send(&rpc(1, "notify", vec![v("alice"), v("lunch?")]))
        .await;
    assert_eq!(
        get(&bob.recv().await, "result"),
        &int(3),
        "three connections reached"
    );
    for a in alice.iter_mut() {
        let e = next_event(a).await;
        assert!(is_event(&e, "Notice"));
        assert_eq!(get(kwargs(&e), "message"), &v("lunch?"));
    }
    bob.expect_silence(Duration::from_millis(100)).await;
    anon.expect_silence(Duration::from_millis(50)).await;

    // A list of users, with one listed twice: each connection gets the event once.
    bob.send(&rpc(
        2,
        "notify_many",
        vec![Value::Array(vec![
            v("alice"),
            v("bob"),
            v("alice"),
            v("nobody"),
        ])],
    ))
    .await;
    let mut got_result = false;
    let mut bob_events = 0;
    for _ in 0..2 {
        let f = bob.recv().await;
        if has(&f, "result") {
            assert_eq!(get(&f, "result"), &int(4));
            got_result = true;
        } else {
            bob_events += 1;
        }
    }
    assert!(got_result && bob_events == 1);
    for a in alice.iter_mut() {
        assert!(is_event(&next_event(a).await, "Pong"));
        a.expect_silence(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn to_macro_lists_identities_and_an_optional_identity_reaches_the_callers_user() {
    let url = start(ephaptic::Server::new()).await;
    let mut alice = Client::connect_as(&url, v("alice")).await;
    let mut alice2 = Client::connect_as(&url, v("alice")).await;
    let mut seven = Client::connect_as(&url, v("int:7")).await;
    let mut bob = Client::connect_as(&url, v("bob")).await;
    let mut anon = Client::connect(&url).await;
    for c in [&mut alice, &mut alice2, &mut seven, &mut bob] {
        c.ok("metrics", vec![]).await;
    }
    // alice twice (two connections, each reached once) and the integer user 7.
    assert_eq!(anon.ok("notify_listed", vec![]).await, int(3));
    for c in [&mut alice, &mut alice2, &mut seven] {
        assert!(is_event(&next_event(c).await, "Pong"));
    }
    bob.expect_silence(Duration::from_millis(100)).await;

    alice.send(&rpc(1, "notify_me", vec![])).await;
    let mut result = None;
    for _ in 0..2 {
        let f = alice.recv().await;
        if has(&f, "result") {
            result = Some(get(&f, "result").clone());
        } else {
            assert!(is_event(&f, "Pong"));
        }
    }
    assert_eq!(result, Some(int(2)), "both of alice's connections");
    assert!(is_event(&next_event(&mut alice2).await, "Pong"));
    assert_eq!(
        anon.ok("notify_me", vec![]).await,
        int(0),
        "anonymous: nobody"
    );
    bob.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn integer_and_string_identities_are_distinct() {
    let url = start(ephaptic::Server::new()).await;
    let mut as_int = Client::connect_as(&url, v("int:7")).await;
    let mut as_str = Client::connect_as(&url, v("7")).await;
    as_int.ok("metrics", vec![]).await;
    as_str.ok("metrics", vec![]).await;
    let mut caller = Client::connect(&url).await;
    assert_eq!(caller.ok("notify_int", vec![int(7)]).await, int(1));
    assert!(is_event(&next_event(&mut as_int).await, "Notice"));
    as_str.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(caller.ok("notify", vec![v("7"), v("s")]).await, int(1));
    assert_eq!(
        get(kwargs(&next_event(&mut as_str).await), "message"),
        &v("s")
    );
    as_int.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn caller_emit_reaches_only_the_caller_and_precedes_the_result() {
    let url = start(ephaptic::Server::new()).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    assert_eq!(get(&b.ok("metrics", vec![]).await, "connections"), &int(2));
    a.send(&rpc(1, "emit_then_return", vec![])).await;
    assert!(is_event(&a.recv().await, "Pong"));
    assert!(is_event(&a.recv().await, "Notice"));
    assert_eq!(get(&a.recv().await, "result"), &int(7));
    // b gets the broadcast, not the caller-only Pong.
    assert!(is_event(&next_event(&mut b).await, "Notice"));
    b.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_from_one_task_arrive_in_order_on_fifty_connections() {
    let url = start(ephaptic::Server::new()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(Client::connect(&url).await);
    }
    assert_eq!(
        get(&clients[0].ok("metrics", vec![]).await, "connections"),
        &int(50)
    );
    clients[0]
        .send(&rpc(1, "burst", vec![int(1000), int(0)]))
        .await;
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            tokio::spawn(async move {
                let mut next = 0;
                while next < 1000 {
                    let f = c.recv().await;
                    if has(&f, "result") {
                        assert_eq!(n, 0, "only the caller gets a result");
                        continue;
                    }
                    assert_eq!(
                        get(kwargs(&f), "i"),
                        &Value::from(next),
                        "connection {n} out of order"
                    );
                    next += 1;
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
}

#[tokio::test]
async fn channels_announce_after_success_and_stay_silent_after_failure() {
    let url = start(ephaptic::Server::new()).await;
    let mut listener = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    assert_eq!(get(&c.ok("metrics", vec![]).await, "connections"), &int(2));
    c.send(&rpc(1, "create_todo", vec![v("milk")])).await;
    let mut names = Vec::new();
    for _ in 0..2 {
        let e = next_event(&mut listener).await;
        assert_eq!(get(kwargs(&e), "title"), &v("milk"));
        assert_eq!(get(kwargs(&e), "done"), &Value::from(false));
        names.push(get(&e, "name").as_str().unwrap().to_string());
    }
    assert_eq!(names, ["todoCreated", "todosChanged"]);
    // The caller is a listener too: both announcements reach it before its result.
    assert!(is_event(&c.recv().await, "todoCreated"));
    assert!(is_event(&c.recv().await, "todosChanged"));
    assert_eq!(get(get(&c.recv().await, "result"), "title"), &v("milk"));

    let e = c.err("create_todo", vec![v("")]).await;
    assert_eq!(get(&e, "code"), &v("EMPTY_TITLE"));
    listener.expect_silence(Duration::from_millis(150)).await;

    // A payload that is not a map travels in args.
    listener.send(&rpc(3, "count", vec![int(3)])).await;
    let e = next_event(&mut listener).await;
    assert_eq!(
        get(get(&e, "payload"), "args"),
        &Value::Array(vec![Value::Array(vec![int(0), int(1), int(2)])])
    );
    assert_eq!(kwargs(&e), &map(vec![]));
    assert_eq!(
        get(&listener.recv().await, "result"),
        &Value::Array(vec![int(0), int(1), int(2)])
    );
}

#[tokio::test]
async fn broadcast_to_keeps_one_tenants_changes_from_another() {
    let url = start(ephaptic::Server::new()).await;
    let mut acme = Client::connect(&url).await;
    let mut globex = Client::connect(&url).await;
    assert_eq!(
        acme.ok("join_tenant", vec![v("acme")]).await,
        Value::from(true)
    );
    assert_eq!(
        acme.ok("join_tenant", vec![v("acme")]).await,
        Value::from(false),
        "joining twice is a no-op"
    );
    assert_eq!(
        globex.ok("join_tenant", vec![v("globex")]).await,
        Value::from(true)
    );

    globex
        .send(&rpc(1, "add_note", vec![v("acme"), v("for acme only")]))
        .await;
    assert!(has(&globex.recv().await, "result"));
    let e = next_event(&mut acme).await;
    assert!(is_event(&e, "noteAdded"));
    assert_eq!(get(kwargs(&e), "text"), &v("for acme only"));
    globex.expect_silence(Duration::from_millis(150)).await;

    assert_eq!(globex.ok("to_group", vec![v("tenant:acme")]).await, int(1));
    assert!(is_event(&next_event(&mut acme).await, "Pong"));
}

#[tokio::test]
async fn group_membership_ends_with_the_connection() {
    let url = start(ephaptic::Server::new()).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    assert_eq!(a.ok("join_tenant", vec![v("t")]).await, Value::from(true));
    a.ws.close(None).await.unwrap();
    drop(a);
    for _ in 0..100 {
        if get(&b.ok("metrics", vec![]).await, "connections") == &int(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.ok("to_group", vec![v("tenant:t")]).await, int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_while_a_healthy_one_gets_everything() {
    const EVENTS: i64 = 10_000;
    let url = start(ephaptic::Server::new()).await;
    let mut healthy = Client::connect(&url).await;
    let mut stalled = Client::connect(&url).await;
    let mut caller = Client::connect(&url).await;
    // A connection is counted once its task has started, which may follow the handshake.
    let mut connections = int(0);
    for _ in 0..200 {
        connections = get(&caller.ok("metrics", vec![]).await, "connections").clone();
        if connections == int(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(connections, int(3));
    let capacity = get(&caller.ok("metrics", vec![]).await, "queue_capacity")
        .as_i64()
        .unwrap();

    // 1 KiB events: 10 MB in all, far more than socket buffers absorb for the stalled client.
    caller
        .send(&rpc(1, "burst", vec![int(EVENTS), int(1024)]))
        .await;
    let reader = tokio::spawn(async move {
        for i in 0..EVENTS {
            let f = healthy.recv().await;
            assert_eq!(
                get(kwargs(&f), "i"),
                &int(i),
                "the healthy client gets every event, in order"
            );
        }
        healthy
    });
    // The caller must read too, or it would be the slow one.
    let mut seen = 0;
    let longest = loop {
        let f = caller.recv().await;
        if has(&f, "result") {
            break get(&f, "result").as_i64().unwrap();
        }
        seen += 1;
    };
    assert_eq!(seen, EVENTS);
    reader.await.unwrap();
    assert!(
        longest <= capacity,
        "no queue grew past its bound ({longest} > {capacity})"
    );

    let m = caller.ok("metrics", vec![]).await;
    assert_eq!(
        get(&m, "slow_client_closes"),
        &int(1),
        "exactly the stalled client was closed"
    );

    // The stalled client, once it reads again, finds the close frame with code 1008 after
    // whatever was already buffered for it.
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        while let Some(msg) = stalled.ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the stalled client's connection ends");
    assert_eq!(close, Some(1008));
}

#[tokio::test]
async fn the_drop_policy_keeps_the_connection() {
    let url = start(
        ephaptic::Server::new()
            .outbound_capacity(8)
            .slow_client(ephaptic::SlowClient::DropEvents),
    )
    .await;
    let mut stalled = Client::connect(&url).await;
    let mut caller = Client::connect(&url).await;
    assert_eq!(
        get(&caller.ok("metrics", vec![]).await, "connections"),
        &int(2)
    );
    // 20 MB for a client that reads nothing: far beyond what socket buffers absorb.
    caller
        .send(&rpc(1, "burst", vec![int(10_000), int(2048)]))
        .await;
    loop {
        let f = caller.recv().await;
        if has(&f, "result") {
            break;
        }
    }
    let m = caller.ok("metrics", vec![]).await;
    assert_eq!(get(&m, "slow_client_closes"), &int(0));
    assert!(get(&m, "events_dropped").as_i64().unwrap() > 0, "{m}");
    // The stalled client is still connected: drain what it has and call.
    while stalled
        .recv_raw_within(Duration::from_millis(300))
        .await
        .is_some()
    {}
    assert!(stalled.ok("metrics", vec![]).await.is_map());
}

#[event]
#[derive(Debug)]
pub struct Online {
    pub count: usize,
    pub who: Option<String>,
}

#[tokio::test]
async fn connect_and_disconnect_hooks_see_the_settled_identity() {
    let server = ephaptic::Server::new()
        .on_connect(|caller: Caller| async move {
            let count = ephaptic::metrics().unwrap().connections;
            let who = caller.identity().map(|i| i.to_string());
            ephaptic::emit(Online { count, who }).await;
        })
        .on_disconnect(|caller: Caller| async move {
            let count = ephaptic::metrics().unwrap().connections;
            let who = caller.identity().map(|i| i.to_string());
            ephaptic::emit(Online { count, who }).await;
        });
    let url = start(server).await;

    let mut ann = Client::connect_as(&url, v("ann")).await;
    let e = next_event(&mut ann).await;
    assert_eq!(
        kwargs(&e),
        &map(vec![("count", int(1)), ("who", v("ann"))]),
        "the hook ran after init"
    );

    let mut bob = Client::connect_as(&url, v("bob")).await;
    for c in [&mut ann, &mut bob] {
        assert_eq!(
            kwargs(&next_event(c).await),
            &map(vec![("count", int(2)), ("who", v("bob"))])
        );
    }

    bob.ws.close(None).await.unwrap();
    drop(bob);
    let e = next_event(&mut ann).await;
    assert_eq!(
        kwargs(&e),
        &map(vec![("count", int(1)), ("who", v("bob"))]),
        "the goodbye names who left"
    );

    // A connection that never sends a frame triggers neither hook.
    let silent = Client::connect(&url).await;
    drop(silent);
    ann.expect_silence(Duration::from_millis(300)).await;
}
