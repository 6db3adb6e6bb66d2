//! The builder: a server's settings, the registry it serves, its identity loader and hooks.
//! It builds the runtime's [`State`] once and hands it to the transport; nothing below imports
//! from here.

mod hooks;
mod observing;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};

use crate::handler::{DynLoader, Exposed, FunctionDef, IdentityLoader};
use crate::registry::{Introspection, Naming, Registry, RegistryError};
use crate::runtime::{Config, Hook, Origins, Parts, State};
use crate::session::SlowClient;
use crate::settings::{
    ConnectionSettings, IdempotencySettings, LimitSettings, PresenceSettings, SessionSettings,
};

/// A configurable ephaptic server. [`serve`](crate::serve) and [`router`](crate::router) are
/// `Server::new().serve(..)` and `Server::new().router()`.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// ephaptic::Server::new()
///     .path("/rpc")
///     .allowed_origins(["https://app.example.com"])
///     .max_frame_size(256 * 1024)
///     .debug(cfg!(debug_assertions))
///     .serve("127.0.0.1:8000")
///     .await
/// # }
/// ```
#[must_use = "a Server does nothing until it is served or turned into a router"]
pub struct Server {
    config: Config,
    loader: Option<DynLoader>,
    explicit: Vec<&'static FunctionDef>,
    naming: Option<Naming>,
    on_connect: Option<Hook>,
    on_disconnect: Option<Hook>,
    revalidation: Option<crate::runtime::Revalidation>,
    trace_parent: Option<crate::runtime::spans::ParentHook>,
    /// When to shut down gracefully; `None`: at ctrl-c or SIGTERM. (In a mutex only so that
    /// a `Server` stays `Sync`; it is taken once.)
    shutdown: Option<std::sync::Mutex<crate::handler::BoxFuture<()>>>,
    presence: crate::runtime::presence::Settings,
    #[cfg(feature = "redis")]
    redis: RedisConfig,
}

/// The Redis settings the builder collects.
#[cfg(feature = "redis")]
#[derive(Debug, Default)]
struct RedisConfig {
    url: Option<String>,
    compat: bool,
    probe_every: Option<Duration>,
    presence_ttl: Option<Duration>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("custom_loader", &self.loader.is_some())
            .field(
                "explicit",
                &self.explicit.iter().map(|d| d.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the defaults: path `/_ephaptic`, its own origin and loopback pages, 1 MiB
    /// frames, debug off.
    pub fn new() -> Self {
        Server {
            config: Config::default(),
            loader: None,
            explicit: Vec::new(),
            naming: None,
            on_connect: None,
            on_disconnect: None,
            revalidation: None,
            trace_parent: None,
            shutdown: None,
            presence: Default::default(),
            #[cfg(feature = "redis")]
            redis: RedisConfig::default(),
        }
    }

    /// What one client can make this server hold or do, and what it is sent (docs/PROTOCOL.md 5.7): frames, values per call, calls in flight, queued bytes, the memory budget, names and groups. Every bound has a safe default; set only those you change.
    pub fn limits(mut self, settings: LimitSettings) -> Self {
        if let Some(v) = settings.max_frame_size {
            self = self.max_frame_size(v);
        }
        if let Some(v) = settings.max_frame_nodes {
            self = self.max_frame_nodes(v);
        }
        if let Some(v) = settings.max_calls_in_flight {
            self = self.max_calls_in_flight(v);
        }
        if let Some(v) = settings.max_sent_frame {
            self = self.max_sent_frame(v);
        }
        if let Some(v) = settings.outbound_capacity {
            self = self.outbound_capacity(v);
        }
        if let Some(v) = settings.outbound_byte_budget {
            self = self.outbound_byte_budget(v);
        }
        if let Some(v) = settings.read_buffer_size {
            self = self.read_buffer_size(v);
        }
        if let Some(v) = settings.memory_budget {
            self = self.memory_budget(v);
        }
        if let Some(v) = settings.slow_client {
            self = self.slow_client(v);
        }
        if let Some(v) = settings.max_group_name_len {
            self = self.max_group_name_len(v);
        }
        if let Some(v) = settings.max_groups_per_connection {
            self = self.max_groups_per_connection(v);
        }
        self
    }

    /// How connections are admitted and kept: caps (in total, per peer address, per identity), the opening deadlines, pings, and how long a graceful shutdown waits.
    pub fn connections(mut self, settings: ConnectionSettings) -> Self {
        if let Some(v) = settings.max_connections {
            self = self.max_connections(v);
        }
        if let Some(v) = settings.max_connections_per_peer {
            self = self.max_connections_per_peer(v);
        }
        if let Some(v) = settings.max_connections_per_identity {
            self = self.max_connections_per_identity(v);
        }
        if let Some(v) = settings.handshake_timeout {
            self = self.handshake_timeout(v);
        }
        if let Some(v) = settings.first_message_timeout {
            self = self.first_message_timeout(v);
        }
        if let Some(v) = settings.ping_interval {
            self = self.ping_interval(v);
        }
        if let Some(v) = settings.drain_timeout {
            self = self.drain_timeout(v);
        }
        self
    }

    /// Sessions that survive reconnects (docs/PROTOCOL.md 5.6): whether events get positions and a history, and how much of it each kind of stream keeps.
    pub fn sessions(mut self, settings: SessionSettings) -> Self {
        if let Some(v) = settings.resume {
            self = self.resume(v);
        }
        for (kind, retention) in settings.retention {
            self = self.retention(kind, retention);
        }
        if let Some(v) = settings.history_memory {
            self = self.history_memory(v);
        }
        if let Some(v) = settings.history_max_streams {
            self = self.history_max_streams(v);
        }
        if let Some(v) = settings.history_max_event {
            self = self.history_max_event(v);
        }
        self
    }

    /// Calls that take effect once (docs/PROTOCOL.md 5.12): how long and how much of the
    /// answers of `#[expose(idempotent)]` functions is kept for their calls' repeats.
    pub fn idempotency(mut self, settings: IdempotencySettings) -> Self {
        let limits = &mut self.config.idempotency;
        if let Some(v) = settings.window {
            limits.window = v;
        }
        if let Some(v) = settings.max_keys {
            limits.max_keys = v;
        }
        if let Some(v) = settings.memory {
            limits.memory = v;
        }
        if let Some(v) = settings.max_answer {
            limits.max_answer = v;
        }
        self
    }

    /// Presence (docs/PROTOCOL.md 5.10): how lists and diffs are bounded and batched, and (with Redis) how long entries outlive their server. Who may see a group's presence is a hook: [`Server::presence_authorize`].
    pub fn presence(mut self, settings: PresenceSettings) -> Self {
        if let Some(v) = settings.list_cap {
            self = self.presence_list_cap(v);
        }
        if let Some(v) = settings.max_meta {
            self = self.presence_max_meta(v);
        }
        if let Some(v) = settings.max_snapshot {
            self = self.presence_max_snapshot(v);
        }
        if let Some(v) = settings.batch {
            self = self.presence_batch(v.0, v.1);
        }
        #[cfg(feature = "redis")]
        if let Some(v) = settings.ttl {
            self = self.presence_ttl(v);
        }
        self
    }

    /// The WebSocket path (default `/_ephaptic`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Also accept WebSocket upgrades from pages of these origins (e.g.
    /// `https://app.example.com`), beside those accepted by default.
    ///
    /// By default a server accepts its own pages (an `Origin` whose host and port are the
    /// request's `Host`), pages served from this machine (`localhost`, `127.0.0.1`, `[::1]` on
    /// any port, such as a Vite dev server), and clients that send no `Origin` (the Python and
    /// Node clients, servers). Any other site's page is refused with 403: browsers send cookies
    /// with a WebSocket upgrade whatever page opens it, so a server that cookies authenticate
    /// would otherwise be open to cross-site WebSocket hijacking. See the auth guide
    /// (`docs/AUTH.md`).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.origins = Origins::Listed(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Accept WebSocket upgrades from pages of any origin. Only for a server that nothing
    /// ambient (cookies, client certificates, a private network) authenticates: its clients
    /// prove who they are in `init.auth`, which another site's page cannot read.
    pub fn allow_any_origin(mut self) -> Self {
        self.config.origins = Origins::Any;
        self
    }

    /// Serve WebSocket upgrades only for these `Host` names (default: any `Host`), against
    /// DNS rebinding. An entry is a name or an address as the `Host` header carries it:
    /// `app.example.com` or `203.0.113.7` matches any port, `app.example.com:8443` or
    /// `[2001:db8::1]:8443` that port only; case does not matter. Loopback names (`localhost`,
    /// `127.0.0.1`, `[::1]`, on any port) are always served: a browser sends them only for a
    /// page on this machine. Any other `Host` is refused with 403 before the
    /// [origin check](Self::allowed_origins), and logged (a few lines a minute at most).
    ///
    /// Why: the origin check accepts a page whose `Origin` is the request's `Host`, and DNS
    /// rebinding makes both the attacker's: a page on `evil.example` whose name is then
    /// pointed at your server's address is "same-origin" with it, and can call a server that
    /// trusts where a request comes from (one on a private network or on `127.0.0.1`, a dev
    /// server) rather than who sends it. Listing the names the server is reached by closes
    /// that: the browser still sends `Host: evil.example`.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// ephaptic::Server::new()
    ///     .allowed_hosts(["app.example.com", "internal.example.com:8443"])
    ///     .serve("0.0.0.0:8000")
    ///     .await
    /// # }
    /// ```
    ///
    /// A server for this machine only serves loopback names with any list, an empty one too:
    /// `.allowed_hosts(["localhost"])`. Behind a reverse proxy, list the public names and
    /// pass the `Host` header through (nginx: `proxy_set_header Host $host;`).
    ///
    /// # Panics
    /// When an entry is a URL (`https://app.example.com`) rather than a name: the message
    /// says what to write.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let hosts = hosts.into_iter().map(Into::into).collect::<Vec<_>>();
        if let Some(url) = hosts.iter().find(|h| h.contains('/')) {
            let name = url.split("://").last().unwrap_or(url).trim_end_matches('/');
            panic!(
                "Server::allowed_hosts takes names as the Host header carries them, not URLs: \
                 write {name:?} instead of {url:?}"
            );
        }
        self.config.allowed_hosts = Some(hosts);
        self
    }

    /// The largest frame a client may send, in bytes (default 1 MiB). A larger frame is
    /// skipped and answered with `FRAME_TOO_LARGE`; the connection lives on. A message beyond
    /// twice this size (or this size plus 64 KiB, whichever is more), whether in one frame or
    /// reassembled from fragments, closes the connection with code 1009 as soon as it is seen:
    /// everything up to that bound is buffered whole, so it is what one connection's input can
    /// cost.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes.max(64);
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
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_frame_nodes(mut self, values: usize) -> Self {
        self.config.max_frame_nodes = values.max(16);
        self
    }

    /// Debug mode: internal errors carry their detail to the client, and `NOT_FOUND` says how
    /// to register a function. Never turn this on in production.
    pub fn debug(mut self, on: bool) -> Self {
        self.config.debug = on;
        self
    }

    /// How many frames may wait for one client (default 1024). Replies and stream chunks wait
    /// for room (slowing only their own call); an event that finds the queue full applies the
    /// [slow-client policy](Self::slow_client).
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.config.outbound_capacity = frames.max(1);
        self
    }

    /// How many bytes may wait for one client (default 8 MiB), whatever the number of frames.
    /// An event beyond it applies the [slow-client policy](Self::slow_client); a reply or a
    /// stream's next chunk waits for room instead (slowing only its own call). A few large
    /// events or chunks to a client that does not read cannot make the server hold more. (A
    /// single frame larger than this still goes to a client whose queue is empty.)
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn outbound_byte_budget(mut self, bytes: usize) -> Self {
        self.config.outbound_byte_budget = bytes.max(1024);
        self
    }

    /// The WebSocket read buffer per connection (default 4 KiB; larger frames still arrive,
    /// in several reads). The main cost of an idle connection.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes.max(256);
        self
    }

    /// How many calls (and streams) one connection may have running at once (default 1024):
    /// a call beyond it is answered `TOO_MANY_CALLS` (with `data.limit`) without running, and
    /// the connection goes on. Calls that finish at once do not count. This bounds what one
    /// client can make the server hold.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_calls_in_flight(mut self, calls: usize) -> Self {
        self.config.max_calls_in_flight = calls.max(1);
        self
    }

    /// The largest frame the server sends (default 16 MiB; `limits.max_sent_frame` in the
    /// hello, docs/PROTOCOL.md 5.7), so a client can size what it accepts. An answer past it
    /// is answered `FRAME_TOO_LARGE` (`{"size": n, "limit": m}`) instead, a stream chunk past it
    /// ends the stream with that error, and an event past it is not sent (and logged). Large
    /// data is better streamed, or fetched over HTTP.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_sent_frame(mut self, bytes: usize) -> Self {
        self.config.max_sent_frame = bytes.max(4096);
        self
    }

    /// The longest group name application code may join, emit to or track presence in, in
    /// bytes (default 200, at most 254: a group's stream is `g:<group>`, and a client names
    /// streams of at most 256 bytes when it resumes). Group names often come from clients
    /// (`room:{id}`), and each is kept while the group has members or history, here and in
    /// Redis: a longer name is refused (`Caller::try_join` answers `INVALID_NAME`, `join`
    /// returns `false`, an emit to it reaches no one), with a log line.
    ///
    /// ```
    /// let server = ephaptic::Server::new().max_group_name_len(64);
    /// ```
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_group_name_len(mut self, bytes: usize) -> Self {
        self.config.names.max_group_len = bytes.clamp(1, crate::session::names::MAX_GROUP_NAME);
        self
    }

    /// The most groups one connection may be in at once (default 1024; its presence watches
    /// are counted apart, at most 256). A join beyond it is refused (`Caller::try_join`
    /// answers `TOO_MANY_GROUPS` with `{"limit": n}`), so what one connection costs to hold
    /// and to close stays bounded.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_groups_per_connection(mut self, groups: usize) -> Self {
        self.config.names.max_groups = groups.max(1);
        self
    }

    /// How many bytes the server may buffer across all connections (default 512 MiB), beyond
    /// the first 64 KiB of each: events and replies waiting for clients, and messages read from
    /// clients that are not whole yet. When it is spent, the connection that asks for more is
    /// refused: an event for it goes to the [slow-client policy](Self::slow_client), and an
    /// unfinished message closes it. Ordinary connections, which buffer less than 64 KiB, are
    /// never refused. [`metrics`](fn@crate::metrics) reports `buffered_bytes` and
    /// `memory_refusals`.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.config.memory_budget = bytes.max(1 << 20);
        self
    }

    /// How many connections may be open at once (default 100,000); one more is closed at
    /// accept, before a byte of it is read, and counted in `metrics().connections_refused`.
    /// Counts TCP connections of [`serve`](Self::serve), upgraded or not.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections.max(1);
        self
    }

    /// How many connections one peer IP address may have open at once (default: no cap, as
    /// many users can share an address behind a NAT or a proxy). Applies under
    /// [`serve`](Self::serve); behind a reverse proxy every client shares its address, so set
    /// it only when clients connect directly.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.config.max_connections_per_peer = Some(connections.max(1));
        self
    }

    /// How many connections one identity may have open on this server at once (default: no
    /// cap). A connection beyond it is closed with code 1008 and the reason "too many
    /// connections for this identity" once the identity loader has named it, before its first
    /// frame runs and without `on_connect`. The newest connection is the one refused: a client
    /// whose old connection died without a close still holds that place until the server notices
    /// (three ping intervals, 60 s by default), so leave room for a reconnect.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn max_connections_per_identity(mut self, connections: usize) -> Self {
        self.config.max_connections_per_identity = Some(connections.max(1));
        self
    }

    /// How long a client has, after its TCP connection is accepted, to finish the WebSocket
    /// upgrade (default 10 s); and then, separately, to send its first message
    /// ([`first_message_timeout`](Self::first_message_timeout)). A connection that sends a
    /// request slowly, or nothing, is closed then instead of holding a descriptor. Applies under
    /// [`serve`](Self::serve).
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long a client has, after the WebSocket upgrade, to send its first message (default
    /// 10 s). Every ephaptic client sends `init` at once. Applies under [`serve`](Self::serve).
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn first_message_timeout(mut self, timeout: Duration) -> Self {
        self.config.first_message_timeout = timeout;
        self
    }

    /// Shuts down gracefully when `signal` completes, instead of at ctrl-c or SIGTERM (the
    /// default of [`serve`](Self::serve)). See [`serve`](Self::serve) for what a graceful
    /// shutdown does.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// # drop(stop);
    /// ephaptic::Server::new()
    ///     .graceful_shutdown(async move {
    ///         let _ = stopped.await;
    ///     })
    ///     .serve("127.0.0.1:8000")
    ///     .await
    /// # }
    /// ```
    pub fn graceful_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(std::sync::Mutex::new(Box::pin(signal)));
        self
    }

    /// How long a graceful shutdown lets calls in flight finish (default 10 s) before it stops
    /// them, answers them `SHUTTING_DOWN` and closes every connection.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Whether clients resume after a reconnect without losing events (default on): every
    /// event to an identity, to everyone or to a group gets a position in its stream and is
    /// kept for a while (see [`retention`](Self::retention)), and a client that comes back is
    /// sent what it missed, or told that it must refetch (docs/PROTOCOL.md 5.6). Kept in
    /// memory on a server alone, in Redis with [`redis`](Self::redis). Off: events carry no
    /// position and nothing is kept; clients are told there are no sessions and refetch
    /// after each reconnect.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn resume(mut self, on: bool) -> Self {
        self.config.resume = on;
        self
    }

    /// How much history one kind of stream keeps: events per stream, for how long, and how
    /// many one resume replays at most. Defaults: 256 events per identity, 1024 for the
    /// broadcast stream and per group; 300 s; 500 replayed. In memory, all streams together
    /// also hold at most [`history_memory`](Self::history_memory).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephaptic::{Retention, StreamKind};
    ///
    /// let server = ephaptic::Server::new()
    ///     .retention(StreamKind::User, Retention::default().size(1000))
    ///     .retention(StreamKind::Group, Retention::default().ttl(Duration::from_secs(60)));
    /// ```
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn retention(mut self, kind: crate::StreamKind, retention: crate::Retention) -> Self {
        self.config.retention.set(kind, retention);
        self
    }

    /// The most bytes the in-memory history holds for all streams together (default 64 MiB),
    /// streams' names and positions included; past it the oldest events go first, then the
    /// least recently used streams. Not used with Redis, where Redis holds it.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn history_memory(mut self, bytes: usize) -> Self {
        self.config.retention.memory = bytes;
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
    ///
    /// ```
    /// let server = ephaptic::Server::new().history_max_streams(20_000);
    /// ```
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn history_max_streams(mut self, streams: usize) -> Self {
        self.config.retention.max_streams = streams.max(1);
        self
    }

    /// The largest event (its encoded frame) the history keeps (default 64 KiB). A larger one
    /// is still numbered and delivered, but not kept: a client that missed it is told to
    /// refetch instead of being sent it again. Large payloads are cheaper refetched than held
    /// for every stream's time to live.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn history_max_event(mut self, bytes: usize) -> Self {
        self.config.retention.max_event = bytes;
        self
    }

    /// What to do with a client too slow to take the events emitted to it (default
    /// [`SlowClient::Disconnect`]). How far behind a client may fall first is
    /// [`outbound_capacity`](Self::outbound_capacity).
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn slow_client(mut self, policy: SlowClient) -> Self {
        self.config.slow_client = policy;
        self
    }

    /// How often to ping each client (default 20 s); `None` turns pings off. A client that
    /// sends nothing (not even a pong) for three intervals is disconnected at the next ping, and
    /// one whose socket takes nothing for two intervals while frames wait for it (it stopped
    /// reading) is dropped.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.config.ping_interval = every;
        self
    }

    /// Sets the identity loader in code, replacing any declared with
    /// `#[ephaptic::identity_loader]`. It runs once per connection, before the connection's
    /// first frame is handled. It gets `init.auth` deserialised as the type of its first
    /// parameter (nil when the client sent no `auth`, or no `init` at all: use an `Option`),
    /// and optionally the [`Handshake`](crate::Handshake), the upgrade request with its
    /// cookies and headers; or the `Handshake` alone. It returns the identity, `None` for
    /// anonymous, or a `Result` whose error is logged and leaves the connection anonymous.
    /// Annotate the closure's parameter types.
    ///
    /// ```
    /// use ephaptic::{Handshake, Server};
    ///
    /// // A token that clients send as `init.auth`:
    /// let server = Server::new().identity_loader(|token: Option<String>| async move {
    ///     token.filter(|t| t == "let-me-in").map(|_| 1u64)
    /// });
    ///
    /// // The token, or else the browser's session cookie:
    /// let server = Server::new().identity_loader(|token: Option<String>, hs: Handshake| async move {
    ///     let session = token.or_else(|| hs.cookie("session").map(str::to_owned))?;
    ///     session.strip_prefix("user-").map(str::to_owned)
    /// });
    ///
    /// // The cookie only (`init.auth` is ignored):
    /// let server = Server::new().identity_loader(|hs: Handshake| async move {
    ///     hs.cookie("session")?.strip_prefix("user-").map(str::to_owned)
    /// });
    /// ```
    pub fn identity_loader<M, L: IdentityLoader<M>>(mut self, loader: L) -> Self {
        let loader = Arc::new(loader);
        self.loader = Some(Arc::new(move |auth, handshake| {
            loader.clone().load(auth, handshake)
        }));
        self
    }

    /// Keeps each connection's [`Handshake`](crate::Handshake) (its upgrade request's headers,
    /// path and peer) for the connection's whole life, so that handlers and hooks can read it
    /// with [`Caller::handshake`](crate::Caller::handshake). Off by default: the identity loader
    /// always gets it, and it is dropped once the loader has run, because an upgrade request
    /// can be as large as the HTTP server allows (hundreds of KiB) and an idle connection
    /// should not hold it. With this on, each connection keeps a compact copy of its request
    /// head (typically under 1 KiB for a browser).
    pub fn keep_handshake(mut self) -> Self {
        self.config.keep_handshake = true;
        self
    }

    /// Delivers events across every server on this Redis (or Valkey, 6 or later): `to(user)`
    /// reaches that user's connections on any server, `emit` and channels reach every
    /// listener of every server, and rate limits are counted across all of them. Without this
    /// (and without `EPHAPTIC_REDIS_URL`, which it overrides), events stay on this server.
    ///
    /// The server starts even when Redis cannot be reached, and serves calls and its own
    /// events throughout an outage; events for other servers are dropped and counted in
    /// [`metrics`](fn@crate::metrics) meanwhile, and delivery resumes by itself. See the "Scaling
    /// out" guide (`docs/SCALING.md`) for what is guaranteed across servers.
    ///
    /// Three kinds of URL: `redis://` (or `rediss://`, `unix://`) for one Redis;
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master name>` for the
    /// master Redis Sentinel names, followed across failovers (the sentinels' own credentials,
    /// if any, in `?sentinel_username=...&sentinel_password=...`); and
    /// `redis+cluster://[user:password@]host[:port][,host[:port]...]` for a Redis Cluster (7 or
    /// later), with sharded pub/sub. A URL that cannot be read stops the start with an error
    /// (for the `+` URLs, one that says what to write).
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// ephaptic::Server::new()
    ///     .redis("redis://127.0.0.1:6379")
    ///     // or .redis("redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster")
    ///     // or .redis("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000")
    ///     .serve("0.0.0.0:8000")
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis.url = Some(url.into());
        self
    }

    /// Compatibility with Python ephaptic servers on the same Redis (default off): `to(user)`
    /// events travel through the reference's channel `ephaptic:broadcast` in its envelope, so a
    /// Python server's `to("alice").emit(..)` reaches alice here and this server's reaches her
    /// there. The cost: every server then receives every `to(user)` event of the cluster and
    /// keeps those for its own users, instead of subscribing to the users it holds.
    #[cfg(feature = "redis")]
    pub fn redis_compat(mut self, on: bool) -> Self {
        self.redis.compat = on;
        self
    }

    /// How often the server checks that its Redis subscription still receives (default 5 s):
    /// it publishes a probe to itself, and replaces the connection when two in a row do not
    /// come back. It also re-subscribes whatever an outage left out at each check.
    #[cfg(feature = "redis")]
    pub fn redis_probe_interval(mut self, every: Duration) -> Self {
        self.redis.probe_every = Some(every.max(Duration::from_millis(100)));
        self
    }

    /// How long a server's presence entries outlive it on Redis (default 30 s): each server
    /// refreshes its entries every third of this, so the members of a server that crashed are
    /// gone from lists and counts at most this long after the crash, and their leaves reach
    /// watchers at most a refresh (plus a batch) later. Shorter finds crashes sooner for more
    /// Redis traffic (one script per group with members on this server, per refresh).
    #[cfg(feature = "redis")]
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.redis.presence_ttl = Some(ttl.max(Duration::from_millis(300)));
        self
    }

    /// The backplane the settings ask for, and the presence store that goes with it.
    #[cfg(feature = "redis")]
    fn backplane(&self) -> Result<Backplanes, String> {
        let url = self.redis.url.clone().or_else(|| {
            std::env::var("EPHAPTIC_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
        });
        let Some(url) = url else {
            return Ok((None, None));
        };
        let mut settings = crate::backplane::Settings::new(url);
        settings.compat = self.redis.compat;
        if let Some(every) = self.redis.probe_every {
            settings.probe_every = every;
        }
        let redis = crate::backplane::Redis::new(settings)?;
        let ttl = self.redis.presence_ttl.unwrap_or(Duration::from_secs(30));
        let store = redis.presence_store(ttl);
        Ok((Some(Box::new(redis)), Some(store)))
    }

    /// How events leave this server, for the start line.
    #[cfg(feature = "redis")]
    fn events_route(&self) -> String {
        let url = self.redis.url.clone().or_else(|| {
            std::env::var("EPHAPTIC_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
        });
        match url {
            Some(url) => format!(
                "events cross servers through {}{}",
                crate::backplane::describe(&url),
                if self.redis.compat {
                    ", in compatibility mode"
                } else {
                    ""
                }
            ),
            None => "events stay in this process (no Redis)".to_owned(),
        }
    }

    #[cfg(not(feature = "redis"))]
    fn events_route(&self) -> String {
        if std::env::var_os("EPHAPTIC_REDIS_URL").is_some_and(|u| !u.is_empty()) {
            "events stay in this process: EPHAPTIC_REDIS_URL is ignored, because ephaptic was built \
             without its `redis` feature (add `features = [\"redis\"]` to the ephaptic dependency)"
                .to_owned()
        } else {
            "events stay in this process (no Redis)".to_owned()
        }
    }

    #[cfg(not(feature = "redis"))]
    fn backplane(&self) -> Result<Backplanes, String> {
        if std::env::var_os("EPHAPTIC_REDIS_URL").is_some_and(|u| !u.is_empty()) {
            tracing::warn!(
                "EPHAPTIC_REDIS_URL is set, but ephaptic was built without its `redis` feature, so \
                 events stay on this server: add `features = [\"redis\"]` to the ephaptic dependency"
            );
        }
        Ok((None, None))
    }

    /// How many members a presence list (and a client's snapshot) holds at most (default
    /// 1000); a longer list is cut, sorted by key, with `truncated: true`. Counts are always
    /// whole: use [`Presence::count`](crate::Presence::count) for big groups.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn presence_list_cap(mut self, members: usize) -> Self {
        self.presence.list_cap = members.max(1);
        self
    }

    /// The largest meta a connection may track itself with, encoded (default 4 KiB). A larger
    /// one is refused at `track` with `META_TOO_LARGE` (`{"size": n, "limit": m}`): every
    /// watcher is sent every meta, so a meta is for a name and a status, not a document.
    ///
    /// ```
    /// let server = ephaptic::Server::new().presence_max_meta(1024);
    /// ```
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn presence_max_meta(mut self, bytes: usize) -> Self {
        self.presence.max_meta = bytes.max(1);
        self
    }

    /// The most bytes of members one presence list, snapshot or diff frame holds (default
    /// 512 KiB, with the list cap of members as well): a list past it holds the members that
    /// fit, with `truncated: true`, and diffs are split into more frames.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn presence_max_snapshot(mut self, bytes: usize) -> Self {
        self.presence.max_snapshot = bytes.max(1024);
        self
    }

    /// How presence changes are batched (default every 200 ms, at most 256 connections per
    /// frame): each group's watchers get at most one diff per `every` (more frames only when
    /// more than `max` connections changed), so a mass reconnect is a few frames, not one per
    /// connection per watcher. Phoenix batches every 1.5 s.
    #[doc(hidden)] // Kept for one release: the grouped settings above are the way.
    pub fn presence_batch(mut self, every: Duration, max: usize) -> Self {
        self.presence.batch_every = every.max(Duration::from_millis(1));
        self.presence.batch_max = max.max(1);
        self
    }

    /// How functions without an explicit `name = "..."` are named on the wire, for the whole
    /// server at once: `Naming::CamelCase` serves `create_todo` as `createTodo`.
    ///
    /// Prefer declaring the rule once for the build with [`naming!`](crate::naming)
    /// (`ephaptic::naming!(CamelCase);`): `serve()`, every `Server` and the TypeScript export
    /// (`cargo ephaptic export`, `ephaptic_ts::check`) all read it. This setting overrides that
    /// declaration for this server; an exporter given only `naming!` then disagrees with it,
    /// unless it exports through this server (`cargo ephaptic export`, `Exporter::server`).
    pub fn rename_all(mut self, naming: Naming) -> Self {
        self.naming = Some(naming);
        self
    }

    /// Registers a function explicitly, for targets where link-time registration does not run
    /// (some WebAssembly and static-linking setups). `F` is the hidden handle `#[expose]`
    /// generates with the function's own name:
    ///
    /// ```
    /// #[ephaptic::expose]
    /// async fn add(a: i64, b: i64) -> i64 { a + b }
    ///
    /// let server = ephaptic::Server::new().register::<add>();
    /// ```
    pub fn register<F: Exposed>(mut self) -> Self {
        self.explicit.push(F::def());
        self
    }

    /// What this server would serve: its registrations, explicit ones included.
    pub fn introspect(&self) -> Result<Introspection, RegistryError> {
        Ok(Registry::build(&self.explicit, self.naming)?.introspect())
    }

    /// Builds the runtime state: the registry (failing on duplicate names) and the loader.
    /// `addr` is where it listens, when it serves itself (for the start line).
    pub(crate) fn build(self, addr: Option<SocketAddr>) -> Result<Arc<State>, RegistryError> {
        crate::export::if_requested(|| self.introspect());
        let registry = Registry::build(&self.explicit, self.naming)?;
        let (backplane, presence_store) = self.backplane().map_err(|e| RegistryError(vec![e]))?;
        let route = self.events_route();
        let loader = self.loader.or_else(|| {
            registry.loader.map(|def| {
                let load = def.load;
                Arc::new(load) as DynLoader
            })
        });
        announce(&registry, loader.is_some(), &self.config.path, addr, &route);
        announce_inspector(&self.config, addr);
        Ok(crate::runtime::build(Parts {
            registry,
            config: self.config,
            loader,
            on_connect: self.on_connect,
            on_disconnect: self.on_disconnect,
            revalidation: self.revalidation,
            trace_parent: self.trace_parent,
            backplane,
            presence: self.presence,
            presence_store,
        }))
    }

    /// The WebSocket endpoint as an axum [`Router`](axum::Router), to merge into an existing
    /// app beside its own routes.
    ///
    /// Serve the app with `into_make_service_with_connect_info::<SocketAddr>()` so that
    /// [`Caller::peer_addr`](crate::Caller::peer_addr) and per-IP rate limits work, and turn off
    /// Nagle's algorithm on accepted sockets (`axum::serve(listener.tap_io(|s| {
    /// let _ = s.set_nodelay(true); }), ..)`), as [`serve`](Self::serve) does: small replies
    /// otherwise wait for the peer's delayed ACK.
    ///
    /// # Panics
    /// When two exposed functions share a wire name (the message names both); use
    /// [`try_router`](Self::try_router) to handle that as an error.
    pub fn router(self) -> axum::Router {
        self.try_router()
            .unwrap_or_else(|e| panic!("ephaptic cannot start:\n{e}"))
    }

    /// [`router`](Self::router), returning registry conflicts as an error.
    pub fn try_router(self) -> Result<axum::Router, RegistryError> {
        let state = self.build(None)?;
        crate::runtime::set_default(&state);
        Ok(crate::transport::router(state))
    }

    /// Binds `addr` and serves until a graceful shutdown ends: at ctrl-c or SIGTERM, or when
    /// the future given to [`graceful_shutdown`](Self::graceful_shutdown) completes.
    ///
    /// A graceful shutdown stops accepting, answers new calls `SHUTTING_DOWN`, lets calls in
    /// flight finish for up to [`drain_timeout`](Self::drain_timeout) (then stops them and
    /// answers them `SHUTTING_DOWN`), and closes every connection with code 1001, on which
    /// clients reconnect (to another server, or to this one when it is back). A second signal
    /// during the drain ends it at once.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> std::io::Result<()> {
        // Before binding: an export must not fail because the app already runs on `addr`.
        crate::export::if_requested(|| self.introspect());
        let listener = TcpListener::bind(addr).await?;
        self.serve_listener(listener).await
    }

    /// Serves on a listener you bound (bind port 0 and read `local_addr()` to pick a free
    /// port), as [`serve`](Self::serve) does.
    ///
    /// The process's open-file limit is first raised to what the system allows (each
    /// connection is a descriptor; a low soft limit would make the server refuse clients long
    /// before it is busy). When descriptors still run out, accepting waits a second and tries
    /// again rather than spinning. The connection caps, the handshake deadlines and the memory
    /// budget for unfinished messages apply to what this listener accepts.
    pub async fn serve_listener(mut self, listener: TcpListener) -> std::io::Result<()> {
        use crate::transport::listener::{Accepted, Admission, Caps, Listener};
        raise_open_files();
        crate::session::budget::tune_allocator();
        // The signals are listened to from the start (a delivery before a listener exists is
        // lost), and the same listeners take the second signal.
        let mut trigger = match self.shutdown.take() {
            Some(signal) => {
                Trigger::Future(Some(signal.into_inner().unwrap_or_else(|e| e.into_inner())))
            }
            None => Trigger::Signals(Signals::new()),
        };
        let addr = listener.local_addr()?;
        let state = self.build(Some(addr)).map_err(std::io::Error::other)?;
        crate::runtime::set_default(&state);
        let cfg = &state.config;
        let caps = Caps {
            total: cfg.max_connections,
            per_peer: cfg.max_connections_per_peer,
            handshake: cfg.handshake_timeout,
            first_message: cfg.first_message_timeout,
        };
        let admission = Admission::new(caps, state.outbound.memory.clone(), state.refusals.clone());
        let router = crate::transport::router(state.clone());
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let accept = axum::serve(
            Listener::new(listener, admission),
            router.into_make_service_with_connect_info::<Accepted>(),
        )
        .with_graceful_shutdown(stopped(stopping.clone()))
        .into_future();
        // The drain starts at the signal, beside axum's own graceful wait for the HTTP
        // connections it still serves (not after it: one that never finishes would hold it).
        let drain = {
            let state = state.clone();
            let stopping = stopping.clone();
            async move {
                stopped(stopping).await;
                crate::runtime::drain::drain(&state, state.config.drain_timeout).await;
            }
        };
        let run = async { tokio::join!(accept, drain).0 };
        tokio::pin!(run);
        let mut signalled = false;
        loop {
            tokio::select! {
                served = &mut run => return served,
                () = trigger.next() => {
                    if signalled {
                        tracing::warn!("a second signal: stopping without waiting for calls");
                        return Ok(());
                    }
                    signalled = true;
                    state.start_draining();
                    let _ = stop.send(true);
                }
            }
        }
    }
}

/// A backplane, and the presence store shared through it (with its server's node name).
type Backplanes = (
    Option<Box<dyn crate::runtime::delivery::Backplane>>,
    Option<(Arc<dyn crate::runtime::presence::Store>, String)>,
);

/// What starts a graceful shutdown.
enum Trigger {
    /// The app's future (once).
    Future(Option<crate::handler::BoxFuture<()>>),
    Signals(Signals),
}

impl Trigger {
    async fn next(&mut self) {
        match self {
            Trigger::Future(f) => match f.take() {
                Some(f) => f.await,
                None => std::future::pending().await,
            },
            Trigger::Signals(s) => s.next().await,
        }
    }
}

/// Listeners for ctrl-c and (on Unix) SIGTERM, made once so that no delivery is missed.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next ctrl-c or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => {}
                () = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("termination signal received");
    }
}

/// Says what the server serves, once at start: through `tracing` when the app installed a
/// subscriber, on stderr otherwise, so that a first run is never silent, and an empty registry
/// (a crate the linker dropped) is seen where the user looks.
fn announce(registry: &Registry, loader: bool, path: &str, addr: Option<SocketAddr>, route: &str) {
    let functions = registry.functions.len();
    let events = registry.events.len() + registry.channels.len();
    let at = match addr {
        Some(addr) => format!("ws://{addr}{path}"),
        None => path.to_owned(),
    };
    let line = format!(
        "ephaptic: {functions} function{} and {events} event{} on {at}{}; {route}",
        if functions == 1 { "" } else { "s" },
        if events == 1 { "" } else { "s" },
        if loader {
            ", with an identity loader"
        } else {
            ""
        },
    );
    let empty = (functions == 0).then(|| {
        // A package's library is named after the package: `cargo run` says which package this
        // is; otherwise the binary's name usually is the package's.
        let lib = std::env::var("CARGO_PKG_NAME")
            .ok()
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                Some(exe.file_stem()?.to_string_lossy().into_owned())
            })
            .map(|name| name.replace('-', "_"))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "my_app".into());
        format!(
            "ephaptic: no exposed functions were found. Functions marked #[ephaptic::expose] in a crate \
             that nothing references are dropped by the linker: add `use {lib} as _;` to main.rs (when \
             they are in this package's library; else name the crate they are in), or register them \
             with Server::register::<function_name>()"
        )
    });
    if tracing::dispatcher::has_been_set() {
        let mut names: Vec<_> = registry.functions.keys().copied().collect();
        names.sort_unstable();
        tracing::info!(functions = %names.join(", "), "{line}");
        if let Some(warning) = empty {
            tracing::warn!("{warning}");
        }
    } else {
        eprintln!("{line}");
        if let Some(warning) = empty {
            eprintln!("{warning}");
        }
    }
}

/// The inspector's address on the start line, when it is on: loopback, where it is served
/// without a token (a server bound to every address is on this machine's loopback too).
fn announce_inspector(config: &Config, addr: Option<SocketAddr>) {
    let Some(path) = &config.inspector_path else {
        return;
    };
    let at = match addr {
        Some(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}{path}")
        }
        None => path.clone(),
    };
    let who = match &config.inspector_token {
        Some(token) if !token.is_empty() => "for peers with its token",
        _ => "for loopback peers only",
    };
    let line = format!("ephaptic: inspector on {at} ({who})");
    if tracing::dispatcher::has_been_set() {
        tracing::info!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// Raises the soft open-file limit to the hard one, once per process; logs where it stays low.
fn raise_open_files() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 4096 => tracing::warn!(
            "the open-file limit is {n}: at most about {n} connections can be served at once; \
             raise the hard limit (`ulimit -Hn`, LimitNOFILE= in a systemd unit)"
        ),
        Ok(n) => tracing::debug!("open-file limit: {n}"),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    });
}
