//! Authentication over a real loopback WebSocket: a token in `init.auth`, a cookie in the
//! upgrade request read by the identity loader through its `Handshake`, a connection whose
//! first frame is not `init`, and handlers that read the handshake when the server keeps it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use ephaptic::{Caller, Handshake, Identity, Server, Value, expose};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The declared loader: a token from `init.auth` first, the `session` cookie after.
#[ephaptic::identity_loader]
async fn load(token: Option<String>, handshake: Handshake) -> Option<String> {
    let session = token.or_else(|| handshake.cookie("session").map(str::to_owned))?;
    session.strip_prefix("user-").map(str::to_owned)
}

#[expose]
async fn whoami(caller: Caller) -> Option<Identity> {
    caller.identity().cloned()
}

#[expose(requires_login)]
async fn secret() -> &'static str {
    "s3cret"
}

/// What handlers see of the upgrade request: `None` unless the server keeps it.
#[expose]
async fn request_info(caller: Caller) -> Option<Vec<Option<String>>> {
    let hs = caller.handshake()?;
    Some(vec![
        hs.header("user-agent").map(str::to_owned),
        Some(hs.path().to_owned()),
        hs.query().map(str::to_owned),
        hs.peer_addr().map(|a| a.ip().to_string()),
    ])
}

/// Connects to `url` with these extra request headers.
async fn connect_with(url: &str, headers: &[(&'static str, &str)]) -> Client {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    Client { ws }
}

fn init(auth: Option<Value>) -> Value {
    let mut entries = vec![("type", v("init"))];
    if let Some(auth) = auth {
        entries.push(("auth", auth));
    }
    map(entries)
}

#[tokio::test]
async fn the_loader_reads_a_cookie_from_the_upgrade_request() {
    let url = start(Server::new()).await;
    let mut c = connect_with(&url, &[("cookie", "theme=dark; session=user-alice")]).await;
    // What the TypeScript client does without an `auth` option: `init` with no `auth`.
    c.send(&init(None)).await;
    assert_eq!(c.ok("whoami", vec![]).await, v("alice"));
    assert_eq!(c.ok("secret", vec![]).await, v("s3cret"));
}

#[tokio::test]
async fn a_connection_whose_first_frame_is_a_call_still_gets_its_cookie_identity() {
    let url = start(Server::new()).await;
    let mut c = connect_with(&url, &[("cookie", "session=user-alice")]).await;
    // No `init` at all: the loader runs (without auth) before this call is handled.
    assert_eq!(c.ok("whoami", vec![]).await, v("alice"));
    // A later `init` is still ignored: the identity stays.
    c.send(&init(Some(v("user-mallory")))).await;
    assert_eq!(c.ok("whoami", vec![]).await, v("alice"));

    // Pipelined calls behind that first call all see it too.
    let mut p = connect_with(&url, &[("cookie", "session=user-carol")]).await;
    for id in 1..=3 {
        p.send(&rpc(id, "whoami", vec![])).await;
    }
    for _ in 1..=3 {
        assert_eq!(get(&p.recv().await, "result"), &v("carol"));
    }

    // A text frame first: skipped, and the loader still runs before the next call.
    let mut t = connect_with(&url, &[("cookie", "session=user-dave")]).await;
    t.send_text("hello").await;
    assert_eq!(t.ok("whoami", vec![]).await, v("dave"));

    // An unreadable first frame: answered as usual, and the cookie identity holds.
    let mut b = connect_with(&url, &[("cookie", "session=user-erin")]).await;
    b.send_raw(vec![0xc1]).await;
    b.expect_silence(Duration::from_millis(50)).await;
    assert_eq!(b.ok("whoami", vec![]).await, v("erin"));
}

#[tokio::test]
async fn a_token_in_init_auth_wins_and_no_credentials_is_anonymous() {
    let url = start(Server::new()).await;
    let mut c = connect_with(&url, &[("cookie", "session=user-alice")]).await;
    c.send(&init(Some(v("user-bob")))).await;
    assert_eq!(c.ok("whoami", vec![]).await, v("bob"));

    for first_init in [false, true] {
        let mut anon = Client::connect(&url).await;
        if first_init {
            anon.send(&init(None)).await;
        }
        assert!(anon.ok("whoami", vec![]).await.is_nil());
        assert_eq!(
            get(&anon.err("secret", vec![]).await, "code"),
            &v("UNAUTHORIZED")
        );
    }

    // A cookie the loader does not accept leaves the connection anonymous.
    let mut bad = connect_with(&url, &[("cookie", "session=nobody")]).await;
    assert!(bad.ok("whoami", vec![]).await.is_nil());
}

#[tokio::test]
async fn handlers_see_the_handshake_only_when_the_server_keeps_it() {
    let url = start(Server::new()).await;
    let mut c = connect_with(&url, &[("user-agent", "auth-test/1")]).await;
    assert!(c.ok("request_info", vec![]).await.is_nil());

    let url = start(Server::new().keep_handshake()).await;
    let mut c = connect_with(&format!("{url}?v=2"), &[("user-agent", "auth-test/1")]).await;
    assert_eq!(
        c.ok("request_info", vec![]).await,
        Value::Array(vec![
            v("auth-test/1"),
            v("/_ephaptic"),
            v("v=2"),
            v("127.0.0.1")
        ])
    );
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn a_builder_loader_of_the_handshake_alone_runs_once_per_connection() {
    let server = Server::new().identity_loader(|hs: Handshake| async move {
        LOADS.fetch_add(1, Ordering::SeqCst);
        let key = hs.header("authorization")?.strip_prefix("Bearer ")?;
        (key == "k1").then_some(1u64)
    });
    let url = start(server).await;
    let mut c = connect_with(&url, &[("authorization", "Bearer k1")]).await;
    // `init.auth`, whatever it holds, is ignored by a loader that does not take it.
    c.send(&init(Some(map(vec![("token", int(5))])))).await;
    assert_eq!(c.ok("whoami", vec![]).await, int(1));
    c.send(&init(None)).await;
    assert_eq!(c.ok("whoami", vec![]).await, int(1));
    assert_eq!(LOADS.load(Ordering::SeqCst), 1, "once, not per init");

    let mut other = connect_with(&url, &[("authorization", "Bearer nope")]).await;
    assert!(other.ok("whoami", vec![]).await.is_nil());
    assert_eq!(LOADS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_builder_loader_of_auth_and_handshake_gets_both() {
    let server = Server::new().identity_loader(|n: Option<u64>, hs: Handshake| async move {
        let bonus: u64 = hs.header("x-bonus")?.parse().ok()?;
        Some(n? + bonus)
    });
    let url = start(server).await;
    let mut c = connect_with(&url, &[("x-bonus", "3")]).await;
    c.send(&init(Some(int(4)))).await;
    assert_eq!(c.ok("whoami", vec![]).await, int(7));
}

fn int(n: i64) -> Value {
    Value::from(n)
}
