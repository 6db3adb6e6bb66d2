//! Sessions on one server (docs/PROTOCOL.md 5.6): the hello, positions on events, and resume
//! after a reconnect without a gap or a copy, against the parity fixture's functions (linked
//! into this test binary) on a real loopback socket.

mod common;

// The fixture's functions and identity loader.
use parity as _;

use std::time::Duration;

use common::tab::*;
use common::*;
use ephaptic::{Retention, StreamKind};
use rmpv::Value;

#[tokio::test]
async fn a_fresh_hello_says_who_the_client_is_and_where_its_streams_stand() {
    let server = ephaptic::Server::new();
    let schema = ephaptic::export::schema_hash(&server.introspect().unwrap());
    let url = start(server).await;
    let (_tab, before, hello) = Tab::open(&url, "alice", vec![]).await;
    assert!(before.is_empty());
    assert_eq!(get(&hello, "v"), &int(2));
    assert_eq!(get(&hello, "identity"), &v("alice"));
    assert_eq!(get(&hello, "schema").as_str(), Some(schema.as_str()));
    assert_eq!(get(&hello, "resume"), &Value::from(true));
    for s in ["u", "b"] {
        let s = stream(&hello, s);
        assert_eq!(get(s, "offset"), &int(0));
        assert_eq!(get(s, "recovered"), &Value::from(true));
        assert_eq!(get(s, "was_recovering"), &Value::from(false));
        assert_eq!(get(s, "epoch").as_str().map(str::len), Some(8));
    }
    // Anonymous: no identity stream.
    let (_anon, _, hello) = Tab::open(&url, "", vec![]).await;
    assert_eq!(get(&hello, "identity"), &Value::Nil);
    assert!(!has(get(&hello, "streams"), "u"));
}

#[tokio::test]
async fn a_tab_that_comes_back_gets_what_it_missed_in_order_once_before_new_events() {
    let url = start(ephaptic::Server::new()).await;
    let (mut away, _, _) = Tab::open(&url, "alice", vec![]).await;
    let (mut stays, _, _) = Tab::open(&url, "alice", vec![]).await;
    burst(&url, "alice", 0, 3).await;
    for tab in [&mut away, &mut stays] {
        for i in 0..3 {
            let e = tab.next().await;
            assert_eq!(get(&e, "stream"), &v("u"));
            assert_eq!(get(&e, "seq"), &int(i + 1));
            assert_eq!(get(kwargs(&e), "message"), &v(&i.to_string()));
        }
    }
    let pos = away.pos.clone();
    drop(away);
    // 150 events while it is away, then it comes back while 100 more are being sent (250 in
    // all: within the 256 an identity's stream keeps).
    burst(&url, "alice", 3, 150).await;
    let sending = tokio::spawn({
        let url = url.clone();
        async move { burst(&url, "alice", 153, 100).await }
    });
    let (mut back, before, hello) = Tab::open(&url, "alice", pos).await;
    let u = stream(&hello, "u");
    assert_eq!(get(u, "recovered"), &Value::from(true), "{hello}");
    assert_eq!(get(u, "was_recovering"), &Value::from(true));
    sending.await.unwrap();
    let mut got = messages(&before);
    assert!(got.len() >= 150, "the replay came before the answer");
    while got.len() < 250 {
        let e = back.next().await;
        got.extend(messages(&[e]));
    }
    assert_eq!(
        got,
        numbers(3, 250),
        "each missed and new event once, in order"
    );
    back.c.expect_silence(Duration::from_millis(200)).await;
    // The tab connected throughout saw each once.
    let mut seen = Vec::new();
    while seen.len() < 250 {
        let e = stays.next().await;
        seen.extend(messages(&[e]));
    }
    assert_eq!(seen, numbers(3, 250));
    stays.c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn too_much_missed_or_another_epoch_is_not_recovered_and_says_why() {
    let url = start(ephaptic::Server::new().retention(
        StreamKind::User,
        Retention::default().size(20).max_replay(10),
    ))
    .await;
    let (tab, _, _) = Tab::open(&url, "bob", vec![]).await;
    let pos = tab.pos.clone();
    drop(tab);
    burst(&url, "bob", 0, 15).await;
    let (tab, before, hello) = Tab::open(&url, "bob", pos.clone()).await;
    let u = stream(&hello, "u");
    assert_eq!(get(u, "recovered"), &Value::from(false));
    assert_eq!(get(u, "reason"), &v("trimmed"), "more than max_replay");
    assert_eq!(get(u, "offset"), &int(15), "the position to go on from");
    assert!(messages(&before).is_empty(), "all or nothing");
    drop(tab);
    let wrong: Vec<_> = pos
        .iter()
        .map(|(s, (_, o))| (s.clone(), ("zzzzzzzz".to_owned(), *o)))
        .collect();
    let (_tab, _, hello) = Tab::open(&url, "bob", wrong).await;
    assert_eq!(get(stream(&hello, "u"), "reason"), &v("epoch"));
    assert_eq!(get(stream(&hello, "b"), "reason"), &v("epoch"));
}

#[tokio::test]
async fn an_expired_history_is_not_recovered() {
    let url = start(ephaptic::Server::new().retention(
        StreamKind::User,
        Retention::default().ttl(Duration::from_millis(200)),
    ))
    .await;
    let (tab, _, _) = Tab::open(&url, "carol", vec![]).await;
    let pos = tab.pos.clone();
    drop(tab);
    burst(&url, "carol", 0, 5).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_tab, before, hello) = Tab::open(&url, "carol", pos).await;
    assert_eq!(get(stream(&hello, "u"), "recovered"), &Value::from(false));
    assert!(messages(&before).is_empty());
}

#[tokio::test]
async fn a_group_is_resumed_when_the_client_joins_it_again() {
    let url = start(ephaptic::Server::new()).await;
    let (mut tab, _, _) = Tab::open(&url, "dave", vec![]).await;
    assert_eq!(
        tab.c.ok("enter_room", vec![v("attic")]).await,
        Value::from(true)
    );
    let mut speaker = Client::connect(&url).await;
    speaker.ok("room_say", vec![v("attic"), v("one")]).await;
    // The position frame (before any live event of the group), then the event.
    let mut frames = Vec::new();
    while frames.len() < 2 {
        frames.push(tab.next().await);
    }
    let position = frames
        .iter()
        .find(|f| get(f, "type") == &v("position"))
        .expect("a position frame");
    assert_eq!(get(position, "stream"), &v("g:attic"));
    assert_eq!(get(position, "recovered"), &Value::from(true));
    let pos = tab.pos.clone();
    assert!(
        pos.iter().any(|(s, (_, o))| s == "g:attic" && *o == 1),
        "{pos:?}"
    );
    drop(tab);
    for m in ["two", "three"] {
        speaker.ok("room_say", vec![v("attic"), v(m)]).await;
    }
    let (got, position) = rejoin_replaying(&url, "dave", pos, "attic", 2).await;
    assert_eq!(got, ["two", "three"]);
    assert_eq!(get(&position, "was_recovering"), &Value::from(true));
    assert_eq!(get(&position, "replayed"), &int(2));
    assert_eq!(get(&position, "offset"), &int(3));
}

#[tokio::test]
async fn without_sessions_events_carry_no_position_and_the_hello_says_so() {
    let url = start(ephaptic::Server::new().resume(false)).await;
    let (mut tab, _, hello) = Tab::open(&url, "erin", vec![]).await;
    assert_eq!(get(&hello, "resume"), &Value::from(false));
    burst(&url, "erin", 0, 1).await;
    let e = tab.next().await;
    assert!(!has(&e, "seq") && !has(&e, "stream"), "{e}");
}

#[tokio::test]
async fn an_old_client_gets_the_same_events_with_keys_it_ignores() {
    let url = start(ephaptic::Server::new()).await;
    let mut old = Client::connect_as(&url, v("frank")).await;
    old.ok("add", vec![int(1), int(2)]).await;
    burst(&url, "frank", 7, 1).await;
    let e = old.recv().await;
    // The reference's three keys first, as before; the position after them.
    let keys: Vec<_> = e
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["type", "name", "payload", "stream", "seq", "epoch"]);
    assert_eq!(get(kwargs(&e), "message"), &v("7"));
}

/// Issue 23's first finding: a client joined a group once (so it had a position), left it,
/// the group got 20 messages, and a reconnect that joined again with the old position was
/// replayed all 20. A group's history is now replayed only within the reader's tenure.
#[tokio::test]
async fn a_group_resume_never_replays_what_the_group_was_sent_after_a_leave() {
    let url = start(ephaptic::Server::new()).await;
    let (mut tab, _, _) = Tab::open(&url, "eve", vec![]).await;
    assert_eq!(
        tab.c.ok("enter_room", vec![v("vault")]).await,
        Value::from(true)
    );
    let mut speaker = Client::connect(&url).await;
    speaker.ok("room_say", vec![v("vault"), v("public")]).await;
    let mut seen = Vec::new();
    while seen.is_empty() {
        seen.extend(messages(&[tab.next().await]));
    }
    assert_eq!(seen, ["public"]);
    assert_eq!(
        tab.c.ok("leave_room", vec![v("vault")]).await,
        Value::from(true)
    );
    let pos = tab.pos.clone();
    assert!(
        pos.iter().any(|(s, (_, o))| s == "g:vault" && *o == 1),
        "{pos:?}"
    );
    say_secrets(&mut speaker, "vault", 20).await;
    drop(tab);

    // Back with the position from before the leave, and let in again.
    let (mut tab, position) = rejoin_replaying_nothing(&url, "eve", pos, "vault").await;
    assert_eq!(get(&position, "recovered"), &Value::from(false));
    assert_eq!(get(&position, "reason"), &v("membership"));
    assert_eq!(get(&position, "replayed"), &int(0));
    assert_eq!(get(&position, "offset"), &int(21));
    // What the group is sent from now on arrives, and nothing from before.
    speaker.ok("room_say", vec![v("vault"), v("now")]).await;
    let mut got = Vec::new();
    while got.is_empty() {
        got.extend(messages(&[tab.next().await]));
    }
    assert_eq!(got, ["now"]);

    // The new tenure began at the join: a later reconnect resumes within it.
    let pos = tab.pos.clone();
    drop(tab);
    speaker.ok("room_say", vec![v("vault"), v("missed")]).await;
    let (got, position) = rejoin_replaying(&url, "eve", pos, "vault", 1).await;
    assert_eq!(got, ["missed"]);
    assert_eq!(get(&position, "recovered"), &Value::from(true));
}

/// A position forged for a group the identity joins for the first time (no tenure yet) is not
/// replayed either: the tenure begins at the join.
#[tokio::test]
async fn a_forged_group_position_is_not_replayed_to_a_first_time_member() {
    let url = start(ephaptic::Server::new()).await;
    let (mut insider, _, _) = Tab::open(&url, "ivan", vec![]).await;
    insider.c.ok("enter_room", vec![v("board")]).await;
    let mut speaker = Client::connect(&url).await;
    for i in 0..5 {
        speaker
            .ok("room_say", vec![v("board"), v(&format!("minute {i}"))])
            .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.extend(messages(&[insider.next().await]));
    }
    // The outsider learns the epoch (from its own earlier join, or anywhere) and forges 0.
    let epoch = insider
        .pos
        .iter()
        .find(|(s, _)| s == "g:board")
        .map(|(_, (e, _))| e.clone())
        .unwrap();
    let forged = vec![("g:board".to_owned(), (epoch, 0))];
    let (_tab, position) = rejoin_replaying_nothing(&url, "mallory", forged, "board").await;
    assert_eq!(get(&position, "recovered"), &Value::from(false));
    assert_eq!(get(&position, "reason"), &v("membership"));
}

/// Issue 23: 200,000 unique stream names cost 730 B each, kept for an hour. The history keeps
/// at most `history_max_streams`, letting the least recently used go: a client resuming one
/// that went is told `epoch` (and refetches), while a stream still in use resumes.
#[tokio::test]
async fn past_the_bound_on_streams_the_least_recently_used_go_and_their_resumes_say_so() {
    let url = start(
        ephaptic::Server::new()
            .sessions(ephaptic::SessionSettings::default().history_max_streams(40)),
    )
    .await;
    let open_and_leave = |user: &'static str| {
        let url = url.clone();
        async move {
            let (mut tab, _, _) = Tab::open(&url, user, vec![]).await;
            burst(&url, user, 0, 1).await;
            tab.next().await;
            tab.pos.clone()
        }
    };
    let old = open_and_leave("olga").await;
    let recent_user = "rita";
    // 100 names through the history: `to(..)` a user nobody holds keeps a stream for it.
    let mut sender = Client::connect(&url).await;
    for i in 0..100 {
        sender
            .ok("notify", vec![v(&format!("nobody-{i}")), v("x")])
            .await;
    }
    let recent = open_and_leave(recent_user).await;
    let (_, _, hello) = Tab::open(&url, "olga", old).await;
    let u = stream(&hello, "u");
    assert_eq!(get(u, "recovered"), &Value::from(false), "{hello}");
    assert_eq!(get(u, "reason"), &v("epoch"));
    burst(&url, recent_user, 1, 2).await;
    let (_, before, hello) = Tab::open(&url, recent_user, recent).await;
    assert_eq!(
        get(stream(&hello, "u"), "recovered"),
        &Value::from(true),
        "{hello}"
    );
    assert_eq!(messages(&before), ["1", "2"]);
}

/// Joins `room` and leaves it at once, in one handler: the join's follow-up (its position and
/// the start of the tenure) runs after the leave.
#[ephaptic::expose]
async fn enter_and_leave(caller: ephaptic::Caller, room: String) -> bool {
    caller.join(&room) && caller.leave(&room)
}

/// From the review of issue 23: a join followed at once by a leave must not leave a tenure
/// behind, or a later join with the position it was given is replayed what the group was sent
/// while the client was out of it.
#[tokio::test]
async fn a_join_and_a_leave_in_one_breath_leave_no_tenure_behind() {
    let url = start(ephaptic::Server::new()).await;
    let mut speaker = Client::connect(&url).await;
    speaker.ok("room_say", vec![v("den"), v("before")]).await;
    let (mut tab, _, _) = Tab::open(&url, "flo", vec![]).await;
    tab.c.send(&rpc(3, "enter_and_leave", vec![v("den")])).await;
    // The position frame of the join still comes (the client learns the epoch).
    let position = loop {
        let f = tab.next().await;
        if get(&f, "type") == &v("position") {
            break f;
        }
    };
    let epoch = get(&position, "epoch").as_str().unwrap().to_owned();
    let offset = get(&position, "offset").as_u64().unwrap();
    let mut pos = tab.pos.clone();
    pos.push(("g:den".to_owned(), (epoch, offset)));
    say_secrets(&mut speaker, "den", 20).await;
    drop(tab);
    let (_tab, position) = rejoin_replaying_nothing(&url, "flo", pos, "den").await;
    assert_eq!(
        get(&position, "recovered"),
        &Value::from(false),
        "{position}"
    );
    assert_eq!(get(&position, "reason"), &v("membership"));
}

/// From the review of issue 23: a quiet group's stream is let go, and its next event starts a
/// new epoch; the members who were connected all along keep their tenure in it and resume.
#[tokio::test]
async fn members_connected_when_a_group_starts_a_new_epoch_resume_in_it() {
    let url = start(ephaptic::Server::new().history_max_streams(30)).await;
    let (mut tab, _, _) = Tab::open(&url, "gus", vec![]).await;
    tab.c.ok("enter_room", vec![v("quiet")]).await;
    let first = tab
        .pos
        .iter()
        .find(|(s, _)| s == "g:quiet")
        .map(|(_, (e, _))| e.clone());
    // Many other streams push the quiet group's stream out of the history.
    let mut speaker = Client::connect(&url).await;
    for i in 0..60 {
        speaker
            .ok("notify", vec![v(&format!("nobody-{i}")), v("x")])
            .await;
    }
    speaker.ok("room_say", vec![v("quiet"), v("hello")]).await;
    let mut got = Vec::new();
    while got.is_empty() {
        got.extend(messages(&[tab.next().await]));
    }
    assert_eq!(got, ["hello"]);
    let pos = tab.pos.clone();
    let second = pos
        .iter()
        .find(|(s, _)| s == "g:quiet")
        .map(|(_, (e, _))| e.clone());
    assert_ne!(first, second, "the group started a new epoch");
    drop(tab);
    speaker.ok("room_say", vec![v("quiet"), v("missed")]).await;
    let (got, position) = rejoin_replaying(&url, "gus", pos, "quiet", 1).await;
    assert_eq!(
        get(&position, "recovered"),
        &Value::from(true),
        "{position}"
    );
    assert_eq!(got, ["missed"]);
}

/// `n` messages to `room` (`secret 0`, `secret 1`, ...).
async fn say_secrets(speaker: &mut Client, room: &str, n: usize) {
    for i in 0..n {
        speaker
            .ok("room_say", vec![v(room), v(&format!("secret {i}"))])
            .await;
    }
}

/// Opens a tab of `user` resuming from `pos`, joins `room`, and returns the tab and the group's
/// position frame, asserting that no event of the group was replayed before it.
async fn rejoin_replaying_nothing(
    url: &str,
    user: &str,
    pos: Vec<(String, (String, u64))>,
    room: &str,
) -> (Tab, Value) {
    let (mut tab, _, _) = Tab::open(url, user, pos).await;
    tab.c.send(&rpc(5, "enter_room", vec![v(room)])).await;
    loop {
        let f = tab.next().await;
        assert!(
            messages(std::slice::from_ref(&f)).is_empty(),
            "replayed: {f:?}"
        );
        if get(&f, "type") == &v("position") {
            return (tab, f);
        }
    }
}

/// Opens a tab of `user` resuming from `pos`, joins `room`, and returns the messages replayed
/// and live (until there are `n`) and the group's position frame.
async fn rejoin_replaying(
    url: &str,
    user: &str,
    pos: Vec<(String, (String, u64))>,
    room: &str,
    n: usize,
) -> (Vec<String>, Value) {
    let (mut tab, _, _) = Tab::open(url, user, pos).await;
    tab.c.send(&rpc(5, "enter_room", vec![v(room)])).await;
    let mut got = Vec::new();
    let mut position = None;
    while position.is_none() || got.len() < n {
        let f = tab.next().await;
        match get(&f, "type").as_str() {
            Some("event") => got.extend(messages(&[f])),
            Some("position") => position = Some(f),
            _ => {}
        }
    }
    (got, position.expect("a position frame"))
}
