//! What a server counts for Prometheus (`Server::metrics_endpoint`; the exposition is
//! `exposition.rs`): calls by function and code with a latency histogram per function, events
//! sent by kind, resumes by outcome, resyncs, sessions ended, and Redis publish round trips.
//! Off by default: without it, nothing here exists and a call pays one `Option` check.
//!
//! Labels are the server's own words only (function names, error codes, kinds): never an
//! identity, a group or anything a client chose. A call of an unknown function is counted under
//! `function="(unknown)"`.
//!
//! On the call path a function's `OK` counter and histogram are found by the function's index
//! (a `Vec`, no lookup), so a call costs two clock reads, one atomic add and one histogram
//! observation; error codes go through the family (a lookup), which only failing calls pay.
//! For the inspector (`Server::inspector`), each function also keeps plain atomic totals (calls
//! answered, summed nanoseconds; failures on the failing path), read by index: two relaxed
//! adds more per call.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{function, code}`.
type CallLabels = [(&'static str, Cow<'static, str>); 2];
/// `{function}`.
type FnLabel = [(&'static str, &'static str); 1];
/// One label of the server's own words.
type Word = [(&'static str, &'static str); 1];

/// 50 µs to about 13 s, doubling: calls on loopback take tens of microseconds, slow ones
/// seconds.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

/// 100 µs to about 3 s: one Redis round trip.
fn redis_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.0, 15))
}

/// The name unknown functions are counted under.
pub(crate) const UNKNOWN: &str = "(unknown)";

/// One function's handles, found by its index.
#[derive(Debug)]
struct Function {
    name: &'static str,
    ok: Counter,
    duration: Histogram,
    /// The inspector's totals: calls answered, how many with an error, and their summed
    /// time from frame read to answer ready.
    answered: AtomicU64,
    failed: AtomicU64,
    nanos: AtomicU64,
}

/// One function's totals since the server started, for the inspector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Totals {
    pub name: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub nanos: u64,
}

pub(crate) struct Telemetry {
    registry: Registry,
    functions: Vec<Function>,
    calls: Family<CallLabels, Counter>,
    /// Calls of functions this server does not serve.
    unknown: AtomicU64,
    events: Family<Word, Counter>,
    resumes: Family<[(&'static str, &'static str); 2], Counter>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    resyncs: Counter,
    sessions_ended: Counter,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis_publish: Histogram,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("functions", &self.functions.len())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The families, and each of `functions` (in the order of their indexes) with its handles.
    pub fn new(functions: &[&'static str]) -> Self {
        let mut registry = Registry::with_prefix("ephaptic");
        let calls = Family::<CallLabels, Counter>::default();
        let durations: Family<FnLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(call_buckets);
        let events = Family::<Word, Counter>::default();
        let resumes = Family::default();
        let resyncs = Counter::default();
        let sessions_ended = Counter::default();
        let redis_publish = redis_buckets();
        registry.register(
            "calls",
            "Calls answered, by function and code (OK or the error's code)",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "From a call's frame read to its answer ready, by function",
            durations.clone(),
        );
        registry.register(
            "events_sent",
            "Events handed to delivery, by kind (broadcast, user, group, caller)",
            events.clone(),
        );
        registry.register(
            "resumes",
            "Streams resumed by a hello or a join, by stream kind and outcome",
            resumes.clone(),
        );
        registry.register(
            "resyncs",
            "Resync notices sent to clients (events missed live)",
            resyncs.clone(),
        );
        registry.register(
            "sessions_ended",
            "Connections the server closed with 4401 (session ended)",
            sessions_ended.clone(),
        );
        let functions = functions
            .iter()
            .map(|&name| Function {
                name,
                ok: calls
                    .get_or_create(&[("function", name.into()), ("code", "OK".into())])
                    .clone(),
                duration: durations.get_or_create(&[("function", name)]).clone(),
                answered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                nanos: AtomicU64::new(0),
            })
            .collect();
        Telemetry {
            registry,
            functions,
            calls,
            unknown: AtomicU64::new(0),
            events,
            resumes,
            resyncs,
            sessions_ended,
            redis_publish,
        }
    }

    /// Registers the Redis publish histogram (servers with a backplane only).
    pub fn with_redis(mut self) -> Self {
        self.registry.register(
            "redis_publish_duration_seconds",
            "One round trip of a publish batch to Redis",
            self.redis_publish.clone(),
        );
        self
    }

    /// A call of the function at `index` was answered with `code`, `elapsed` after its frame
    /// was read.
    #[inline]
    pub fn call(&self, index: usize, code: &str, elapsed: Duration) {
        let Some(f) = self.functions.get(index) else {
            return;
        };
        if code == "OK" {
            f.ok.inc();
        } else {
            f.failed.fetch_add(1, Relaxed);
            self.failed(f.name, code);
        }
        f.answered.fetch_add(1, Relaxed);
        f.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
        f.duration.observe(elapsed.as_secs_f64());
    }

    /// Each function's totals, in the order of their indexes.
    pub fn totals(&self) -> Vec<Totals> {
        self.functions
            .iter()
            .map(|f| Totals {
                name: f.name,
                calls: f.answered.load(Relaxed),
                errors: f.failed.load(Relaxed),
                nanos: f.nanos.load(Relaxed),
            })
            .collect()
    }

    /// Calls of functions this server does not serve, since it started.
    pub fn unknown_calls(&self) -> u64 {
        self.unknown.load(Relaxed)
    }

    #[cold]
    fn failed(&self, function: &'static str, code: &str) {
        self.calls
            .get_or_create(&[
                ("function", function.into()),
                ("code", Cow::Owned(code.to_owned())),
            ])
            .inc();
    }

    /// A call of a function this server does not serve.
    pub fn unknown(&self) {
        self.unknown.fetch_add(1, Relaxed);
        self.failed(UNKNOWN, "NOT_FOUND");
    }

    /// An event handed to delivery, of `kind` (`broadcast`, `user`, `group`, `caller`).
    pub fn event(&self, kind: &'static str) {
        self.events.get_or_create(&[("kind", kind)]).inc();
    }

    /// A stream of `stream` kind resumed with `outcome`.
    pub fn resume(&self, stream: &'static str, outcome: &'static str) {
        self.resumes
            .get_or_create(&[("stream", stream), ("outcome", outcome)])
            .inc();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn resynced(&self, n: u64) {
        self.resyncs.inc_by(n);
    }

    pub fn sessions_ended(&self, n: usize) {
        self.sessions_ended.inc_by(n as u64);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn redis_publish(&self, took: Duration) {
        self.redis_publish.observe(took.as_secs_f64());
    }

    /// The registry, for the exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// A call's clock: its function's index and when its frame was read. Copied, not shared:
/// the inline path (most calls) records with the server's telemetry at hand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    index: usize,
    started: Instant,
}

impl Stopwatch {
    pub fn start(index: usize) -> Stopwatch {
        Stopwatch {
            index,
            started: Instant::now(),
        }
    }

    /// The call was answered with `code`.
    #[inline]
    pub fn stop(self, telemetry: &Telemetry, code: &str) {
        telemetry.call(self.index, code, self.started.elapsed());
    }
}

/// A call being measured in a task of its own: its clock and the server's telemetry.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    telemetry: Arc<Telemetry>,
    watch: Stopwatch,
}

impl Meter {
    /// `watch` with `telemetry`, when both are there (metrics on).
    pub fn of(telemetry: Option<&Arc<Telemetry>>, watch: Option<Stopwatch>) -> Option<Meter> {
        Some(Meter {
            telemetry: telemetry?.clone(),
            watch: watch?,
        })
    }

    /// The call was answered with `code`.
    pub fn answered(&self, code: &str) {
        self.watch.stop(&self.telemetry, code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &Telemetry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, t.registry()).unwrap();
        out
    }

    #[test]
    fn calls_are_counted_by_function_and_code_with_a_histogram_each() {
        let t = Arc::new(Telemetry::new(&["add", "echo"]));
        let m = Meter::of(Some(&t), Some(Stopwatch::start(0))).unwrap();
        m.answered("OK");
        m.answered("OK");
        Stopwatch::start(0).stop(&t, "OVERFLOW");
        t.unknown();
        let out = text(&t);
        assert!(
            out.contains(r#"ephaptic_calls_total{function="add",code="OK"} 2"#),
            "{out}"
        );
        assert!(out.contains(r#"ephaptic_calls_total{function="add",code="OVERFLOW"} 1"#));
        assert!(out.contains(r#"ephaptic_calls_total{function="echo",code="OK"} 0"#));
        assert!(out.contains(r#"ephaptic_calls_total{function="(unknown)",code="NOT_FOUND"} 1"#));
        assert!(out.contains(r#"ephaptic_call_duration_seconds_count{function="add"} 3"#));
        let totals = t.totals();
        assert_eq!(
            (totals[0].name, totals[0].calls, totals[0].errors),
            ("add", 3, 1)
        );
        assert_eq!((totals[1].calls, totals[1].nanos), (0, 0));
        assert_eq!(t.unknown_calls(), 1);
    }
}
