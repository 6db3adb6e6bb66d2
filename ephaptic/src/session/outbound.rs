//! Everything that leaves for one client: its bounded queue, the outbox of answers written
//! ahead of it, the close signal, and the slow-client policy with its counters. The three ways
//! a frame is sent are the three verbs of [`Outbound`]:
//!
//! | verb | for | when the queue is full |
//! |---|---|---|
//! | [`send`](Outbound::send)`.await` | replies, stream chunks, events to the caller | waits for room (slows only that call) |
//! | [`push_event`](Outbound::push_event) | events to many connections | applies the [`SlowClient`] policy |
//! | [`answer_now`](Outbound::answer_now) | a reply to a call that finished on its first poll | hands the frame back |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use super::budget::MemoryBudget;
use super::queue::{self, TrySendError};

/// WebSocket close code 1008, "policy violation": used for slow clients.
pub(crate) const CLOSE_POLICY: u16 = 1008;

/// What happens to a client whose outbound queue is full when an event is emitted to it
/// (it reads more slowly than events arrive). Replies and stream chunks never trigger this:
/// they wait for room, which slows only the call that produces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowClient {
    /// Close the connection with close code 1008 and the reason "outbound queue full". The
    /// client reconnects and refetches, so it never silently misses an event. The default.
    #[default]
    Disconnect,
    /// Drop the event for that client and keep the connection: for lossy data such as cursor
    /// positions. Counted in [`Metrics::events_dropped`](crate::Metrics).
    DropEvents,
}

/// How every connection of one server treats its outbound queue: built once by the server and
/// shared by its connections.
#[derive(Debug)]
pub(crate) struct Policy {
    /// Frames that may wait for one client.
    pub capacity: usize,
    /// Bytes of events that may wait for one client before the slow-client policy applies.
    pub byte_budget: usize,
    pub slow_client: SlowClient,
    pub counters: Counters,
    /// The process-wide budget for buffered bytes, shared with the transport's reads.
    pub memory: Arc<MemoryBudget>,
    /// The largest frame sent (`Server::max_sent_frame`), for the caller's own events.
    pub max_sent_frame: usize,
}

impl Policy {
    pub fn new(capacity: usize, slow_client: SlowClient) -> Self {
        Policy {
            capacity: capacity.max(1),
            byte_budget: usize::MAX,
            slow_client,
            counters: Counters::default(),
            memory: Arc::new(MemoryBudget::new(usize::MAX)),
            max_sent_frame: usize::MAX,
        }
    }
}

/// What the slow-client policy did, for [`Metrics`](crate::Metrics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub slow_client_closes: AtomicU64,
    pub events_dropped: AtomicU64,
}

/// Frames answered by the connection's own task while it handles what it read; written
/// before the next read, ahead of the queue.
pub(crate) type Outbox = Vec<Bytes>;

/// The sending side of one connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    tx: queue::Sender,
    policy: Arc<Policy>,
    /// Set once when the server decides to close the connection; the connection's task
    /// watches it, so a close gets through even when the queue is full.
    close: Arc<CloseSignal>,
}

/// The receiving side, owned by the connection's task.
pub(crate) use queue::Receiver;

/// A connection's outbound queue under `policy`: the sending side, and the receiving side for
/// the connection's task.
pub(crate) fn channel(policy: Arc<Policy>) -> (Outbound, Receiver) {
    let (tx, rx) = queue::channel(policy.capacity, policy.memory.clone());
    let out = Outbound {
        tx,
        policy,
        close: Arc::new(CloseSignal::default()),
    };
    (out, rx)
}

impl Outbound {
    /// Queues a frame, waiting for room. `false` when the connection is gone.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.tx.send_within(frame, self.policy.byte_budget).await
    }

    /// Queues an answer without waiting (counted against the memory budget, never refused for
    /// it); `false` when the queue is full or gone.
    pub fn try_answer(&self, frame: Bytes) -> bool {
        self.tx.try_send(frame).is_ok()
    }

    /// Queues an event without waiting; on a full queue, applies the slow-client policy.
    /// `true` when the frame was queued. `connection` names the connection in the log.
    pub fn push_event(&self, frame: Bytes, connection: u64) -> bool {
        let weight = super::queue::weigh(frame.len(), 1);
        self.push_shared(frame, connection, weight)
    }

    /// [`push_event`](Self::push_event) of a frame offered to many connections at once:
    /// the memory budget counts this queue's share of it, `weight`.
    pub fn push_shared(&self, frame: Bytes, connection: u64, weight: u32) -> bool {
        match self
            .tx
            .try_send_shared(frame, self.policy.byte_budget, weight)
        {
            Ok(()) => true,
            Err(TrySendError::Closed) => false,
            Err(e) => {
                let counters = &self.policy.counters;
                let memory = matches!(e, TrySendError::OverMemory(_));
                match self.policy.slow_client {
                    SlowClient::Disconnect => {
                        if !self.close.is_set() {
                            if memory {
                                tracing::warn!(
                                    connection,
                                    memory_budget = self.policy.memory.limit(),
                                    "closing a slow client: the server's memory budget for buffered bytes is spent \
                                     and this client holds more than its share (Server::memory_budget)"
                                );
                            } else {
                                tracing::warn!(
                                    connection,
                                    capacity = self.policy.capacity,
                                    byte_budget = self.policy.byte_budget,
                                    "closing a slow client: its outbound queue is full"
                                );
                            }
                            counters.slow_client_closes.fetch_add(1, Ordering::Relaxed);
                        }
                        self.close(
                            CLOSE_POLICY,
                            "outbound queue full: the client reads too slowly",
                        );
                    }
                    SlowClient::DropEvents => {
                        counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
        }
    }

    /// Answers a call that finished on its first poll: into `out` (written as soon as the
    /// frames of this read are handled, skipping the queue) when nothing of this connection is
    /// queued, so nothing the handler queued itself (an event it emitted to its caller) can be
    /// overtaken; otherwise behind it in the queue. A full queue gives the frame back.
    pub fn answer_now(&self, frame: Bytes, out: &mut Outbox) -> Result<(), Bytes> {
        if self.tx.len() == 0 {
            out.push(frame);
            return Ok(());
        }
        match self.tx.try_send_bounded(frame, self.policy.byte_budget) {
            // A closed connection takes (and drops) it.
            Ok(()) | Err(TrySendError::Closed) => Ok(()),
            Err(TrySendError::Full(frame) | TrySendError::OverMemory(frame)) => Err(frame),
        }
    }

    /// The largest frame this connection is sent.
    pub fn max_sent_frame(&self) -> usize {
        self.policy.max_sent_frame
    }

    /// How many frames wait in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Closes the connection with a WebSocket close code and reason; the first call wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.close.set(code, reason);
    }

    /// The signal the connection's task watches.
    pub fn close_signal(&self) -> Arc<CloseSignal> {
        self.close.clone()
    }
}

/// A one-shot "close this connection" with its code and reason, shared with the connection's
/// task (which must not hold the connection itself, or its queue would never close). One task
/// waits on it, so an `AtomicWaker` does: re-polling it is lock-free, which matters because
/// the connection's task polls it before everything else it does.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    waker: AtomicWaker,
    reason: OnceLock<(u16, String)>,
}

impl CloseSignal {
    pub fn set(&self, code: u16, reason: &str) {
        if self.reason.set((code, reason.to_owned())).is_ok() {
            self.waker.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.reason.get().is_some()
    }

    /// Resolves once the signal is set; yields the code and reason. One waiter at a time.
    pub async fn wait(&self) -> (u16, String) {
        std::future::poll_fn(|cx| {
            if let Some(reason) = self.reason.get() {
                return Poll::Ready(reason.clone());
            }
            self.waker.register(cx.waker());
            match self.reason.get() {
                Some(reason) => Poll::Ready(reason.clone()),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    fn outbound(capacity: usize, slow: SlowClient) -> (Outbound, Receiver, Arc<Policy>) {
        let policy = Arc::new(Policy::new(capacity, slow));
        let (out, rx) = channel(policy.clone());
        (out, rx, policy)
    }

    #[tokio::test]
    async fn a_full_queue_closes_a_slow_client_once_with_1008() {
        let (out, _rx, policy) = outbound(2, SlowClient::Disconnect);
        assert!(out.push_event(frame(1), 7));
        assert!(out.push_event(frame(2), 7));
        assert!(!out.push_event(frame(3), 7), "the third does not fit");
        assert!(!out.push_event(frame(4), 7));
        let (code, reason) = out.close_signal().wait().await;
        assert_eq!(code, CLOSE_POLICY);
        assert!(reason.contains("outbound queue full"), "{reason}");
        let closes = policy.counters.slow_client_closes.load(Ordering::Relaxed);
        assert_eq!(closes, 1, "counted once per connection, not per event");
        assert_eq!(policy.counters.events_dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn drop_events_keeps_the_connection_and_counts_each_drop() {
        let (out, mut rx, policy) = outbound(1, SlowClient::DropEvents);
        assert!(out.push_event(frame(1), 1));
        assert!(!out.push_event(frame(2), 1));
        assert!(!out.push_event(frame(3), 1));
        assert!(!out.close_signal().is_set());
        assert_eq!(policy.counters.events_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.recv().await, Some(frame(1)));
        assert!(
            out.push_event(frame(4), 1),
            "room again once the client read"
        );
    }

    #[test]
    fn an_answer_skips_an_empty_queue_but_never_overtakes_a_queued_frame() {
        let (out, mut rx, _) = outbound(2, SlowClient::Disconnect);
        let mut outbox = Outbox::new();
        out.answer_now(frame(1), &mut outbox).unwrap();
        assert_eq!(
            outbox,
            vec![frame(1)],
            "nothing queued: straight to the outbox"
        );
        assert!(out.push_event(frame(2), 1));
        out.answer_now(frame(3), &mut outbox).unwrap();
        assert_eq!(outbox.len(), 1, "behind the queued event, not ahead of it");
        assert_eq!(rx.try_recv(), Some(frame(2)));
        assert_eq!(rx.try_recv(), Some(frame(3)));
        assert!(out.push_event(frame(4), 1));
        assert!(out.push_event(frame(5), 1));
        assert_eq!(out.answer_now(frame(6), &mut outbox), Err(frame(6)));
    }

    #[tokio::test]
    async fn events_beyond_the_byte_budget_apply_the_policy_though_frames_are_few() {
        let mut policy = Policy::new(1024, SlowClient::Disconnect);
        policy.byte_budget = 1000;
        let (out, mut rx) = channel(Arc::new(policy));
        let event = Bytes::from(vec![0u8; 400]);
        assert!(out.push_event(event.clone(), 1));
        assert!(out.push_event(event.clone(), 1));
        assert!(!out.push_event(event.clone(), 1), "1,200 bytes would wait");
        assert!(out.close_signal().is_set());
        // A frame larger than the budget still goes to an empty queue.
        let (out, _rx2) = channel(Arc::new(Policy {
            byte_budget: 10,
            ..Policy::new(8, SlowClient::DropEvents)
        }));
        assert!(out.push_event(event.clone(), 2));
        assert!(!out.push_event(Bytes::from_static(b"x"), 2));
        // Taking frames gives their bytes back.
        assert_eq!(rx.try_recv().map(|f| f.len()), Some(400));
    }

    #[test]
    fn the_first_close_wins() {
        let (out, _rx, _) = outbound(1, SlowClient::Disconnect);
        out.close(1001, "going away");
        out.close(1008, "later");
        let signal = out.close_signal();
        assert!(signal.is_set());
        let got = futures_util::FutureExt::now_or_never(signal.wait()).unwrap();
        assert_eq!(got, (1001, "going away".to_string()));
    }
}
