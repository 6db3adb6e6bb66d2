//! Issue 23 ("every name and size a client can choose is bounded"): what a client can make the
//! server keep or send through names and sizes it chooses, each bound asserted from a real
//! WebSocket client on loopback against an in-process server with the parity fixture's
//! functions (and a few of this file's own). The memory figures of the same attacks against
//! the parity child process are in attacks.rs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ephaptic::{Caller, Value, expose};
use futures_util::Stream;

use parity as _;

/// Joins `group`, saying why not (`Caller::try_join`).
#[expose]
async fn try_join(caller: Caller, group: String) -> ephaptic::Result<bool> {
    caller.try_join(&group)
}

/// Joins `rooms` groups `<prefix>0`, `<prefix>1`, ...; how many were joined before a refusal,
/// and the refusal's code.
#[expose]
async fn join_many(caller: Caller, prefix: String, rooms: u32) -> (u32, Option<String>) {
    for i in 0..rooms {
        if let Err(e) = caller.try_join(&format!("{prefix}{i}")) {
            return (i, Some(e.code().to_owned()));
        }
    }
    (rooms, None)
}

/// A stream of `n` strings of `size` bytes each.
#[expose]
async fn big_chunks(n: u32, size: u32) -> impl Stream<Item = String> {
    futures_util::stream::iter((0..n).map(move |_| "c".repeat(size as usize)))
}

fn code(error: &Value) -> &Value {
    get(error, "code")
}

#[tokio::test]
async fn a_long_group_name_is_refused_with_the_setting_named_and_the_connection_goes_on() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect_as(&url, v("ann")).await;
    let long = "r".repeat(900_000);
    let error = c.err("try_join", vec![v(&long)]).await;
    assert_eq!(code(&error), &v("INVALID_NAME"));
    let message = get(&error, "message").as_str().unwrap();
    assert!(message.contains("Server::max_group_name_len"), "{message}");
    assert!(message.len() < 300, "the error does not echo the name");
    // `join` (a bool) refuses it too; an emit to it reaches no one.
    assert_eq!(c.ok("enter_room", vec![v(&long)]).await, Value::from(false));
    assert_eq!(
        c.ok("room_say", vec![v(&long), v("hi")]).await,
        Value::from(0)
    );
    // Within the bound it works, on the same connection.
    assert_eq!(
        c.ok("try_join", vec![v(&"r".repeat(200))]).await,
        Value::from(true)
    );
    assert_eq!(
        c.ok("add", vec![Value::from(1), Value::from(2)]).await,
        Value::from(3)
    );
}

#[tokio::test]
async fn a_connection_is_in_at_most_its_cap_of_groups_and_closing_it_frees_them_at_once() {
    let url = start(
        ephaptic::Server::new()
            .limits(ephaptic::LimitSettings::default().max_groups_per_connection(3000)),
    )
    .await;
    let mut hoarder = Client::connect_as(&url, v("hoarder")).await;
    let (joined, refused) = {
        let reply = hoarder
            .ok("join_many", vec![v("room:"), Value::from(5000)])
            .await;
        let pair = reply.as_array().unwrap().clone();
        (pair[0].as_u64().unwrap(), pair[1].clone())
    };
    assert_eq!(joined, 3000);
    assert_eq!(refused, v("TOO_MANY_GROUPS"));
    let error = hoarder.err("try_join", vec![v("one-more")]).await;
    assert_eq!(code(&error), &v("TOO_MANY_GROUPS"));
    assert_eq!(get(get(&error, "data"), "limit"), &Value::from(3000));
    // A group it holds is still joined (Ok(false)), and leaving one makes room for another.
    assert_eq!(
        hoarder.ok("try_join", vec![v("room:7")]).await,
        Value::from(false)
    );
    assert_eq!(
        hoarder.ok("leave_room", vec![v("room:7")]).await,
        Value::from(true)
    );
    assert_eq!(
        hoarder.ok("try_join", vec![v("one-more")]).await,
        Value::from(true)
    );

    // Another client is served while the hoarder's 3,000 groups go with its close.
    let mut other = Client::connect_as(&url, v("other")).await;
    other.ok("enter_room", vec![v("room:1")]).await;
    let mut speaker = Client::connect(&url).await;
    drop(hoarder);
    let started = Instant::now();
    // Once the close is through, room:1 has one member left.
    loop {
        let reached = speaker.ok("room_say", vec![v("room:1"), v("hello")]).await;
        if reached == Value::from(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the hoarder's close did not leave its groups"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_runtimes_own_names_are_refused_to_application_joins_and_emits() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect_as(&url, v("mallory")).await;
    let error = c
        .err("try_join", vec![v("__ephaptic.presence:lobby")])
        .await;
    assert_eq!(code(&error), &v("INVALID_NAME"));
    assert!(
        get(&error, "message")
            .as_str()
            .unwrap()
            .contains("server's own"),
        "{error}"
    );
    assert_eq!(
        c.ok("room_say", vec![v("__ephaptic.presence:lobby"), v("x")])
            .await,
        Value::from(0)
    );
}

#[tokio::test]
async fn an_answer_larger_than_the_server_sends_is_an_error_in_its_place() {
    let url = start(
        ephaptic::Server::new().limits(ephaptic::LimitSettings::default().max_sent_frame(64 << 10)),
    )
    .await;
    let mut c = Client::connect(&url).await;
    // A result past the bound.
    let error = c.err("echo", vec![v(&"e".repeat(100_000))]).await;
    assert_eq!(code(&error), &v("FRAME_TOO_LARGE"));
    assert_eq!(get(get(&error, "data"), "limit"), &Value::from(64 << 10));
    assert!(get(get(&error, "data"), "size").as_u64().unwrap() > 100_000);
    // A stream whose chunks are past it: opened, then the error ends it.
    c.send(&rpc(
        2,
        "big_chunks",
        vec![Value::from(3), Value::from(100_000)],
    ))
    .await;
    let opened = c.recv().await;
    assert_eq!(get(&opened, "stream"), &Value::from(true), "{opened}");
    let ended = c.recv().await;
    assert_eq!(code(get(&ended, "error")), &v("FRAME_TOO_LARGE"), "{ended}");
    c.send(&rpc(
        3,
        "big_chunks",
        vec![Value::from(2), Value::from(1_000)],
    ))
    .await;
    let mut frames = Vec::new();
    loop {
        let f = c.recv().await;
        let done = has(&f, "done") || has(&f, "error");
        frames.push(f);
        if done {
            break;
        }
    }
    assert_eq!(frames.len(), 4, "{frames:?}");
    // The connection goes on, and the hello says the bound.
    assert_eq!(
        c.ok("add", vec![Value::from(2), Value::from(2)]).await,
        Value::from(4)
    );
}
