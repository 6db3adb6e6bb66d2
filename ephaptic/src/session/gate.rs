//! What stands between a connection and the live events of its streams while it resumes
//! (docs/PROTOCOL.md 5.6): the positions its client asked for, the streams being replayed
//! (whose live events wait here until the replay is queued), and, after a replay, the offset
//! at or below which a live event is one the replay already sent.
//!
//! A connection that never resumes never allocates any of it: the state is boxed, created by
//! the first `init` that asks, and events reach the connection through one flag test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Where an event sits: its stream's wire name (`u`, `b`, `g:<group>`) and its offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp<'a> {
    pub stream: &'a str,
    pub seq: u64,
}

/// A position a client asked to resume from: a stream's epoch and the last offset it handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    pub epoch: String,
    pub offset: u64,
}

/// The most positions a client may ask for, and the longest stream name it may name.
pub(crate) const MAX_ASKED: usize = 64;
pub(crate) const MAX_STREAM_NAME: usize = 256;

/// Live events (and their bytes) one stream may hold back during its replay, and for how long;
/// past any of them the connection is closed as too slow (it reconnects and resumes again),
/// because dropping them would be a gap. A client that asked to resume and never sends its
/// hello is closed by the same rule at its stream's first event after the deadline.
pub(crate) const MAX_HELD: usize = 4096;
pub(crate) const MAX_HELD_BYTES: usize = 4 << 20;
const HOLD_FOR: Duration = Duration::from_secs(30);

/// How long after a replay a live event at or below its offset may still arrive (it was on its
/// way, in another server's or Redis's queue, when the history was read).
const FLOOR_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The positions the client sent in `init.resume`, until a hello or a join takes them.
    pub asked: Vec<(String, Asked)>,
    holds: Vec<Hold>,
    floors: Vec<Floor>,
}

#[derive(Debug)]
struct Hold {
    stream: Arc<str>,
    held: Vec<(u64, Bytes)>,
    bytes: usize,
    since: Instant,
}

#[derive(Debug)]
struct Floor {
    stream: Arc<str>,
    seq: u64,
    until: Instant,
}

/// What [`Gate::offer`] decided about a live event.
pub(crate) enum Verdict {
    /// Queue it as usual.
    Pass,
    /// Held back, or dropped as a copy of a replayed one: nothing to queue.
    Taken,
    /// Too much held back: the connection must close.
    Overflow,
}

impl Gate {
    /// Takes the position asked for `stream`, if any.
    pub fn take_asked(&mut self, stream: &str) -> Option<Asked> {
        let at = self.asked.iter().position(|(s, _)| s == stream)?;
        Some(self.asked.swap_remove(at).1)
    }

    /// Live events of `stream` wait until [`release`](Self::release).
    pub fn hold(&mut self, stream: &str) {
        if !self.holds.iter().any(|h| &*h.stream == stream) {
            self.holds.push(Hold {
                stream: Arc::from(stream),
                held: Vec::new(),
                bytes: 0,
                since: Instant::now(),
            });
        }
    }

    /// Takes what `stream` holds back so far (the hold stays: what arrives meanwhile waits).
    pub fn take_held(&mut self, stream: &str) -> Vec<(u64, Bytes)> {
        match self.holds.iter_mut().find(|h| &*h.stream == stream) {
            Some(hold) => {
                hold.bytes = 0;
                std::mem::take(&mut hold.held)
            }
            None => Vec::new(),
        }
    }

    /// Ends the hold of `stream` if it holds nothing more (`false`: more arrived, take it
    /// first). With `floor`, a live event at or below it that arrives later is a copy of one
    /// already sent, and is dropped.
    pub fn finish(&mut self, stream: &str, floor: Option<u64>) -> bool {
        let Some(at) = self.holds.iter().position(|h| &*h.stream == stream) else {
            return true;
        };
        if !self.holds[at].held.is_empty() {
            return false;
        }
        let hold = self.holds.swap_remove(at);
        self.floors.retain(|f| &*f.stream != stream);
        if let Some(seq) = floor {
            self.floors.push(Floor {
                stream: hold.stream,
                seq,
                until: Instant::now() + FLOOR_FOR,
            });
        }
        true
    }

    /// Forgets the floor of `stream` (its position moved elsewhere: a resync).
    #[cfg(feature = "redis")]
    pub fn clear_floor(&mut self, stream: &str) {
        self.floors.retain(|f| &*f.stream != stream);
    }

    /// Decides about a live event of a stream.
    pub fn offer(&mut self, stamp: Stamp<'_>, frame: &Bytes) -> Verdict {
        if let Some(hold) = self.holds.iter_mut().find(|h| &*h.stream == stamp.stream) {
            if hold.held.len() >= MAX_HELD
                || hold.bytes + frame.len() > MAX_HELD_BYTES
                || hold.since.elapsed() > HOLD_FOR
            {
                return Verdict::Overflow;
            }
            hold.bytes += frame.len();
            hold.held.push((stamp.seq, frame.clone()));
            return Verdict::Taken;
        }
        let now = Instant::now();
        self.floors.retain(|f| f.until > now);
        if let Some(at) = self.floors.iter().position(|f| &*f.stream == stamp.stream) {
            if stamp.seq <= self.floors[at].seq {
                return Verdict::Taken;
            }
            // Events of a stream arrive in order: nothing at or below the floor comes now.
            self.floors.swap_remove(at);
        }
        Verdict::Pass
    }

    /// Whether live events still need a look.
    pub fn idle(&self) -> bool {
        self.holds.is_empty() && self.floors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn held_events_come_out_after_the_replay_once_each_and_copies_are_dropped_later() {
        let mut g = Gate::default();
        g.hold("u");
        for seq in [4, 5, 6] {
            assert!(matches!(
                g.offer(Stamp { stream: "u", seq }, &f(seq as u8)),
                Verdict::Taken
            ));
        }
        // Another stream is not held.
        assert!(matches!(
            g.offer(
                Stamp {
                    stream: "b",
                    seq: 1
                },
                &f(0)
            ),
            Verdict::Pass
        ));
        // The replay sent up to 5: the connection sends what is held after it, then ends the
        // hold with the floor it reached.
        let held = g.take_held("u");
        assert_eq!(held.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5, 6]);
        assert!(matches!(
            g.offer(
                Stamp {
                    stream: "u",
                    seq: 7
                },
                &f(7)
            ),
            Verdict::Taken
        ));
        assert!(!g.finish("u", Some(6)), "7 arrived meanwhile");
        assert_eq!(g.take_held("u"), vec![(7, f(7))]);
        assert!(g.finish("u", Some(7)));
        // 6 and 7 were on their way: copies, dropped; 8 is new.
        for seq in [6, 7] {
            assert!(matches!(
                g.offer(Stamp { stream: "u", seq }, &f(seq as u8)),
                Verdict::Taken
            ));
        }
        assert!(matches!(
            g.offer(
                Stamp {
                    stream: "u",
                    seq: 8
                },
                &f(8)
            ),
            Verdict::Pass
        ));
        assert!(g.idle(), "the floor goes once an event above it passed");
    }

    #[test]
    fn a_hold_is_bounded() {
        let mut g = Gate::default();
        g.hold("b");
        for seq in 0..MAX_HELD as u64 {
            assert!(matches!(
                g.offer(Stamp { stream: "b", seq }, &f(0)),
                Verdict::Taken
            ));
        }
        assert!(matches!(
            g.offer(
                Stamp {
                    stream: "b",
                    seq: 1 << 20
                },
                &f(0)
            ),
            Verdict::Overflow
        ));
    }
}
