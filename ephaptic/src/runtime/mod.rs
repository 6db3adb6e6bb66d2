//! The runtime: one server's state, handed down to each connection ([`state`]); what a frame
//! asks for ([`inbound`]) and running calls ([`dispatch`]); a connection's life
//! ([`lifecycle`]); sending events ([`emit`](mod@emit)) through the one seam where they leave
//! ([`delivery`]); rate limits and metrics. Knows nothing of WebSockets: the transport above
//! hands it frames and drains what it queues.

pub(crate) mod delivery;
pub(crate) mod dispatch;
pub(crate) mod drain;
pub(crate) mod emit;
pub(crate) mod history;
pub(crate) mod inbound;
pub(crate) mod lifecycle;
pub(crate) mod loglimit;
pub(crate) mod metrics;
pub(crate) mod panic;
pub(crate) mod presence;
pub(crate) mod ratelimit;
pub(crate) mod resume;
pub(crate) mod scope;
pub(crate) mod state;

pub use emit::{Emit, announce, emit};
pub(crate) use inbound::Init;
pub(crate) use lifecycle::Session;
pub(crate) use metrics::Refusals;
pub use metrics::{Metrics, metrics};
pub use presence::{
    CallerPresence, Presence, PresenceConn, PresenceCount, PresenceDiff, PresenceLeave,
    PresenceList, PresenceMember, presence,
};
pub(crate) use scope::{in_scope, set_default, sync_in_scope};
pub(crate) use state::{Config, Hook, Origins, Parts, State};
