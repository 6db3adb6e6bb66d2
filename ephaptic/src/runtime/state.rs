//! What every connection of one server shares: built once by [`Server`](crate::Server) and
//! handed down to each connection's task, never reached for from below.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::delivery::{Backplane, Delivery, Local};
use super::history::{Memory, Retentions};
use super::presence::{Host, Tracker};
use super::ratelimit::Limiter;
use super::refusals::Refusals;
use crate::handler::{BoxFuture, Caller, DynLoader};
use crate::registry::{FunctionIndex, Registry};
use crate::session::{Hub, MemoryBudget, NameRules, Policy, SlowClient};

/// A connection hook (`Server::on_connect` / `on_disconnect`), type-erased.
pub(crate) type Hook = Arc<dyn Fn(Caller) -> BoxFuture<()> + Send + Sync>;

/// Which browser origins may open a WebSocket (see `Server::allowed_origins`).
#[derive(Debug, Clone, Default)]
pub(crate) enum Origins {
    /// The page's own origin (the `Origin`'s host is the request's `Host`), loopback origins,
    /// and these.
    #[default]
    SameOrigin,
    Listed(Vec<String>),
    Any,
}

/// A server's settings, as the builder collected them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub path: String,
    pub origins: Origins,
    pub max_frame_size: usize,
    pub debug: bool,
    pub outbound_capacity: usize,
    /// Bytes of events that may wait for one client.
    pub outbound_byte_budget: usize,
    pub read_buffer_size: usize,
    pub ping_interval: Option<Duration>,
    pub slow_client: SlowClient,
    /// Calls (and streams) one connection may have running at once.
    pub max_calls_in_flight: usize,
    /// Bytes buffered across connections beyond each one's free allowance.
    pub memory_budget: usize,
    /// Connections open at once, in total, per peer address and per identity.
    pub max_connections: usize,
    pub max_connections_per_peer: Option<usize>,
    pub max_connections_per_identity: Option<usize>,
    /// Time from accept to a finished WebSocket upgrade, then to the first message.
    pub handshake_timeout: Duration,
    pub first_message_timeout: Duration,
    /// How long a graceful shutdown waits for calls in flight.
    pub drain_timeout: Duration,
    /// Whether connections keep their upgrade request for handlers (`Caller::handshake`).
    pub keep_handshake: bool,
    /// Whether events get positions and a history, so clients resume (docs/PROTOCOL.md 5.6).
    pub resume: bool,
    pub retention: Retentions,
    /// Bounds on group names and on the groups one connection may be in.
    pub names: NameRules,
    /// The largest frame the server sends (an answer or event past it is not sent).
    pub max_sent_frame: usize,
    /// The `Host` names upgrades may be for (`Server::allowed_hosts`); `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Values a call's arguments may hold, counted before they are decoded.
    pub max_frame_nodes: usize,
    /// How idempotent calls' answers are kept (docs/PROTOCOL.md 5.12).
    pub idempotency: super::window::Limits,
    /// Where the Prometheus exposition is served (`Server::metrics_endpoint`), and whether
    /// peers other than loopback may read it.
    pub metrics_path: Option<String>,
    pub metrics_remote: bool,
    /// Which calls get a span (`Server::sample_calls`).
    pub sampling: super::spans::Sampling,
    /// Where the inspector page is served (`Server::inspector`), and the token that lets any
    /// peer read it (`Server::inspector_token`; without one, loopback peers only).
    pub inspector_path: Option<String>,
    pub inspector_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/_ephaptic".into(),
            origins: Origins::SameOrigin,
            max_frame_size: 1 << 20,
            debug: false,
            outbound_capacity: 1024,
            outbound_byte_budget: 8 << 20,
            read_buffer_size: 4 * 1024,
            ping_interval: Some(Duration::from_secs(20)),
            slow_client: SlowClient::Disconnect,
            max_calls_in_flight: 1024,
            memory_budget: 512 << 20,
            max_connections: 100_000,
            max_connections_per_peer: None,
            max_connections_per_identity: None,
            handshake_timeout: Duration::from_secs(10),
            first_message_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            keep_handshake: false,
            resume: true,
            retention: Retentions::default(),
            names: NameRules::default(),
            max_sent_frame: 16 << 20,
            allowed_hosts: None,
            max_frame_nodes: 50_000,
            idempotency: Default::default(),
            metrics_path: None,
            metrics_remote: false,
            sampling: super::spans::Sampling::Every,
            inspector_path: None,
            inspector_token: None,
        }
    }
}

/// One server's runtime state.
pub(crate) struct State {
    pub registry: Registry,
    /// `registry.functions`, indexed for the lookup of every call.
    pub functions: FunctionIndex,
    pub config: Config,
    /// This server's connections, by id, identity and group.
    pub hub: Arc<Hub>,
    /// Where events leave (see [`delivery`](super::delivery)).
    pub delivery: Box<dyn Delivery>,
    /// The outbound queue's bound and slow-client policy, shared by every connection.
    pub outbound: Arc<Policy>,
    pub loader: Option<DynLoader>,
    pub on_connect: Option<Hook>,
    pub on_disconnect: Option<Hook>,
    /// `Server::revalidate`'s hook, when there is one.
    pub revalidation: Option<super::revalidation::Revalidation>,
    /// `Server::on_trace_parent`'s hook, when there is one.
    pub trace_parent: Option<super::spans::ParentHook>,
    pub limiter: Limiter,
    /// What the server counts for Prometheus and the inspector, when either is on.
    pub telemetry: Option<Arc<super::telemetry::Telemetry>>,
    /// The inspector's live traces of a few identities (`trace.rs`).
    pub tracer: super::trace::Tracer,
    /// The answers of idempotent calls, for their repeats.
    pub answers: super::window::Answers,
    /// The hash of the exported schema (the hello's `schema`), computed at the first hello:
    /// it renders every type's TypeScript, which a server that no client greets never needs.
    schema: std::sync::OnceLock<String>,
    /// Who is in which group (`runtime/presence`).
    pub presence: Tracker,
    /// What the transport refused, for the metrics.
    pub refusals: Arc<Refusals>,
    /// Set when a graceful shutdown starts: new calls are refused.
    draining: AtomicBool,
    /// Connection tasks that have not finished (their close frame may still be leaving).
    pub live_tasks: std::sync::atomic::AtomicUsize,
    next_connection: AtomicU64,
}

/// The parts of a [`State`] the builder decides.
pub(crate) struct Parts {
    pub registry: Registry,
    pub config: Config,
    pub loader: Option<DynLoader>,
    pub on_connect: Option<Hook>,
    pub on_disconnect: Option<Hook>,
    pub revalidation: Option<super::revalidation::Revalidation>,
    pub trace_parent: Option<super::spans::ParentHook>,
    /// How events reach other servers; `None`: this server alone.
    pub backplane: Option<Box<dyn Backplane>>,
    /// Presence: its settings, and the store shared with other servers (`None`: in memory).
    pub presence: super::presence::Settings,
    pub presence_store: Option<(Arc<dyn super::presence::Store>, String)>,
}

impl State {
    /// A server's state; its events go through the backplane when there is one, to its own
    /// connections only otherwise.
    pub fn new(parts: Parts) -> Arc<Self> {
        let Parts {
            registry,
            config,
            loader,
            on_connect,
            on_disconnect,
            revalidation,
            trace_parent,
            backplane,
            presence,
            presence_store,
        } = parts;
        let presence = match presence_store {
            Some((store, node)) => Tracker::new(store, node, presence),
            None => Tracker::memory(presence),
        };
        let hub = Arc::new(
            Hub::new(backplane.as_ref().and_then(|b| b.interest())).with_rules(config.names),
        );
        let limiter = match backplane.as_ref().and_then(|b| b.limiter()) {
            Some(remote) => Limiter::shared(remote),
            None => Limiter::default(),
        };
        let answers = super::window::Answers::new(
            config.idempotency,
            backplane.as_ref().and_then(|b| b.answers()),
        );
        let functions = FunctionIndex::new(&registry.functions);
        let measured = config.metrics_path.is_some() || config.inspector_path.is_some();
        let telemetry = measured.then(|| {
            let t = super::telemetry::Telemetry::new(functions.names());
            Arc::new(if backplane.is_some() {
                t.with_redis()
            } else {
                t
            })
        });
        let history = config.resume.then_some(config.retention);
        let delivery: Box<dyn Delivery> = match backplane {
            Some(backplane) => backplane.into_delivery(hub.clone(), history),
            None => Box::new(Local::new(hub.clone(), history.map(Memory::new))),
        };
        if let Some(t) = &telemetry {
            delivery.observe(t.clone());
        }
        Arc::new(State {
            functions,
            telemetry,
            tracer: Default::default(),
            registry,
            outbound: Arc::new(Policy {
                byte_budget: config.outbound_byte_budget,
                memory: Arc::new(MemoryBudget::new(config.memory_budget)),
                max_sent_frame: config.max_sent_frame,
                ..Policy::new(config.outbound_capacity, config.slow_client)
            }),
            refusals: Arc::default(),
            draining: AtomicBool::new(false),
            live_tasks: std::sync::atomic::AtomicUsize::new(0),
            config,
            delivery,
            hub,
            loader,
            on_connect,
            on_disconnect,
            revalidation,
            trace_parent,
            limiter,
            answers,
            schema: std::sync::OnceLock::new(),
            presence,
            next_connection: AtomicU64::new(0),
        })
    }

    /// Whether a new connection's upgrade request must be kept: for the identity loader (until
    /// it has run) or for handlers (`Server::keep_handshake`). Otherwise nothing of it is.
    pub fn wants_handshake(&self) -> bool {
        self.loader.is_some() || self.config.keep_handshake
    }

    /// A server with `config`, serving every function linked into the test binary.
    #[cfg(test)]
    pub fn for_tests(config: Config) -> Arc<Self> {
        super::build(Parts {
            registry: Registry::build(&[], None).expect("no conflicts"),
            config,
            loader: None,
            on_connect: None,
            on_disconnect: None,
            revalidation: None,
            trace_parent: None,
            backplane: None,
            presence: Default::default(),
            presence_store: None,
        })
    }

    /// The hash of what this server serves, as `cargo ephaptic export` writes it into
    /// `schema.ts` (`ephaptic::export::schema_hash`).
    pub fn schema_hash(&self) -> &str {
        self.schema
            .get_or_init(|| crate::export::schema_hash(&self.registry.introspect()))
    }

    /// Whether a graceful shutdown has started.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .field("connections", &self.hub.len())
            .field("counters", &self.outbound.counters)
            .finish_non_exhaustive()
    }
}

/// What presence reaches of its server (`presence/tracker.rs`).
impl Host for State {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn delivery(&self) -> &dyn Delivery {
        &*self.delivery
    }

    fn tracker(&self) -> &Tracker {
        &self.presence
    }
}
