//! The wire: bytes only. Reading client frames, writing server frames, and the MessagePack
//! helpers both use (docs/PROTOCOL.md). Nothing here knows about connections, functions or
//! servers; every layer above reads and writes frames through this one.
//!
//! The fast paths of the wire live here, behind this wall, each with a test that holds it to
//! the slow path it replaces:
//! - [`frame::parse`] reads a frame without copying or allocating (spans into the frame, a
//!   size table for scalars, one-byte error codes so results stay in registers);
//! - `pack` writes values without `rmp_serde`'s layers and `unpack` reads arguments without
//!   its reader set-up; both give up with [`msgpack::Fallback`] on anything they do not
//!   handle exactly like `rmp_serde`, which then does the work, so bytes and errors are the
//!   same either way (`examples/bench/NOTES.md`, steps 10-15, has the measurements).
//!
//! Before any argument is decoded, [`cost::check`] counts on its bytes how many values the
//! call's arguments hold, so that a megabyte of nested lists is refused before it becomes a
//! hundred megabytes of values.
//!
//! [`summary`] reads any frame in a few words (its kind, name, id, error code) for the
//! inspector's trace, skipping every value.

pub(crate) mod cost;
pub(crate) mod frame;
pub(crate) mod msgpack;
mod pack;
pub(crate) mod reply;
pub(crate) mod small_list;
pub(crate) mod summary;
mod unpack;

pub(crate) use frame::{FrameKind, RawFrame, Span, parse, salvage_id};
pub(crate) use msgpack::{MAX_NESTING, NIL, whole_str};
pub(crate) use small_list::SmallList;
pub(crate) use unpack::unpack;
