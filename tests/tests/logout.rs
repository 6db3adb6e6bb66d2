//! Sessions the server ends (docs/PROTOCOL.md 5.11), over real loopback WebSockets:
//! `ephaptic::disconnect` closes a user's every connection with 4401 and leaves the others
//! alone; credentials that expire are refreshed in band on the same connection, or end the
//! session; the revalidation hook ends the sessions whose server-side record is gone.
//! (Across servers through Redis: `redis.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use ephaptic::{Audience, Caller, Expiring, Identity, Server, Value, event, expose};

/// `exp:<user>:<ms>` grants `<user>` for `<ms>` milliseconds; `past:<user>` a grant that has
/// expired already; any other token is that identity for good.
#[ephaptic::identity_loader]
async fn load(token: Option<String>) -> Option<Expiring<String>> {
    let token = token?;
    if let Some(user) = token.strip_prefix("past:") {
        return Some(Expiring::at(
            user.to_owned(),
            std::time::SystemTime::now() - Duration::from_secs(1),
        ));
    }
    if let Some(rest) = token.strip_prefix("exp:") {
        let (user, ms) = rest.rsplit_once(':')?;
        return Some(Expiring::after(
            user.to_owned(),
            Duration::from_millis(ms.parse().ok()?),
        ));
    }
    Some(Expiring::never(token))
}

#[event]
#[derive(Debug)]
pub struct Ping {
    pub n: u32,
}

#[expose]
async fn whoami(caller: Caller) -> Option<Identity> {
    caller.identity().cloned()
}

/// Milliseconds until the caller's identity expires; nil when it does not.
#[expose]
async fn expires_in(caller: Caller) -> Option<u64> {
    let at = caller.expires_at()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .as_millis() as u64,
    )
}

/// Ends `user`'s sessions: `[closed here, published]`.
#[expose]
async fn kick(user: String, reason: String) -> (usize, bool) {
    let ended = ephaptic::disconnect(ephaptic::to(user), &reason);
    (ended.local, ended.published)
}

#[expose]
async fn kick_group(group: String) -> usize {
    Audience::group(group).disconnect("room closed").local
}

#[expose]
async fn enter(caller: Caller, group: String) -> bool {
    caller.join(&group)
}

#[expose]
async fn ping(user: String, n: u32) -> usize {
    ephaptic::to(user).emit(Ping { n }).await.local
}

const ENDED: u16 = 4401;

fn init_with(token: &str, refresh: bool) -> Value {
    let mut entries = vec![("type", v("init")), ("auth", v(token))];
    if refresh {
        entries.push(("v", Value::from(2)));
        entries.push(("refresh", Value::from(true)));
    }
    map(entries)
}

/// A connection as `token`, its identity settled (a `whoami` answered).
async fn user(url: &str, token: &str, refresh: bool) -> Client {
    let mut c = Client::connect(url).await;
    c.send(&init_with(token, refresh)).await;
    let who = c.ok("whoami", vec![]).await;
    assert_ne!(who, Value::Nil, "{token} is identified");
    c
}

#[tokio::test]
async fn disconnect_closes_every_connection_of_the_user_with_4401_and_nobody_elses() {
    let url = start(Server::new()).await;
    let mut alice = [
        user(&url, "alice", false).await,
        user(&url, "alice", true).await,
    ];
    let mut bob = user(&url, "bob", false).await;
    let mut admin = user(&url, "admin", false).await;

    let ended = admin
        .ok("kick", vec![v("alice"), v("revoked for a test")])
        .await;
    assert_eq!(
        ended,
        Value::Array(vec![Value::from(2), Value::from(false)]),
        "two closed here; no backplane to publish to"
    );
    for tab in &mut alice {
        assert_eq!(
            tab.closed_within(Duration::from_secs(1)).await,
            Some((ENDED, "revoked for a test".to_owned()))
        );
    }
    // Bob is untouched: he answers calls and gets his events.
    assert_eq!(bob.ok("whoami", vec![]).await, v("bob"));
    assert_eq!(
        admin.ok("ping", vec![v("bob"), Value::from(7)]).await,
        Value::from(1)
    );
    let event = bob.recv().await;
    assert_eq!(get(&event, "name"), &v("Ping"));
    // Nobody is left to kick; a new connection of alice (new credentials) works.
    assert_eq!(
        admin.ok("kick", vec![v("alice"), v("again")]).await,
        Value::Array(vec![Value::from(0), Value::from(false)])
    );
    let mut again = user(&url, "alice", true).await;
    assert_eq!(again.ok("whoami", vec![]).await, v("alice"));
}

#[tokio::test]
async fn a_long_reason_is_cut_to_what_a_close_frame_carries() {
    let url = start(Server::new()).await;
    let mut alice = user(&url, "alice", false).await;
    let mut admin = user(&url, "admin", false).await;
    let reason = "é".repeat(200);
    admin.ok("kick", vec![v("alice"), v(&reason)]).await;
    let (code, got) = alice.closed_within(Duration::from_secs(1)).await.unwrap();
    assert_eq!(code, ENDED);
    assert!(
        got.len() <= 123 && reason.starts_with(&got),
        "{}",
        got.len()
    );
}

#[tokio::test]
async fn a_group_audience_ends_its_members_sessions_only() {
    let url = start(Server::new()).await;
    let mut inside = user(&url, "alice", false).await;
    let mut outside = user(&url, "bob", false).await;
    assert_eq!(inside.ok("enter", vec![v("room")]).await, Value::from(true));
    assert_eq!(
        outside.ok("kick_group", vec![v("room")]).await,
        Value::from(1)
    );
    assert_eq!(
        inside.closed_within(Duration::from_secs(1)).await,
        Some((ENDED, "room closed".to_owned()))
    );
    assert_eq!(outside.ok("whoami", vec![]).await, v("bob"));
}

/// Reads frames until the `refresh` frame; returns its `expires`.
async fn refresh_frame(c: &mut Client, limit: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = c
            .recv_raw_within(left)
            .await
            .expect("a refresh frame before the expiry");
        let frame = decode(&raw);
        if get(&frame, "type") == &v("refresh") {
            assert!(!has(&frame, "id"), "old clients must ignore it: {frame}");
            return get(&frame, "expires").as_u64().expect("expires in ms");
        }
    }
}

/// The reply to a call sent with `id`, skipping other frames.
async fn reply_to(c: &mut Client, id: i64) -> Value {
    loop {
        let frame = c.recv().await;
        if get(&frame, "id") == &Value::from(id) {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_client_that_refreshes_keeps_its_connection_past_each_expiry() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "exp:alice:600", true).await;
    let first = c.ok("expires_in", vec![]).await.as_u64().unwrap();
    assert!(first <= 600, "{first}");
    let mut id = 10;
    // Three grants of 600 ms in a row: 1.8 s on one connection, well past the first expiry.
    for _ in 0..3 {
        let expires = refresh_frame(&mut c, Duration::from_secs(2)).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(expires > now, "asked before the expiry");
        id += 1;
        c.send(&rpc(id, "__ephaptic.refresh", vec![v("exp:alice:600")]))
            .await;
        let reply = reply_to(&mut c, id).await;
        let next = get(get(&reply, "result"), "expires").as_u64();
        assert!(
            next.is_some_and(|n| n > expires),
            "the expiry moved on: {reply}"
        );
    }
    assert_eq!(c.ok("whoami", vec![]).await, v("alice"));
    assert!(c.closed_within(Duration::from_millis(100)).await.is_none());
}

#[tokio::test]
async fn a_client_that_does_not_answer_the_refresh_is_ended_at_the_expiry() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "exp:alice:500", true).await;
    refresh_frame(&mut c, Duration::from_secs(1)).await;
    assert_eq!(
        c.closed_within(Duration::from_secs(2)).await,
        Some((ENDED, "credentials expired".to_owned()))
    );
}

#[tokio::test]
async fn an_old_client_is_closed_normally_at_the_expiry_and_may_come_back() {
    let url = start(Server::new()).await;
    // No `refresh: true`: no refresh frame, then an ordinary close it reconnects after.
    let mut c = user(&url, "exp:alice:400", false).await;
    assert_eq!(
        c.closed_within(Duration::from_secs(2)).await,
        Some((1000, "credentials expired".to_owned()))
    );
    let mut back = user(&url, "exp:alice:5000", false).await;
    assert_eq!(back.ok("whoami", vec![]).await, v("alice"));
}

#[tokio::test]
async fn refreshed_credentials_of_someone_else_end_the_session() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "exp:alice:5000", true).await;
    c.send(&rpc(9, "__ephaptic.refresh", vec![v("exp:mallory:5000")]))
        .await;
    let reply = reply_to(&mut c, 9).await;
    assert_eq!(get(get(&reply, "error"), "code"), &v("UNAUTHORIZED"));
    assert_eq!(
        c.closed_within(Duration::from_secs(1)).await,
        Some((
            ENDED,
            "credentials refreshed for another identity".to_owned()
        ))
    );
    // And credentials the loader refuses (an empty token is anonymous) end it too.
    let mut c = user(&url, "exp:alice:5000", true).await;
    c.send(&rpc_kw(
        9,
        "__ephaptic.refresh",
        vec![],
        vec![("auth", Value::Nil)],
    ))
    .await;
    assert_eq!(
        c.closed_within(Duration::from_secs(1)).await,
        Some((ENDED, "credentials refused".to_owned()))
    );
}

#[tokio::test]
async fn a_refresh_to_credentials_without_expiry_stops_the_clock() {
    let url = start(Server::new()).await;
    let mut c = user(&url, "exp:alice:400", true).await;
    c.send(&rpc(5, "__ephaptic.refresh", vec![v("alice")]))
        .await;
    let reply = reply_to(&mut c, 5).await;
    assert_eq!(get(get(&reply, "result"), "expires"), &Value::Nil);
    assert_eq!(c.ok("expires_in", vec![]).await, Value::Nil);
    // Past the first grant's end, the connection is still there.
    assert!(c.closed_within(Duration::from_millis(700)).await.is_none());
    assert_eq!(c.ok("whoami", vec![]).await, v("alice"));
}

#[tokio::test]
async fn a_grant_that_has_expired_already_leaves_the_connection_anonymous() {
    let url = start(Server::new()).await;
    let mut c = Client::connect(&url).await;
    c.send(&init_with("past:alice", true)).await;
    assert_eq!(c.ok("whoami", vec![]).await, Value::Nil);
    assert!(c.closed_within(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn the_revalidation_hook_ends_the_sessions_it_names_in_batches_per_identity() {
    let batches = Arc::new(AtomicUsize::new(0));
    let seen = batches.clone();
    let server = Server::new().revalidate(Duration::from_millis(100), move |ids: Vec<Identity>| {
        seen.fetch_add(1, Ordering::SeqCst);
        // One entry per identity, however many connections it has.
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "{ids:?}");
        async move {
            ids.into_iter()
                .filter(|id| id.as_str() == Some("alice"))
                .collect()
        }
    });
    let url = start(server).await;
    let mut alice = [
        user(&url, "alice", false).await,
        user(&url, "alice", true).await,
    ];
    let mut bob = user(&url, "bob", false).await;
    for tab in &mut alice {
        assert_eq!(
            tab.closed_within(Duration::from_secs(2)).await,
            Some((ENDED, "session revoked".to_owned()))
        );
    }
    assert!(batches.load(Ordering::SeqCst) >= 1);
    assert!(
        bob.closed_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    assert_eq!(bob.ok("whoami", vec![]).await, v("bob"));
}
