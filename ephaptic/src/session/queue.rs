//! A connection's outbound queue: bounded, one consumer (the connection's task), many
//! producers (call tasks, emitters). Small on purpose: an idle connection's queue is one
//! allocation of about a hundred bytes until frames pass through it, where tokio's mpsc
//! channel costs a 32-slot block (about 1.5 KiB) per connection from the start. That difference
//! is most of what an idle connection costs beyond its read buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::budget::{MemoryBudget, chargeable};

#[derive(Debug)]
struct Frames {
    /// Each waiting frame with its weight: its share of the memory it holds (see `weigh`).
    frames: VecDeque<(Bytes, u32)>,
    /// The bytes of the frames that wait (what the connection's own byte budget counts).
    bytes: usize,
    /// Their weights together: what the process-wide memory budget counts.
    weight: usize,
    /// How much of that is charged against the process-wide memory budget (what lies beyond
    /// the connection's free allowance), and whether any ever was.
    charged: usize,
    ever_charged: bool,
    /// The consumer is gone: senders fail instead of waiting.
    receiver_gone: bool,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<Frames>,
    capacity: usize,
    memory: Arc<MemoryBudget>,
    /// How many frames wait, written under the lock and read without it: the consumer looks
    /// at it every time it would go to sleep, and a reply checks it to keep its place behind
    /// what its handler queued.
    len: AtomicUsize,
    /// The sender is gone (the connection dropped): the consumer drains what is left, then
    /// sees the end.
    sender_gone: AtomicBool,
    /// Wakes the one consumer when a frame arrives (or the sender leaves).
    readable: AtomicWaker,
    /// Wakes producers waiting for room (or the consumer leaving).
    writable: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Frames> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// The queue is at capacity; the frame is handed back.
    Full(Bytes),
    /// The process-wide memory budget has no room for it; the frame is handed back.
    OverMemory(Bytes),
    /// The connection is gone.
    Closed,
}

/// The producing side; one per connection (clones of the connection share it).
#[derive(Debug)]
pub(crate) struct Sender(Arc<Inner>);

/// The consuming side, owned by the connection's task.
#[derive(Debug)]
pub(crate) struct Receiver(Arc<Inner>);

/// A frame's weight in one of `holders` queues: its share of the bytes it holds (at least one
/// byte). Exact while every holder still has it; a frame some holders already wrote counts
/// less than it holds, which each connection's own byte budget bounds.
pub(crate) fn weigh(len: usize, holders: usize) -> u32 {
    u32::try_from(len.div_ceil(holders.max(1)).max(1)).unwrap_or(u32::MAX)
}

pub(crate) fn channel(capacity: usize, memory: Arc<MemoryBudget>) -> (Sender, Receiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(Frames {
            frames: VecDeque::new(),
            bytes: 0,
            weight: 0,
            charged: 0,
            ever_charged: false,
            receiver_gone: false,
        }),
        capacity: capacity.max(1),
        memory,
        len: AtomicUsize::new(0),
        sender_gone: AtomicBool::new(false),
        readable: AtomicWaker::new(),
        writable: Notify::new(),
    });
    (Sender(inner.clone()), Receiver(inner))
}

impl Sender {
    /// Queues a frame if the queue has room for one more. Its bytes are counted against the
    /// process-wide memory budget but never refused for it: this is for replies, which their
    /// calls wait to send anyway.
    pub fn try_send(&self, frame: Bytes) -> Result<(), TrySendError> {
        self.push(frame, usize::MAX, false)
    }

    /// [`try_send`](Self::try_send), also full when the frames waiting would exceed `budget`
    /// bytes with this one, or when the process-wide memory budget has no room for the bytes
    /// beyond the connection's free allowance (a frame still fits an empty queue).
    #[cfg(test)]
    pub fn try_send_within(&self, frame: Bytes, budget: usize) -> Result<(), TrySendError> {
        self.push_weighed(frame, budget, true, None)
    }

    /// [`try_send_within`](Self::try_send_within) for a frame queued for many connections at
    /// once (an event to many), `weight` being this queue's share of it ([`weigh`], computed
    /// once per frame): the memory budget counts the shares, so a frame shared by many queues
    /// counts about once, as it is held once.
    pub fn try_send_shared(
        &self,
        frame: Bytes,
        budget: usize,
        weight: u32,
    ) -> Result<(), TrySendError> {
        self.push_weighed(frame, budget, true, Some(weight))
    }

    fn push(&self, frame: Bytes, budget: usize, bounded: bool) -> Result<(), TrySendError> {
        self.push_weighed(frame, budget, bounded, None)
    }

    fn push_weighed(
        &self,
        frame: Bytes,
        budget: usize,
        bounded: bool,
        weight: Option<u32>,
    ) -> Result<(), TrySendError> {
        let mut state = self.0.lock();
        if state.receiver_gone {
            return Err(TrySendError::Closed);
        }
        let held = state.bytes + frame.len();
        let over_budget = !state.frames.is_empty() && held > budget;
        if state.frames.len() >= self.0.capacity || over_budget {
            return Err(TrySendError::Full(frame));
        }
        let weight = weight.unwrap_or_else(|| weigh(frame.len(), 1));
        let weighed = state.weight + weight as usize;
        let charge = chargeable(weighed).saturating_sub(state.charged);
        if charge > 0 {
            if bounded && !state.frames.is_empty() {
                if !self.0.memory.try_charge(charge) {
                    return Err(TrySendError::OverMemory(frame));
                }
            } else {
                self.0.memory.force_charge(charge);
            }
            state.charged += charge;
            state.ever_charged = true;
        }
        state.bytes = held;
        state.weight = weighed;
        state.frames.push_back((frame, weight));
        self.0.len.store(state.frames.len(), Ordering::Release);
        drop(state);
        self.0.readable.wake();
        Ok(())
    }

    /// Queues a frame, waiting for room. `false` when the consumer is gone.
    #[cfg(test)]
    pub async fn send(&self, frame: Bytes) -> bool {
        self.send_within(frame, usize::MAX).await
    }

    /// Queues a frame, waiting for room: for a frame, and (unless the queue is empty) for its
    /// bytes within `budget`. Counted against the memory budget, never refused for it. This is
    /// the backpressure a call's replies and a stream's chunks get from a client that reads
    /// slowly. `false` when the consumer is gone.
    pub async fn send_within(&self, mut frame: Bytes, budget: usize) -> bool {
        loop {
            match self.push(frame, budget, false) {
                Ok(()) => return true,
                Err(TrySendError::Closed) => return false,
                Err(TrySendError::Full(back) | TrySendError::OverMemory(back)) => {
                    frame = back;
                    // A pop between the check and this wait leaves a permit: no lost wake-up.
                    self.0.writable.notified().await;
                }
            }
        }
    }

    /// [`try_send`](Self::try_send) within `budget` bytes (unless the queue is empty).
    pub fn try_send_bounded(&self, frame: Bytes, budget: usize) -> Result<(), TrySendError> {
        self.push(frame, budget, false)
    }

    /// How many frames wait.
    pub fn len(&self) -> usize {
        self.0.len.load(Ordering::Acquire)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.sender_gone.store(true, Ordering::Release);
        self.0.readable.wake();
    }
}

impl Receiver {
    /// The next frame; `None` once the sender is gone and the queue is empty. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| match self.poll_ready(cx) {
            Poll::Ready(true) => match self.try_recv() {
                Some(frame) => Poll::Ready(Some(frame)),
                // Only this consumer takes frames, so a ready queue has one; but be safe.
                None => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
            Poll::Ready(false) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
    }

    /// Whether a frame waits (`true`), or never will because the sender is gone and the queue
    /// is empty (`false`); otherwise registers to be woken when either happens. Lock-free.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.0.len.load(Ordering::Acquire) > 0 {
            return Poll::Ready(true);
        }
        self.0.readable.register(cx.waker());
        // Checked again after registering: a frame queued in between has woken nobody.
        if self.0.len.load(Ordering::Acquire) > 0 {
            return Poll::Ready(true);
        }
        if self.0.sender_gone.load(Ordering::Acquire) {
            // The sender's last frames were counted before it left.
            return Poll::Ready(self.0.len.load(Ordering::Acquire) > 0);
        }
        Poll::Pending
    }

    /// Whether a frame waits, without registering anything.
    pub fn has_frames(&self) -> bool {
        self.0.len.load(Ordering::Acquire) > 0
    }

    pub fn try_recv(&mut self) -> Option<Bytes> {
        if self.0.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut state = self.0.lock();
        let popped = state.frames.pop_front();
        self.0.len.store(state.frames.len(), Ordering::Release);
        let frame = popped.map(|(frame, weight)| {
            state.bytes -= frame.len();
            state.weight -= weight as usize;
            frame
        });
        if frame.is_some() {
            let keep = chargeable(state.weight);
            if state.charged > keep {
                self.0.memory.release(state.charged - keep);
                state.charged = keep;
            }
            // An empty queue keeps no buffer: an idle connection costs nothing here.
            if state.frames.is_empty() && state.frames.capacity() > 16 {
                state.frames = VecDeque::new();
            }
            drop(state);
            self.0.writable.notify_one();
        }
        frame
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        state.frames.clear();
        state.bytes = 0;
        state.weight = 0;
        self.0.memory.release(std::mem::take(&mut state.charged));
        let held_much = state.ever_charged;
        self.0.len.store(0, Ordering::Release);
        drop(state);
        if held_much {
            self.0.memory.holder_closed();
        }
        self.0.writable.notify_waiters();
        // A sender that checked just before may wait on a stored permit: give it one too.
        self.0.writable.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_bound_holds() {
        let (tx, mut rx) = channel(2, Arc::new(MemoryBudget::unlimited()));
        tx.try_send(frame(1)).unwrap();
        tx.try_send(frame(2)).unwrap();
        assert!(matches!(tx.try_send(frame(3)), Err(TrySendError::Full(_))));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.recv().await.unwrap(), frame(1));
        tx.try_send(frame(3)).unwrap();
        assert_eq!(rx.recv().await.unwrap(), frame(2));
        assert_eq!(rx.recv().await.unwrap(), frame(3));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_when_the_consumer_takes_a_frame() {
        let (tx, mut rx) = channel(1, Arc::new(MemoryBudget::unlimited()));
        let tx = Arc::new(tx);
        tx.try_send(frame(1)).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the queue is full, so the sender waits"
        );
        assert_eq!(rx.recv().await.unwrap(), frame(1));
        assert!(waiting.await.unwrap());
        assert_eq!(rx.recv().await.unwrap(), frame(2));
    }

    #[tokio::test]
    async fn the_end_is_seen_after_the_last_frame_and_senders_fail_without_a_consumer() {
        let (tx, mut rx) = channel(4, Arc::new(MemoryBudget::unlimited()));
        tx.try_send(frame(1)).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap(), frame(1));
        assert!(rx.recv().await.is_none());

        let (tx, rx) = channel(1, Arc::new(MemoryBudget::unlimited()));
        tx.try_send(frame(1)).unwrap();
        let tx = Arc::new(tx);
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame(2)).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(
            !waiting.await.unwrap(),
            "a sender waiting on a gone consumer gives up"
        );
        assert!(matches!(tx.try_send(frame(3)), Err(TrySendError::Closed)));
    }

    #[test]
    fn bytes_beyond_the_free_allowance_are_charged_and_refused_when_the_budget_is_spent() {
        use super::super::budget::FREE_PER_CONNECTION;
        let memory = Arc::new(MemoryBudget::new(100_000));
        let (a, mut rx_a) = channel(64, memory.clone());
        let (b, rx_b) = channel(64, memory.clone());
        let big = Bytes::from(vec![0u8; FREE_PER_CONNECTION]);
        // Within the allowance: nothing charged.
        a.try_send_within(big.clone(), usize::MAX).unwrap();
        assert_eq!(memory.used(), 0);
        // Beyond it: charged.
        a.try_send_within(big.clone(), usize::MAX).unwrap();
        assert_eq!(memory.used(), FREE_PER_CONNECTION);
        // Another connection's queue cannot take more than what is left of the budget...
        b.try_send_within(big.clone(), usize::MAX).unwrap();
        assert!(matches!(
            b.try_send_within(big.clone(), usize::MAX),
            Err(TrySendError::OverMemory(_))
        ));
        // ...but a reply is counted, not refused.
        b.try_send(big.clone()).unwrap();
        assert_eq!(memory.used(), 2 * FREE_PER_CONNECTION);
        // Taking frames gives the charge back; a closed queue gives back the rest.
        rx_a.try_recv().unwrap();
        assert_eq!(memory.used(), FREE_PER_CONNECTION);
        drop(rx_b);
        rx_a.try_recv().unwrap();
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn a_frame_shared_by_many_queues_counts_about_once() {
        use super::super::budget::FREE_PER_CONNECTION;
        let memory = Arc::new(MemoryBudget::new(usize::MAX));
        let queues: Vec<_> = (0..80).map(|_| channel(64, memory.clone())).collect();
        // 22 broadcasts of 512 KiB to 80 queues that are not read: 880 MiB counted once per
        // queue, 11 MiB held.
        for _ in 0..22 {
            let frame = Bytes::from(vec![0u8; 512 << 10]);
            for (tx, _) in &queues {
                tx.try_send_shared(frame.clone(), usize::MAX, weigh(frame.len(), queues.len()))
                    .unwrap();
            }
        }
        let held = 22 * (512 << 10);
        assert!(
            memory.used() <= held,
            "{} counted for {held} held",
            memory.used()
        );
        // Each queue's share beyond its free allowance.
        let share = (held / 80).saturating_sub(FREE_PER_CONNECTION);
        assert!(memory.used() >= 80 * share, "{}", memory.used());
        // Taken, they give it back; closed, they give back the rest.
        let before = memory.used();
        let mut queues = queues;
        while queues[0].1.try_recv().is_some() {}
        assert!(memory.used() < before);
        drop(queues);
        assert_eq!(memory.used(), 0);
    }
}
