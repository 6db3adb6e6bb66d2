//! The contract generated code compiles against: the records `#[expose]`, `#[event]`,
//! `#[error]` and `#[identity_loader]` write ([`defs`]), a call as a shim sees it
//! ([`request`]), argument binding ([`bind`]), the return shapes a function may have
//! ([`returns`]), and the user-facing handles a function can take or build: [`Caller`],
//! [`Audience`], [`Event`]. Knows connections (to queue a caller's own events, to join
//! groups) but not how calls are dispatched or how events are delivered: the runtime above
//! does that.

pub(crate) mod audience;
pub(crate) mod bind;
pub(crate) mod caller;
pub(crate) mod defs;
pub(crate) mod emit;
pub(crate) mod event;
pub(crate) mod grant;
pub(crate) mod loader;
pub(crate) mod request;
pub mod returns;

pub use audience::{Audience, IntoTargets, group, to};
pub(crate) use bind::check_cost;
pub use bind::{Issue, Loc};
pub use caller::Caller;
pub(crate) use defs::{
    BoxFuture, ErrorDef, EventDef, Exposed, FunctionDef, LoaderDef, NamingDef, Registration,
};
pub use emit::{Emit, Sent};
pub use event::{Event, Recover};
pub(crate) use event::{encode, too_large_to_send};
pub use grant::{Expiring, Grant};
pub(crate) use loader::DynLoader;
pub use loader::{IdentityLoader, IntoIdentity, LoaderOutput, run_loader};
pub(crate) use request::{Outcome, Request, Started};
