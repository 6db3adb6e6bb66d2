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
//! (a `Vec`, no lookup), so a call costs one clock read and three relaxed atomic adds (the
//! counter, and the lock-free histogram's bucket and sum, which with its count are also the
//! inspector's totals); error codes go through the family (a lookup), which only failing calls
//! pay. One clock read, not two: the calls of one read of the socket are timed lap by lap
//! ([`Lap`]), each call's stop being the next one's start.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// `{function, code}`.
type CallLabels = [(&'static str, Cow<'static, str>); 2];
/// `{function}`.
type FnLabel = [(&'static str, &'static str); 1];
/// One label of the server's own words.
type Word = [(&'static str, &'static str); 1];

/// A call-latency histogram without a lock, for the call path. `prometheus-client`'s own
/// `Histogram` takes a lock and searches its bounds at every observation, which cost batched
/// calls (under a microsecond each) a fifth of their CPU (BENCHMARKS.md); this one is two
/// relaxed atomic adds (its count is the sum of its buckets, added up when read), its bucket
/// found from the latency's bit length. Its bounds are powers
/// of two nanoseconds, from 2^15 (32.8 µs) to 2^34 (17.2 s), then +Inf. It is encoded through
/// `prometheus-client` as any histogram.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency(Arc<LatencyInner>);

/// The bit length of the smallest bound, and how many buckets (the last is +Inf).
const FIRST_BITS: u32 = 15;
const BUCKETS: usize = 21;

#[derive(Debug, Default)]
pub(crate) struct LatencyInner {
    buckets: [AtomicU64; BUCKETS],
    nanos: AtomicU64,
}

impl Latency {
    #[inline]
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // `nanos < 2^bits`, so it belongs under the bound 2^(FIRST_BITS + i).
        let bits = u64::BITS - nanos.leading_zeros();
        let i = (bits.saturating_sub(FIRST_BITS) as usize).min(BUCKETS - 1);
        self.0.buckets[i].fetch_add(1, Relaxed);
        self.0.nanos.fetch_add(nanos, Relaxed);
    }

    /// The observations: the sum of the buckets (each only grows, so the sum does too).
    fn count(&self) -> u64 {
        self.0.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn nanos(&self) -> u64 {
        self.0.nanos.load(Relaxed)
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = (0..BUCKETS)
            .map(|i| {
                let bound = if i == BUCKETS - 1 {
                    f64::MAX
                } else {
                    (1u64 << (FIRST_BITS as usize + i)) as f64 / 1e9
                };
                (bound, self.0.buckets[i].load(Relaxed))
            })
            .collect();
        let sum = self.nanos() as f64 / 1e9;
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
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
    /// The latency histogram, whose count and sum are also the inspector's totals.
    duration: Latency,
    /// How many calls were answered with an error (for the inspector).
    failed: AtomicU64,
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
        let durations = Family::<FnLabel, Latency>::default();
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
            "Events handed to delivery, by kind (broadcast, user, group)",
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
                failed: AtomicU64::new(0),
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
        f.duration.observe(elapsed);
    }

    /// Each function's totals, in the order of their indexes.
    pub fn totals(&self) -> Vec<Totals> {
        self.functions
            .iter()
            .map(|f| Totals {
                name: f.name,
                calls: f.duration.count(),
                errors: f.failed.load(Relaxed),
                nanos: f.duration.nanos(),
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

    /// An event handed to delivery, of `kind` (`broadcast`, `user`, `group`).
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

/// A call's clock: its function's index and when it started. Copied, not shared: the inline
/// path (most calls) records with the server's telemetry at hand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    index: usize,
    started: Instant,
}

impl Stopwatch {
    /// Starts the clock: at the previous call's stop when this call follows it in the same
    /// read of the socket ([`Lap`]), otherwise now.
    #[inline]
    pub fn start(index: usize) -> Stopwatch {
        Stopwatch {
            index,
            started: Lap::take().unwrap_or_else(Instant::now),
        }
    }

    /// The call was answered with `code`; inside a read of the socket, its stop is the next
    /// call's start.
    #[inline]
    pub fn stop(self, telemetry: &Telemetry, code: &str) {
        let now = Instant::now();
        telemetry.call(
            self.index,
            code,
            now.saturating_duration_since(self.started),
        );
        Lap::offer(now);
    }
}

/// The clock shared by the calls of one read of a socket: a connection's task handles the
/// frames it read in one go, on one thread and without yielding, so a call answered inline
/// stops at the instant the next one starts, and one clock read times both (two clock reads
/// were most of what metrics cost a batched call: BENCHMARKS.md). Kept per thread, between
/// [`Lap::begin`] and the end of the read; outside a read (a call answered from its own task,
/// an identity loader's first frame) each call reads the clock itself.
pub(crate) struct Lap(());

/// No read going on; in a read with no lap yet; in a read, the last call's stop.
#[derive(Clone, Copy)]
enum LapState {
    Off,
    Idle,
    At(Instant),
}

thread_local! {
    static LAP: std::cell::Cell<LapState> = const { std::cell::Cell::new(LapState::Off) };
}

impl Lap {
    /// The frames of one read are about to be handled on this thread; the lap ends when the
    /// returned guard is dropped (when the read is done, or the task returns early).
    #[inline]
    pub fn begin() -> Lap {
        LAP.set(LapState::Idle);
        Lap(())
    }

    #[inline]
    fn take() -> Option<Instant> {
        match LAP.get() {
            LapState::At(at) => {
                LAP.set(LapState::Idle);
                Some(at)
            }
            _ => None,
        }
    }

    #[inline]
    fn offer(now: Instant) {
        if !matches!(LAP.get(), LapState::Off) {
            LAP.set(LapState::At(now));
        }
    }
}

impl Drop for Lap {
    fn drop(&mut self) {
        LAP.set(LapState::Off);
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

    #[test]
    fn calls_of_one_read_share_the_clock_and_nothing_outlives_the_read() {
        let t = Telemetry::new(&["add"]);
        {
            let _read = Lap::begin();
            let first = Stopwatch::start(0);
            first.stop(&t, "OK");
            let LapState::At(stopped) = LAP.get() else {
                panic!("the first call's stop is kept for the next one");
            };
            let second = Stopwatch::start(0);
            assert_eq!(second.started, stopped, "one clock read for both");
            assert!(Lap::take().is_none(), "a lap is used once");
            second.stop(&t, "OK");
        }
        // After the read, a call answered from its own task times itself.
        assert!(matches!(LAP.get(), LapState::Off));
        Stopwatch::start(0).stop(&t, "OK");
        assert!(Lap::take().is_none());
        assert_eq!(t.totals()[0].calls, 3);
    }

    #[test]
    fn the_lock_free_histogram_puts_each_latency_under_its_power_of_two_bound() {
        let l = Latency::default();
        l.observe(Duration::from_micros(40)); // under 2^16 ns (65.5 us), above 2^15
        l.observe(Duration::from_nanos(10)); // the first bucket
        l.observe(Duration::from_secs(20)); // past 2^34 ns: +Inf
        let mut registry = Registry::default();
        registry.register("lat", "test", l.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(r#"lat_bucket{le="0.000032768"} 1"#), "{out}");
        assert!(out.contains(r#"lat_bucket{le="0.000065536"} 2"#), "{out}");
        assert!(out.contains(r#"lat_bucket{le="+Inf"} 3"#), "{out}");
        assert!(out.contains("lat_count 3"), "{out}");
        assert_eq!(l.count(), 3);
    }
}
