//! Presence end to end: servers on real loopback WebSockets (parity's functions:
//! `presence_track`, `presence_untrack`, `presence_members`, `whoami` and its identity loader),
//! clients that watch through the reserved calls and apply the diffs they receive, and, for the
//! tests across servers, a real `redis-server` on a free port and a parity child process to
//! `kill -9`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::child::{Parity, parity_bin};
use common::*;
use ephaptic::{Caller, Value, expose};

use parity as _;

const EVENT: &str = "__ephaptic.presence";

/// Joins a group without tracking (which lets the caller watch it).
#[expose]
async fn just_join(caller: Caller, group: String) -> bool {
    caller.join(&group)
}

// ----------------------------------------------------------------------------------------------
// A client that keeps the events arriving between replies, and a watcher's view of a group.

struct Peer {
    c: Client,
    events: Vec<Value>,
}

impl Peer {
    async fn anonymous(url: &str) -> Peer {
        Peer {
            c: Client::connect(url).await,
            events: Vec::new(),
        }
    }

    async fn user(url: &str, name: &str) -> Peer {
        let mut p = Peer {
            c: Client::connect_as(url, v(name)).await,
            events: Vec::new(),
        };
        assert_eq!(p.ok("whoami", vec![]).await, v(name));
        p
    }

    async fn reply(&mut self, name: &str, args: Vec<Value>) -> Value {
        self.c.send(&rpc(1, name, args)).await;
        loop {
            let frame = self.c.recv().await;
            if get(&frame, "type") == &v("event") {
                self.events.push(frame);
            } else {
                return frame;
            }
        }
    }

    async fn ok(&mut self, name: &str, args: Vec<Value>) -> Value {
        let reply = self.reply(name, args).await;
        assert!(has(&reply, "result"), "{name}: {reply}");
        get(&reply, "result").clone()
    }

    async fn track(&mut self, group: &str, name: &str) {
        assert_eq!(
            self.ok("presence_track", vec![v(group), v(name)]).await,
            Value::from(true)
        );
    }

    /// The next presence diff, within `limit`.
    async fn diff_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(at) = self.events.iter().position(|e| get(e, "name") == &v(EVENT)) {
            return Some(self.events.remove(at));
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = decode(&self.c.recv_raw_within(left).await?);
            if get(&frame, "name") == &v(EVENT) {
                return Some(frame);
            }
            self.events.push(frame);
        }
    }
}

/// A group's members as a watcher sees them: member key -> connection id -> meta name.
#[derive(Debug, Default, Clone, PartialEq)]
struct View(BTreeMap<String, BTreeMap<String, String>>);

fn members_of(list: &Value) -> View {
    let mut view = View::default();
    for m in get(list, "members").as_array().unwrap() {
        let key = get(m, "key").as_str().unwrap().to_owned();
        for c in get(m, "connections").as_array().unwrap() {
            view.0.entry(key.clone()).or_default().insert(
                get(c, "id").as_str().unwrap().to_owned(),
                get(get(c, "meta"), "name").as_str().unwrap().to_owned(),
            );
        }
    }
    view
}

impl View {
    /// Applies one diff event; returns how many connections it named.
    fn apply(&mut self, event: &Value) -> usize {
        let diff = get(get(event, "payload"), "kwargs");
        let mut named = 0;
        for m in get(diff, "joins").as_array().unwrap() {
            let key = get(m, "key").as_str().unwrap().to_owned();
            for c in get(m, "connections").as_array().unwrap() {
                named += 1;
                self.0.entry(key.clone()).or_default().insert(
                    get(c, "id").as_str().unwrap().to_owned(),
                    get(get(c, "meta"), "name").as_str().unwrap().to_owned(),
                );
            }
        }
        for m in get(diff, "leaves").as_array().unwrap() {
            let key = get(m, "key").as_str().unwrap();
            for c in get(m, "connections").as_array().unwrap() {
                named += 1;
                if let Some(conns) = self.0.get_mut(key) {
                    conns.remove(c.as_str().unwrap());
                    if conns.is_empty() {
                        self.0.remove(key);
                    }
                }
            }
        }
        named
    }

    fn keys(&self) -> BTreeSet<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Applies diffs until `done(view)` holds; panics after `limit`.
async fn until(peer: &mut Peer, view: &mut View, limit: Duration, done: impl Fn(&View) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(view) {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.diff_within(left).await {
            Some(diff) => {
                view.apply(&diff);
            }
            None => panic!("the view never got there; it is {view:?}"),
        }
    }
}

/// Watches `group`: the snapshot as a view.
async fn watch(peer: &mut Peer, group: &str) -> View {
    let list = peer.ok("__ephaptic.presence.watch", vec![v(group)]).await;
    assert_eq!(get(&list, "group"), &v(group));
    members_of(&list)
}

fn fast() -> ephaptic::Server {
    ephaptic::Server::new()
        .presence(ephaptic::PresenceSettings::default().batch(Duration::from_millis(50), 256))
}

// ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn three_tabs_are_one_member_who_leaves_with_the_last() {
    let url = start(fast()).await;
    let mut bob = Peer::user(&url, "bob").await;
    bob.ok("just_join", vec![v("room:1")]).await;
    let mut view = watch(&mut bob, "room:1").await;
    assert_eq!(view, View::default());

    let mut tabs = Vec::new();
    for i in 0..3 {
        let mut tab = Peer::user(&url, "alice").await;
        tab.track("room:1", &format!("alice-{i}")).await;
        tabs.push(tab);
    }
    until(&mut bob, &mut view, Duration::from_secs(5), |v| {
        v.0.get("s:alice").map_or(0, BTreeMap::len) == 3
    })
    .await;
    assert_eq!(view.keys(), BTreeSet::from(["s:alice"]), "one member");

    let list = bob.ok("presence_members", vec![v("room:1")]).await;
    assert_eq!(
        members_of(&list),
        view,
        "the server's list is the watcher's"
    );
    assert_eq!(
        (get(&list, "users"), get(&list, "connections")),
        (&Value::from(1), &Value::from(3))
    );
    let count = bob.ok("__ephaptic.presence.count", vec![v("room:1")]).await;
    assert_eq!(get(&count, "users"), &Value::from(1));

    // Two tabs close (one by untracking, one by going away): alice is still here.
    assert_eq!(
        tabs[0].ok("presence_untrack", vec![v("room:1")]).await,
        Value::from(true)
    );
    drop(tabs.remove(1));
    until(&mut bob, &mut view, Duration::from_secs(5), |v| {
        v.0.get("s:alice").map_or(0, BTreeMap::len) == 1
    })
    .await;
    assert_eq!(view.keys(), BTreeSet::from(["s:alice"]));
    let list = bob.ok("presence_members", vec![v("room:1")]).await;
    assert_eq!(members_of(&list), view);

    // The last one leaves: so does alice.
    drop(tabs);
    until(&mut bob, &mut view, Duration::from_secs(5), |v| {
        v.0.is_empty()
    })
    .await;
    let list = bob.ok("presence_members", vec![v("room:1")]).await;
    assert_eq!(get(&list, "users"), &Value::from(0));
}

#[tokio::test]
async fn only_watchers_hear_presence_and_only_the_permitted_may_watch() {
    let url = start(fast()).await;
    // In the group, but not watching its presence: an old client sees its group's events only.
    let mut old = Peer::user(&url, "old").await;
    old.ok("just_join", vec![v("room:2")]).await;
    // Neither joined nor tracked: refused.
    let mut stranger = Peer::user(&url, "stranger").await;
    for call in ["watch", "list", "count"] {
        let reply = stranger
            .reply(&format!("__ephaptic.presence.{call}"), vec![v("room:2")])
            .await;
        assert_eq!(
            get(get(&reply, "error"), "code"),
            &v("FORBIDDEN"),
            "{call}: {reply}"
        );
    }
    let bad = stranger.reply("__ephaptic.presence.watch", vec![]).await;
    assert_eq!(get(get(&bad, "error"), "code"), &v("VALIDATION_ERROR"));
    let long = stranger
        .reply("__ephaptic.presence.watch", vec![v(&"x".repeat(2000))])
        .await;
    assert_eq!(get(get(&long, "error"), "code"), &v("VALIDATION_ERROR"));
    let unknown = stranger.reply("__ephaptic.presence.nope", vec![]).await;
    assert_eq!(get(get(&unknown, "error"), "code"), &v("NOT_FOUND"));

    let mut alice = Peer::user(&url, "alice").await;
    alice.track("room:2", "alice").await;
    old.c.expect_silence(Duration::from_millis(400)).await;
    stranger.c.expect_silence(Duration::from_millis(100)).await;
    assert!(old.events.is_empty() && stranger.events.is_empty());

    // A hook decides instead of membership.
    let url = start(fast().presence_authorize(|caller, group| async move {
        group.starts_with("public:") && caller.is_authenticated()
    }))
    .await;
    let mut anon = Peer::anonymous(&url).await;
    let reply = anon
        .reply("__ephaptic.presence.list", vec![v("public:1")])
        .await;
    assert_eq!(get(get(&reply, "error"), "code"), &v("FORBIDDEN"));
    let mut carol = Peer::user(&url, "carol").await;
    let list = carol
        .ok("__ephaptic.presence.list", vec![v("public:1")])
        .await;
    assert_eq!(get(&list, "users"), &Value::from(0));
    carol.ok("just_join", vec![v("private:1")]).await;
    let reply = carol
        .reply("__ephaptic.presence.watch", vec![v("private:1")])
        .await;
    assert_eq!(get(get(&reply, "error"), "code"), &v("FORBIDDEN"));
}

#[tokio::test]
async fn two_hundred_joining_at_once_are_a_few_bounded_frames() {
    let url = start(ephaptic::Server::new().presence_batch(Duration::from_millis(200), 64)).await;
    let mut watcher = Peer::user(&url, "watcher").await;
    watcher.ok("just_join", vec![v("lobby")]).await;
    let mut view = watch(&mut watcher, "lobby").await;

    let joins = (0..200).map(|i| {
        let url = url.clone();
        async move {
            let mut p = Peer::user(&url, &format!("user-{i}")).await;
            p.track("lobby", &format!("user-{i}")).await;
            p
        }
    });
    let peers = futures_util::future::join_all(joins).await;
    let mut frames = 0;
    let mut named = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while view.0.len() < 200 {
        let left = deadline.saturating_duration_since(Instant::now());
        let diff = watcher
            .diff_within(left)
            .await
            .unwrap_or_else(|| panic!("only {} of 200 arrived", view.0.len()));
        frames += 1;
        let n = view.apply(&diff);
        assert!(
            n <= 64,
            "a frame named {n} connections, more than the batch bound"
        );
        named += n;
    }
    assert_eq!(named, 200, "each connection named once");
    eprintln!("200 joins reached the watcher in {frames} frames");
    // 200 joins in 64-connection frames: at least 4; they arrive in a few batch periods.
    assert!((4..=20).contains(&frames), "{frames} frames for 200 joins");
    let list = watcher.ok("presence_members", vec![v("lobby")]).await;
    assert_eq!(members_of(&list), view);
    drop(peers);
    until(&mut watcher, &mut view, Duration::from_secs(10), |v| {
        v.0.is_empty()
    })
    .await;
}

// ----------------------------------------------------------------------------------------------
// Across servers.

/// A server on `redis` whose presence entries expire `ttl` after its last heartbeat.
async fn node(redis: &str, ttl: Duration) -> String {
    start(
        fast()
            .redis(redis)
            .redis_probe_interval(Duration::from_millis(300))
            .presence_ttl(ttl),
    )
    .await
}

#[tokio::test]
async fn two_servers_on_one_redis_list_the_same_members() {
    let redis = redis_or_skip!();
    let a = node(&redis.url(), Duration::from_secs(30)).await;
    let b = node(&redis.url(), Duration::from_secs(30)).await;
    let mut watcher = Peer::user(&b, "watcher").await;
    watcher.ok("just_join", vec![v("doc:1")]).await;
    let mut view = watch(&mut watcher, "doc:1").await;

    // alice has a tab on each server, carol one on A: two members.
    let mut alice_a = Peer::user(&a, "alice").await;
    alice_a.track("doc:1", "alice on a").await;
    let mut alice_b = Peer::user(&b, "alice").await;
    alice_b.track("doc:1", "alice on b").await;
    let mut carol = Peer::user(&a, "carol").await;
    carol.track("doc:1", "carol").await;
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        v.0.values().map(BTreeMap::len).sum::<usize>() == 3
    })
    .await;
    assert_eq!(view.keys(), BTreeSet::from(["s:alice", "s:carol"]));
    let on_a = members_of(&alice_a.ok("presence_members", vec![v("doc:1")]).await);
    let on_b = members_of(&alice_b.ok("presence_members", vec![v("doc:1")]).await);
    assert_eq!(on_a, on_b, "both servers list the same members");
    assert_eq!(on_a, view, "and the watcher on B agrees");

    // alice's tab on A goes: she stays (her tab on B); then it goes too.
    drop(alice_a);
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        v.0.get("s:alice").map_or(0, BTreeMap::len) == 1
    })
    .await;
    drop(alice_b);
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        !v.0.contains_key("s:alice")
    })
    .await;
    let list = carol.ok("presence_members", vec![v("doc:1")]).await;
    assert_eq!(members_of(&list), view);
    assert_eq!(get(&list, "users"), &Value::from(1));
    drop(carol);
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        v.0.is_empty()
    })
    .await;
    assert!(
        redis.keys("ephaptic:p[dem]:*doc:1*").await.is_empty(),
        "an empty group leaves no keys"
    );
}

/// The documented bound: entries outlive a crashed server by at most its TTL, and the leaves
/// reach watchers at most one refresh (a third of the TTL) and a batch later. The watcher's
/// server tracks no one (its heartbeat runs for its watchers alone), and dave's server refreshes
/// every 10 s, so the leave can only come from the watcher's server's sweep.
#[tokio::test]
async fn kill_9_of_a_server_removes_its_members_within_the_ttl() {
    let redis = redis_or_skip!();
    let ttl = Duration::from_millis(1500);
    let mut cmd = Command::new(parity_bin());
    cmd.args(["--redis", &redis.url(), "--presence-ttl", "1500"])
        .args(["--presence-batch", "50"]);
    let doomed = Parity::start_with(cmd, "warn");
    let survivor = node(&redis.url(), ttl).await;
    let other = node(&redis.url(), Duration::from_secs(30)).await;

    let mut watcher = Peer::user(&survivor, "watcher").await;
    watcher.ok("just_join", vec![v("room:9")]).await;
    let mut view = watch(&mut watcher, "room:9").await;
    let mut alice = Peer::user(&doomed.url, "alice").await;
    alice.track("room:9", "alice").await;
    let mut dave = Peer::user(&other, "dave").await;
    dave.track("room:9", "dave").await;
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        v.0.len() == 2
    })
    .await;

    // Past a few heartbeats, alice is still listed: her server refreshes her entry.
    tokio::time::sleep(ttl * 2).await;
    let list = dave.ok("presence_members", vec![v("room:9")]).await;
    assert_eq!(
        members_of(&list).keys(),
        BTreeSet::from(["s:alice", "s:dave"])
    );

    let killed = Instant::now();
    drop(doomed); // SIGKILL: no untrack, no goodbye
    drop(alice);
    until(
        &mut watcher,
        &mut view,
        ttl + ttl / 3 + Duration::from_secs(3),
        |v| !v.0.contains_key("s:alice"),
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "alice left after {took:?}: before her entry could have expired"
    );
    let list = watcher.ok("presence_members", vec![v("room:9")]).await;
    assert_eq!(members_of(&list).keys(), BTreeSet::from(["s:dave"]));
    assert_eq!(view.keys(), BTreeSet::from(["s:dave"]));
    eprintln!("a kill -9 took {took:?} to reach the watcher (ttl {ttl:?})");
}

#[tokio::test]
async fn a_track_after_the_close_leaves_no_entry() {
    let url = start(fast().on_disconnect(|caller: Caller| async move {
        let name = "ghost".to_owned();
        let _ = caller
            .presence("haunted")
            .track(parity::Online { name })
            .await;
    }))
    .await;
    let mut ghost = Peer::user(&url, "ghost").await;
    ghost.track("haunted", "ghost").await;
    let mut watcher = Peer::user(&url, "watcher").await;
    watcher.ok("just_join", vec![v("haunted")]).await;
    let mut view = watch(&mut watcher, "haunted").await;
    assert_eq!(view.keys(), BTreeSet::from(["s:ghost"]));
    drop(ghost);
    until(&mut watcher, &mut view, Duration::from_secs(5), |v| {
        v.0.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = watcher.ok("presence_members", vec![v("haunted")]).await;
    assert_eq!(get(&list, "users"), &Value::from(0), "{list}");
}

/// Joins `group` and says why not, as an application that passes the refusal on would.
#[expose]
async fn try_join(caller: Caller, group: String) -> ephaptic::Result<bool> {
    caller.try_join(&group)
}

/// Issue 23: a client that got `FORBIDDEN` for a group's presence called an application
/// function that joins any group, named the group's watchers (`__ephaptic.presence:<group>`),
/// and then received the group's diffs; the same way it could inject application events into
/// the watchers' stream. The runtime's own names are now refused to application code.
#[tokio::test]
async fn a_client_refused_a_groups_presence_cannot_join_its_watchers_or_write_to_them() {
    let url = start(fast().presence_authorize(|caller, group| async move {
        group.starts_with("private:") && caller.identity() == Some(&ephaptic::Identity::from("ann"))
    }))
    .await;
    let mut ann = Peer::user(&url, "ann").await;
    let mut view = watch(&mut ann, "private:1").await;
    assert!(view.0.is_empty());

    let mut mallory = Peer::user(&url, "mallory").await;
    let reply = mallory
        .reply("__ephaptic.presence.watch", vec![v("private:1")])
        .await;
    assert_eq!(get(get(&reply, "error"), "code"), &v("FORBIDDEN"));
    let watchers = "__ephaptic.presence:private:1";
    // Through the application's join: refused, and said why.
    assert_eq!(
        mallory.ok("just_join", vec![v(watchers)]).await,
        Value::from(false)
    );
    let reply = mallory.reply("try_join", vec![v(watchers)]).await;
    let error = get(&reply, "error");
    assert_eq!(get(error, "code"), &v("INVALID_NAME"), "{reply}");
    assert!(
        get(error, "message")
            .as_str()
            .unwrap()
            .contains("__ephaptic."),
        "{reply}"
    );
    // Nor through the presence calls themselves, nested.
    let reply = mallory
        .reply("__ephaptic.presence.watch", vec![v(watchers)])
        .await;
    assert_eq!(get(get(&reply, "error"), "code"), &v("INVALID_NAME"));
    // An application emit to the watchers reaches no one.
    assert_eq!(
        mallory.ok("room_say", vec![v(watchers), v("forged")]).await,
        Value::from(0)
    );

    // bob joins the group: ann, its authorised watcher, hears of it; mallory hears nothing.
    let mut bob = Peer::user(&url, "bob").await;
    bob.track("private:1", "bob").await;
    let diff = ann
        .diff_within(Duration::from_secs(5))
        .await
        .expect("a diff");
    view.apply(&diff);
    assert!(view.0.contains_key("s:bob"), "{view:?}");
    assert_eq!(mallory.diff_within(Duration::from_millis(300)).await, None);
    assert!(mallory.events.is_empty(), "{:?}", mallory.events);
    assert!(
        ann.events.iter().all(|e| get(e, "name") != &v("Notice")),
        "{:?}",
        ann.events
    );
}

/// Issue 23: 200 members tracked with 900 KB metas made one `list` reply a 180 MB frame, and
/// twelve lists at once took the server to 3 GB. A meta is now bounded at `track`, and a list
/// at a byte bound (`truncated: true`), so no presence frame outgrows what a client accepts.
#[tokio::test]
async fn presence_metas_and_lists_are_bounded_in_bytes() {
    let url = start(fast()).await;
    let mut greedy = Peer::user(&url, "greedy").await;
    let reply = greedy
        .reply("presence_track", vec![v("hall"), v(&"m".repeat(900_000))])
        .await;
    let error = get(&reply, "error");
    assert_eq!(get(error, "code"), &v("META_TOO_LARGE"), "{reply}");
    assert_eq!(get(get(error, "data"), "limit"), &Value::from(4096));
    // The connection goes on, and a meta within the bound is tracked.
    greedy.track("hall", "greedy").await;

    // 200 members with metas just under the bound: 800 KB of metas in all.
    let name = |i: usize| format!("{i:03}{}", "n".repeat(3_900));
    let joins = (0..200).map(|i| {
        let (url, name) = (url.clone(), name(i));
        async move {
            let mut p = Peer::user(&url, &format!("member-{i:03}")).await;
            p.track("hall", &name).await;
            p
        }
    });
    let _members = futures_util::future::join_all(joins).await;

    let mut watcher = Peer::user(&url, "watcher").await;
    watcher.ok("just_join", vec![v("hall")]).await;
    watcher
        .c
        .send(&rpc(9, "__ephaptic.presence.list", vec![v("hall")]))
        .await;
    let raw = loop {
        let raw = watcher.c.recv_raw().await;
        if get(&decode(&raw), "id") == &Value::from(9) {
            break raw;
        }
    };
    eprintln!(
        "a list of 201 members with 4 KB metas: a {} B frame",
        raw.len()
    );
    assert!(
        raw.len() <= 600 << 10,
        "a list frame of {} bytes",
        raw.len()
    );
    let list = get(&decode(&raw), "result").clone();
    assert_eq!(get(&list, "truncated"), &Value::from(true));
    assert_eq!(get(&list, "users"), &Value::from(201));
    let listed = get(&list, "members").as_array().unwrap().len();
    assert!((100..201).contains(&listed), "{listed} members listed");
}
