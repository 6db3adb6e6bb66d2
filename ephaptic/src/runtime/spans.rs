//! A `tracing` span per call (docs/PROTOCOL.md 5.13), with OpenTelemetry's RPC fields
//! (`rpc.system`, `rpc.method`, `rpc.code`) and the connection, parented on the W3C
//! `traceparent` a client may put in its `rpc` frame: the span records the trace and parent
//! ids, and [`Server::on_trace_parent`](crate::Server::on_trace_parent) hands the parsed
//! context to the application (which sets the OpenTelemetry parent, say; the core crate has no
//! OpenTelemetry dependency).
//!
//! The span is at DEBUG level (as tower-http's request spans): a subscriber that does not
//! enable it costs each call one check of a cached interest, nothing more.

use std::fmt;
use std::sync::Arc;

use tracing::Span;
use tracing::field::Empty;

use crate::handler::FunctionDef;
use crate::wire::RawFrame;

/// A W3C Trace Context `traceparent`: `00-<trace id>-<parent id>-<flags>`, in lowercase hex.
///
/// ```
/// let tp = ephaptic::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
/// assert!(tp.sampled());
/// assert!(ephaptic::TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    text: [u8; 55],
}

impl TraceParent {
    /// Reads a `traceparent` header's value: version `00`, a trace id of 32 lowercase hex
    /// digits and a parent id of 16, neither all zeros, and two hex digits of flags. `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let bytes: [u8; 55] = text.as_bytes().try_into().ok()?;
        let hex = |r: std::ops::Range<usize>| {
            bytes[r.clone()]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                && bytes[r].iter().any(|&b| b != b'0')
        };
        let ok = bytes.starts_with(b"00-")
            && bytes[35] == b'-'
            && bytes[52] == b'-'
            && hex(3..35)
            && hex(36..52)
            && bytes[53..55]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        ok.then_some(TraceParent { text: bytes })
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> &str {
        self.part(3..35)
    }

    /// The caller's span id, 16 hex digits.
    pub fn parent_id(&self) -> &str {
        self.part(36..52)
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(self.part(53..55), 16).is_ok_and(|f| f & 1 == 1)
    }

    /// The whole value, as the client sent it.
    pub fn as_str(&self) -> &str {
        self.part(0..55)
    }

    fn part(&self, r: std::ops::Range<usize>) -> &str {
        // Checked at `parse`: ASCII only.
        std::str::from_utf8(&self.text[r]).unwrap_or_default()
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which calls get a span (`Server::sample_calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sampling {
    /// Every call (the default).
    Every,
    /// A call with a `traceparent` when its trace is sampled; one call in `n` of the others
    /// (`u32::MAX`: none of them).
    OneIn(u32),
}

impl Sampling {
    /// `ratio` of the calls without a trace context.
    pub fn ratio(ratio: f64) -> Sampling {
        assert!(
            (0.0..=1.0).contains(&ratio),
            "Server::sample_calls({ratio}): the ratio must be between 0 (no call without a \
             sampled traceparent) and 1 (every call)"
        );
        if ratio == 0.0 {
            return Sampling::OneIn(u32::MAX);
        }
        // At most u32::MAX - 1, so that a tiny ratio still samples now and then.
        Sampling::OneIn((1.0 / ratio).round().min(f64::from(u32::MAX - 1)) as u32)
    }

    /// Whether a call sent as `frame` gets a span.
    #[inline]
    fn admits(self, frame: &[u8], raw: &RawFrame) -> bool {
        let n = match self {
            Sampling::Every => return true,
            Sampling::OneIn(n) => n,
        };
        if !raw.traceparent.is_empty() {
            // The client's decision, as a parent-based sampler takes it; a traceparent that
            // does not parse is no decision.
            if let Some(tp) =
                crate::wire::whole_str(raw.traceparent.of(frame)).and_then(TraceParent::parse)
            {
                return tp.sampled();
            }
        }
        if n == u32::MAX {
            return false;
        }
        // A countdown per thread: no shared counter for the calls' threads to contend on.
        thread_local! {
            static LEFT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        LEFT.with(|left| match left.get() {
            0 => {
                left.set(n - 1);
                true
            }
            k => {
                left.set(k - 1);
                false
            }
        })
    }
}

/// The application's hook for a call's trace context (`Server::on_trace_parent`).
pub(crate) type ParentHook = Arc<dyn Fn(&Span, &TraceParent) + Send + Sync>;

/// The span of a call of `def` on connection `conn`, parented on the frame's `traceparent`.
#[inline]
pub(crate) fn call_span(
    def: &FunctionDef,
    conn: u64,
    frame: &[u8],
    raw: &RawFrame,
    hook: Option<&ParentHook>,
    sampling: Sampling,
) -> Span {
    if !sampling.admits(frame, raw) {
        return Span::none();
    }
    let span = tracing::debug_span!(
        target: "ephaptic::call",
        "rpc",
        otel.name = def.name,
        otel.kind = "server",
        rpc.system = "ephaptic",
        rpc.method = def.name,
        rpc.code = Empty,
        ephaptic.connection = conn,
        trace_id = Empty,
        parent_id = Empty,
    );
    if !raw.traceparent.is_empty() && !span.is_disabled() {
        parent(&span, raw.traceparent.of(frame), hook);
    }
    span
}

#[cold]
fn parent(span: &Span, encoded: &[u8], hook: Option<&ParentHook>) {
    let Some(tp) = crate::wire::whole_str(encoded).and_then(TraceParent::parse) else {
        return;
    };
    span.record("trace_id", tp.trace_id());
    span.record("parent_id", tp.parent_id());
    if let Some(hook) = hook {
        hook(span, &tp);
    }
}

/// Records a call's answer on its span (the current one, in a call's own task): `OK`, or the
/// error's code.
#[inline]
pub(crate) fn record_code(span: &Span, code: &str) {
    if !span.is_disabled() {
        span.record("rpc.code", code);
    }
}
