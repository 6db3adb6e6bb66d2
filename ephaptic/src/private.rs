//! What generated code uses. Not a public API: it changes without notice.

pub use crate::error::{Error, ServiceError};
pub use crate::handler::bind::Binder;
pub use crate::handler::defs::{
    BoxFuture, ErrorDef, EventDef, Exposed, FunctionDef, LoaderDef, NamingDef, Registration, Site,
};
pub use crate::handler::loader::takes;
pub use crate::handler::request::{Call, Outcome, Request, Started};
pub use crate::handler::returns::{
    AnnounceAnyKind, AnnounceResultAnyKind, AnnounceResultKind, AnnounceResultStreamKind,
    AnnounceStreamKind, AnnounceValueKind, ResultAnyKind, ResultStreamKind, ResultTryStreamKind,
    ResultValueKind, StreamKind, Tag, TryStreamKind, UnreturnableKind, UnreturnableResult,
    UnreturnableStream, UnreturnableValue, ValueKind, tag,
};
pub use crate::handler::{Event, Recover, run_loader};
pub use crate::handshake::Handshake;
pub use crate::runtime::announce;
pub use crate::runtime::presence::EVENT as PRESENCE_EVENT;
pub use crate::schema::Model;
pub use ts_rs;

// The autoref ladders, each defined beside the traits it climbs (`handler/returns.rs`,
// `schema.rs`), so that the macros crate never counts their rungs.
pub use crate::{
    __ephaptic_announce_kind as announce_kind, __ephaptic_answer as answer,
    __ephaptic_describe as describe, __ephaptic_outcome as outcome,
};

/// The TypeScript-export side of generated code.
pub mod ts {
    pub use crate::schema::kinds;
    pub use crate::schema::{Shape, Signature, TsTag, TypeInfo, output_tag, sync_output_tag};
}

/// What a generated identity-loader shim returns.
pub type LoaderFuture = BoxFuture<Result<Option<crate::handler::Grant>, String>>;
pub use bytes::Bytes;
pub use inventory;
pub use serde;
pub use std::boxed::Box;
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{self, Err, Ok};

/// Runs a plain (non-async) exposed function on the blocking pool so it cannot stall the
/// runtime's workers; a panic inside is re-raised here, where the call's panic guard
/// turns it into `INTERNAL`.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

/// Checks, at the parameter's span, that an argument type can come off the wire.
pub fn assert_argument<T: crate::handler::bind::Argument>() {}
/// Checks, at the parameter's span, that a context parameter is `ephaptic::Caller`.
pub fn assert_caller(_: &crate::Caller) {}
/// Checks, at the function's name, that the handler's future can move between threads.
pub fn assert_send<T: Send>(_: &T) {}
