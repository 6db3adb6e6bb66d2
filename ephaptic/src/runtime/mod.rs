//! The runtime: one server's state, handed down to each connection ([`state`]); what a frame
//! asks for ([`inbound`]) and running calls ([`dispatch`]); a connection's life
//! ([`lifecycle`]); sending events ([`emit`](mod@emit)) through the one seam where they leave
//! ([`delivery`]); rate limits and metrics; the inspector's snapshot ([`inspector`]) and live
//! trace ([`trace`]). Knows nothing of WebSockets: the transport above
//! hands it frames and drains what it queues.

pub(crate) mod answer;
pub(crate) mod delivery;
pub(crate) mod dispatch;
pub(crate) mod drain;
pub(crate) mod emit;
pub(crate) mod ending;
pub(crate) mod expiry;
pub(crate) mod exposition;
pub(crate) mod history;
pub(crate) mod idempotency;
pub(crate) mod inbound;
pub(crate) mod inspector;
pub(crate) mod lifecycle;
pub(crate) mod loglimit;
pub(crate) mod metrics;
pub(crate) mod panic;
pub(crate) mod presence;
pub(crate) mod ratelimit;
pub(crate) mod refusals;
pub(crate) mod resume;
pub(crate) mod revalidation;
pub(crate) mod scope;
pub(crate) mod spans;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod trace;
pub(crate) mod window;

pub use emit::{announce, emit};
pub use ending::{Disconnected, disconnect};
pub use exposition::prometheus_text;
pub(crate) use inbound::Init;
pub(crate) use lifecycle::Session;
pub use metrics::{Metrics, metrics};
pub use presence::{
    CallerPresence, Presence, PresenceConn, PresenceCount, PresenceDiff, PresenceLeave,
    PresenceList, PresenceMember, presence,
};
pub(crate) use refusals::Refusals;
pub(crate) use revalidation::Revalidation;
pub(crate) use scope::{in_scope, set_default, sync_in_scope};
pub use spans::TraceParent;
pub(crate) use state::{Config, Hook, Origins, Parts, State};

/// Builds a server's runtime from what the builder collected: its [`State`], with the joins of
/// clients that speak sessions followed up by their group's position (`resume.rs`). Here, in
/// the facade, so that `state.rs` knows nothing of the layers that read the state.
pub(crate) fn build(parts: Parts) -> std::sync::Arc<State> {
    let state = State::new(parts);
    let follow = resume::Resumer(std::sync::Arc::downgrade(&state));
    state.hub.on_join(std::sync::Arc::new(follow));
    state
}
