//! The link: what one server's backplane parts share, and their start.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::channel;
use super::driver::{AppendContext, Driver, Fault, Job, Reports};
use super::health::Health;
use super::history;
use super::leaves::{Leaves, PENDING_LEAVES};
use super::publisher::{LOST_EVERY, LOST_QUIET, Publisher};
use super::receiver::Receiving;
use super::resync::Resync;
use super::settings::{READY_WAIT, Settings, a_minute_since, lock};
use super::subscriptions::{CHANNELS_PER_COMMAND, Change, Subscriptions};
use crate::session::{Hub, Stream};

/// The resync task's future (see [`Lifecycle::resync_task`]).
pub(super) type ResyncTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One server's link to the engine, shared by its delivery and its background tasks: each part
/// owns its state (in its file) and the link coordinates them.
pub(super) struct Link {
    /// Itself, weakly: for the driver's inbox and the tasks, which must not keep it alive.
    pub me: Weak<Link>,
    pub node: String,
    pub settings: Settings,
    /// The engine: Redis, or another implementation of the seam.
    pub driver: Arc<dyn Driver>,
    pub counters: Counters,
    pub health: Health,
    pub subs: Subscriptions,
    pub publisher: Publisher,
    pub inbox: Receiving,
    pub resync: Resync,
    pub leaves: Mutex<Leaves>,
    pub lifecycle: Lifecycle,
}

/// The link's tasks: what they take when they start (once), and the end of the server.
pub(super) struct Lifecycle {
    /// The resync task (`resyncing.rs`, above this file: handed down, not imported).
    pub resync_task: fn(Arc<Link>, Arc<Hub>, Duration) -> ResyncTask,
    /// The tasks' ends of the queues, until they start (once).
    pub tasks: Mutex<Option<Tasks>>,
    pub started: AtomicBool,
    /// Set once when the server is gone; a watch, so a task that looks after it was set still
    /// sees it (a `Notify` would wake only the tasks waiting at that moment).
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub outages: AtomicU64,
    /// Times the engine's master moved (Sentinel) and this server followed it.
    pub failovers: AtomicU64,
    /// `resync`s sent to this server's connections.
    pub resyncs: AtomicU64,
    /// The server's metrics, when they are on: publish round trips and resyncs go there.
    pub telemetry: std::sync::OnceLock<Arc<crate::runtime::telemetry::Telemetry>>,
}

/// What the background tasks take when they start.
pub(super) struct Tasks {
    pub publish_rx: mpsc::Receiver<Job>,
    pub push_rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    pub changes_rx: mpsc::UnboundedReceiver<Change>,
    /// Weakly: the tasks end with their server.
    pub hub: Weak<Hub>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.node)
            .field("settings", &self.settings)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(super) fn is_down(&self) -> bool {
        lock(&self.health.outage).is_some()
    }

    /// Notes that a command failed: an outage when Redis cannot be reached (logged once per
    /// outage), a warning otherwise.
    pub(super) fn failed(&self, e: &Fault) {
        if e.is_partial() {
            // One shard of a cluster: the others work on.
            self.failed_in_part(e);
        } else if e.is_outage() {
            self.down(e);
        } else {
            static LAST: AtomicU64 = AtomicU64::new(0);
            // At most one line a minute, whatever the rate of failures.
            if a_minute_since(&LAST) {
                tracing::warn!(node = %self.node, "Redis refused a command: {e}");
            }
        }
    }

    /// Notes that an operation failed on one part of the engine (a Redis Cluster shard) while
    /// the others may work: not an outage of the whole engine. Logged at most once a minute;
    /// a batch's jobs that failed are lost (and their streams' listeners told) by the caller.
    pub(super) fn failed_in_part(&self, e: &Fault) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        if a_minute_since(&LAST) {
            tracing::warn!(
                node = %self.node,
                "a shard of the Redis Cluster failed ({e}); the other shards work on. Events of \
                 the streams on it are dropped and counted, and their clients told to refetch; \
                 check the cluster's nodes (CLUSTER INFO)"
            );
        }
    }

    /// Notes that Redis cannot be reached; logged once per outage.
    pub(super) fn down(&self, why: &Fault) {
        self.health.connected.store(false, Relaxed);
        let mut outage = lock(&self.health.outage);
        if outage.is_none() {
            *outage = Some((Instant::now(), self.counters.dropped.load(Relaxed)));
            let first = self.counters.outages.fetch_add(1, Relaxed) == 0;
            let url = super::settings::masked(&self.settings.url);
            tracing::warn!(
                node = %self.node,
                "Redis at {url} cannot be reached ({why}). Calls and this server's own events go on; \
                 events for other servers are dropped and counted (ephaptic::metrics()) until it is \
                 back. Reconnecting by itself; check that Redis runs and that the URL is right"
            );
            if first && !tracing::dispatcher::has_been_set() {
                // No logger installed (the README's `main`): the first outage still says so.
                eprintln!(
                    "ephaptic: Redis at {url} cannot be reached ({why}); serving this server's own \
                     connections meanwhile (events for other servers are dropped and counted) and \
                     reconnecting by itself"
                );
            }
        }
        drop(outage);
        lock(&self.subs.confirmed).clear();
        self.subs.confirmed_changed.notify_waiters();
        // Try again soon, not at the next probe.
        self.subs.wake.notify_one();
    }

    /// Notes that Redis answered; logs the end of an outage.
    pub(super) fn up(&self) {
        self.health.connected.store(true, Relaxed);
        let mut outage = lock(&self.health.outage);
        if let Some((since, dropped_before)) = outage.take() {
            let dropped = self.counters.dropped.load(Relaxed) - dropped_before;
            tracing::info!(
                node = %self.node,
                "Redis is back after {:.1} s; {dropped} event(s) for other servers were dropped meanwhile",
                since.elapsed().as_secs_f64()
            );
            self.gap();
        }
    }

    /// Ends a tenure in Redis (`HDEL` of its field), in the background: a leave is not awaited
    /// by the handler that makes it. Until Redis confirms it, it is pending.
    pub(super) fn leave(&self, meta: String, field: String) {
        {
            let mut leaves = lock(&self.leaves);
            if leaves.pending.len() >= PENDING_LEAVES {
                if !leaves.overflow {
                    tracing::warn!(
                        node = %self.node,
                        "more group leaves are waiting for Redis than are kept: from now on this server replays no group history (clients refetch)"
                    );
                }
                leaves.overflow = true;
            } else {
                leaves.pending.insert((meta.clone(), field.clone()));
            }
        }
        let Some(link) = self.me.upgrade() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move { link.send_leaves(vec![(meta, field)]).await });
    }

    /// Starts, at offset 0 and unless they have one, the tenures of `members` (identity keys)
    /// in the group stream `stream`, whose epoch just began (in the background).
    pub(super) fn seed_tenures(&self, stream: &str, members: Vec<String>) {
        if members.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Some(link) = self.me.upgrade() else {
            return;
        };
        let (meta, _) = history::keys(stream);
        tokio::spawn(async move {
            let fields: Vec<String> = members
                .into_iter()
                .map(|key| format!("t:{key}"))
                .filter(|field| !link.leaving(&meta, field))
                .collect();
            if let Err(e) = link.driver.seed(&meta, &fields).await {
                link.failed(&e);
            }
        });
    }

    /// Whether a leave of this tenure may not have reached Redis yet.
    pub(super) fn leaving(&self, meta: &str, field: &str) -> bool {
        let leaves = lock(&self.leaves);
        leaves.overflow
            || (!leaves.pending.is_empty()
                && leaves
                    .pending
                    .contains(&(meta.to_owned(), field.to_owned())))
    }

    /// Sends leaves to Redis; those it takes are no longer pending.
    pub(super) async fn send_leaves(&self, batch: Vec<(String, String)>) {
        if batch.is_empty() || self.is_down() {
            return;
        }
        match self.driver.forget(&batch).await {
            Ok(()) => {
                let mut leaves = lock(&self.leaves);
                for key in &batch {
                    leaves.pending.remove(key);
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Sends again the leaves Redis did not take (at each probe tick).
    pub(super) async fn retry_leaves(&self) {
        let batch: Vec<(String, String)> = lock(&self.leaves)
            .pending
            .iter()
            .take(1024)
            .cloned()
            .collect();
        self.send_leaves(batch).await;
    }

    /// Publishes `frame` on `channel` (our body), without waiting.
    pub(super) fn publish(&self, channel: &str, frame: &[u8]) -> bool {
        self.enqueue(channel.to_owned(), channel::wrap(&self.node, frame))
    }

    /// Queues a publish; while Redis is known to be away, before the tasks run, or when the
    /// queue is full (Redis slow), it is dropped and counted instead: nothing is kept to be
    /// sent late. `true` when it was queued.
    pub(super) fn enqueue(&self, channel: String, body: Vec<u8>) -> bool {
        let queued = self.enqueue_job(Job::Publish(channel, body));
        if !queued {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
        queued
    }

    /// Queues a job for the publisher; `false` (nothing queued, and the loss noted) while Redis
    /// is known to be away, before the tasks run, or when the queue is full.
    pub(super) fn enqueue_job(&self, job: Job) -> bool {
        let refused = if self.is_down() || !self.lifecycle.started.load(Relaxed) {
            job
        } else {
            match self.publisher.publish_tx.try_send(job) {
                Ok(()) => return true,
                Err(e) => e.into_inner(),
            }
        };
        self.lose(&refused);
        false
    }

    /// Notes that an event of a stream never reached Redis from here: the other servers'
    /// listeners of that stream would never hear of it, so they are told (a version-3 notice,
    /// [`tell_lost`](Self::tell_lost)) and tell their clients to refetch.
    pub(super) fn lose(&self, job: &Job) {
        if let Job::Append { channel, .. } = job {
            lock(&self.publisher.lost).add(channel);
            self.publisher.lost_any.store(true, Relaxed);
        }
    }

    /// When the next round of notices of lost events is due; `None` when nothing was lost, or
    /// while Redis is away (the probe tick sends them once it is back).
    pub(super) fn lost_due(&self) -> Option<Instant> {
        if !self.publisher.lost_any.load(Relaxed) || self.is_down() {
            return None;
        }
        Some(lock(&self.publisher.lost_told).map_or_else(Instant::now, |at| at + LOST_EVERY))
    }

    /// Publishes the notices of lost events, at most once per [`LOST_EVERY`] and not while
    /// Redis is away (they wait for it); what could not be sent is kept for the next round.
    pub(super) async fn tell_lost(&self) {
        if !self.publisher.lost_any.load(Relaxed) || self.is_down() {
            return;
        }
        // Logged as a warning at the first round after a quiet while, not at every round of a
        // long overload.
        let first = {
            let mut told = lock(&self.publisher.lost_told);
            if told.is_some_and(|at| at.elapsed() < LOST_EVERY) {
                return;
            }
            let first = told.is_none_or(|at| at.elapsed() >= LOST_QUIET);
            *told = Some(Instant::now());
            first
        };
        let lost = {
            let mut lost = lock(&self.publisher.lost);
            self.publisher.lost_any.store(false, Relaxed);
            std::mem::take(&mut *lost)
        };
        if lost.is_empty() {
            return;
        }
        let notices: Vec<Job> = if lost.all {
            let body = channel::lost(&self.node, true);
            vec![Job::Publish(channel::of(Stream::All), body)]
        } else {
            let body = channel::lost(&self.node, false);
            (lost.named.iter())
                .map(|c| Job::Publish(c.clone(), body.clone()))
                .collect()
        };
        let sent = self.driver.send(&notices, &self.append_context()).await;
        // The next round counts from the end of this one (which may have waited on Redis).
        *lock(&self.publisher.lost_told) = Some(Instant::now());
        match sent {
            Err(e) => {
                lock(&self.publisher.lost).merge(lost);
                self.publisher.lost_any.store(true, Relaxed);
                self.failed(&e);
            }
            Ok(()) => {
                let streams = if lost.all {
                    "all".to_owned()
                } else {
                    lost.named.len().to_string()
                };
                let what = "events of streams never reached Redis from here (its publish queue was full: Redis is too slow for the event rate, or it refused them): the other servers' clients of those streams are told to refetch";
                if first {
                    tracing::warn!(node = %self.node, streams, "{what}");
                } else {
                    tracing::debug!(node = %self.node, streams, "{what}");
                }
            }
        }
    }

    /// What an append needs besides its job (see [`AppendContext`]).
    pub(super) fn append_context(&self) -> AppendContext {
        AppendContext {
            head: channel::positioned_head(&self.node),
            meta_ttl_secs: lock(&self.resync.meta_ttl).map_or(3600, |t| t.as_secs().max(1)),
            now_ms: history::now_ms(),
        }
    }

    /// This server may have missed events of other servers (Redis was away, or its
    /// subscription deaf): tells the connections that speak sessions, once subscribed again.
    pub(super) fn gap(&self) {
        self.want_resync(None);
    }

    /// Tells the connections that speak sessions to refetch `stream` (a stream key; `None`:
    /// every stream), once this server is subscribed again; what is asked for while a resync is
    /// on its way goes with it.
    pub(super) fn want_resync(&self, stream: Option<&str>) {
        let Some(meta_ttl) = *lock(&self.resync.meta_ttl) else {
            return;
        };
        {
            let mut wanted = lock(&self.resync.wanted);
            match stream {
                Some(key) => wanted.add(key),
                None => wanted.add_all(),
            }
        }
        self.resync.asked.fetch_add(1, AcqRel);
        if self.resync.scheduled.swap(true, AcqRel) {
            return;
        }
        let (Some(link), Some(hub)) = (self.me.upgrade(), lock(&self.resync.hub).upgrade()) else {
            self.resync.scheduled.store(false, Release);
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn((self.lifecycle.resync_task)(link, hub, meta_ttl));
        } else {
            self.resync.scheduled.store(false, Release);
        }
    }

    /// Waits (at most [`READY_WAIT`], not at all while Redis is away) until every channel the
    /// batch appends to that this server wants is confirmed subscribed.
    pub(super) async fn await_subscribed(&self, batch: &[Job]) {
        let pending = |link: &Link| {
            let wanted = lock(&link.subs.wanted);
            if wanted.is_empty() {
                return false;
            }
            let confirmed = lock(&link.subs.confirmed);
            batch.iter().any(|j| match j {
                Job::Append { channel, .. } => {
                    wanted.contains(channel) && !confirmed.contains(channel)
                }
                Job::Publish(..) => false,
            })
        };
        if !pending(self) {
            return;
        }
        let waited = async {
            loop {
                let changed = self.subs.confirmed_changed.notified();
                if !pending(self) || self.is_down() {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(READY_WAIT, waited).await;
    }

    /// Makes Redis's subscriptions what this server holds: subscribes to what is not confirmed
    /// (after a start, a reconnect, an outage) and leaves what was left during an outage.
    /// `true` when Redis answered.
    pub(super) async fn reconcile(&self) -> bool {
        let (missing, stale): (Vec<String>, Vec<String>) = {
            let desired = lock(&self.subs.desired);
            let confirmed = lock(&self.subs.confirmed);
            let mut stale = lock(&self.subs.stale);
            stale.retain(|c| !desired.contains(c));
            (
                self.subs
                    .permanent
                    .iter()
                    .chain(desired.iter())
                    .filter(|c| !confirmed.contains(*c))
                    .cloned()
                    .collect(),
                stale.iter().cloned().collect(),
            )
        };
        for chunk in missing.chunks(CHANNELS_PER_COMMAND) {
            if !self.subscribe(chunk).await {
                return false;
            }
        }
        for chunk in stale.chunks(CHANNELS_PER_COMMAND) {
            if !self.unsubscribe(chunk).await {
                return false;
            }
        }
        true
    }

    pub(super) async fn subscribe(&self, channels: &[String]) -> bool {
        match self.driver.subscribe(channels).await {
            Ok(()) => {
                self.up();
                lock(&self.subs.confirmed).extend(channels.iter().cloned());
                self.subs.confirmed_changed.notify_waiters();
                true
            }
            Err(e) => {
                // A cluster's shards answer apart: what worked is subscribed.
                let worked = e.sent.as_deref().unwrap_or_default();
                let confirmed = channels
                    .iter()
                    .zip(worked)
                    .filter(|(_, w)| **w)
                    .map(|(c, _)| c.clone());
                lock(&self.subs.confirmed).extend(confirmed);
                self.subs.confirmed_changed.notify_waiters();
                self.failed(&e);
                false
            }
        }
    }

    pub(super) async fn unsubscribe(&self, channels: &[String]) -> bool {
        match self.driver.unsubscribe(channels).await {
            Ok(()) => {
                let mut stale = lock(&self.subs.stale);
                for c in channels {
                    stale.remove(c);
                }
                true
            }
            Err(e) => {
                // Redis may still hold them (and the manager re-subscribes what it
                // tracked): leave them once it answers again (on a cluster, those whose
                // shard failed).
                let worked = e.sent.as_deref().unwrap_or_default();
                let mut stale = lock(&self.subs.stale);
                for (i, c) in channels.iter().enumerate() {
                    if worked.get(i) == Some(&true) {
                        stale.remove(c);
                    } else {
                        stale.insert(c.clone());
                    }
                }
                drop(stale);
                self.failed(&e);
                false
            }
        }
    }

    /// Replaces a connection that stopped receiving. The old one first leaves everything (in
    /// the background, best effort), so that a connection that was not deaf after all does not
    /// deliver twice.
    pub(super) fn reconnect(&self) {
        self.driver.reconnect(self.held());
        lock(&self.subs.confirmed).clear();
        self.gap();
    }

    /// Every channel this server wants subscribed: the permanent ones and those of the
    /// identities and groups it holds.
    pub(super) fn held(&self) -> Vec<String> {
        let mut all = self.subs.permanent.clone();
        all.extend(lock(&self.subs.desired).iter().cloned());
        all
    }

    /// Whether this server wants `channel` subscribed.
    pub(super) fn holds(&self, channel: &str) -> bool {
        self.subs.permanent.iter().any(|c| c == channel)
            || lock(&self.subs.desired).contains(channel)
    }

    /// Forgets what is subscribed: the subscriptions task makes them all again, and once it
    /// has, the clients that speak sessions are told to refetch (a gap).
    pub(super) fn subscribe_anew(&self) {
        lock(&self.subs.confirmed).clear();
        self.subs.confirmed_changed.notify_waiters();
        self.gap();
        self.subs.wake.notify_one();
    }

    pub(super) fn is_shut_down(&self) -> bool {
        *self.lifecycle.shutdown.borrow()
    }
}

/// What the presence store on the engine reports.
impl Reports for Link {
    fn is_down(&self) -> bool {
        Link::is_down(self)
    }

    fn up(&self) {
        Link::up(self)
    }

    fn failed(&self, fault: &Fault) {
        Link::failed(self, fault)
    }
}
