//! One connection and the local index of all of them. Knows frames only as bytes to queue,
//! and nothing of calls' meaning, dispatch or the server: the runtime above hands it what it
//! needs (an id, an outbound policy) and reads it back.

pub(crate) mod budget;
pub(crate) mod connection;
pub(crate) mod credentials;
pub(crate) mod gate;
pub(crate) mod hub;
pub(crate) mod names;
pub(crate) mod outbound;
mod queue;
pub(crate) mod stream;

pub(crate) use budget::MemoryBudget;
pub(crate) use connection::Connection;
pub(crate) use gate::{Asked, Stamp};
pub(crate) use hub::{Hub, Interest};
pub(crate) use names::{NameRules, Refused};
pub use outbound::SlowClient;
pub(crate) use outbound::{CloseSignal, Outbox, Policy, Receiver};
#[cfg_attr(not(feature = "redis"), allow(unused_imports))]
pub(crate) use stream::OwnedStream;
pub use stream::StreamKind;
pub(crate) use stream::{ALL_WIRE, Stream, USER_WIRE, group_stream};
