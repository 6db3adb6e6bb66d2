//! The server's settings grouped by topic, for [`Server`](crate::Server): what one client may
//! cost ([`LimitSettings`]), how connections are admitted and kept ([`ConnectionSettings`]),
//! sessions ([`SessionSettings`]) and presence ([`PresenceSettings`]). Each is a value with
//! defaults; only what is set changes anything.
//!
//! ```
//! use std::time::Duration;
//! use ephaptic::{ConnectionSettings, LimitSettings, Retention, SessionSettings, StreamKind};
//!
//! let server = ephaptic::Server::new()
//!     .limits(LimitSettings::default().max_frame_size(2 << 20).max_calls_in_flight(256))
//!     .connections(ConnectionSettings::default().max_connections(20_000))
//!     .sessions(SessionSettings::default().retention(
//!         StreamKind::User,
//!         Retention::default().ttl(Duration::from_secs(600)),
//!     ));
//! ```

use std::time::Duration;

use crate::session::SlowClient;

/// What one client can make this server hold or do, and what it is sent (docs/PROTOCOL.md 5.7): frames, values per call, calls in flight, queued bytes, the memory budget, names and groups. Every bound has a safe default; set only those you change.
///
/// Given to [`Server::limits`](crate::Server::limits); each method names one setting, and what is not set keeps its
/// default.
#[derive(Debug, Clone, Default)]
#[must_use = "settings do nothing until given to the server"]
pub struct LimitSettings {
    pub(crate) max_frame_size: Option<usize>,
    pub(crate) max_frame_nodes: Option<usize>,
    pub(crate) max_calls_in_flight: Option<usize>,
    pub(crate) max_sent_frame: Option<usize>,
    pub(crate) outbound_capacity: Option<usize>,
    pub(crate) outbound_byte_budget: Option<usize>,
    pub(crate) read_buffer_size: Option<usize>,
    pub(crate) memory_budget: Option<usize>,
    pub(crate) slow_client: Option<SlowClient>,
    pub(crate) max_group_name_len: Option<usize>,
    pub(crate) max_groups_per_connection: Option<usize>,
}

impl LimitSettings {
    /// The largest frame a client may send, in bytes (default 1 MiB). A larger frame is
    /// skipped and answered with `FRAME_TOO_LARGE`; the connection lives on. A message beyond
    /// twice this size (or this size plus 64 KiB, whichever is more), whether in one frame or
    /// reassembled from fragments, closes the connection with code 1009 as soon as it is seen:
    /// everything up to that bound is buffered whole, so it is what one connection's input can
    /// cost.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = Some(bytes);
        self
    }

    /// How many values the arguments of one call may hold (default 50,000), counted on their
    /// bytes before anything is decoded: each list, map, map key and scalar counts one, a
    /// string or a binary one whatever its length. A call over it is answered
    /// `VALIDATION_ERROR` (one issue, of type `too_large`, that names this setting) without
    /// being decoded, and the connection goes on. Lists or maps nested 128 deep, where the
    /// decoders stop anyway, are refused the same way (`too_deep`), whatever this setting.
    ///
    /// Why: [`max_frame_size`](Self::max_frame_size) bounds bytes, not what they decode to.
    /// A value can take one byte on the wire and near two hundred once decoded (a list in a
    /// list): one 1 MB argument of lists nested 120 deep, a million values, took 168 MB and
    /// most of a second to decode into a dynamic `Value` and echo. At 50,000 values the worst
    /// shape decodes into about 9 MB and a flat list into about 2 MB (`RELIABILITY.md`), while
    /// a call of a few thousand records of ten fields still fits. Long lists of numbers are
    /// better sent as binary (one value); raise this for calls that must carry more.
    pub fn max_frame_nodes(mut self, values: usize) -> Self {
        self.max_frame_nodes = Some(values);
        self
    }

    /// How many calls (and streams) one connection may have running at once (default 1024):
    /// a call beyond it is answered `TOO_MANY_CALLS` (with `data.limit`) without running, and
    /// the connection goes on. Calls that finish at once do not count. This bounds what one
    /// client can make the server hold.
    pub fn max_calls_in_flight(mut self, calls: usize) -> Self {
        self.max_calls_in_flight = Some(calls);
        self
    }

    /// The largest frame the server sends (default 16 MiB; `limits.max_sent_frame` in the
    /// hello, docs/PROTOCOL.md 5.7), so a client can size what it accepts. An answer past it
    /// is answered `FRAME_TOO_LARGE` (`{"size": n, "limit": m}`) instead, a stream chunk past it
    /// ends the stream with that error, and an event past it is not sent (and logged). Large
    /// data is better streamed, or fetched over HTTP.
    pub fn max_sent_frame(mut self, bytes: usize) -> Self {
        self.max_sent_frame = Some(bytes);
        self
    }

    /// How many frames may wait for one client (default 1024). Replies and stream chunks wait
    /// for room (slowing only their own call); an event that finds the queue full applies the
    /// [slow-client policy](Self::slow_client).
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.outbound_capacity = Some(frames);
        self
    }

    /// How many bytes may wait for one client (default 8 MiB), whatever the number of frames.
    /// An event beyond it applies the [slow-client policy](Self::slow_client); a reply or a
    /// stream's next chunk waits for room instead (slowing only its own call). A few large
    /// events or chunks to a client that does not read cannot make the server hold more. (A
    /// single frame larger than this still goes to a client whose queue is empty.)
    pub fn outbound_byte_budget(mut self, bytes: usize) -> Self {
        self.outbound_byte_budget = Some(bytes);
        self
    }

    /// The WebSocket read buffer per connection (default 4 KiB; larger frames still arrive,
    /// in several reads). The main cost of an idle connection.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = Some(bytes);
        self
    }

    /// How many bytes the server may buffer across all connections (default 512 MiB), beyond
    /// the first 64 KiB of each: events and replies waiting for clients, and messages read from
    /// clients that are not whole yet. When it is spent, the connection that asks for more is
    /// refused: an event for it goes to the [slow-client policy](Self::slow_client), and an
    /// unfinished message closes it. Ordinary connections, which buffer less than 64 KiB, are
    /// never refused. [`metrics`](fn@crate::metrics) reports `buffered_bytes` and
    /// `memory_refusals`.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// What to do with a client too slow to take the events emitted to it (default
    /// [`SlowClient::Disconnect`]). How far behind a client may fall first is
    /// [`outbound_capacity`](Self::outbound_capacity).
    pub fn slow_client(mut self, policy: SlowClient) -> Self {
        self.slow_client = Some(policy);
        self
    }

    /// The longest group name application code may join, emit to or track presence in, in
    /// bytes (default 200, at most 254: a group's stream is `g:<group>`, and a client names
    /// streams of at most 256 bytes when it resumes). Group names often come from clients
    /// (`room:{id}`), and each is kept while the group has members or history, here and in
    /// Redis: a longer name is refused (`Caller::try_join` answers `INVALID_NAME`, `join`
    /// returns `false`, an emit to it reaches no one), with a log line.
    pub fn max_group_name_len(mut self, bytes: usize) -> Self {
        self.max_group_name_len = Some(bytes);
        self
    }

    /// The most groups one connection may be in at once (default 1024; its presence watches
    /// are counted apart, at most 256). A join beyond it is refused (`Caller::try_join`
    /// answers `TOO_MANY_GROUPS` with `{"limit": n}`), so what one connection costs to hold
    /// and to close stays bounded.
    pub fn max_groups_per_connection(mut self, groups: usize) -> Self {
        self.max_groups_per_connection = Some(groups);
        self
    }
}

/// How connections are admitted and kept: caps (in total, per peer address, per identity), the opening deadlines, pings, and how long a graceful shutdown waits.
///
/// Given to [`Server::connections`](crate::Server::connections); each method names one setting, and what is not set keeps its
/// default.
#[derive(Debug, Clone, Default)]
#[must_use = "settings do nothing until given to the server"]
pub struct ConnectionSettings {
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_peer: Option<usize>,
    pub(crate) max_connections_per_identity: Option<usize>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) first_message_timeout: Option<Duration>,
    pub(crate) ping_interval: Option<Option<Duration>>,
    pub(crate) drain_timeout: Option<Duration>,
}

impl ConnectionSettings {
    /// How many connections may be open at once (default 100,000); one more is closed at
    /// accept, before a byte of it is read, and counted in `metrics().connections_refused`.
    /// Counts TCP connections of [`serve`](crate::Server::serve), upgraded or not.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// How many connections one peer IP address may have open at once (default: no cap, as
    /// many users can share an address behind a NAT or a proxy). Applies under
    /// [`serve`](crate::Server::serve); behind a reverse proxy every client shares its address, so set
    /// it only when clients connect directly.
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_connections_per_peer = Some(connections);
        self
    }

    /// How many connections one identity may have open on this server at once (default: no
    /// cap). A connection beyond it is closed with code 1008 and the reason "too many
    /// connections for this identity" once the identity loader has named it, before its first
    /// frame runs and without `on_connect`. The newest connection is the one refused: a client
    /// whose old connection died without a close still holds that place until the server notices
    /// (three ping intervals, 60 s by default), so leave room for a reconnect.
    pub fn max_connections_per_identity(mut self, connections: usize) -> Self {
        self.max_connections_per_identity = Some(connections);
        self
    }

    /// How long a client has, after its TCP connection is accepted, to finish the WebSocket
    /// upgrade (default 10 s); and then, separately, to send its first message
    /// ([`first_message_timeout`](Self::first_message_timeout)). A connection that sends a
    /// request slowly, or nothing, is closed then instead of holding a descriptor. Applies under
    /// [`serve`](crate::Server::serve).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// How long a client has, after the WebSocket upgrade, to send its first message (default
    /// 10 s). Every ephaptic client sends `init` at once. Applies under [`serve`](crate::Server::serve).
    pub fn first_message_timeout(mut self, timeout: Duration) -> Self {
        self.first_message_timeout = Some(timeout);
        self
    }

    /// How often to ping each client (default 20 s); `None` turns pings off. A client that
    /// sends nothing (not even a pong) for three intervals is disconnected at the next ping, and
    /// one whose socket takes nothing for two intervals while frames wait for it (it stopped
    /// reading) is dropped.
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.ping_interval = Some(every);
        self
    }

    /// How long a graceful shutdown lets calls in flight finish (default 10 s) before it stops
    /// them, answers them `SHUTTING_DOWN` and closes every connection.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }
}

/// Sessions that survive reconnects (docs/PROTOCOL.md 5.6): whether events get positions and a history, and how much of it each kind of stream keeps.
///
/// Given to [`Server::sessions`](crate::Server::sessions); each method names one setting, and what is not set keeps its
/// default.
#[derive(Debug, Clone, Default)]
#[must_use = "settings do nothing until given to the server"]
pub struct SessionSettings {
    pub(crate) resume: Option<bool>,
    pub(crate) retention: Vec<(crate::StreamKind, crate::Retention)>,
    pub(crate) history_memory: Option<usize>,
    pub(crate) history_max_streams: Option<usize>,
    pub(crate) history_max_event: Option<usize>,
}

impl SessionSettings {
    /// Whether clients resume after a reconnect without losing events (default on): every
    /// event to an identity, to everyone or to a group gets a position in its stream and is
    /// kept for a while (see [`retention`](Self::retention)), and a client that comes back is
    /// sent what it missed, or told that it must refetch (docs/PROTOCOL.md 5.6). Kept in
    /// memory on a server alone, in Redis with [`redis`](crate::Server::redis). Off: events carry no
    /// position and nothing is kept; clients are told there are no sessions and refetch
    /// after each reconnect.
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = Some(on);
        self
    }

    /// How much history one kind of stream keeps: events per stream, for how long, and how
    /// many one resume replays at most. Defaults: 256 events per identity, 1024 for the
    /// broadcast stream and per group; 300 s; 500 replayed. In memory, all streams together
    /// also hold at most [`history_memory`](Self::history_memory).
    pub fn retention(mut self, kind: crate::StreamKind, retention: crate::Retention) -> Self {
        self.retention.push((kind, retention));
        self
    }

    /// The most bytes the in-memory history holds for all streams together (default 64 MiB),
    /// streams' names and positions included; past it the oldest events go first, then the
    /// least recently used streams. Not used with Redis, where Redis holds it.
    pub fn history_memory(mut self, bytes: usize) -> Self {
        self.history_memory = Some(bytes);
        self
    }

    /// The most streams the in-memory history keeps (default 100,000: one per identity that
    /// was sent an event or resumed, one per group, and `b`). Each costs its name and about
    /// 200 bytes, and client-chosen names (`to(user)`, `group(room)`) can make many; past the
    /// bound the least recently used stream is let go. Its listeners lose nothing live (its
    /// next event starts a new epoch); a client resuming it from before is answered
    /// `reason: "epoch"` and refetches. A stream without kept events is let go anyway once
    /// its kind's longest `ttl` has passed since its last event. Not used with Redis, where
    /// each stream's keys expire on the same clock.
    pub fn history_max_streams(mut self, streams: usize) -> Self {
        self.history_max_streams = Some(streams);
        self
    }

    /// The largest event (its encoded frame) the history keeps (default 64 KiB). A larger one
    /// is still numbered and delivered, but not kept: a client that missed it is told to
    /// refetch instead of being sent it again. Large payloads are cheaper refetched than held
    /// for every stream's time to live.
    pub fn history_max_event(mut self, bytes: usize) -> Self {
        self.history_max_event = Some(bytes);
        self
    }
}

/// Presence (docs/PROTOCOL.md 5.10): how lists and diffs are bounded and batched, and (with Redis) how long entries outlive their server. Who may see a group's presence is a hook: [`Server::presence_authorize`](crate::Server::presence_authorize).
///
/// Given to [`Server::presence`](crate::Server::presence); each method names one setting, and what is not set keeps its
/// default.
#[derive(Debug, Clone, Default)]
#[must_use = "settings do nothing until given to the server"]
pub struct PresenceSettings {
    pub(crate) list_cap: Option<usize>,
    pub(crate) max_meta: Option<usize>,
    pub(crate) max_snapshot: Option<usize>,
    pub(crate) batch: Option<(Duration, usize)>,
    #[cfg(feature = "redis")]
    pub(crate) ttl: Option<Duration>,
}

impl PresenceSettings {
    /// How many members a presence list (and a client's snapshot) holds at most (default
    /// 1000); a longer list is cut, sorted by key, with `truncated: true`. Counts are always
    /// whole: use [`Presence::count`](crate::Presence::count) for big groups.
    pub fn list_cap(mut self, members: usize) -> Self {
        self.list_cap = Some(members);
        self
    }

    /// The largest meta a connection may track itself with, encoded (default 4 KiB). A larger
    /// one is refused at `track` with `META_TOO_LARGE` (`{"size": n, "limit": m}`): every
    /// watcher is sent every meta, so a meta is for a name and a status, not a document.
    pub fn max_meta(mut self, bytes: usize) -> Self {
        self.max_meta = Some(bytes);
        self
    }

    /// The most bytes of members one presence list, snapshot or diff frame holds (default
    /// 512 KiB, with the list cap of members as well): a list past it holds the members that
    /// fit, with `truncated: true`, and diffs are split into more frames.
    pub fn max_snapshot(mut self, bytes: usize) -> Self {
        self.max_snapshot = Some(bytes);
        self
    }

    /// How presence changes are batched (default every 200 ms, at most 256 connections per
    /// frame): each group's watchers get at most one diff per `every` (more frames only when
    /// more than `max` connections changed), so a mass reconnect is a few frames, not one per
    /// connection per watcher. Phoenix batches every 1.5 s.
    pub fn batch(mut self, every: Duration, max: usize) -> Self {
        self.batch = Some((every, max));
        self
    }

    /// How long a server's presence entries outlive it on Redis (default 30 s): each server
    /// refreshes its entries every third of this, so the members of a server that crashed are
    /// gone from lists and counts at most this long after the crash, and their leaves reach
    /// watchers at most a refresh (plus a batch) later. Shorter finds crashes sooner for more
    /// Redis traffic (one script per group with members on this server, per refresh).
    #[cfg(feature = "redis")]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Calls that take effect once (docs/PROTOCOL.md 5.12): how long and how much of
/// `#[expose(idempotent)]` functions' answers is kept for the repeats of their calls.
///
/// Given to [`Server::idempotency`](crate::Server::idempotency); each method names one setting,
/// and what is not set keeps its default.
///
/// ```
/// use std::time::Duration;
/// use ephaptic::IdempotencySettings;
///
/// let server = ephaptic::Server::new()
///     .idempotency(IdempotencySettings::default().window(Duration::from_secs(600)));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "settings do nothing until given to the server"]
pub struct IdempotencySettings {
    pub(crate) window: Option<Duration>,
    pub(crate) max_keys: Option<usize>,
    pub(crate) memory: Option<usize>,
    pub(crate) max_answer: Option<usize>,
}

impl IdempotencySettings {
    /// How long a call's answer is kept after it finished (default 5 minutes): a repeat within
    /// it gets the answer, a later one runs again. Make it longer than a client keeps retrying
    /// (`@ephaptic/client` retries for as long as the call's timeout, 30 s by default).
    pub fn window(mut self, window: Duration) -> Self {
        // At most a day: Redis keeps the answers that long, and a window is about retries.
        self.window = Some(window.clamp(Duration::from_millis(1), Duration::from_secs(86_400)));
        self
    }

    /// The most answers this server keeps in memory (default 100,000); past it the oldest go
    /// first, and their repeats run again. With Redis, Redis keeps them for the window.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = Some(keys.max(1));
        self
    }

    /// The most bytes the kept answers hold in memory (default 32 MiB), about 100 bytes per
    /// answer beside its own; past it the oldest go first.
    pub fn memory(mut self, bytes: usize) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// The largest answer kept (default 64 KiB). A repeat of a call whose answer was larger is
    /// not run again: it gets `ALREADY_DONE`, saying that the call ran and that its answer was
    /// too large to keep.
    pub fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = Some(bytes);
        self
    }
}
