//! Streams and their history: what a reconnecting client missed (docs/PROTOCOL.md 5.6).
//!
//! Every event to an identity, to everyone or to a group belongs to one stream (`u:<identity>`,
//! `b`, `g:<group>`), which numbers its events 1, 2, 3, ... under an epoch. The history keeps the
//! last events of each stream, bounded in count, age and (in memory) bytes, so that a client
//! that comes back can be sent what it missed, or told that it cannot be.
//!
//! `rules.rs` owns the rules (the retention, a new epoch, when a resume counts as recovered),
//! `tenure.rs` whose a group's events are, and `memory.rs` the history of a server alone. The
//! Redis history (`backplane/history.rs`) follows the same rules with the same `decide`.

mod memory;
mod rules;
mod tenure;

pub(crate) use self::memory::{Memory, Position};
pub use self::rules::Retention;
pub(crate) use self::rules::{Lost, Read, Retentions};
// What the Redis history (`backplane/history.rs`) shares with this one.
#[cfg(feature = "redis")]
pub(crate) use self::rules::{Kept, decide, new_epoch};
#[cfg(feature = "redis")]
pub(crate) use self::tenure::{MAX_TENURES, Tenure};
