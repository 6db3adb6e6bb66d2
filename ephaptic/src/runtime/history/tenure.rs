//! Whose a group's events are: the tenure of each reader (docs/PROTOCOL.md 5.6), and the
//! bounded set of them a group stream keeps.

use std::collections::HashMap;
use std::time::Instant;

/// Which of a stream's events a reader may be replayed (docs/PROTOCOL.md 5.6).
///
/// A group's history is scoped to membership: membership is checked when a connection joins,
/// so a replay must not reach back before the reader was a member. The history remembers, per
/// group stream and identity, the offset at which the identity's *tenure* began: its first
/// join since it last left the group on purpose ([`Caller::leave`](crate::Caller::leave)).
/// Being disconnected does not end a tenure (that is what a resume is for); a leave does, and
/// the next join starts a new one at the stream's top. Anonymous connections have no tenure:
/// nothing ties a reconnect to the connection before it, so their group resumes are never
/// recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tenure {
    /// Identity and broadcast streams: every event is the reader's.
    Unscoped,
    /// A group stream whose reader's tenure began at this offset.
    Since(u64),
    /// A group stream the reader has no tenure in (anonymous, or never joined since it left).
    None,
}

impl Tenure {
    /// Whether a replay from after `offset` stays within the tenure.
    pub(super) fn covers(self, offset: u64) -> bool {
        match self {
            Tenure::Unscoped => true,
            Tenure::Since(since) => since <= offset,
            Tenure::None => false,
        }
    }
}

/// The most identities one group stream remembers a tenure of: in memory the least recently
/// joined is let go past it (its next resume is not recovered, and it refetches); in Redis a
/// new member past it gets none. Each is counted against the history's bytes.
pub(crate) const MAX_TENURES: usize = 4096;

/// What a tenure costs the byte bound besides its identity key.
pub(super) const TENURE: usize = 64;

/// The tenures of a group stream's readers (see [`Tenure`]): identity key -> where the tenure
/// began, and when the identity last joined.
#[derive(Debug, Default)]
pub(super) struct Tenures(HashMap<Box<str>, (u64, Instant)>);

impl Tenures {
    /// `key`'s tenure, if it has one (its last join is now).
    pub(super) fn get(&mut self, key: &str, now: Instant) -> Option<u64> {
        self.0.get_mut(key).map(|(since, joined)| {
            *joined = now;
            *since
        })
    }

    /// Starts `key`'s tenure at `since` unless it has one; past [`MAX_TENURES`] the least
    /// recently joined goes. The bytes it added, and those it freed.
    pub(super) fn start(&mut self, key: String, since: u64, now: Instant) -> (usize, usize) {
        if self.0.contains_key(key.as_str()) {
            return (0, 0);
        }
        let mut freed = 0;
        if self.0.len() >= MAX_TENURES {
            let oldest = self
                .0
                .iter()
                .min_by_key(|(_, (_, joined))| *joined)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                freed = self.end(&oldest);
            }
        }
        let added = key.len() + TENURE;
        self.0.insert(key.into(), (since, now));
        (added, freed)
    }

    /// Ends `key`'s tenure; the bytes it held.
    pub(super) fn end(&mut self, key: &str) -> usize {
        self.0.remove(key).map_or(0, |_| key.len() + TENURE)
    }

    /// The bytes all of them hold.
    pub(super) fn bytes(&self) -> usize {
        self.0.keys().map(|k| k.len() + TENURE).sum()
    }
}
