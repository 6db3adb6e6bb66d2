//! The numbers a server reports about itself.

use super::scope::current;

/// Numbers a server reports about itself; see [`metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Open connections.
    pub connections: usize,
    /// Distinct identities connected.
    pub identities: usize,
    /// The longest outbound queue of any connection right now, in frames.
    pub max_queued: usize,
    /// The outbound queue capacity per connection.
    pub queue_capacity: usize,
    /// Connections closed because they could not keep up with events.
    pub slow_client_closes: u64,
    /// Events dropped for slow clients under [`SlowClient::DropEvents`](crate::SlowClient).
    pub events_dropped: u64,
    /// Callers the local rate limiter holds state for, over every rate-limited function. An
    /// entry is a few dozen bytes whatever the caller's identity, and is dropped at the first
    /// rate-limited call two periods or more after its caller's last call (with Redis, this
    /// counts only what the server decided alone while Redis was away).
    pub rate_limit_entries: usize,
    /// Idempotent calls' answers this server keeps for their repeats, and the calls with a
    /// key running (docs/PROTOCOL.md 5.12; with Redis, Redis keeps them).
    pub idempotency_answers: usize,
    /// Presence entries (connections tracked in a group) this server holds.
    pub presence_members: usize,
    /// With Redis: whether it answers now (`None` without Redis).
    pub redis_connected: Option<bool>,
    /// With Redis: messages published for other servers.
    pub redis_published: u64,
    /// With Redis: messages received from other servers and delivered here.
    pub redis_received: u64,
    /// With Redis: events for other servers (or from them) dropped because Redis could not be
    /// reached or kept up. Never silent: each outage is also logged, and with sessions the
    /// other servers' clients of a stream whose events were dropped here are told to refetch.
    pub redis_dropped: u64,
    /// With Redis: how many times it became unreachable.
    pub redis_outages: u64,
    /// With Redis Sentinel: how many times the master moved and this server followed it (each
    /// is also an outage of its own: what it missed meanwhile is resynced).
    pub redis_failovers: u64,
    /// With Redis: `resync`s sent to this server's connections, telling them to refetch a
    /// stream whose events this server may have missed (an outage, a failover, events another
    /// server could not publish).
    pub redis_resyncs: u64,
    /// Connections refused at a connection cap
    /// ([`max_connections`](crate::Server::max_connections) and the caps beside it).
    pub connections_refused: u64,
    /// Connections closed because they did not finish the WebSocket upgrade, or did not send a
    /// first message, in time.
    pub handshake_timeouts: u64,
    /// Bytes buffered (queued for clients, or read from them before their message was whole)
    /// beyond each connection's free 64 KiB, counted against
    /// [`memory_budget`](crate::Server::memory_budget).
    pub buffered_bytes: usize,
    /// How many times the memory budget refused a connection more (its events were dropped or
    /// it was closed).
    pub memory_refusals: u64,
    /// How many times the server asked the allocator to give back what large buffers left
    /// (glibc's `malloc_trim`; after the buffered bytes fall back to nothing, at most once a
    /// second).
    pub memory_trims: u64,
}

/// The current server's numbers (inside a handler, its server; elsewhere the one started most
/// recently); `None` when no server runs.
pub fn metrics() -> Option<Metrics> {
    Some(of(&*current()?))
}

/// The figures of the server `s`.
pub(crate) fn of(s: &super::state::State) -> Metrics {
    use std::sync::atomic::Ordering::Relaxed;
    let d = s.delivery.stats();
    Metrics {
        redis_connected: d.connected,
        redis_published: d.published,
        redis_received: d.received,
        redis_dropped: d.dropped,
        redis_outages: d.outages,
        redis_failovers: d.failovers,
        redis_resyncs: d.resyncs,
        connections: s.hub.len(),
        identities: s.hub.identities(),
        max_queued: s.hub.max_queued(),
        queue_capacity: s.outbound.capacity,
        slow_client_closes: s.outbound.counters.slow_client_closes.load(Relaxed),
        events_dropped: s.outbound.counters.events_dropped.load(Relaxed),
        connections_refused: s.refusals.connections.load(Relaxed)
            + s.refusals.identity.load(Relaxed),
        handshake_timeouts: s.refusals.timeouts.load(Relaxed),
        buffered_bytes: s.outbound.memory.used(),
        memory_refusals: s.outbound.memory.refusals.load(Relaxed),
        memory_trims: s.outbound.memory.trims(),
        rate_limit_entries: s.limiter.entries(),
        idempotency_answers: s.answers.kept(),
        presence_members: s.presence.tracked(),
    }
}
