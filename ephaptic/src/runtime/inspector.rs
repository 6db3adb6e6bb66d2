//! What the inspector page shows (`Server::inspector`), as JSON: a snapshot of one server
//! (connections, identities, groups, presence, streams, per-function totals, the figures of
//! [`Metrics`](crate::Metrics)) and the live trace of one identity (`trace.rs`). The transport
//! serves it behind the inspector's access rule; the page turns totals into rates.
//!
//! Lists are capped at [`ROWS`] rows, each with the total it was cut from, so a server with a
//! hundred thousand connections answers in a few milliseconds and a page stays readable. Names a
//! client chose (identities, groups) are data here, never markup: the page sets them as text.

use serde::Serialize;

use super::delivery::Positions;
use super::state::State;
use super::trace::{IDLE, KEPT, MAX_TRACED, Record, Refused, Way};

/// Rows of each list at most.
pub(crate) const ROWS: usize = 500;

/// A list cut to [`ROWS`]: `total` is how many there are.
#[derive(Serialize)]
struct List<T> {
    total: usize,
    rows: Vec<T>,
}

#[derive(Serialize)]
struct Snapshot {
    now_ms: u64,
    limits: Limits,
    connections: List<ConnectionRow>,
    identities: List<IdentityRow>,
    groups: List<GroupRow>,
    presence: List<PresenceRow>,
    streams: Streams,
    functions: Functions,
    metrics: Figures,
    /// The identities traced now.
    traced: Vec<String>,
}

#[derive(Serialize)]
struct Limits {
    rows: usize,
    traced: usize,
    kept: usize,
    idle_seconds: u64,
}

#[derive(Serialize)]
struct ConnectionRow {
    id: u64,
    identity: Option<String>,
    peer: Option<String>,
    /// Application groups it is in.
    groups: usize,
    /// Frames waiting in its outbound queue.
    queued: usize,
    /// Calls running in tasks of their own.
    calls: usize,
    traced: bool,
}

#[derive(Serialize)]
struct IdentityRow {
    key: String,
    connections: usize,
}

#[derive(Serialize)]
struct GroupRow {
    name: String,
    members: usize,
}

#[derive(Serialize)]
struct PresenceRow {
    group: String,
    members: usize,
    connections: usize,
    watchers: usize,
}

#[derive(Serialize)]
struct Streams {
    /// `memory`, `redis` (kept there, for every server) or `off` (no sessions).
    kept: &'static str,
    total: usize,
    rows: Vec<StreamRow>,
}

#[derive(Serialize)]
struct StreamRow {
    stream: String,
    epoch: String,
    top: u64,
    kept: usize,
}

#[derive(Serialize)]
struct Functions {
    rows: Vec<FunctionRow>,
    /// Calls of names this server does not serve.
    unknown: u64,
}

/// A function's totals since the server started; the page turns two snapshots into rates.
#[derive(Serialize)]
struct FunctionRow {
    name: &'static str,
    calls: u64,
    errors: u64,
    nanos: u64,
}

/// The figures of [`Metrics`](crate::Metrics) the page shows.
#[derive(Serialize)]
struct Figures {
    connections: usize,
    identities: usize,
    max_queued: usize,
    queue_capacity: usize,
    slow_client_closes: u64,
    events_dropped: u64,
    buffered_bytes: usize,
    memory_refusals: u64,
    connections_refused: u64,
    handshake_timeouts: u64,
    presence_members: usize,
    rate_limit_entries: usize,
    idempotency_answers: usize,
    redis_connected: Option<bool>,
    redis_published: u64,
    redis_received: u64,
    redis_dropped: u64,
    redis_outages: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The snapshot of `state`'s server, as JSON.
pub(crate) fn snapshot(state: &State) -> String {
    let (total, conns) = state.hub.oldest_connections(ROWS);
    let connections = List {
        total,
        rows: conns
            .iter()
            .map(|c| ConnectionRow {
                id: c.id(),
                identity: c.identity().map(|i| i.key()),
                peer: c.peer().map(|p| p.to_string()),
                groups: c.group_count(),
                queued: c.queued(),
                calls: c.calls_running(),
                traced: c.traced(),
            })
            .collect(),
    };
    let (total, ids) = state.hub.busiest_identities(ROWS);
    let identities = List {
        total,
        rows: ids
            .into_iter()
            .map(|(id, connections)| IdentityRow {
                key: id.key(),
                connections,
            })
            .collect(),
    };
    let (total, groups) = state.hub.largest_groups(ROWS);
    let groups = List {
        total,
        rows: groups
            .into_iter()
            .map(|(name, members)| GroupRow {
                name: name.to_string(),
                members,
            })
            .collect(),
    };
    let tracked = state.presence.local_groups();
    let presence = List {
        total: tracked.len(),
        rows: tracked
            .into_iter()
            .take(ROWS)
            .map(|g| PresenceRow {
                group: g.group.to_string(),
                members: g.members,
                connections: g.connections,
                watchers: g.watchers,
            })
            .collect(),
    };
    let streams = match state.delivery.positions(ROWS) {
        Positions::Off => Streams {
            kept: "off",
            total: 0,
            rows: Vec::new(),
        },
        Positions::Redis => Streams {
            kept: "redis",
            total: 0,
            rows: Vec::new(),
        },
        Positions::Memory { total, streams } => Streams {
            kept: "memory",
            total,
            rows: streams
                .into_iter()
                .map(|p| StreamRow {
                    stream: p.stream,
                    epoch: p.epoch,
                    top: p.top,
                    kept: p.kept,
                })
                .collect(),
        },
    };
    let functions = match &state.telemetry {
        Some(t) => {
            let mut rows: Vec<FunctionRow> = t
                .totals()
                .into_iter()
                .map(|f| FunctionRow {
                    name: f.name,
                    calls: f.calls,
                    errors: f.errors,
                    nanos: f.nanos,
                })
                .collect();
            rows.sort_by(|a, b| a.name.cmp(b.name));
            Functions {
                rows,
                unknown: t.unknown_calls(),
            }
        }
        None => Functions {
            rows: Vec::new(),
            unknown: 0,
        },
    };
    let m = super::metrics::of(state);
    let metrics = Figures {
        connections: m.connections,
        identities: m.identities,
        max_queued: m.max_queued,
        queue_capacity: m.queue_capacity,
        slow_client_closes: m.slow_client_closes,
        events_dropped: m.events_dropped,
        buffered_bytes: m.buffered_bytes,
        memory_refusals: m.memory_refusals,
        connections_refused: m.connections_refused,
        handshake_timeouts: m.handshake_timeouts,
        presence_members: m.presence_members,
        rate_limit_entries: m.rate_limit_entries,
        idempotency_answers: m.idempotency_answers,
        redis_connected: m.redis_connected,
        redis_published: m.redis_published,
        redis_received: m.redis_received,
        redis_dropped: m.redis_dropped,
        redis_outages: m.redis_outages,
    };
    let snapshot = Snapshot {
        now_ms: now_ms(),
        limits: Limits {
            rows: ROWS,
            traced: MAX_TRACED,
            kept: KEPT,
            idle_seconds: IDLE.as_secs(),
        },
        connections,
        identities,
        groups,
        presence,
        streams,
        functions,
        metrics,
        traced: state.tracer.traced(),
    };
    serde_json::to_string(&snapshot).unwrap_or_default()
}

#[derive(Serialize)]
struct TraceView {
    identity: String,
    /// The trace started with this request (its records are numbered from 1 again).
    started: bool,
    now_ms: u64,
    /// Its connections here, by id.
    connections: Vec<u64>,
    /// Newest first.
    records: Vec<RecordRow>,
    kept: usize,
    idle_seconds: u64,
}

#[derive(Serialize)]
struct RecordRow {
    seq: u64,
    at_ms: u64,
    connection: u64,
    /// `in` (from the client) or `out` (to it).
    way: &'static str,
    kind: String,
    name: Option<String>,
    id: Option<String>,
    code: Option<String>,
    stream: Option<String>,
    offset: Option<u64>,
    /// The frame's size in bytes.
    size: usize,
}

impl From<Record> for RecordRow {
    fn from(r: Record) -> Self {
        let s = r.summary;
        RecordRow {
            seq: r.seq,
            at_ms: r.at_ms,
            connection: r.connection,
            way: match r.way {
                Way::In => "in",
                Way::Out => "out",
            },
            kind: s.kind,
            name: s.name,
            id: s.id,
            code: s.code,
            stream: s.stream,
            offset: s.offset,
            size: r.size,
        }
    }
}

/// The trace of the identity `key` after record `after` (starting it if needed), as JSON; a
/// sentence saying why not otherwise.
pub(crate) fn trace(state: &State, key: &str, after: u64) -> Result<String, String> {
    let (started, records) =
        state
            .tracer
            .poll(&state.hub, key, after)
            .map_err(|why| match why {
                Refused::NotAKey => format!(
                    "not an identity key: write it as the server names identities, s:<string>, \
                 i:<integer>, b:<0 or 1> or u:<uuid> (got {:?})",
                    crate::wire::summary::cut(key)
                ),
                Refused::Full(keys) => format!(
                    "{MAX_TRACED} identities are traced already ({}): stop one, or wait until \
                 nobody has asked for one for {} s",
                    keys.join(", "),
                    IDLE.as_secs()
                ),
            })?;
    let identity = crate::identity::Identity::from_key(key);
    let mut connections: Vec<u64> = identity
        .as_ref()
        .map(|id| state.hub.connections_of(id))
        .unwrap_or_default()
        .iter()
        .map(|c| c.id())
        .collect();
    connections.sort_unstable();
    let view = TraceView {
        identity: identity.map(|i| i.key()).unwrap_or_default(),
        started,
        now_ms: now_ms(),
        connections,
        records: records.into_iter().map(RecordRow::from).collect(),
        kept: KEPT,
        idle_seconds: IDLE.as_secs(),
    };
    Ok(serde_json::to_string(&view).unwrap_or_default())
}

/// Ends the trace of `key` now.
pub(crate) fn stop(state: &State, key: &str) {
    state.tracer.stop(key);
}
