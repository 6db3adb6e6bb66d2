//! The history of a server without Redis: per-stream logs under a lock each, in
//! least-recently-used order, and one order of everything kept for the byte bound and expiry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use lru::LruCache;

use super::rules::{Kept, Read, Retentions, decide, new_epoch};
use super::tenure::Tenure;
use super::tenure::Tenures;
use crate::identity::Identity;
use crate::session::{Asked, Stream, StreamKind, group_stream};

/// The history of a server without Redis.
#[derive(Debug)]
pub(crate) struct Memory {
    /// Every stream, the least recently appended to or read first.
    streams: Mutex<LruCache<String, Arc<Mutex<StreamState>>>>,
    /// Every kept event in the order appended, for the byte bound and expiry.
    order: Mutex<VecDeque<Record>>,
    bytes: AtomicUsize,
    appends: AtomicU64,
    retention: Retentions,
}

/// One stream's place in the history, as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// Its key: `b`, `u:<identity key>`, `g:<group>`.
    pub stream: String,
    pub epoch: String,
    /// The offset of its last event (0: none yet in this epoch).
    pub top: u64,
    /// How many of its events are kept for a replay.
    pub kept: usize,
}

#[derive(Debug)]
struct StreamState {
    epoch: String,
    top: u64,
    kind: StreamKind,
    entries: VecDeque<Entry>,
    last_append: Instant,
    /// Group streams: where each identity's tenure began (see [`Tenure`]).
    tenures: Tenures,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    at: Instant,
    frame: Bytes,
    latest: Option<&'static str>,
}

#[derive(Debug)]
struct Record {
    stream: Arc<Mutex<StreamState>>,
    seq: u64,
    at: Instant,
}

/// What an event costs the byte bound besides its frame, while it is kept.
const OVERHEAD: usize = 96;
/// What its place in the append order costs, until it leaves that order.
const RECORD: usize = 48;
/// What a stream costs the byte bound besides its name, while it is kept.
const STREAM: usize = 200;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Memory {
    pub fn new(retention: Retentions) -> Self {
        Memory {
            streams: Mutex::new(LruCache::unbounded()),
            order: Mutex::default(),
            bytes: AtomicUsize::new(0),
            appends: AtomicU64::new(0),
            retention,
        }
    }

    /// The stream `of`, made when there is none. A stream a read makes (a join, a hello: no
    /// event yet) is put last in line to be let go, so that a client joining many groups of its
    /// own cannot push out the streams that hold events; its first event moves it up.
    fn stream(&self, of: &Stream<'_>, by_read: bool) -> Arc<Mutex<StreamState>> {
        let key = of.key();
        let mut streams = lock(&self.streams);
        if let Some(s) = streams.get(&key) {
            return s.clone();
        }
        // Room for one more: the oldest events go first, then the least recently used streams.
        // A stream's listeners lose nothing
        // live (the stream's next event starts a new epoch, which moves them on); a client
        // resuming one of them from its old epoch is told `epoch`, and refetches.
        self.evict_events(Instant::now(), key.len() + STREAM);
        while streams.len() >= self.retention.max_streams.max(1)
            || (self.bytes.load(Relaxed) + key.len() + STREAM > self.retention.memory
                && !streams.is_empty())
        {
            match streams.pop_lru() {
                Some((old, stream)) => self.forget(&old, &stream),
                None => break,
            }
        }
        let s = Arc::new(Mutex::new(StreamState {
            epoch: new_epoch(),
            top: 0,
            kind: of.kind(),
            entries: VecDeque::new(),
            last_append: Instant::now(),
            tenures: Tenures::default(),
        }));
        self.bytes.fetch_add(key.len() + STREAM, Relaxed);
        if by_read {
            streams.put(key.clone(), s.clone());
            streams.demote(&key);
        } else {
            streams.put(key, s.clone());
        }
        s
    }

    /// Gives back what a stream let go of held: its events and its own cost.
    fn forget(&self, key: &str, stream: &Mutex<StreamState>) {
        let mut s = lock(stream);
        let held: usize = s.entries.iter().map(|e| e.frame.len() + OVERHEAD).sum();
        s.entries.clear();
        let tenures = std::mem::take(&mut s.tenures).bytes();
        self.bytes
            .fetch_sub(held + tenures + key.len() + STREAM, Relaxed);
    }

    /// How many streams are kept, and the `limit` most recently used with their positions
    /// (the inspector's view; each stream is locked a moment, after the index is let go).
    pub fn positions(&self, limit: usize) -> (usize, Vec<Position>) {
        let (total, taken) = {
            let streams = lock(&self.streams);
            let taken: Vec<(String, Arc<Mutex<StreamState>>)> = streams
                .iter()
                .take(limit)
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect();
            (streams.len(), taken)
        };
        let list = taken
            .into_iter()
            .map(|(stream, state)| {
                let s = lock(&state);
                Position {
                    stream,
                    epoch: s.epoch.clone(),
                    top: s.top,
                    kept: s.entries.len(),
                }
            })
            .collect();
        (total, list)
    }

    /// How many streams are kept.
    #[cfg(test)]
    pub fn streams(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Appends an event (its frame without a position) to a stream and runs `deliver` with
    /// its offset and epoch while the stream is locked, so that every listener gets the
    /// stream's events in offset order and a resume reads either before or after it.
    #[cfg(test)]
    pub fn append<R>(
        &self,
        of: &Stream<'_>,
        frame: &Bytes,
        latest: Option<&'static str>,
        deliver: impl FnOnce(u64, &str) -> R,
    ) -> R {
        self.append_to(of, frame, latest, Vec::new, deliver)
    }

    /// [`append`](Self::append); when the event starts a group stream's epoch, `members` (the
    /// identity keys of the group's members here) begin their tenures with it, so that members
    /// who were there all along resume it (a quiet group's stream is let go, and its next event
    /// starts a new epoch).
    pub fn append_to<R>(
        &self,
        of: &Stream<'_>,
        frame: &Bytes,
        latest: Option<&'static str>,
        members: impl FnOnce() -> Vec<String>,
        deliver: impl FnOnce(u64, &str) -> R,
    ) -> R {
        let stream = self.stream(of, false);
        let retention = *self.retention.of(of.kind());
        let now = Instant::now();
        let (r, record) = {
            let mut s = lock(&stream);
            if s.top == 0 && matches!(of, Stream::Group(_)) {
                for key in members() {
                    let (added, freed) = s.tenures.start(key, 0, now);
                    self.bytes.fetch_add(added, Relaxed);
                    self.bytes.fetch_sub(freed, Relaxed);
                }
            }
            s.top += 1;
            s.last_append = now;
            let seq = s.top;
            let kept = retention.size > 0 && frame.len() <= self.retention.max_event;
            if kept {
                self.bytes
                    .fetch_add(frame.len() + OVERHEAD + RECORD, Relaxed);
                s.entries.push_back(Entry {
                    seq,
                    at: now,
                    frame: frame.clone(),
                    latest,
                });
                while s.entries.len() > retention.size {
                    if let Some(e) = s.entries.pop_front() {
                        self.bytes.fetch_sub(e.frame.len() + OVERHEAD, Relaxed);
                    }
                }
            }
            let r = deliver(seq, &s.epoch);
            (r, kept.then_some(seq))
        };
        if let Some(seq) = record {
            lock(&self.order).push_back(Record {
                stream,
                seq,
                at: now,
            });
        }
        self.evict(now);
        r
    }

    /// Lets go of what is over the byte bound or older than every stream kind keeps.
    fn evict(&self, now: Instant) {
        self.evict_events(now, 0);
        self.sweep_now_and_then(now);
    }

    /// Lets go of the oldest events while `need` more bytes would not fit the byte bound, and
    /// of those older than every stream kind keeps.
    fn evict_events(&self, now: Instant, need: usize) {
        let oldest = [
            self.retention.user.ttl,
            self.retention.broadcast.ttl,
            self.retention.group.ttl,
        ]
        .into_iter()
        .max()
        .unwrap_or_default();
        loop {
            let record = {
                let mut order = lock(&self.order);
                match order.front() {
                    Some(r)
                        if self.bytes.load(Relaxed) + need > self.retention.memory
                            || now.duration_since(r.at) > oldest =>
                    {
                        order.pop_front()
                    }
                    _ => None,
                }
            };
            let Some(record) = record else { break };
            self.bytes.fetch_sub(RECORD, Relaxed);
            // The event, unless the stream's size let it go already (and counted it then).
            let mut s = lock(&record.stream);
            while s.entries.front().is_some_and(|e| e.seq <= record.seq) {
                if let Some(e) = s.entries.pop_front() {
                    self.bytes.fetch_sub(e.frame.len() + OVERHEAD, Relaxed);
                }
            }
        }
    }

    /// Every 4096 appends and reads, forgets the streams that have kept nothing for longer than
    /// `meta_ttl` (their position only: a client resuming one is told to refetch). A stream busy
    /// delivering is left for the next sweep rather than waited for.
    fn sweep_now_and_then(&self, now: Instant) {
        if self.appends.fetch_add(1, Relaxed) % 4096 != 4095 {
            return;
        }
        let meta_ttl = self.retention.meta_ttl;
        let mut streams = lock(&self.streams);
        let idle: Vec<String> = streams
            .iter()
            .filter(|(_, s)| match s.try_lock() {
                Ok(s) => s.entries.is_empty() && now.duration_since(s.last_append) >= meta_ttl,
                Err(_) => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(stream) = streams.pop(&key) {
                self.forget(&key, &stream);
            }
        }
    }

    /// Reads a stream for a resume from `asked` (or, without it, its position only).
    #[cfg(test)]
    pub fn read(&self, of: &Stream<'_>, asked: Option<&Asked>) -> Read {
        self.read_as(of, asked, None)
    }

    /// Reads a stream for `reader`'s resume from `asked` (or, without it, its position only).
    /// A group stream's read is the reader's join: it starts the reader's tenure unless one
    /// is going on (see [`Tenure`]).
    pub fn read_as(
        &self,
        of: &Stream<'_>,
        asked: Option<&Asked>,
        reader: Option<&Identity>,
    ) -> Read {
        let now = Instant::now();
        // Before the stream is taken: a sweep must not let go of the stream being read.
        self.sweep_now_and_then(now);
        let stream = self.stream(of, true);
        let retention = self.retention.of(of.kind());
        let mut s = lock(&stream);
        let tenure = match (of, reader) {
            (Stream::Group(_), None) => Tenure::None,
            (Stream::Group(_), Some(id)) => {
                let top = s.top;
                let key = id.key();
                match s.tenures.get(&key, now) {
                    Some(since) => Tenure::Since(since),
                    None => {
                        let (added, freed) = s.tenures.start(key, top, now);
                        self.bytes.fetch_add(added, Relaxed);
                        self.bytes.fetch_sub(freed, Relaxed);
                        Tenure::None
                    }
                }
            }
            _ => Tenure::Unscoped,
        };
        let from = asked.map_or(s.top, |a| a.offset);
        let after: Vec<Kept<'_>> = s
            .entries
            .iter()
            .filter(|e| e.seq > from)
            .take(retention.max_replay + 1)
            .map(|e| Kept {
                seq: e.seq,
                age: now.duration_since(e.at),
                frame: e.frame.clone(),
                latest: e.latest,
            })
            .collect();
        debug_assert!(s.kind == of.kind());
        decide(asked, &s.epoch, s.top, tenure, &after, retention)
    }

    /// Ends `member`'s tenure in `group` (it left on purpose): a later join starts afresh.
    pub fn leave(&self, group: &str, member: &Identity) {
        let key = group_stream(group);
        let stream = lock(&self.streams).peek(&key).cloned();
        if let Some(stream) = stream {
            let freed = lock(&stream).tenures.end(&member.key());
            self.bytes.fetch_sub(freed, Relaxed);
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::rules::{Lost, Retention};
    use super::super::tenure::MAX_TENURES;
    use super::super::tenure::TENURE;
    use super::*;

    fn frame(n: u64) -> Bytes {
        Bytes::from(n.to_string())
    }

    fn history(size: usize, memory: usize) -> Memory {
        let r = Retention::default().size(size).max_replay(100);
        Memory::new(Retentions {
            user: r,
            broadcast: r,
            group: r,
            memory,
            max_event: 1 << 20,
            meta_ttl: Duration::from_secs(60),
            max_streams: 1000,
        })
    }

    fn append(h: &Memory, n: u64) -> (u64, String) {
        h.append(&Stream::All, &frame(n), None, |seq, e| (seq, e.to_owned()))
    }

    #[test]
    fn a_resume_gets_what_was_missed_in_order_or_is_told_why_not() {
        let h = history(10, 1 << 20);
        let (_, epoch) = append(&h, 1);
        for n in 2..=5 {
            append(&h, n);
        }
        let asked = |offset| Asked {
            epoch: epoch.clone(),
            offset,
        };
        let read = h.read(&Stream::All, Some(&asked(2)));
        assert_eq!(read.top, 5);
        let replay = read.outcome.unwrap();
        assert_eq!(
            replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(replay[0].1, frame(3));
        assert!(
            h.read(&Stream::All, Some(&asked(5)))
                .outcome
                .unwrap()
                .is_empty()
        );
        let other = Asked {
            epoch: "another".into(),
            offset: 2,
        };
        assert_eq!(
            h.read(&Stream::All, Some(&other)).outcome.unwrap_err(),
            Lost::Epoch
        );
        assert_eq!(
            h.read(&Stream::All, Some(&asked(9))).outcome.unwrap_err(),
            Lost::Epoch,
            "a position ahead of the stream is not this stream's"
        );
        for n in 6..=20 {
            append(&h, n);
        }
        // Only 11..=20 are kept.
        assert_eq!(
            h.read(&Stream::All, Some(&asked(5))).outcome.unwrap_err(),
            Lost::Trimmed
        );
        assert_eq!(
            h.read(&Stream::All, Some(&asked(10)))
                .outcome
                .unwrap()
                .len(),
            10
        );
        let fresh = h.read(&Stream::All, None);
        assert!(!fresh.asked && fresh.top == 20 && fresh.epoch == epoch);
    }

    #[test]
    fn streams_are_apart_and_latest_events_replay_once() {
        let h = history(10, 1 << 20);
        let alice = Identity::from("alice");
        let bob = Identity::from("bob");
        let (seq, ea) = h.append(&Stream::User(&alice), &frame(1), None, |s, e| {
            (s, e.to_owned())
        });
        let (seq_b, eb) = h.append(&Stream::User(&bob), &frame(1), None, |s, e| {
            (s, e.to_owned())
        });
        assert_eq!((seq, seq_b), (1, 1));
        assert_ne!(ea, eb, "each stream has its own epoch");
        for n in 2..=4 {
            h.append(&Stream::User(&alice), &frame(n), Some("Changed"), |_, _| ());
        }
        let read = h.read(
            &Stream::User(&alice),
            Some(&Asked {
                epoch: ea,
                offset: 1,
            }),
        );
        let replay = read.outcome.unwrap();
        assert_eq!(replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn an_event_too_large_to_keep_makes_a_resume_across_it_not_recovered() {
        let h = Memory::new(Retentions {
            max_event: 10,
            ..Retentions::default()
        });
        let (_, epoch) = append(&h, 1);
        h.append(&Stream::All, &Bytes::from(vec![0; 11]), None, |_, _| ());
        append(&h, 3);
        let asked = |offset| Asked {
            epoch: epoch.clone(),
            offset,
        };
        assert_eq!(
            h.read(&Stream::All, Some(&asked(1))).outcome.unwrap_err(),
            Lost::Trimmed
        );
        assert_eq!(
            h.read(&Stream::All, Some(&asked(2))).outcome.unwrap().len(),
            1
        );
    }

    #[test]
    fn what_a_stream_trims_by_size_stops_counting_at_once() {
        let h = history(2, 1 << 20);
        for n in 0..100 {
            append(&h, n);
        }
        // Two events kept, and a hundred places in the append order.
        let frames: usize = (98..100).map(|n: u64| frame(n).len() + OVERHEAD).sum();
        assert_eq!(h.bytes(), STREAM + "b".len() + frames + 100 * RECORD);
    }

    #[test]
    fn memory_is_bounded_across_streams() {
        let names = 100 * (STREAM + "g:room00".len());
        let h = history(1000, names + 10 * (100 + OVERHEAD + RECORD));
        let member = Identity::Str("m".into());
        let room0 = Stream::Group("room0");
        let epoch = h.read_as(&room0, None, Some(&member)).epoch;
        for i in 0..100 {
            let g = format!("room{i}");
            h.append(
                &Stream::Group(&g),
                &Bytes::from(vec![0; 100]),
                None,
                |_, _| (),
            );
        }
        assert!(
            h.bytes() <= names + 10 * (100 + OVERHEAD + RECORD),
            "{} bytes",
            h.bytes()
        );
        let first = h.read_as(&room0, Some(&Asked { epoch, offset: 0 }), Some(&member));
        assert_eq!(first.outcome.unwrap_err(), Lost::Trimmed);
    }

    #[test]
    fn a_group_replays_only_within_the_readers_tenure() {
        let h = history(100, 1 << 20);
        let room = Stream::Group("room");
        let (ann, bob) = (Identity::Str("ann".into()), Identity::Str("bob".into()));
        let say = |n| h.append(&room, &frame(n), None, |seq, e| (seq, e.to_owned()));
        let (_, epoch) = say(1);
        let at = |offset| Asked {
            epoch: epoch.clone(),
            offset,
        };
        // ann joins at 1: her tenure begins there.
        assert!(h.read_as(&room, None, Some(&ann)).outcome.is_ok());
        for n in 2..=4 {
            say(n);
        }
        // Away and back (not a leave): what she missed since 1 is hers.
        let replay = h.read_as(&room, Some(&at(2)), Some(&ann)).outcome.unwrap();
        assert_eq!(replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
        // Not from before her tenure, whatever position she names.
        let before = h.read_as(&room, Some(&at(0)), Some(&ann));
        assert_eq!(before.outcome.unwrap_err(), Lost::Membership);
        // bob never joined: a forged position reads nothing; nor does an anonymous reader.
        let forged = h.read_as(&room, Some(&at(1)), Some(&bob));
        assert_eq!(forged.outcome.unwrap_err(), Lost::Membership);
        let anonymous = h.read_as(&room, Some(&at(1)), None);
        assert_eq!(anonymous.outcome.unwrap_err(), Lost::Membership);
        // ann leaves at 4; the group goes on; her next join starts a new tenure at 6.
        h.leave("room", &ann);
        say(5);
        say(6);
        let back = h.read_as(&room, Some(&at(4)), Some(&ann));
        assert_eq!(back.outcome.unwrap_err(), Lost::Membership);
        assert_eq!(back.top, 6);
        say(7);
        let replay = h.read_as(&room, Some(&at(6)), Some(&ann)).outcome.unwrap();
        assert_eq!(replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [7]);
        // A position at the top replays nothing and needs no tenure; other streams need none.
        assert!(h.read_as(&room, Some(&at(7)), None).outcome.is_ok());
        let (_, b) = append(&h, 1);
        let all = Asked {
            epoch: b,
            offset: 0,
        };
        assert!(h.read_as(&Stream::All, Some(&all), None).outcome.is_ok());
    }

    #[test]
    fn the_least_recently_used_streams_go_past_the_bound_and_give_back_what_they_held() {
        let h = history(10, 1 << 20);
        let group = |i: usize| format!("g{i}");
        let say = |i: usize| {
            let g = group(i);
            h.append(&Stream::Group(&g), &frame(i as u64), None, |_, e| {
                e.to_owned()
            })
        };
        let first = say(0);
        let g2 = say(2);
        for i in (1..1000).filter(|i| *i != 2) {
            say(i);
        }
        assert_eq!(h.streams(), 1000);
        // StreamState 0 used again: it is now the most recent, and stream 1 the least.
        assert_eq!(say(0), first);
        for i in 1000..1500 {
            say(i);
        }
        assert_eq!(h.streams(), 1000, "bounded in number");
        assert_eq!(say(0), first, "the recently used stream kept its epoch");
        assert_ne!(
            say(2),
            g2,
            "a stream let go starts again under another epoch"
        );
        // What a stream let go of held is given back: a thousand streams of one event each.
        let per = |i: usize| STREAM + group(i).len() + 2 + frame(i as u64).len() + OVERHEAD;
        assert!(
            h.bytes() <= 1000 * (per(1499) + RECORD) + 1500 * RECORD,
            "{}",
            h.bytes()
        );
    }

    #[test]
    fn a_name_of_any_length_costs_the_byte_bound() {
        let h = history(10, 64 << 10);
        for i in 0..200 {
            let long = format!("{i}{}", "x".repeat(10_000));
            h.append(&Stream::Group(&long), &frame(1), None, |_, _| ());
        }
        assert!(h.bytes() <= 64 << 10, "{} bytes", h.bytes());
        assert!(h.streams() < 10, "{} streams", h.streams());
    }

    #[test]
    fn tenures_are_bounded_counted_and_the_least_recently_joined_go_first() {
        let h = history(10, 64 << 20);
        let room = Stream::Group("lobby");
        let empty = {
            h.read_as(&room, None, None);
            h.bytes()
        };
        let id = |i: usize| Identity::Str(format!("guest-{i}"));
        let first = id(0);
        h.read_as(&room, None, Some(&first));
        let (_, epoch) = h.append(&room, &frame(1), None, |seq, e| (seq, e.to_owned()));
        for i in 1..MAX_TENURES + 500 {
            h.read_as(&room, None, Some(&id(i)));
            if i % 1000 == 0 {
                // The first guest comes back now and then: it stays among the recently joined.
                h.read_as(&room, None, Some(&first));
            }
        }
        let per = TENURE + "s:guest-0000".len();
        let held = h.bytes() - empty;
        assert!(
            held <= MAX_TENURES * per + (frame(1).len() + OVERHEAD + RECORD),
            "{held}"
        );
        let at = |offset| Asked {
            epoch: epoch.clone(),
            offset,
        };
        h.append(&room, &frame(2), None, |_, _| ());
        // The first guest kept its tenure (it began before event 1); guest 1 was let go.
        assert!(h.read_as(&room, Some(&at(0)), Some(&first)).outcome.is_ok());
        assert_eq!(
            h.read_as(&room, Some(&at(1)), Some(&id(1)))
                .outcome
                .unwrap_err(),
            Lost::Membership
        );
    }

    #[test]
    fn streams_made_by_reads_go_first_and_cannot_push_out_those_with_events() {
        let h = history(10, 64 << 20);
        // 1000 is the bound (the test history's): 900 streams with an event each.
        let say = |i: usize| {
            let g = format!("kept{i}");
            h.append(&Stream::Group(&g), &frame(1), None, |_, e| e.to_owned())
        };
        let epochs: Vec<String> = (0..900).map(say).collect();
        // A client joins 5,000 groups of its own: each makes a stream with no event.
        for i in 0..5000 {
            let g = format!("junk{i}");
            h.read_as(&Stream::Group(&g), None, None);
        }
        assert_eq!(h.streams(), 1000);
        for (i, epoch) in epochs.iter().enumerate() {
            assert_eq!(&say(i), epoch, "stream {i} was pushed out");
        }
    }
}
