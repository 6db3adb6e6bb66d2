//! The Prometheus text exposition of a server (`Server::metrics_endpoint`,
//! [`prometheus_text`](crate::prometheus_text)): what `telemetry.rs` counts, then the server's
//! figures ([`Metrics`](crate::Metrics)) read at the scrape, encoded by `prometheus-client`.

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::scope::current;
use super::state::State;

/// The exposition of the running server (inside a handler, its own; elsewhere the server
/// started most recently); `None` when no server runs or its metrics are off
/// ([`Server::metrics_endpoint`](crate::Server::metrics_endpoint)). For serving it on a port of
/// your own, beside the app.
///
/// ```no_run
/// # async fn scrape() -> String {
/// ephaptic::prometheus_text().unwrap_or_default()
/// # }
/// ```
pub fn prometheus_text() -> Option<String> {
    text(&*current()?)
}

/// The exposition of `state`'s server; `None` with metrics off (the inspector alone counts
/// too, but publishes nothing to scrapers).
pub(crate) fn text(state: &State) -> Option<String> {
    state.config.metrics_path.as_ref()?;
    let telemetry = state.telemetry.as_ref()?;
    let m = super::metrics::of(state);
    let mut now = Registry::with_prefix("ephaptic");
    let gauge = |r: &mut Registry, name: &str, help: &str, v: usize| {
        r.register(
            name,
            help,
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)),
        );
    };
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v));
    };
    gauge(&mut now, "connections", "Connections open", m.connections);
    gauge(
        &mut now,
        "identities",
        "Distinct identities connected",
        m.identities,
    );
    gauge(
        &mut now,
        "presence_members",
        "Presence entries (connections tracked in a group) on this server",
        m.presence_members,
    );
    gauge(
        &mut now,
        "buffered_bytes",
        "Bytes buffered beyond each connection's allowance (the memory budget's use)",
        m.buffered_bytes,
    );
    gauge(
        &mut now,
        "max_queued_frames",
        "The longest outbound queue of any connection, in frames",
        m.max_queued,
    );
    gauge(
        &mut now,
        "rate_limit_entries",
        "Callers the local rate limiter holds state for",
        m.rate_limit_entries,
    );
    gauge(
        &mut now,
        "idempotency_answers",
        "Idempotent calls' answers kept, and keyed calls running",
        m.idempotency_answers,
    );
    counter(
        &mut now,
        "slow_client_closes",
        "Connections closed because their client read too slowly",
        m.slow_client_closes,
    );
    // A family made afresh at each scrape: each counter is set to the server's figure.
    let dropped = Family::<[(&'static str, &'static str); 1], Counter>::default();
    dropped
        .get_or_create(&[("reason", "slow_client")])
        .inc_by(m.events_dropped);
    if m.redis_connected.is_some() {
        dropped
            .get_or_create(&[("reason", "redis")])
            .inc_by(m.redis_dropped);
    }
    now.register(
        "events_dropped",
        "Events dropped, by reason: a client's queue was full (slow_client), or they could not be published to other servers (redis)",
        dropped,
    );
    counter(
        &mut now,
        "connections_refused",
        "Connections refused for a connection cap",
        m.connections_refused,
    );
    counter(
        &mut now,
        "handshake_timeouts",
        "Connections closed for a slow upgrade or first message",
        m.handshake_timeouts,
    );
    counter(
        &mut now,
        "memory_refusals",
        "Messages refused because the memory budget was spent",
        m.memory_refusals,
    );
    if let Some(connected) = m.redis_connected {
        gauge(
            &mut now,
            "redis_connected",
            "Whether Redis answers (1) or not (0)",
            usize::from(connected),
        );
        counter(
            &mut now,
            "redis_published",
            "Messages published for other servers",
            m.redis_published,
        );
        counter(
            &mut now,
            "redis_received",
            "Messages received from other servers and delivered here",
            m.redis_received,
        );
        counter(
            &mut now,
            "redis_outages",
            "Times Redis could not be reached",
            m.redis_outages,
        );
        counter(
            &mut now,
            "redis_failovers",
            "Times Redis Sentinel's master moved and this server followed it",
            m.redis_failovers,
        );
    }
    let mut out = String::with_capacity(8 * 1024);
    encode_registry(&mut out, telemetry.registry()).ok()?;
    encode_registry(&mut out, &now).ok()?;
    encode_eof(&mut out).ok()?;
    Some(out)
}
