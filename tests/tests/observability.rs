//! What a running server says about itself: the start line says how events leave the server
//! (in this process, or through Redis at a URL whose password is masked), and a Redis that
//! cannot be reached at start is said so at once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::child::{Parity, parity_bin};
use common::redis_server::free_port;

#[tokio::test]
async fn the_start_line_says_events_stay_in_this_process_without_redis() {
    let mut cmd = Command::new(parity_bin());
    cmd.env_remove("EPHAPTIC_REDIS_URL");
    let server = Parity::start_with(cmd, "info");
    assert!(
        server
            .wait_for_log(
                "events stay in this process (no Redis)",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn the_start_line_names_redis_without_its_password_and_an_unreachable_one_is_said_at_once() {
    // Nothing listens on this port.
    let url = format!("redis://:s3cret@127.0.0.1:{}", free_port());
    let mut cmd = Command::new(parity_bin());
    cmd.env("EPHAPTIC_REDIS_URL", &url);
    let server = Parity::start_with(cmd, "info");
    let masked = url.replace("s3cret", "***");
    assert!(
        server
            .wait_for_log(
                &format!("events cross servers through Redis at {masked}"),
                Duration::from_secs(5)
            )
            .await,
        "{}",
        server.log()
    );
    assert!(
        server
            .wait_for_log("cannot be reached", Duration::from_secs(10))
            .await,
        "{}",
        server.log()
    );
    assert!(!server.log().contains("s3cret"), "{}", server.log());
}

mod spans {
    //! A span per call, captured by a layer of our own: its fields as recorded, once it closed.

    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::common::*;
    use ephaptic::{Server, Value};

    type Fields = HashMap<String, String>;

    #[derive(Default)]
    struct Capture {
        open: Mutex<HashMap<u64, Fields>>,
        closed: Mutex<Vec<Fields>>,
    }

    struct Collect<'a>(&'a mut Fields);

    impl Visit for Collect<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    struct Layered(&'static Capture);

    impl<S: tracing::Subscriber> Layer<S> for Layered {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
            if attrs.metadata().target() != "ephaptic::call" {
                return;
            }
            let mut fields = Fields::new();
            attrs.record(&mut Collect(&mut fields));
            self.0.open.lock().unwrap().insert(id.into_u64(), fields);
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            if let Some(fields) = self.0.open.lock().unwrap().get_mut(&id.into_u64()) {
                values.record(&mut Collect(fields));
            }
        }
        fn on_close(&self, id: Id, _: Context<'_, S>) {
            if let Some(fields) = self.0.open.lock().unwrap().remove(&id.into_u64()) {
                self.0.closed.lock().unwrap().push(fields);
            }
        }
    }

    fn capture() -> &'static Capture {
        static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let capture: &'static Capture = Box::leak(Box::default());
            let subscriber = tracing_subscriber::registry().with(Layered(capture));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            capture
        })
    }

    #[ephaptic::expose]
    async fn traced_add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[derive(Debug)]
    #[ephaptic::error(code = "NOPE", message = "No.")]
    pub struct Nope;

    #[ephaptic::expose]
    async fn traced_fail() -> Result<(), Nope> {
        tokio::task::yield_now().await;
        Err(Nope)
    }

    #[tokio::test]
    async fn each_call_has_a_span_with_its_method_code_and_the_clients_trace_context() {
        let capture = capture();
        let parents = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = parents.clone();
        let server = Server::new().on_trace_parent(move |_span, parent| {
            seen.lock().unwrap().push(parent.to_string());
        });
        let url = start(server).await;
        let mut c = Client::connect(&url).await;
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let call = rpc(1, "traced_add", vec![Value::from(2), Value::from(3)]);
        c.send(&with(call, "traceparent", v(traceparent))).await;
        assert_eq!(get(&c.recv().await, "result"), &Value::from(5));
        // A call that runs on in a task of its own, and fails with a typed error; no context.
        assert_eq!(get(&c.err("traced_fail", vec![]).await, "code"), &v("NOPE"));
        // A context that is not a traceparent is ignored.
        let bad = rpc(3, "traced_add", vec![Value::from(1), Value::from(1)]);
        c.send(&with(bad, "traceparent", v("00-xyz"))).await;
        assert_eq!(get(&c.recv().await, "result"), &Value::from(2));

        let spans = loop {
            let closed = capture.closed.lock().unwrap().clone();
            if closed.len() >= 3 {
                break closed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let traced: Vec<_> = spans
            .iter()
            .filter(|f| f.get("trace_id").is_some())
            .collect();
        assert_eq!(traced.len(), 1, "{spans:?}");
        let span = traced[0];
        assert_eq!(span["rpc.method"], "traced_add");
        assert_eq!(span["rpc.system"], "ephaptic");
        assert_eq!(span["rpc.code"], "OK");
        assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["parent_id"], "00f067aa0ba902b7");
        let failed: Vec<_> = spans
            .iter()
            .filter(|f| f.get("rpc.method").map(String::as_str) == Some("traced_fail"))
            .collect();
        assert_eq!(failed.len(), 1, "{spans:?}");
        assert_eq!(failed[0]["rpc.code"], "NOPE");
        assert_eq!(*parents.lock().unwrap(), [traceparent.to_owned()]);
    }

    #[ephaptic::expose]
    async fn sampled_add(a: i64, b: i64) -> i64 {
        a + b
    }

    /// The spans of `method` closed so far, once there are `n` of them (or after a second).
    async fn spans_of(capture: &Capture, method: &str, n: usize) -> Vec<Fields> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let spans: Vec<Fields> = capture
                .closed
                .lock()
                .unwrap()
                .iter()
                .filter(|f| f.get("rpc.method").map(String::as_str) == Some(method))
                .cloned()
                .collect();
            if spans.len() >= n || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    // A current-thread runtime (tokio::test's default): the per-thread count is this test's.
    #[tokio::test]
    async fn sampled_calls_follow_the_clients_trace_flag_and_one_in_n_of_the_rest() {
        let capture = capture();
        let url = start(Server::new().sample_calls(0.25)).await;
        let mut c = Client::connect(&url).await;
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        for (id, tp) in [(1, sampled), (2, unsampled)] {
            let call = rpc(id, "sampled_add", vec![Value::from(id), Value::from(1)]);
            c.send(&with(call, "traceparent", v(tp))).await;
            assert_eq!(get(&c.recv().await, "result"), &Value::from(id + 1));
        }
        // Every call is answered; without a context, one in four gets a span.
        for n in 0..8 {
            assert_eq!(
                c.ok("sampled_add", vec![Value::from(n), Value::from(1)])
                    .await,
                Value::from(n + 1)
            );
        }
        let spans = spans_of(capture, "sampled_add", 3).await;
        // Let a span too many show up, if there were one.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let spans_now = spans_of(capture, "sampled_add", 3).await;
        assert_eq!(spans, spans_now);
        let traced: Vec<_> = spans
            .iter()
            .filter(|f| f.contains_key("trace_id"))
            .collect();
        assert_eq!(traced.len(), 1, "the sampled trace only: {spans:?}");
        assert_eq!(traced[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            spans.len(),
            3,
            "the sampled trace and 2 of the 8 others: {spans:?}"
        );
    }

    #[tokio::test]
    async fn a_ratio_of_zero_spans_only_the_calls_of_sampled_client_traces() {
        let capture = capture();
        let url = start(Server::new().sample_calls(0.0)).await;
        let mut c = Client::connect(&url).await;
        for n in 0..5 {
            c.ok("sampled_add", vec![Value::from(n), Value::from(1)])
                .await;
        }
        let call = rpc(9, "sampled_add", vec![Value::from(1), Value::from(1)]);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        c.send(&with(call, "traceparent", v(tp))).await;
        assert_eq!(get(&c.recv().await, "result"), &Value::from(2));
        let spans = spans_of(capture, "sampled_add", 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(spans_of(capture, "sampled_add", 1).await.len(), 1);
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    #[should_panic(expected = "the ratio must be between 0")]
    fn a_ratio_above_one_is_refused_with_what_to_write() {
        let _ = Server::new().sample_calls(1.5);
    }
}

mod prometheus {
    //! The Prometheus endpoint, scraped over HTTP after a known sequence of calls.

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::common::*;
    use ephaptic::{Server, Value};

    #[ephaptic::expose]
    async fn metered_add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[derive(Debug)]
    #[ephaptic::error(code = "TOO_BIG", message = "Too big.")]
    pub struct TooBig;

    #[ephaptic::expose]
    async fn metered_check(n: i64) -> Result<i64, TooBig> {
        tokio::task::yield_now().await;
        if n > 10 { Err(TooBig) } else { Ok(n) }
    }

    /// GET `path` from the server at `ws_url`'s address: (status line, body).
    async fn get_http(ws_url: &str, path: &str) -> (String, String) {
        let addr = ws_url
            .trim_start_matches("ws://")
            .trim_end_matches("/_ephaptic");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (
            head.lines().next().unwrap_or_default().to_owned(),
            body.to_owned(),
        )
    }

    /// The value of the series `series` (name and labels as written), if present.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn the_endpoint_counts_calls_by_function_and_code_and_connections_after_abrupt_closes() {
        let url = start(Server::new().metrics_endpoint("/metrics")).await;
        let mut c = Client::connect(&url).await;
        for _ in 0..3 {
            c.ok("metered_add", vec![Value::from(1), Value::from(2)])
                .await;
        }
        c.ok("metered_check", vec![Value::from(5)]).await;
        for _ in 0..2 {
            c.err("metered_check", vec![Value::from(50)]).await;
        }
        c.err("metered_add", vec![v("not a number"), Value::from(2)])
            .await;
        c.err("no_such_function_xyz", vec![]).await;
        // Two connections that vanish without a close frame.
        for _ in 0..2 {
            let mut gone = Client::connect(&url).await;
            gone.ok("metered_add", vec![Value::from(0), Value::from(0)])
                .await;
            drop(gone);
        }
        let text = loop {
            let (status, body) = get_http(&url, "/metrics").await;
            assert!(status.contains("200"), "{status}");
            if value(&body, "ephaptic_connections") == Some(1.0) {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let series = |s: &str| value(&text, s);
        assert_eq!(
            series(r#"ephaptic_calls_total{function="metered_add",code="OK"}"#),
            Some(5.0),
            "{text}"
        );
        assert_eq!(
            series(r#"ephaptic_calls_total{function="metered_check",code="OK"}"#),
            Some(1.0)
        );
        assert_eq!(
            series(r#"ephaptic_calls_total{function="metered_check",code="TOO_BIG"}"#),
            Some(2.0)
        );
        assert_eq!(
            series(r#"ephaptic_calls_total{function="metered_add",code="VALIDATION_ERROR"}"#),
            Some(1.0)
        );
        assert_eq!(
            series(r#"ephaptic_calls_total{function="(unknown)",code="NOT_FOUND"}"#),
            Some(1.0)
        );
        assert_eq!(
            series(r#"ephaptic_call_duration_seconds_count{function="metered_check"}"#),
            Some(3.0)
        );
        assert!(
            !text.contains("no_such_function_xyz"),
            "a client's string is never a label"
        );
        assert_eq!(series("ephaptic_connections"), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn a_peer_the_server_cannot_tell_is_loopback_is_refused_unless_metrics_are_public() {
        for (public, expected) in [(false, "403"), (true, "200")] {
            // Served without connect info: the server does not know the peer.
            let app = Server::new()
                .metrics_endpoint("/metrics")
                .metrics_public(public)
                .router();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let (status, _) = get_http(&format!("ws://{addr}/_ephaptic"), "/metrics").await;
            assert!(status.contains(expected), "public {public}: {status}");
        }
    }

    #[tokio::test]
    async fn without_the_endpoint_there_is_nothing_to_scrape() {
        let url = start(Server::new()).await;
        let (status, _) = get_http(&url, "/metrics").await;
        assert!(status.contains("404"), "{status}");
    }
}

/// `parity --metrics 127.0.0.1:0` serves the exposition on a port of its own, and says where.
#[tokio::test]
async fn parity_serves_its_metrics_on_a_port_of_its_own() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cmd = Command::new(parity_bin());
    cmd.args(["--metrics", "127.0.0.1:0"]);
    let server = Parity::start_with(cmd, "warn");
    assert!(
        server
            .wait_for_log("metrics on http://", Duration::from_secs(5))
            .await
    );
    let log = server.log();
    let at = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .expect("the metrics address")
        .to_owned();
    let mut c = common::Client::connect(&server.url).await;
    c.ok("add", vec![1.into(), 2.into()]).await;
    let mut tcp = tokio::net::TcpStream::connect(&at).await.unwrap();
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(
        response.contains(r#"ephaptic_calls_total{function="add",code="OK"} 1"#),
        "{response}"
    );
}
