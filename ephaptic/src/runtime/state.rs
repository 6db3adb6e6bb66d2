//! What every connection of one server shares: built once by [`Server`](crate::Server) and
//! handed down to each connection's task, never reached for from below.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::delivery::{Backplane, Delivery, Local};
use super::ratelimit::Limiter;
use crate::handler::{BoxFuture, Caller, DynLoader};
use crate::registry::{FunctionIndex, Registry};
use crate::session::{Hub, Policy, SlowClient};

/// A connection hook (`Server::on_connect` / `on_disconnect`), type-erased.
pub(crate) type Hook = Arc<dyn Fn(Caller) -> BoxFuture<()> + Send + Sync>;

/// A server's settings, as the builder collected them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub path: String,
    pub allowed_origins: Option<Vec<String>>,
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
    /// Whether connections keep their upgrade request for handlers (`Caller::handshake`).
    pub keep_handshake: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/_ephaptic".into(),
            allowed_origins: None,
            max_frame_size: 1 << 20,
            debug: false,
            outbound_capacity: 1024,
            outbound_byte_budget: 8 << 20,
            read_buffer_size: 4 * 1024,
            ping_interval: Some(Duration::from_secs(20)),
            slow_client: SlowClient::Disconnect,
            max_calls_in_flight: 1024,
            keep_handshake: false,
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
    pub limiter: Limiter,
    next_connection: AtomicU64,
}

/// The parts of a [`State`] the builder decides.
pub(crate) struct Parts {
    pub registry: Registry,
    pub config: Config,
    pub loader: Option<DynLoader>,
    pub on_connect: Option<Hook>,
    pub on_disconnect: Option<Hook>,
    /// How events reach other servers; `None`: this server alone.
    pub backplane: Option<Box<dyn Backplane>>,
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
            backplane,
        } = parts;
        let hub = Arc::new(Hub::new(backplane.as_ref().and_then(|b| b.interest())));
        let limiter = match backplane.as_ref().and_then(|b| b.limiter()) {
            Some(remote) => Limiter::shared(remote),
            None => Limiter::default(),
        };
        let delivery: Box<dyn Delivery> = match backplane {
            Some(backplane) => backplane.into_delivery(hub.clone()),
            None => Box::new(Local::new(hub.clone())),
        };
        Arc::new(State {
            functions: FunctionIndex::new(&registry.functions),
            registry,
            outbound: Arc::new(Policy {
                byte_budget: config.outbound_byte_budget,
                ..Policy::new(config.outbound_capacity, config.slow_client)
            }),
            config,
            delivery,
            hub,
            loader,
            on_connect,
            on_disconnect,
            limiter,
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
        State::new(Parts {
            registry: Registry::build(&[], crate::Naming::AsWritten).expect("no conflicts"),
            config,
            loader: None,
            on_connect: None,
            on_disconnect: None,
            backplane: None,
        })
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
