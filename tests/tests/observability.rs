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
        let mut call = rpc(1, "traced_add", vec![Value::from(2), Value::from(3)]);
        if let Value::Map(entries) = &mut call {
            entries.push((v("traceparent"), v(traceparent)));
        }
        c.send(&call).await;
        assert_eq!(get(&c.recv().await, "result"), &Value::from(5));
        // A call that runs on in a task of its own, and fails with a typed error; no context.
        assert_eq!(get(&c.err("traced_fail", vec![]).await, "code"), &v("NOPE"));
        // A context that is not a traceparent is ignored.
        let mut bad = rpc(3, "traced_add", vec![Value::from(1), Value::from(1)]);
        if let Value::Map(entries) = &mut bad {
            entries.push((v("traceparent"), v("00-xyz")));
        }
        c.send(&bad).await;
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
}
