//! One client connection as the runtime sees it: who it is, where from, which groups it is
//! in, its calls in flight, and its [`Outbound`] side. Passive on purpose: it holds no server
//! state and calls nothing above it. The runtime decides what its frames mean; the hub indexes
//! it; the transport's task drains its queue.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::task::AbortHandle;

use super::credentials::Credentials;
use super::gate::{Gate, Stamp, Verdict};
use super::names::{RESERVED, Refused};
use super::outbound::{CloseSignal, Outbound, Outbox};
use crate::handshake::Handshake;
use crate::identity::Identity;

/// Unusable frames logged per connection; the rest are counted and summed up at its close.
pub(crate) const BAD_FRAMES_LOGGED: usize = 3;

/// A connection's groups: a set, so that a join and a leave cost O(1) however many it holds
/// (a list made 100,000 joins cost 21 s of CPU), and how many are the runtime's own.
#[derive(Debug, Default)]
struct Groups {
    set: HashSet<Arc<str>>,
    own: usize,
    /// The connection ended: no group takes it any more (a call that outlives its connection,
    /// an idempotent one, may still try to join).
    ended: bool,
}

pub(crate) struct Connection {
    id: u64,
    peer: Option<SocketAddr>,
    identity: OnceLock<Identity>,
    /// The upgrade request, when the server keeps it for handlers (`Server::keep_handshake`).
    handshake: Option<Handshake>,
    out: Outbound,
    /// Groups (rooms) this connection has joined; the hub keeps the index the other way.
    groups: Mutex<Groups>,
    /// Calls in flight, by the encoded id the client chose, so `cancel` and disconnect can
    /// stop them. A client may reuse an id while a call with it runs: all of them are kept, and
    /// `cancel` stops all of them (never a call that nothing can stop). The sequence number
    /// tells which finished.
    calls: Mutex<HashMap<Bytes, Vec<Running>>>,
    /// How many calls run in tasks of their own, read without the lock for the bound.
    running: AtomicUsize,
    /// How many frames it sent that could not be used (for logs that cannot be flooded).
    bad_frames: AtomicUsize,
    call_seq: AtomicU64,
    /// [`SESSIONS`], [`GATED`], [`HELLO`], [`REFRESHES`], [`REFRESHING`], [`TRACED`].
    flags: AtomicU8,
    /// Resume state (docs/PROTOCOL.md 5.6), for connections whose client asked to resume.
    gate: Mutex<Option<Box<Gate>>>,
    /// When its identity expires, and what a refresh needs (docs/PROTOCOL.md 5.11).
    credentials: Credentials,
}

/// Its client sent `init` with `v: 2`: it hears about positions (`position` frames).
const SESSIONS: u8 = 2;
/// Live events with a position go through the gate first.
const GATED: u8 = 4;
/// A hello is running.
const HELLO: u8 = 8;
/// Its client said `init.refresh: true`: it answers `refresh` frames.
const REFRESHES: u8 = 16;
/// A refresh is running (the identity loader, on new credentials).
const REFRESHING: u8 = 32;
/// Someone watches its identity's frames in the inspector (`runtime/trace.rs`).
const TRACED: u8 = 64;

/// A call (or stream) running in a task of its own.
#[derive(Debug)]
struct Running {
    seq: u64,
    handle: AbortHandle,
    /// A stream, which a shutdown ends at once instead of waiting for it.
    stream: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("identity", &self.identity.get())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    pub fn new(
        id: u64,
        peer: Option<SocketAddr>,
        handshake: Option<Handshake>,
        out: Outbound,
    ) -> Arc<Self> {
        Arc::new(Connection {
            id,
            peer,
            identity: OnceLock::new(),
            handshake,
            out,
            groups: Mutex::new(Groups::default()),
            calls: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            bad_frames: AtomicUsize::new(0),
            call_seq: AtomicU64::new(0),
            flags: AtomicU8::new(0),
            gate: Mutex::new(None),
            credentials: Credentials::default(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn handshake(&self) -> Option<&Handshake> {
        self.handshake.as_ref()
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    /// Gives the connection its identity; once only (`None` when it already had one).
    pub fn set_identity(&self, identity: Identity) -> Option<&Identity> {
        self.identity.set(identity).ok()?;
        self.identity.get()
    }

    /// Queues a frame, waiting for room (replies, chunks, the caller's own events). `false`
    /// when the connection is gone.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.out.send(frame).await
    }

    /// The largest frame this connection is sent (`Server::max_sent_frame`).
    pub fn max_sent_frame(&self) -> usize {
        self.out.max_sent_frame()
    }

    /// Queues an answer without waiting; `false` when the queue is full or gone.
    pub fn try_answer(&self, frame: Bytes) -> bool {
        self.out.try_answer(frame)
    }

    /// Queues an event without waiting; see [`Outbound::push_event`]. (The backplane's resync
    /// notices; events to many go through [`push_shared`](Self::push_shared).)
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn push_event(&self, frame: Bytes) -> bool {
        self.out.push_event(frame, self.id)
    }

    /// [`push_event`](Self::push_event) of a frame offered to many connections at once,
    /// `weight` being this connection's share of it.
    #[inline]
    pub fn push_shared(&self, frame: Bytes, weight: u32) -> bool {
        self.out.push_shared(frame, self.id, weight)
    }

    /// Queues an event of a stream, unless the connection is resuming that stream (then it
    /// waits for the replay) or the replay already sent it.
    #[inline]
    pub fn push_event_at(&self, frame: Bytes, stamp: Stamp<'_>, weight: u32) -> bool {
        if self.flags.load(Ordering::Acquire) & GATED != 0 {
            return self.push_gated(frame, stamp);
        }
        self.out.push_shared(frame, self.id, weight)
    }

    #[cold]
    fn push_gated(&self, frame: Bytes, stamp: Stamp<'_>) -> bool {
        let mut gate = lock(&self.gate);
        let verdict = match gate.as_deref_mut() {
            Some(g) => g.offer(stamp, &frame),
            None => Verdict::Pass,
        };
        match verdict {
            Verdict::Pass => {
                if gate.as_deref().is_none_or(Gate::idle) {
                    self.flags.fetch_and(!GATED, Ordering::Release);
                }
                // Under the gate's lock, so a release cannot queue held events after it.
                self.out.push_event(frame, self.id)
            }
            Verdict::Taken => true,
            Verdict::Overflow => {
                drop(gate);
                self.close(1008, "outbound queue full: the client reads too slowly");
                false
            }
        }
    }

    /// Marks a hello as running; `false` when one already is.
    pub fn start_hello(&self) -> bool {
        self.flags.fetch_or(HELLO, Ordering::AcqRel) & HELLO == 0
    }

    pub fn end_hello(&self) {
        self.flags.fetch_and(!HELLO, Ordering::AcqRel);
    }

    /// Marks a refresh as running; `false` when one already is.
    pub fn start_refresh(&self) -> bool {
        self.flags.fetch_or(REFRESHING, Ordering::AcqRel) & REFRESHING == 0
    }

    pub fn end_refresh(&self) {
        self.flags.fetch_and(!REFRESHING, Ordering::AcqRel);
    }

    /// Whether its client speaks sessions (`init` with `v: 2`).
    pub fn speaks_sessions(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & SESSIONS != 0
    }

    /// Marks that its client answers `refresh` frames.
    pub fn start_refreshing(&self) {
        self.flags.fetch_or(REFRESHES, Ordering::Relaxed);
    }

    /// Whether its client answers `refresh` frames.
    pub fn refreshes(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & REFRESHES != 0
    }

    /// Whether its frames are traced for the inspector: one relaxed load, all that a
    /// connection nobody traces pays.
    #[inline]
    pub fn traced(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & TRACED != 0
    }

    /// Starts or stops tracing its frames (`runtime/trace.rs` decides).
    pub fn set_traced(&self, on: bool) {
        if on {
            self.flags.fetch_or(TRACED, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!TRACED, Ordering::Relaxed);
        }
    }

    /// When its identity expires and what a refresh needs.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Marks that its client speaks sessions, and keeps the positions it asked for.
    pub fn start_session(&self, asked: Vec<(String, super::gate::Asked)>) {
        self.flags.fetch_or(SESSIONS, Ordering::Relaxed);
        if !asked.is_empty() {
            lock(&self.gate).get_or_insert_default().asked = asked;
        }
    }

    /// Runs `f` on the resume state (created if needed), with the gate's flag set so live
    /// events of held streams go through it.
    pub fn with_gate<R>(&self, f: impl FnOnce(&mut Gate) -> R) -> R {
        let mut gate = lock(&self.gate);
        let gate = gate.get_or_insert_default();
        let r = f(gate);
        if !gate.idle() {
            self.flags.fetch_or(GATED, Ordering::Release);
        }
        r
    }

    /// Ends the hold of `stream` once its replay (up to `floor`, when it has one) is queued:
    /// sends what was held after it, waiting for room as replies do, while what arrives
    /// meanwhile is still held, so nothing of the stream overtakes. Without `floor` (the
    /// history could not be read), everything held is sent and no copy is looked for.
    pub async fn release(&self, stream: &str, floor: Option<u64>) {
        let mut last = floor.unwrap_or(0);
        loop {
            let held = {
                let mut gate = lock(&self.gate);
                let Some(g) = gate.as_deref_mut() else {
                    return;
                };
                let held = g.take_held(stream);
                if held.is_empty() {
                    g.finish(stream, floor.map(|_| last));
                    return;
                }
                held
            };
            for (seq, frame) in held {
                if floor.is_some() && seq <= last {
                    // A copy of what the replay sent.
                    continue;
                }
                last = last.max(seq);
                if !self.out.send(frame).await {
                    return;
                }
            }
        }
    }

    /// Forgets what a replay of `stream` left to drop (a resync moved its position).
    #[cfg(feature = "redis")]
    pub fn clear_floor(&self, stream: &str) {
        if let Some(g) = lock(&self.gate).as_deref_mut() {
            g.clear_floor(stream);
        }
    }

    /// Takes the position the client asked for `stream`, if it did.
    pub fn take_asked(&self, stream: &str) -> Option<super::gate::Asked> {
        lock(&self.gate).as_deref_mut()?.take_asked(stream)
    }

    /// Answers a call that finished on its first poll; see [`Outbound::answer_now`].
    pub fn answer_now(&self, frame: Bytes, out: &mut Outbox) -> Result<(), Bytes> {
        self.out.answer_now(frame, out)
    }

    /// How many frames wait in the outbound queue.
    pub fn queued(&self) -> usize {
        self.out.queued()
    }

    /// Closes the connection with a WebSocket close code and reason; the first call wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.out.close(code, reason);
    }

    /// The signal the connection's task watches.
    pub fn close_signal(&self) -> Arc<CloseSignal> {
        self.out.close_signal()
    }

    /// Records membership of `group` and runs `index` (the hub's side) under the same lock,
    /// so a concurrent close sees both or neither. `Ok(false)` when already a member; refused
    /// when `max` application groups are held already (the runtime's own are not counted).
    pub(super) fn add_group(
        &self,
        group: &str,
        max: usize,
        index: impl FnOnce(Arc<str>),
    ) -> Result<bool, Refused> {
        let mut groups = lock(&self.groups);
        if groups.ended || groups.set.contains(group) {
            return Ok(false);
        }
        let own = group.starts_with(RESERVED);
        if !own && groups.set.len() - groups.own >= max {
            return Err(Refused::TooMany { max });
        }
        let name: Arc<str> = Arc::from(group);
        groups.set.insert(name.clone());
        groups.own += usize::from(own);
        index(name);
        Ok(true)
    }

    /// Marks the connection as ended, before the hub lets go of it: from here no join adds it
    /// to a group (under the groups' lock, so a join either came first and is undone by the
    /// hub, or comes after and is refused).
    pub fn mark_ended(&self) {
        lock(&self.groups).ended = true;
    }

    /// Drops membership of `group`, running `unindex` under the same lock. `false` when not a
    /// member.
    pub(super) fn remove_group(&self, group: &str, unindex: impl FnOnce()) -> bool {
        let mut groups = lock(&self.groups);
        if !groups.set.remove(group) {
            return false;
        }
        groups.own -= usize::from(group.starts_with(RESERVED));
        if groups.set.is_empty() {
            groups.set = HashSet::new();
        }
        unindex();
        true
    }

    /// The groups this connection is in, in no particular order.
    pub fn groups(&self) -> Vec<Arc<str>> {
        lock(&self.groups).set.iter().cloned().collect()
    }

    /// How many of the application's groups this connection is in (the runtime's own left out).
    pub fn group_count(&self) -> usize {
        let groups = lock(&self.groups);
        groups.set.len() - groups.own
    }

    /// Whether this connection is in `group` (O(1)).
    pub fn in_group(&self, group: &str) -> bool {
        lock(&self.groups).set.contains(group)
    }

    pub fn next_call_seq(&self) -> u64 {
        self.call_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `spawn` while holding the call table, so the task cannot finish (and try to remove
    /// itself) before it has been recorded.
    pub fn spawn_call(
        &self,
        key: Bytes,
        seq: u64,
        stream: bool,
        spawn: impl FnOnce() -> AbortHandle,
    ) {
        let mut calls = lock(&self.calls);
        let handle = spawn();
        calls.entry(key).or_default().push(Running {
            seq,
            handle,
            stream,
        });
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finish_call(&self, key: &Bytes, seq: u64) {
        let mut calls = lock(&self.calls);
        if let Some(entries) = calls.get_mut(key)
            && let Some(at) = entries.iter().position(|r| r.seq == seq)
        {
            entries.swap_remove(at);
            if entries.is_empty() {
                calls.remove(key);
            }
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops every call the client started with this encoded id that still runs.
    pub fn cancel_call(&self, key: &[u8]) {
        let entries = lock(&self.calls).remove(key);
        for running in entries.into_iter().flatten() {
            running.handle.abort();
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts a frame that could not be used; `true` while it should still be logged (the
    /// first few of each connection: a client sending garbage gets a count, not a line each).
    pub fn note_bad_frame(&self) -> bool {
        self.bad_frames.fetch_add(1, Ordering::Relaxed) < BAD_FRAMES_LOGGED
    }

    /// How many unusable frames the connection sent.
    pub fn bad_frames(&self) -> usize {
        self.bad_frames.load(Ordering::Relaxed)
    }

    /// How many calls run in tasks of their own (streams included).
    pub fn calls_running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Stops every call and stream still running and returns their encoded ids (a shutdown
    /// that could not wait for them answers each).
    pub fn abort_running(&self) -> Vec<Bytes> {
        let calls = {
            let mut table = lock(&self.calls);
            let calls = std::mem::take(&mut *table);
            // Under the lock: a call recorded right after counts itself.
            let taken = calls.values().map(Vec::len).sum();
            self.running.fetch_sub(taken, Ordering::Relaxed);
            calls
        };
        let mut ids = Vec::with_capacity(calls.len());
        for (key, entries) in calls {
            for running in entries {
                running.handle.abort();
            }
            ids.push(key);
        }
        ids
    }

    /// Marks the calls running under this encoded id as streams (their function answered with
    /// a stream after its first poll).
    pub fn mark_stream(&self, key: &[u8]) {
        if let Some(entries) = lock(&self.calls).get_mut(key) {
            for r in entries {
                r.stream = true;
            }
        }
    }

    /// Stops every stream still running and returns their encoded ids (a shutdown does not
    /// wait for streams, which may never end by themselves).
    pub fn abort_streams(&self) -> Vec<Bytes> {
        let mut calls = lock(&self.calls);
        let mut ids = Vec::new();
        calls.retain(|key, entries| {
            let before = entries.len();
            entries.retain(|r| {
                if r.stream {
                    r.handle.abort();
                }
                !r.stream
            });
            if entries.len() < before {
                self.running
                    .fetch_sub(before - entries.len(), Ordering::Relaxed);
                ids.push(key.clone());
            }
            !entries.is_empty()
        });
        ids
    }

    /// Stops every call and stream of the connection; called when it closes.
    pub fn abort_all(&self) {
        self.credentials.stop();
        self.abort_running();
    }
}
