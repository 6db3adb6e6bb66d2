//! The rules every history follows: how much each kind of stream keeps ([`Retention`]), a new
//! epoch, and when a resume counts as recovered ([`decide`]).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use super::tenure::Tenure;
use crate::session::{Asked, StreamKind};

/// How much history one kind of stream keeps (see [`Server::retention`](crate::Server::retention)).
///
/// ```
/// use std::time::Duration;
/// use ephaptic::{Retention, StreamKind};
///
/// let server = ephaptic::Server::new().retention(
///     StreamKind::User,
///     Retention::default().size(1000).ttl(Duration::from_secs(600)),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
    pub(crate) max_replay: usize,
}

impl Default for Retention {
    /// 1024 events, 300 s, at most 500 replayed at once.
    fn default() -> Self {
        Retention {
            size: 1024,
            ttl: Duration::from_secs(300),
            max_replay: 500,
        }
    }
}

impl Retention {
    /// Keeps at most `size` events per stream (the oldest go first). 0 keeps none: every
    /// resume of the stream is then "not recovered" unless nothing was missed.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Keeps an event for `ttl`; a client away longer is told its stream was not recovered.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Replays at most `n` events per stream and resume; a client that missed more is told
    /// the stream was not recovered (and refetches), rather than being flooded.
    pub fn max_replay(mut self, n: usize) -> Self {
        self.max_replay = n;
        self
    }
}

/// The retention of each kind of stream, and the in-memory bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retentions {
    pub user: Retention,
    pub broadcast: Retention,
    pub group: Retention,
    /// Bytes the in-memory history may hold, for all streams together.
    pub memory: usize,
    /// The largest event frame kept; a larger one still gets its position, but a resume that
    /// would need it is not recovered (big payloads are for refetching, not for replaying).
    pub max_event: usize,
    /// How long the position of a stream without events is remembered: as long as the
    /// longest-kept kind keeps events (past that, a client that was away is not recovered
    /// anyway), so a stream nobody writes to is let go soon after its last event.
    pub meta_ttl: Duration,
    /// The most streams the in-memory history keeps (each costs its name and ~200 bytes);
    /// past it, the least recently used is let go.
    pub max_streams: usize,
}

impl Default for Retentions {
    fn default() -> Self {
        Retentions {
            user: Retention::default().size(256),
            broadcast: Retention::default(),
            group: Retention::default(),
            memory: 64 << 20,
            max_event: 64 << 10,
            meta_ttl: Duration::from_secs(300),
            max_streams: 100_000,
        }
    }
}

impl Retentions {
    pub fn of(&self, kind: StreamKind) -> &Retention {
        match kind {
            StreamKind::User => &self.user,
            StreamKind::Broadcast => &self.broadcast,
            StreamKind::Group => &self.group,
        }
    }

    pub fn set(&mut self, kind: StreamKind, retention: Retention) {
        match kind {
            StreamKind::User => self.user = retention,
            StreamKind::Broadcast => self.broadcast = retention,
            StreamKind::Group => self.group = retention,
        }
        self.meta_ttl = self.longest_ttl();
    }

    /// The longest time any kind keeps an event.
    fn longest_ttl(&self) -> Duration {
        [self.user.ttl, self.broadcast.ttl, self.group.ttl]
            .into_iter()
            .max()
            .unwrap_or_default()
    }
}

/// A new epoch: 8 letters and digits, random (a restart, or a history lost in Redis, starts
/// streams again under another one, so old positions are never taken for new ones).
pub(crate) fn new_epoch() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut n = h.finish();
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| {
            let c = DIGITS[(n % 62) as usize] as char;
            n /= 62;
            c
        })
        .collect()
}

/// One kept event as a resume sees it.
#[derive(Debug, Clone)]
pub(crate) struct Kept<'a> {
    pub seq: u64,
    pub age: Duration,
    /// The event frame without its position.
    pub frame: Bytes,
    /// For `#[event(recover = "latest")]`: its name (only the newest of a name is replayed).
    pub latest: Option<&'a str>,
}

/// Why a stream was not recovered (the hello's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    Epoch,
    Trimmed,
    Expired,
    /// The history could not be read (Redis away, a subscription not confirmed).
    Unavailable,
    /// A group's events from outside the reader's tenure (see [`Tenure`]): never replayed.
    Membership,
}

impl Lost {
    pub fn as_str(self) -> &'static str {
        match self {
            Lost::Epoch => "epoch",
            Lost::Trimmed => "trimmed",
            Lost::Expired => "expired",
            Lost::Unavailable => "unavailable",
            Lost::Membership => "membership",
        }
    }
}

/// The result of reading a stream for a resume.
#[derive(Debug)]
pub(crate) struct Read {
    pub epoch: String,
    pub top: u64,
    /// Whether the client asked (the hello's `was_recovering`).
    pub asked: bool,
    /// `Ok(events to replay, in order, without their positions)`, or why not.
    pub outcome: Result<Vec<(u64, Bytes)>, Lost>,
}

impl Read {
    /// What a resume says when the history cannot be read: the client's own position (none,
    /// for a client that asked for none), to try again from.
    pub fn unavailable(asked: Option<&Asked>) -> Read {
        Read {
            epoch: asked.map_or_else(String::new, |a| a.epoch.clone()),
            top: asked.map_or(0, |a| a.offset),
            asked: asked.is_some(),
            outcome: Err(Lost::Unavailable),
        }
    }
}

/// Decides a resume from `asked` given a stream's epoch and top, the reader's tenure and the
/// kept events after the asked offset (in order; at most `retention.max_replay + 1` of them
/// suffice): recovered only when every event after it is there, young enough, within the
/// reader's tenure, and no more than the replay limit.
pub(crate) fn decide(
    asked: Option<&Asked>,
    epoch: &str,
    top: u64,
    tenure: Tenure,
    after: &[Kept<'_>],
    retention: &Retention,
) -> Read {
    let read = |outcome| Read {
        epoch: epoch.to_owned(),
        top,
        asked: asked.is_some(),
        outcome,
    };
    let Some(asked) = asked else {
        return read(Ok(Vec::new()));
    };
    if asked.epoch != epoch || asked.offset > top {
        return read(Err(Lost::Epoch));
    }
    let missed = top - asked.offset;
    if missed == 0 {
        return read(Ok(Vec::new()));
    }
    if !tenure.covers(asked.offset) {
        return read(Err(Lost::Membership));
    }
    if missed > retention.max_replay as u64
        || after.first().map(|k| k.seq) != Some(asked.offset + 1)
    {
        return read(Err(Lost::Trimmed));
    }
    if after.len() as u64 != missed || after.last().map(|k| k.seq) != Some(top) {
        return read(Err(Lost::Trimmed));
    }
    if after.iter().any(|k| k.age > retention.ttl) {
        return read(Err(Lost::Expired));
    }
    // Of the events of a `latest` name, only the newest is sent.
    let replay = after
        .iter()
        .enumerate()
        .filter(|(i, k)| {
            k.latest
                .is_none_or(|name| !after[i + 1..].iter().any(|l| l.latest == Some(name)))
        })
        .map(|(_, k)| (k.seq, k.frame.clone()))
        .collect();
    read(Ok(replay))
}
