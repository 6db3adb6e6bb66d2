//! The inspector (`Server::inspector`) over loopback: its JSON snapshot lists what is
//! connected, its trace shows one identity's frames and no one else's, its access rule holds,
//! and its page shows a call live in a real browser (chromium, `tests/browser/inspector.mjs`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ephaptic::{Caller, Server, Value, event, expose};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[ephaptic::identity_loader]
async fn load(auth: Option<String>) -> Option<ephaptic::Identity> {
    auth.filter(|a| !a.is_empty()).map(Into::into)
}

#[event]
#[derive(Debug)]
pub struct Said {
    pub text: String,
}

/// Sends the caller's identity (all its connections) the text back as an event.
#[expose]
async fn inspect_say(caller: Caller, text: String) -> u64 {
    let len = text.len() as u64;
    if let Some(me) = caller.identity().cloned() {
        ephaptic::to(me).emit(Said { text }).await;
    }
    len
}

#[expose]
async fn inspect_join(caller: Caller, group: String) -> bool {
    caller.join(&group)
}

#[expose]
async fn inspect_track(caller: Caller, group: String) -> bool {
    caller.presence(&group).track("here").await.is_ok()
}

/// A response, read whole: its status line, headers (names lowercased) and body.
struct Reply {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        assert!(self.status.contains("200"), "{} {}", self.status, self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// GET `path` from `addr` with `extra` header lines (the `Host` is `addr` unless one is given).
async fn http(addr: &str, path: &str, extra: &[&str]) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !extra
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in extra {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The `host:port` of a WebSocket URL `start` returned.
fn addr_of(ws_url: &str) -> String {
    ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/_ephaptic")
        .to_owned()
}

/// A connection as `who` (anonymous when empty), settled by a first call.
async fn connect(url: &str, who: &str) -> Client {
    let mut c = Client::connect_as(url, v(who)).await;
    c.ok("inspect_join", vec![v("lobby")]).await;
    c
}

/// Calls `inspect_say`, which sends its caller's identity an event before it answers: the
/// answer, the event skipped.
async fn say(c: &mut Client, text: &str) -> Value {
    c.send(&rpc(1, "inspect_say", vec![v(text)])).await;
    loop {
        let frame = c.recv().await;
        if has(&frame, "result") {
            return frame;
        }
        assert_eq!(get(&frame, "name"), &v("Said"), "{frame}");
    }
}

/// Polls `path` until `ready` holds for its JSON (what a call changed may lag its answer by a
/// task's turn); the last JSON read.
async fn until(addr: &str, path: &str, ready: impl Fn(&Json) -> bool) -> Json {
    let mut last = Json::Null;
    for _ in 0..100 {
        last = http(addr, path, &[]).await.json();
        if ready(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{path} never got there: {last:#}");
}

fn row<'a>(list: &'a Json, key: &str, value: &str) -> Option<&'a Json> {
    list["rows"]
        .as_array()?
        .iter()
        .find(|r| r[key].as_str() == Some(value))
}

#[tokio::test]
async fn the_snapshot_lists_connections_identities_groups_presence_and_calls() {
    let url = start(Server::new().inspector("/_inspect")).await;
    let addr = addr_of(&url);
    let mut alice = connect(&url, "alice").await;
    let mut alice2 = connect(&url, "alice").await;
    let mut bob = connect(&url, "bob").await;
    let _anonymous = connect(&url, "").await;
    alice.ok("inspect_join", vec![v("room")]).await;
    bob.ok("inspect_join", vec![v("room")]).await;
    alice2.ok("inspect_join", vec![v("alice-only")]).await;
    alice.ok("inspect_track", vec![v("room")]).await;
    alice2.ok("inspect_track", vec![v("room")]).await;
    say(&mut bob, "hello").await;
    bob.err("no_such_function", vec![]).await;

    let s = until(&addr, "/_inspect/state", |s| {
        s["connections"]["total"] == 4 && s["presence"]["rows"][0]["connections"] == 2
    })
    .await;
    let ids = &s["identities"];
    assert_eq!(ids["total"], 2, "{s:#}");
    assert_eq!(row(ids, "key", "s:alice").unwrap()["connections"], 2);
    assert_eq!(row(ids, "key", "s:bob").unwrap()["connections"], 1);
    let conns = s["connections"]["rows"].as_array().unwrap();
    let anonymous = conns.iter().filter(|c| c["identity"].is_null()).count();
    assert_eq!(anonymous, 1, "{s:#}");
    assert!(
        conns
            .iter()
            .all(|c| c["peer"].as_str().unwrap().starts_with("127.0.0.1:"))
    );
    let groups = &s["groups"];
    assert_eq!(groups["total"], 3, "lobby, room and alice-only: {s:#}");
    assert_eq!(row(groups, "name", "lobby").unwrap()["members"], 4);
    assert_eq!(row(groups, "name", "room").unwrap()["members"], 2);
    assert_eq!(row(groups, "name", "alice-only").unwrap()["members"], 1);
    let room = row(&s["presence"], "group", "room").unwrap();
    // Alice's two tabs: one member, two connections.
    assert_eq!(
        (&room["members"], &room["connections"]),
        (&1.into(), &2.into())
    );
    let f = &s["functions"];
    assert_eq!(row(f, "name", "inspect_join").unwrap()["calls"], 7);
    let say = row(f, "name", "inspect_say").unwrap();
    assert_eq!((&say["calls"], &say["errors"]), (&1.into(), &0.into()));
    assert!(say["nanos"].as_u64().unwrap() > 0);
    assert_eq!(f["unknown"], 1);
    // Bob's event went to his identity's stream: kept in this server's memory.
    assert_eq!(s["streams"]["kept"], "memory");
    let stream = row(&s["streams"], "stream", "u:s:bob").unwrap_or_else(|| panic!("{s:#}"));
    assert_eq!(stream["top"], 1);
    assert_eq!(s["metrics"]["connections"], 4);
    assert_eq!(s["limits"]["rows"], 500);
}

#[tokio::test]
async fn the_trace_of_alice_shows_her_calls_and_events_and_never_bobs_or_a_value() {
    let url = start(Server::new().inspector("/_inspect")).await;
    let addr = addr_of(&url);
    let mut alice = connect(&url, "alice").await;
    let mut bob = connect(&url, "bob").await;

    let first = http(&addr, "/_inspect/trace?identity=s%3Aalice", &[])
        .await
        .json();
    assert_eq!(first["started"], true);
    assert_eq!(first["identity"], "s:alice");
    let alice_conn = first["connections"][0].as_u64().unwrap();
    // Her second tab, opened after the trace started, is traced too.
    let mut tab = connect(&url, "alice").await;

    alice
        .send(&rpc(7, "inspect_say", vec![v("secret words")]))
        .await;
    let mut got = [alice.recv().await, alice.recv().await];
    got.sort_by_key(|f| has(f, "result"));
    assert_eq!(get(&got[0], "name"), &v("Said"));
    assert_eq!(get(&got[1], "result"), &Value::from(12));
    tab.recv().await; // the event reached her other tab
    say(&mut bob, "bob's own").await;
    alice.err("no_such_function", vec![]).await;

    let t = until(&addr, "/_inspect/trace?identity=s:alice", |t| {
        t["records"].as_array().unwrap().len() >= 6
    })
    .await;
    let records = t["records"].as_array().unwrap();
    let text = t.to_string();
    assert!(!text.contains("secret"), "a value in the trace: {t:#}");
    assert!(
        !text.contains("bob"),
        "bob's frames in alice's trace: {t:#}"
    );
    let conns: Vec<u64> = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(conns.len(), 2, "{t:#}");
    assert!(
        records
            .iter()
            .all(|r| conns.contains(&r["connection"].as_u64().unwrap()))
    );
    let find = |way: &str, kind: &str, id: &str| {
        records
            .iter()
            .find(|r| {
                r["way"] == way && r["kind"] == kind && r["connection"] == alice_conn && {
                    id.is_empty() || r["id"] == id
                }
            })
            .unwrap_or_else(|| panic!("no {way} {kind} {id}: {t:#}"))
    };
    let call = find("in", "rpc", "7");
    assert_eq!(
        (&call["name"], &call["id"]),
        (&"inspect_say".into(), &"7".into())
    );
    assert!(call["size"].as_u64().unwrap() > 10);
    assert!(call["at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    find("out", "result", "7");
    let event = find("out", "event", "");
    assert_eq!(
        (&event["name"], &event["stream"]),
        (&"Said".into(), &"u".into())
    );
    assert_eq!(event["offset"], 1);
    assert_eq!(find("out", "error", "1")["code"], "NOT_FOUND");
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "event" && r["connection"] != alice_conn),
        "the second tab's event: {t:#}"
    );
    // Newest first, and `after` gives what is new only.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let newest = seqs[0];
    let none = http(
        &addr,
        &format!("/_inspect/trace?identity=s:alice&after={newest}"),
        &[],
    )
    .await;
    assert_eq!(none.json()["records"], Json::Array(vec![]));
    let state = http(&addr, "/_inspect/state", &[]).await.json();
    assert_eq!(state["traced"], serde_json::json!(["s:alice"]));

    // Stopped: nothing more is kept, and the connections drop their flags.
    http(&addr, "/_inspect/trace?identity=s:alice&stop=1", &[]).await;
    alice.ok("inspect_join", vec![v("after")]).await;
    let again = http(&addr, "/_inspect/trace?identity=s:alice", &[])
        .await
        .json();
    assert_eq!(
        (&again["started"], &again["records"]),
        (&true.into(), &Json::Array(vec![]))
    );

    let bad = http(&addr, "/_inspect/trace?identity=alice", &[]).await;
    assert!(bad.status.contains("400"), "{}", bad.status);
    assert!(bad.body.contains("s:<string>"), "{}", bad.body);
}

#[tokio::test]
async fn with_redis_the_streams_are_said_to_be_kept_there() {
    let redis = redis_or_skip!();
    let url = start(Server::new().redis(redis.url()).inspector("/_inspect")).await;
    let addr = addr_of(&url);
    let mut bob = connect(&url, "bob").await;
    say(&mut bob, "hello").await;
    let s = http(&addr, "/_inspect/state", &[]).await.json();
    assert_eq!(s["streams"]["kept"], "redis", "{s:#}");
    assert_eq!(s["streams"]["rows"], Json::Array(vec![]));
    assert_eq!(s["metrics"]["redis_connected"], true);
    assert_eq!(
        row(&s["functions"], "name", "inspect_say").unwrap()["calls"],
        1
    );
}

#[tokio::test]
async fn the_page_is_one_document_under_a_strict_policy() {
    let url = start(Server::new().inspector("/_inspect")).await;
    let addr = addr_of(&url);
    for path in ["/_inspect", "/_inspect/"] {
        let page = http(&addr, path, &[]).await;
        assert!(page.status.contains("200"), "{path}: {}", page.status);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'nonce-"),
            "{csp}"
        );
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap();
        assert_eq!(nonce.len(), 32);
        assert_eq!(page.body.matches(&format!("nonce=\"{nonce}\"")).count(), 2);
        assert!(page.body.contains(r#"data-base="/_inspect""#));
        assert!(!page.body.contains("{{"), "a placeholder left");
        assert!(
            !page.body.contains("src=\"http"),
            "nothing fetched from elsewhere"
        );
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
    }
    let other = http(&addr, "/_inspect", &[]).await;
    assert_ne!(
        other.header("content-security-policy"),
        http(&addr, "/_inspect", &[])
            .await
            .header("content-security-policy"),
        "a fresh nonce each time"
    );
    let off = start(Server::new()).await;
    let missing = http(&addr_of(&off), "/_inspect", &[]).await;
    assert!(missing.status.contains("404"), "{}", missing.status);
}

#[tokio::test]
async fn only_loopback_peers_by_default_and_anyone_with_the_token_when_set() {
    let url = start(Server::new().inspector("/_inspect")).await;
    let addr = addr_of(&url);
    // Loopback, but through a proxy, or for a name that is not this machine's (DNS rebinding).
    for header in ["X-Forwarded-For: 203.0.113.9", "Host: evil.example"] {
        let refused = http(&addr, "/_inspect/state", &[header]).await;
        assert!(
            refused.status.contains("403"),
            "{header}: {}",
            refused.status
        );
        assert!(refused.body.contains("loopback"), "{}", refused.body);
    }
    assert!(
        http(&addr, "/_inspect/state", &["Host: localhost"])
            .await
            .status
            .contains("200")
    );

    for token in [None, Some("s3cret-token")] {
        // Served without connect info: the server cannot tell the peer.
        let mut server = Server::new().inspector("/_inspect");
        if let Some(token) = token {
            server = server.inspector_token(token);
        }
        let app = server.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        for path in [
            "/_inspect",
            "/_inspect/state",
            "/_inspect/trace?identity=s:alice",
        ] {
            let refused = http(&addr, path, &[]).await;
            assert!(refused.status.contains("403"), "{path}: {}", refused.status);
            let how = if token.is_some() {
                "Authorization: Bearer"
            } else {
                "loopback"
            };
            assert!(refused.body.contains(how), "{}", refused.body);
        }
        let Some(token) = token else { continue };
        let bearer = format!("Authorization: Bearer {token}");
        let s = http(&addr, "/_inspect/state", &[&bearer]).await.json();
        assert_eq!(s["connections"]["total"], 0);
        let wrong = http(&addr, "/_inspect/state", &["Authorization: Bearer s3cret"]).await;
        assert!(wrong.status.contains("403"), "{}", wrong.status);
        // The page opens with the token in its address; the data wants the header.
        let page = http(&addr, &format!("/_inspect?token={token}"), &[]).await;
        assert!(page.status.contains("200"), "{}", page.status);
        let by_query = http(&addr, &format!("/_inspect/state?token={token}"), &[]).await;
        assert!(by_query.status.contains("403"), "{}", by_query.status);
        let trace = http(&addr, "/_inspect/trace?identity=i:7", &[&bearer])
            .await
            .json();
        assert_eq!(trace["identity"], "i:7");
    }
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether the browser test must run rather than skip (in CI, and under ./test.sh).
fn browser_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("EPHAPTIC_REQUIRE_BROWSER").is_some()
}

/// `tests/browser`'s packages (playwright-core), installed with `npm ci` when missing or older
/// than its lock file.
fn npm_ci(dir: &Path) -> Result<(), String> {
    let stamp = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match modified(&stamp) {
        Some(installed) => ["package.json", "package-lock.json"]
            .iter()
            .all(|f| modified(&dir.join(f)).is_some_and(|m| m <= installed)),
        None => false,
    };
    if fresh {
        return Ok(());
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm ci in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_call_live_in_chromium() {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node").arg("--version").output();
    let missing = if !Path::new(&chromium).exists() {
        Some(format!(
            "{chromium} is missing (apt-get install -y chromium)"
        ))
    } else if node.is_err() {
        Some("node is missing (Node.js 20+)".to_owned())
    } else {
        None
    };
    if let Some(missing) = missing {
        assert!(
            !browser_required(),
            "the browser test must run here: {missing}"
        );
        eprintln!("skipping the inspector's browser test: {missing}");
        return;
    }
    let dir = root().join("tests/browser");
    let installed = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || npm_ci(&dir)
    })
    .await
    .unwrap();
    if let Err(why) = installed {
        panic!("{why}");
    }

    let url = start(Server::new().inspector("/_inspect")).await;
    let addr = addr_of(&url);
    let shots = root().join("target/inspector-browser");
    let _ = std::fs::remove_dir_all(&shots);
    let run = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            std::process::Command::new("node")
                .arg(dir.join("inspector.mjs"))
                .env("INSPECTOR_URL", format!("http://{addr}/_inspect"))
                .env("WS_URL", &url)
                .env("SHOT_DIR", &shots)
                .env("CHROMIUM_PATH", &chromium)
                .output()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test took more than 120 s")
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the inspector page failed in chromium (screenshot: {}):\n{stdout}\n{stderr}",
        shots.join("failure.png").display()
    );
    assert!(
        stdout.contains("ok: the inspector showed the call live"),
        "{stdout}\n{stderr}"
    );
}
