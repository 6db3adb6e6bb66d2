//! The parity fixture server.
//!
//! ```text
//! cargo run -p parity -- --addr 127.0.0.1:0
//! ```
//! prints `listening on ws://127.0.0.1:N/_ephaptic` as its first line of stdout.
//!
//! `--redis URL` delivers events across every parity on that Redis; `--redis-compat` also
//! interoperates with Python ephaptic servers there (docs/PROTOCOL.md section 6).
//!
//! Sessions (docs/PROTOCOL.md 5.6) are on, with the default history; `--no-resume` turns them
//! off, `--history-size N`, `--history-ttl-ms MS` and `--max-replay N` change every stream
//! kind's retention (for the tests of a history that overflows or expires, and the replay
//! benchmark).
//!
//! `--metrics HOST:PORT` serves the Prometheus exposition at `http://HOST:PORT/metrics`, on a
//! port of its own (docs/OBSERVABILITY.md); it says where on stderr. `--sample-calls RATIO`
//! samples the calls that get a span (`Server::sample_calls`).
//!
//! `EPHAPTIC_LOG` sets what is logged on stderr: `debug`, `warn`, the default (info), or, for
//! the benchmark of what call spans cost (examples/bench/observability.sh), `spans` (warnings
//! formatted, and the calls' spans built and kept by the registry for a layer that wants them,
//! as an exporter's would be) and `spans-registry` (the registry and that layer alone, nothing
//! formatted: the least a subscriber that keeps spans costs).

use std::io::Write;

// The functions live in the library target; linking it registers them.
use parity as _;

const USAGE: &str = "usage: parity [--addr HOST:PORT] [--redis URL [--redis-compat] [--presence-ttl MS]] \
     [--presence-batch MS] [--no-resume] [--history-size N] [--history-ttl-ms MS] [--max-replay N] \
     [--metrics HOST:PORT] [--sample-calls RATIO]   (port 0 picks a free port)";

struct Args {
    addr: String,
    redis: Option<String>,
    compat: bool,
    resume: bool,
    history_size: Option<usize>,
    history_ttl: Option<std::time::Duration>,
    max_replay: Option<usize>,
    /// Milliseconds: how long presence entries outlive their server on Redis.
    presence_ttl: Option<u64>,
    /// Milliseconds between presence diffs.
    presence_batch: Option<u64>,
    /// Where to serve the Prometheus exposition.
    metrics: Option<String>,
    /// `Server::sample_calls`.
    sample_calls: Option<f64>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{flag} needs a number; {USAGE}"))
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        addr: "127.0.0.1:8000".to_string(),
        redis: None,
        compat: false,
        resume: true,
        history_size: None,
        history_ttl: None,
        max_replay: None,
        presence_ttl: None,
        presence_batch: None,
        metrics: None,
        sample_calls: None,
    };
    let ms = |v: Option<String>, flag: &str| -> u64 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number of milliseconds"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => parsed.addr = args.next().expect("--addr needs a value, e.g. 127.0.0.1:0"),
            "--redis" => {
                parsed.redis = Some(
                    args.next()
                        .expect("--redis needs a URL, e.g. redis://127.0.0.1:6379"),
                )
            }
            "--redis-compat" => parsed.compat = true,
            "--no-resume" => parsed.resume = false,
            "--history-size" => parsed.history_size = Some(number(&a, args.next())),
            "--max-replay" => parsed.max_replay = Some(number(&a, args.next())),
            "--history-ttl-ms" => {
                parsed.history_ttl = Some(std::time::Duration::from_millis(number(&a, args.next())))
            }
            "--presence-ttl" => parsed.presence_ttl = Some(ms(args.next(), "--presence-ttl")),
            "--presence-batch" => parsed.presence_batch = Some(ms(args.next(), "--presence-batch")),
            "--metrics" => {
                parsed.metrics = Some(
                    args.next()
                        .expect("--metrics needs an address, e.g. 127.0.0.1:9464"),
                )
            }
            "--sample-calls" => parsed.sample_calls = Some(number(&a, args.next())),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    parsed
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let log = std::env::var("EPHAPTIC_LOG").unwrap_or_default();
    let level = match log.as_str() {
        "debug" => tracing::Level::DEBUG,
        "warn" | "spans" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    if log == "spans-registry" {
        // The registry and a layer that wants the calls' spans, under one global filter:
        // nothing formatted, no per-layer filter.
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        struct Wants;
        impl<S: tracing::Subscriber> Layer<S> for Wants {}
        tracing_subscriber::registry()
            .with(Wants)
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_target("ephaptic::call", tracing::Level::DEBUG),
            )
            .init();
    } else if log == "spans" {
        // Warnings logged, and every call's span built and kept by the registry for a layer
        // that wants them (a stand-in for a tracing exporter, which does its own work on top;
        // for the benchmark of what the spans cost): `ephaptic::call` at DEBUG.
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        struct Wants;
        impl<S: tracing::Subscriber> Layer<S> for Wants {}
        let calls = tracing_subscriber::filter::Targets::new()
            .with_target("ephaptic::call", tracing::Level::DEBUG);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
            )
            .with(Wants.with_filter(calls))
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .init();
    }
    let args = parse_args();
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    let addr = listener.local_addr()?;
    let mut server = ephaptic::Server::new()
        .redis_compat(args.compat)
        .resume(args.resume);
    if args.history_size.is_some() || args.history_ttl.is_some() || args.max_replay.is_some() {
        use ephaptic::{Retention, StreamKind};
        for kind in [StreamKind::User, StreamKind::Broadcast, StreamKind::Group] {
            let mut retention = Retention::default();
            if let Some(size) = args.history_size {
                retention = retention.size(size);
            }
            if let Some(ttl) = args.history_ttl {
                retention = retention.ttl(ttl);
            }
            if let Some(n) = args.max_replay {
                retention = retention.max_replay(n);
            }
            server = server.retention(kind, retention);
        }
    }
    if let Some(url) = args.redis {
        server = server.redis(url);
    }
    if let Some(ttl) = args.presence_ttl {
        server = server.presence_ttl(std::time::Duration::from_millis(ttl));
    }
    if let Some(every) = args.presence_batch {
        server = server.presence_batch(std::time::Duration::from_millis(every), 256);
    }
    if let Some(ratio) = args.sample_calls {
        server = server.sample_calls(ratio);
    }
    if let Some(at) = &args.metrics {
        // Counting on: the exposition of this server, on a port of its own.
        server = server.metrics_endpoint("/metrics");
        let metrics = tokio::net::TcpListener::bind(at).await?;
        eprintln!("metrics on http://{}/metrics", metrics.local_addr()?);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async { ephaptic::prometheus_text().unwrap_or_default() }),
        );
        tokio::spawn(async move { axum::serve(metrics, app).await });
    }
    println!("listening on ws://{addr}/_ephaptic");
    std::io::stdout().flush()?;
    server.serve_listener(listener).await
}
