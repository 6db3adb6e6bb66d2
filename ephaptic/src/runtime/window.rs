//! The window of idempotent calls' answers (docs/PROTOCOL.md 5.12): per function, caller and
//! key, a slot that runs (with a signal for its waiters) or holds the answer until the window
//! ends; in this server's memory ([`Window`], bounded in count and bytes, the oldest first),
//! and with a backplane in the engine every server shares ([`Shared`]). Data only: running a
//! keyed call is `idempotency.rs`'s.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;
use crate::handler::BoxFuture;
use crate::identity::Identity;
use crate::session::names::Every;
use crate::wire::reply;

/// The window's bounds (`Server::idempotency`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long an answer is kept after its call finished.
    pub window: Duration,
    /// The most answers kept in memory.
    pub max_keys: usize,
    /// The most bytes the kept answers hold in memory.
    pub memory: usize,
    /// The largest answer kept; a larger one is remembered as run, by its size.
    pub max_answer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(300),
            max_keys: 100_000,
            memory: 32 << 20,
            max_answer: 64 << 10,
        }
    }
}

/// What is kept of an answer: the frame after its id (`reply::after_id`), or the size of one
/// too large to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kept {
    Answer(Bytes),
    TooLarge(usize),
}

impl Kept {
    pub fn of(rest: Bytes, max: usize) -> Kept {
        if rest.len() > max {
            Kept::TooLarge(rest.len())
        } else {
            Kept::Answer(rest)
        }
    }

    /// The answer to a call with `id`.
    pub fn frame(&self, id: &[u8]) -> Bytes {
        match self {
            Kept::Answer(rest) => reply::with_id(id, rest),
            Kept::TooLarge(size) => Error::new(
                "ALREADY_DONE",
                format!(
                    "This call ran once already, with this idempotency key; its answer ({size} bytes) is larger than the server keeps to answer a repeat (Server::idempotency)."
                ),
            )
            .to_frame(id, false),
        }
    }

    fn size(&self) -> usize {
        match self {
            Kept::Answer(rest) => rest.len(),
            Kept::TooLarge(_) => 0,
        }
    }

    /// As the shared store keeps it: `D` and the answer, or `L` and the size in digits.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Kept::Answer(rest) => [b"D".as_slice(), rest].concat(),
            Kept::TooLarge(size) => format!("L{size}").into_bytes(),
        }
    }

    /// What [`encode`](Self::encode) wrote; `None` for anything else (a claim's `R`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn decode(stored: &[u8]) -> Option<Kept> {
        match stored.split_first()? {
            (b'D', rest) => Some(Kept::Answer(Bytes::copy_from_slice(rest))),
            (b'L', digits) => std::str::from_utf8(digits)
                .ok()?
                .parse()
                .ok()
                .map(Kept::TooLarge),
            _ => None,
        }
    }
}

/// What the shared store says of a slot a call claims.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Remote {
    /// It was free: the caller runs the call.
    Mine,
    /// Another call with the key runs (on some server).
    Running,
    Done(Kept),
}

/// The store every server on one engine shares (the backplane's).
pub(crate) trait Shared: Send + Sync + std::fmt::Debug {
    /// Claims `slot` for `window` unless it is taken. `Err` when the engine cannot say.
    fn claim(&self, slot: String, window: Duration) -> BoxFuture<Result<Remote, ()>>;
    /// Keeps `answer` in `slot` for `window`, or lets the slot go (`None`: the call ended
    /// without an answer).
    fn settle(&self, slot: String, answer: Option<Kept>, window: Duration) -> BoxFuture<()>;
    /// Keeps a running call's claim on `slot` for `ttl` more.
    fn renew(&self, slot: String, ttl: Duration) -> BoxFuture<()>;
}

/// A slot as the shared store is told it: the function, the caller's key (empty when
/// anonymous) and the idempotency key, separated by NUL bytes (the store names its key from it,
/// of bounded size).
pub(crate) fn shared_slot(function: &str, caller: Option<&Identity>, key: &str) -> String {
    let caller = caller.map(Identity::key).unwrap_or_default();
    format!("{function}\0{caller}\0{key}")
}

/// The answers of idempotent calls: this server's window, and the shared one when there is a
/// backplane.
#[derive(Debug)]
pub(crate) struct Answers {
    pub local: Arc<Window>,
    pub shared: Option<Arc<dyn Shared>>,
    /// The keys of the local digest, drawn once per server.
    keys: std::hash::RandomState,
    /// Keyed calls running on this server (their runs outlive their connections' waits).
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a keyed call as running until it drops.
pub(crate) struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Answers {
    pub fn new(limits: Limits, shared: Option<Arc<dyn Shared>>) -> Self {
        Answers {
            local: Arc::new(Window::new(limits)),
            shared,
            keys: std::hash::RandomState::new(),
            running: Arc::default(),
        }
    }

    /// How many keyed calls run on this server now.
    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one more keyed call as running, until the returned guard drops.
    pub fn started(&self) -> Running {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Running(self.running.clone())
    }

    /// How many answers this server keeps (and claims it holds).
    pub fn kept(&self) -> usize {
        self.local.len()
    }

    /// 128 bits of a keyed hash of the function, the caller and the key: the local slot. Two
    /// calls that collide would share an answer; by chance that is one in 10^20 for a billion
    /// slots, and on purpose it cannot be aimed (the keys are drawn at start and never sent).
    pub fn digest(&self, function: &str, caller: Option<&Identity>, key: &str) -> u128 {
        let half = |tag: u8| {
            let mut h = self.keys.build_hasher();
            h.write_u8(tag);
            h.write(function.as_bytes());
            h.write_u8(0xff);
            match caller {
                Some(id) => h.write(id.key().as_bytes()),
                None => h.write_u8(0),
            }
            h.write_u8(0xff);
            h.write(key.as_bytes());
            h.finish()
        };
        (u128::from(half(0)) << 64) | u128::from(half(1))
    }
}

/// What claiming a slot came to.
pub(crate) enum Claim {
    Mine(Ticket),
    /// Another call runs: wait for it (its signal, or a poll of the shared store), then claim
    /// again.
    Wait(Option<watch::Receiver<()>>),
    Done(Kept),
}

/// The right to run a slot's call, and the duty to settle it: with the answer, or (dropped
/// without one) by letting the slot go so that a repeat runs.
pub(crate) struct Ticket {
    pub window: Arc<Window>,
    pub slot: u128,
    /// Whether it holds a slot of this server's window (not when the shared store decides, nor
    /// when the window is full of running calls: a repeat is then not held off here).
    pub held: bool,
    pub shared: Option<(Arc<dyn Shared>, String)>,
    pub settled: bool,
}

impl Ticket {
    pub fn max_answer(&self) -> usize {
        self.window.limits.max_answer
    }

    pub async fn settle(mut self, kept: Option<Kept>) {
        self.settled = true;
        if self.held {
            self.window.settle(self.slot, kept.clone());
        }
        if let Some((store, slot)) = self.shared.take() {
            let window = self.window.limits.window;
            store.settle(slot, kept, window).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.held {
            self.window.settle(self.slot, None);
        }
        if let Some((store, slot)) = self.shared.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let window = self.window.limits.window;
            tokio::spawn(async move { store.settle(slot, None, window).await });
        }
    }
}

/// This server's answers: each slot running (with a signal for its waiters) or done (until its
/// window ends), bounded in count and bytes; the oldest answers go first.
#[derive(Debug)]
pub(crate) struct Window {
    pub limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<u128, Slot>,
    /// Done slots in the order they were kept, with when they were (to find a stale entry).
    order: VecDeque<(u128, Instant)>,
    bytes: usize,
    /// Slots running.
    running: usize,
}

#[derive(Debug)]
enum Slot {
    Running(watch::Sender<()>),
    Done(Kept, Instant),
}

/// What a slot costs besides its answer: its digest, its place in the order, the map's entry.
const SLOT_COST: usize = 96;

impl Window {
    fn new(limits: Limits) -> Self {
        Window {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn claim(self: &Arc<Self>, slot: u128) -> Claim {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.expire(now, self.limits.window);
        match inner.slots.get(&slot) {
            Some(Slot::Done(kept, _)) => return Claim::Done(kept.clone()),
            Some(Slot::Running(signal)) => return Claim::Wait(Some(signal.subscribe())),
            None => {}
        }
        // Room for one more: the oldest answers go first.
        while inner.slots.len() >= self.limits.max_keys && inner.evict_oldest() {}
        let held = inner.slots.len() < self.limits.max_keys;
        if held {
            inner
                .slots
                .insert(slot, Slot::Running(watch::channel(()).0));
            inner.running += 1;
        } else {
            static LOGGED: Every = Every::new();
            if LOGGED.ready() {
                tracing::warn!(
                    "{} idempotent calls run at once on this server, the most it holds keys of (Server::idempotency); a repeat of one more is not held off",
                    self.limits.max_keys
                );
            }
        }
        Claim::Mine(Ticket {
            window: self.clone(),
            slot,
            held,
            shared: None,
            settled: false,
        })
    }

    /// Ends a running slot: keeps its answer, or lets it go; its waiters wake either way.
    fn settle(&self, slot: u128, kept: Option<Kept>) {
        let mut inner = self.lock();
        let Some(Slot::Running(_)) = inner.slots.get(&slot) else {
            return;
        };
        inner.running -= 1;
        match kept {
            Some(kept) => {
                let now = Instant::now();
                inner.bytes += kept.size() + SLOT_COST;
                inner.slots.insert(slot, Slot::Done(kept, now));
                inner.order.push_back((slot, now));
                while inner.bytes > self.limits.memory && inner.evict_oldest() {}
            }
            None => {
                inner.slots.remove(&slot);
            }
        }
        // The `Running` slot's sender was dropped above: its waiters' `changed()` returned.
    }
}

impl Inner {
    /// Lets go of the answers whose window ended.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(_, at)) = self.order.front() {
            if now.duration_since(at) < window {
                return;
            }
            self.evict_oldest();
        }
    }

    /// Lets go of the oldest kept answer; `false` when none is kept.
    fn evict_oldest(&mut self) -> bool {
        while let Some((slot, at)) = self.order.pop_front() {
            if let Some(Slot::Done(kept, kept_at)) = self.slots.get(&slot)
                && *kept_at == at
            {
                self.bytes -= kept.size() + SLOT_COST;
                self.slots.remove(&slot);
                if self.slots.capacity() > 64 && self.slots.len() < self.slots.capacity() / 4 {
                    self.slots.shrink_to_fit();
                }
                return true;
            }
        }
        self.order.shrink_to_fit();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max_keys: usize, memory: usize) -> Arc<Window> {
        Arc::new(Window::new(Limits {
            window: Duration::from_secs(60),
            max_keys,
            memory,
            max_answer: 1024,
        }))
    }

    fn answer(n: u8) -> Option<Kept> {
        Some(Kept::Answer(Bytes::from(vec![n; 10])))
    }

    #[tokio::test]
    async fn a_slot_runs_once_and_its_repeats_get_the_answer() {
        let w = window(10, 1 << 20);
        let Claim::Mine(ticket) = w.claim(1) else {
            panic!("the first claim runs")
        };
        let Claim::Wait(Some(mut signal)) = w.claim(1) else {
            panic!("a repeat while it runs waits")
        };
        ticket.settle(answer(7)).await;
        signal.changed().await.unwrap_err();
        assert!(matches!(w.claim(1), Claim::Done(k) if k == answer(7).unwrap()));
        assert!(matches!(w.claim(2), Claim::Mine(_)), "another key runs");
    }

    #[tokio::test]
    async fn a_call_that_ends_without_an_answer_lets_a_repeat_run() {
        let w = window(10, 1 << 20);
        let Claim::Mine(ticket) = w.claim(1) else {
            panic!()
        };
        drop(ticket);
        assert!(matches!(w.claim(1), Claim::Mine(_)));
    }

    #[tokio::test]
    async fn the_window_is_bounded_in_count_and_bytes_oldest_first() {
        let w = window(3, 1 << 20);
        for slot in 0..5 {
            let Claim::Mine(t) = w.claim(slot) else {
                panic!()
            };
            t.settle(answer(slot as u8)).await;
        }
        assert_eq!(w.len(), 3);
        assert!(matches!(w.claim(0), Claim::Mine(_)), "the oldest went");
        assert!(matches!(w.claim(4), Claim::Done(_)), "the newest stays");

        let w = window(1000, 3 * (10 + SLOT_COST));
        for slot in 0..10 {
            let Claim::Mine(t) = w.claim(slot) else {
                panic!()
            };
            t.settle(answer(1)).await;
        }
        assert_eq!(w.len(), 3, "held to the memory bound");
    }

    #[test]
    fn kept_answers_round_trip_through_the_shared_form() {
        for kept in [
            Kept::Answer(Bytes::from_static(b"\xa6result\x05")),
            Kept::TooLarge(70_000),
        ] {
            assert_eq!(Kept::decode(&kept.encode()), Some(kept));
        }
        assert_eq!(Kept::decode(b"R"), None, "a claim");
    }
}
