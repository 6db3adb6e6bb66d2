//! Many servers, one app: events across servers through Redis (or Valkey), behind the runtime's
//! delivery seam. Compiled with the `redis` feature; turned on by [`Server::redis`] or
//! `EPHAPTIC_REDIS_URL`.
//!
//! Each event is delivered to this server's own connections at once, as without Redis, and
//! published once per audience on a channel of its own (see [`channel`]): every other server
//! holding listeners for it delivers it to its connections, and the sender skips its own
//! message, so each connection gets each event once. Publishing goes through one bounded queue
//! and one connection, so the events one task emits arrive in emit order everywhere. A server
//! subscribes to a user's or a group's channel only while it holds such a connection, so it
//! receives the traffic of its own listeners and the broadcasts, not every event of the cluster.
//!
//! **Why redis-rs (the `redis` crate) and not fred.** Its `ConnectionManager` reconnects by
//! itself with backoff and jitter, carries pub/sub as RESP3 push messages on the same
//! multiplexed connection as commands (one socket per server), re-subscribes by itself after a
//! reconnect, and reports each lost connection as a push, which is the signal a backplane
//! needs. It is the client socketioxide uses and is released often; fred's resubscription is
//! opt-in and it has not been released since early 2025. RESP3 needs Redis 6 or later.
//!
//! **Faults.** Nothing waits on Redis: calls and local events go on during an outage. Events
//! for other servers that cannot be published are dropped and counted (the publish queue is
//! bounded), each outage is logged once with what to do, and reconnecting and re-subscribing
//! happen by themselves. A subscription that stops receiving without any error (a known failure
//! of Redis-based systems) is caught by a probe this server publishes to itself every few
//! seconds; when the probe does not come back, the connection is replaced.
//!
//! [`Server::redis`]: crate::Server::redis

mod channel;
mod driver;
mod history;
#[cfg(test)]
mod in_process;
mod limit;
mod presence;
mod redis_driver;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::redis::{Client, IntoConnectionInfo, ProtocolVersion};
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use self::driver::{AppendContext, Driver, Fault, FaultKind, Inbox, Job, ReadRequest};
use self::redis_driver::RedisDriver;
use crate::handler::Audience;
use crate::identity::Identity;
use crate::runtime::delivery::{Backplane, Delivery, DeliveryStats, Local, Outgoing};
use crate::runtime::ratelimit::Remote;
use crate::session::{Hub, Interest, Stream};

/// Events that may wait to be published before new ones are dropped (and counted).
const PUBLISH_QUEUE: usize = 16 * 1024;
/// Messages from Redis that may wait to be delivered before new ones are dropped.
const RECEIVE_QUEUE: usize = 16 * 1024;
/// Publishes sent to Redis in one round trip at most.
const BATCH: usize = 256;
/// Streams named one by one in a set of lost or to-be-resynced streams; past it, the set stands
/// for every stream.
const NAMED_STREAMS: usize = 1024;
/// At most one round of notices of lost events per this long: the first goes out as soon as
/// Redis takes publishes again, the next ones (while Redis stays too slow) once a second, so
/// that the other servers' clients do not refetch the same streams again and again.
const LOST_EVERY: Duration = Duration::from_secs(1);
/// A round of notices after this long without one is logged as a warning again.
const LOST_QUIET: Duration = Duration::from_secs(10);
/// How long a new connection waits at most for the subscription to its identity's channel.
const READY_WAIT: Duration = Duration::from_secs(2);

/// The Redis settings of a server.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub url: String,
    /// Deliver `to(user)` events through the reference's channel, so that Python ephaptic
    /// servers on the same Redis send to and receive from this one.
    pub compat: bool,
    /// How often the liveness probe runs.
    pub probe_every: Duration,
}

impl Settings {
    pub fn new(url: String) -> Self {
        Settings {
            url,
            compat: false,
            probe_every: Duration::from_secs(5),
        }
    }
}

/// A change of what this server holds, for the subscription task.
#[derive(Debug)]
enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

/// The backplane before its server's hub exists.
pub(crate) struct Redis {
    link: Arc<Link>,
}

impl Redis {
    /// A backplane on `settings.url`. Fails only when the URL cannot be read; an unreachable
    /// Redis is retried in the background.
    pub fn new(settings: Settings) -> Result<Self, String> {
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("the Redis URL {:?} cannot be read: {e}", settings.url))?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(resp3))
            .map_err(|e| format!("the Redis URL {:?} cannot be used: {e}", settings.url))?;
        let redis = Arc::new(RedisDriver::new(client));
        let backplane = Self::with_driver(settings, redis.clone());
        let _ = backplane.link.redis.set(redis);
        Ok(backplane)
    }

    /// A backplane on any driver (an in-process one in tests).
    pub(super) fn with_driver(settings: Settings, driver: Arc<dyn Driver>) -> Self {
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (push_tx, push_rx) = mpsc::channel(RECEIVE_QUEUE);
        let node = node_id();
        let link = Arc::new_cyclic(|me: &Weak<Link>| {
            driver.attach(me.clone());
            Link {
                me: me.clone(),
                permanent: permanent_channels(&node, settings.compat),
                node,
                settings,
                driver,
                redis: OnceLock::new(),
                push_tx,
                publish_tx,
                tasks: Mutex::new(Some(Tasks {
                    publish_rx,
                    push_rx,
                    changes_rx,
                    hub: Weak::new(),
                })),
                changes_tx,
                counters: Counters::default(),
                desired: Mutex::new(HashSet::new()),
                confirmed: Mutex::new(HashSet::new()),
                stale: Mutex::new(HashSet::new()),
                confirmed_changed: Notify::new(),
                wake: Notify::new(),
                pushes_dropped: AtomicU64::new(0),
                shutdown: tokio::sync::watch::channel(false).0,
                outage: Mutex::new(None),
                probe_seen: AtomicU64::new(0),
                gap_pending: AtomicBool::new(false),
                lost: Mutex::new(StreamSet::default()),
                lost_any: AtomicBool::new(false),
                lost_told: Mutex::new(None),
                resync_wanted: Mutex::new(StreamSet::default()),
                resync_scheduled: AtomicBool::new(false),
                resync_asked: AtomicU64::new(0),
                resync_logged: AtomicU64::new(0),
                started: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                hub: Mutex::new(Weak::new()),
                wanted: Mutex::new(HashSet::new()),
                history_meta_ttl: Mutex::new(None),
                leaves: Mutex::new(Leaves::default()),
            }
        });
        Redis { link }
    }
}

impl Redis {
    /// The presence store on the same Redis connection, entries expiring `ttl` after their
    /// server's last heartbeat; and the name this server's connections go by in it.
    pub fn presence_store(
        &self,
        ttl: Duration,
    ) -> (Arc<dyn crate::runtime::presence::Store>, String) {
        let store = presence::Shared::new(self.link.clone(), ttl);
        debug_assert!(
            self.link.redis.get().is_some(),
            "presence is shared through Redis only"
        );
        (Arc::new(store), self.link.node.clone())
    }
}

impl Backplane for Redis {
    fn interest(&self) -> Option<Arc<dyn Interest>> {
        Some(self.link.clone())
    }

    fn limiter(&self) -> Option<Arc<dyn Remote>> {
        // Shared through Redis; on another driver each server counts its own.
        self.link.redis.get()?;
        Some(Arc::new(limit::Shared::new(self.link.clone())))
    }

    fn into_delivery(
        self: Box<Self>,
        hub: Arc<Hub>,
        history: Option<crate::runtime::history::Retentions>,
    ) -> Box<dyn Delivery> {
        let link = self.link;
        if let Some(tasks) = lock(&link.tasks).as_mut() {
            tasks.hub = Arc::downgrade(&hub);
        }
        // With a runtime at hand, connect now; otherwise at the first connection.
        if tokio::runtime::Handle::try_current().is_ok() {
            link.start();
        }
        // In compatibility mode `to(..)` events go through the reference's envelope, which has
        // no position: so no history there.
        let history = history.filter(|_| !link.settings.compat);
        *lock(&link.hub) = Arc::downgrade(&hub);
        *lock(&link.history_meta_ttl) = history.map(|h| h.meta_ttl);
        Box::new(RedisDelivery {
            local: Local::new(hub.clone(), None),
            hub,
            link,
            history,
        })
    }
}

/// Delivery to this server's connections and, through Redis, to every other server's.
#[derive(Debug)]
struct RedisDelivery {
    local: Local,
    hub: Arc<Hub>,
    link: Arc<Link>,
    /// With sessions on: the retention of each kind of stream, kept in Redis.
    history: Option<crate::runtime::history::Retentions>,
}

impl RedisDelivery {
    /// An event of a stream: appended, numbered and published by Redis, and delivered here
    /// when Redis publishes it back (so this server's listeners get the stream's events in
    /// the order every other server's do). When it cannot be queued for Redis (Redis away or
    /// slow), it is delivered here at once without a position, as without sessions.
    fn deliver_kept(
        &self,
        event: &Outgoing<'_>,
        retentions: &crate::runtime::history::Retentions,
    ) -> usize {
        let latest = event.keep.latest().unwrap_or("");
        let append = |of: Stream<'_>| {
            let channel = channel::of(of);
            let mut retention = *retentions.of(of.kind());
            if event.frame.len() > retentions.max_event {
                // Numbered and published, not kept: a resume across it is not recovered.
                retention = retention.size(0);
            }
            let job = Job::Append {
                keys: history::keys(&of.key()),
                channel,
                frame: event.frame.clone(),
                latest,
                retention,
            };
            self.link.enqueue_job(job)
        };
        // What Redis could not take is delivered here at once, without a position; the other
        // servers are told that the stream lost events (`Link::lose`), and it is counted.
        event
            .audience
            .streams()
            .map(|stream| {
                if append(stream) {
                    // It reaches this server's listeners when Redis publishes it back.
                    self.hub.listeners(stream)
                } else {
                    self.link.counters.dropped.fetch_add(1, Relaxed);
                    self.hub.offer(stream, &event.frame, None)
                }
            })
            .sum()
    }
}

impl Delivery for RedisDelivery {
    fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    fn left(&self, group: &str, member: &Identity) {
        if self.history.is_none() {
            return;
        }
        let stream = Stream::Group(group);
        let (meta, _) = history::keys(&stream.key());
        let field = history::tenure_field(&stream, Some(member));
        self.link.leave(meta, field);
    }

    fn read<'a>(
        &'a self,
        stream: Stream<'a>,
        asked: Option<&'a crate::session::Asked>,
        reader: Option<&'a Identity>,
    ) -> crate::runtime::delivery::Reading<'a> {
        Box::pin(async move {
            let Some(retentions) = &self.history else {
                return crate::runtime::history::Read::unavailable(asked);
            };
            let retention = retentions.of(stream.kind());
            if self.link.is_down() {
                return crate::runtime::history::Read::unavailable(asked);
            }
            let (meta, key) = history::keys(&stream.key());
            let field = history::tenure_field(&stream, reader);
            let from = asked.map_or(u64::MAX, |a| a.offset.saturating_add(1));
            let fresh = self.link.leaving(&meta, &field);
            let reply = self
                .link
                .driver
                .read(ReadRequest {
                    meta: &meta,
                    stream: &key,
                    from,
                    count: retention.max_replay + 1,
                    new_epoch: crate::runtime::history::new_epoch(),
                    meta_ttl_secs: retentions.meta_ttl.as_secs().max(1),
                    asked_epoch: asked.map_or("", |a| a.epoch.as_str()),
                    tenure_field: &field,
                    fresh,
                    max_tenures: crate::runtime::history::MAX_TENURES,
                })
                .await;
            match reply {
                Ok(reply) => {
                    self.link.up();
                    history::decide_read(&reply, asked, retention)
                }
                Err(e) => {
                    self.link.failed(&e);
                    crate::runtime::history::Read::unavailable(asked)
                }
            }
        })
    }

    fn deliver(&self, event: Outgoing<'_>) -> usize {
        if let Some(retentions) = &self.history
            && event.keep != crate::runtime::delivery::Keep::Not
        {
            return self.deliver_kept(&event, retentions);
        }
        let link = &self.link;
        match event.audience {
            // In compatibility mode `to(..)` goes through the reference's envelope.
            Audience::Users(ids) if link.settings.compat => {
                let body = channel::legacy_envelope(&link.node, ids, &event.frame);
                link.enqueue(channel::LEGACY.to_owned(), body);
            }
            audience => {
                for stream in audience.streams() {
                    link.publish(&channel::of(stream), &event.frame);
                }
            }
        }
        self.local.deliver(event)
    }

    fn opened(&self) {
        self.link.start();
    }

    fn stats(&self) -> DeliveryStats {
        let c = &self.link.counters;
        DeliveryStats {
            published: c.published.load(Relaxed),
            received: c.received.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            outages: c.outages.load(Relaxed),
            connected: Some(self.link.connected.load(Relaxed)),
        }
    }
}

impl Drop for RedisDelivery {
    fn drop(&mut self) {
        // The server is gone: its tasks end and its connection to Redis closes.
        self.link.shutdown.send_replace(true);
        self.link.wake.notify_one();
        self.link.driver.close();
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    outages: AtomicU64,
}

/// What the background tasks take when they start.
struct Tasks {
    publish_rx: mpsc::Receiver<Job>,
    push_rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    changes_rx: mpsc::UnboundedReceiver<Change>,
    /// Weakly: the tasks end with their server.
    hub: Weak<Hub>,
}

/// Streams by name (channels or keys), up to [`NAMED_STREAMS`] of them; past that, every
/// stream.
#[derive(Default)]
struct StreamSet {
    named: HashSet<String>,
    all: bool,
}

impl StreamSet {
    fn add(&mut self, name: &str) {
        if self.all || self.named.contains(name) {
            return;
        }
        if self.named.len() >= NAMED_STREAMS {
            self.add_all();
        } else {
            self.named.insert(name.to_owned());
        }
    }

    fn add_all(&mut self) {
        self.all = true;
        self.named = HashSet::new();
    }

    fn merge(&mut self, other: StreamSet) {
        if other.all {
            self.add_all();
        } else {
            for name in &other.named {
                self.add(name);
            }
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.named.is_empty()
    }
}

/// One server's link to Redis, shared by its delivery and its background tasks.
struct Link {
    /// Itself, weakly: for the connection's push handler, which must not keep it alive.
    me: Weak<Link>,
    node: String,
    settings: Settings,
    /// The engine: Redis, or another implementation of the seam.
    driver: Arc<dyn Driver>,
    /// The Redis connection when the driver is Redis's, for the shared rate limiter and
    /// presence store (on another driver those stay on each server).
    redis: OnceLock<Arc<RedisDriver>>,
    /// What arrives from the driver, bounded: (channel, body).
    push_tx: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    publish_tx: mpsc::Sender<Job>,
    tasks: Mutex<Option<Tasks>>,
    changes_tx: mpsc::UnboundedSender<Change>,
    counters: Counters,
    /// Channels this server subscribes to whatever it holds.
    permanent: Vec<String>,
    /// Channels it should be subscribed to for what it holds, those Redis confirmed, and
    /// those it left while Redis was away (to unsubscribe from once it is back).
    desired: Mutex<HashSet<String>>,
    confirmed: Mutex<HashSet<String>>,
    stale: Mutex<HashSet<String>>,
    confirmed_changed: Notify,
    /// Wakes the subscription task: Redis was lost, or has to be tried again.
    wake: Notify,
    /// Pushes dropped because the receive queue was full (since the last probe check).
    pushes_dropped: AtomicU64,
    /// The server is gone: the tasks end.
    /// Set once when the server is gone; a watch, so a task that looks after it was set still
    /// sees it (a `Notify` would wake only the tasks waiting at that moment).
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Since when Redis has been unreachable, and the drop count then.
    outage: Mutex<Option<(Instant, u64)>>,
    /// The last probe number that came back.
    probe_seen: AtomicU64,
    /// Pushes were dropped since the last probe tick: a resync is due.
    gap_pending: AtomicBool,
    /// Channels of streams whose events never reached Redis from here (the publish queue was
    /// full, a batch failed), to tell the other servers about, and whether there are any.
    lost: Mutex<StreamSet>,
    lost_any: AtomicBool,
    /// When notices of lost events last went out.
    lost_told: Mutex<Option<Instant>>,
    /// Streams (keys) whose clients here are to be told to refetch, and whether a resync task
    /// that will take them is on its way.
    resync_wanted: Mutex<StreamSet>,
    resync_scheduled: AtomicBool,
    /// How many resyncs were asked for (a request joining a waiting resync extends its wait).
    resync_asked: AtomicU64,
    /// When a resync was last logged at info (seconds since the epoch).
    resync_logged: AtomicU64,
    started: AtomicBool,
    /// Whether Redis answered the last command (false until it first does).
    connected: AtomicBool,
    /// The server's hub, for the resync after a gap.
    hub: Mutex<Weak<Hub>>,
    /// Channels this server holds listeners for, from the moment the hub says so (before the
    /// subscription task has subscribed): the publisher waits for these to be confirmed before
    /// it sends an event to one, or Redis could publish it before this server listens.
    wanted: Mutex<HashSet<String>>,
    /// With sessions on: how long a stream's position is kept (`None`: no history).
    history_meta_ttl: Mutex<Option<Duration>>,
    /// Tenures ended by a leave that Redis has not confirmed yet, as (stream hash, field): a
    /// join that reads one meanwhile starts afresh, and they are sent again at each probe tick
    /// until Redis takes them, so no leave is lost to an outage.
    leaves: Mutex<Leaves>,
}

/// Leaves on their way to Redis (see [`Link::leaves`]).
#[derive(Debug, Default)]
struct Leaves {
    pending: HashSet<(String, String)>,
    /// More were pending than are named (a long outage with many leaves): from then on every
    /// group read of this server starts a fresh tenure (nobody is replayed a group here), since
    /// a leave that was not named may never reach Redis.
    overflow: bool,
}

/// The most leaves named while Redis does not take them.
const PENDING_LEAVES: usize = 16 * 1024;

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.node)
            .field("settings", &self.settings)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name for this server in messages, unique enough for a cluster's lifetime.
fn node_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "rs-{:x}-{:x}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        SEQ.fetch_add(1, Relaxed)
    )
}

fn permanent_channels(node: &str, compat: bool) -> Vec<String> {
    let mut channels = vec![channel::of(Stream::All), channel::probe(node)];
    if compat {
        channels.push(channel::LEGACY.to_owned());
    }
    channels
}

impl Inbox for Link {
    /// Queued for the receiver; a full queue drops it (counted), and this server's listeners
    /// are told to refetch at the next probe tick, once per burst.
    fn message(&self, channel: &[u8], body: &[u8]) {
        if self
            .push_tx
            .try_send((channel.to_vec(), body.to_vec()))
            .is_err()
        {
            self.pushes_dropped.fetch_add(1, Relaxed);
            self.counters.dropped.fetch_add(1, Relaxed);
            self.gap_pending.store(true, Relaxed);
        }
    }

    fn disconnected(&self) {
        self.down(&Fault::new(
            FaultKind::Unreachable,
            "the connection to the backplane was lost",
        ));
    }
}

impl Interest for Link {
    fn ready(&self, stream: Stream<'_>) -> Option<crate::session::hub::Ready> {
        let channel = match stream {
            // Identity events come through the compatibility channel, and events to everyone
            // through theirs: both always subscribed.
            Stream::User(_) if self.settings.compat => return None,
            Stream::All => return None,
            other => channel::of(other),
        };
        if self.is_down() || lock(&self.confirmed).contains(&channel) {
            // Redis is away, and waiting would not help; or it is subscribed already.
            return None;
        }
        let link = self.me.upgrade()?;
        Some(Box::pin(async move {
            let confirmed = async {
                loop {
                    let changed = link.confirmed_changed.notified();
                    if lock(&link.confirmed).contains(&channel) {
                        return true;
                    }
                    if link.is_down() {
                        return false;
                    }
                    changed.await;
                }
            };
            tokio::time::timeout(READY_WAIT, confirmed)
                .await
                .unwrap_or(false)
        }))
    }

    fn changed(&self, stream: Stream<'_>, held: bool) {
        let channel = match stream {
            // In compatibility mode identity events come through the reference's channel.
            Stream::User(_) if self.settings.compat => return,
            Stream::All => return,
            other => channel::of(other),
        };
        let change = if held {
            lock(&self.wanted).insert(channel.clone());
            Change::Subscribe(channel)
        } else {
            lock(&self.wanted).remove(&channel);
            // At once, not when the task gets to it: a connection of the same user arriving
            // meanwhile must wait for the subscription to be made again.
            lock(&self.confirmed).remove(&channel);
            Change::Unsubscribe(channel)
        };
        let _ = self.changes_tx.send(change);
    }
}

/// How many channels one `SUBSCRIBE` or `UNSUBSCRIBE` names at most.
const CHANNELS_PER_COMMAND: usize = 512;

impl Link {
    /// Starts the background tasks, once (there must be a runtime).
    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Relaxed) {
            return;
        }
        let Some(tasks) = lock(&self.tasks).take() else {
            return;
        };
        let Tasks {
            publish_rx,
            push_rx,
            changes_rx,
            hub,
        } = tasks;
        tracing::info!(
            node = %self.node,
            compat = self.settings.compat,
            "ephaptic delivers events across servers through Redis at {}",
            self.settings.url
        );
        tokio::spawn(publisher(self.clone(), hub.clone(), publish_rx));
        tokio::spawn(receiver(self.clone(), hub.clone(), push_rx));
        tokio::spawn(subscriptions(self.clone(), hub, changes_rx));
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The Redis connection (for the shared rate limiter and presence store, which exist only
    /// on Redis).
    fn redis_manager(&self) -> ::redis::aio::ConnectionManager {
        self.redis
            .get()
            .expect("shared limits and presence are made only on Redis")
            .manager()
    }

    /// Publishes `frame` on `channel` (our body), without waiting.
    fn publish(&self, channel: &str, frame: &[u8]) {
        self.enqueue(channel.to_owned(), channel::wrap(&self.node, frame));
    }

    /// Queues a publish; while Redis is known to be away, before the tasks run, or when the
    /// queue is full (Redis slow), it is dropped and counted instead: nothing is kept to be
    /// sent late.
    fn enqueue(&self, channel: String, body: Vec<u8>) {
        if !self.enqueue_job(Job::Publish(channel, body)) {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Waits (at most [`READY_WAIT`], not at all while Redis is away) until every channel the
    /// batch appends to that this server wants is confirmed subscribed.
    async fn await_subscribed(&self, batch: &[Job]) {
        let pending = |link: &Link| {
            let wanted = lock(&link.wanted);
            if wanted.is_empty() {
                return false;
            }
            let confirmed = lock(&link.confirmed);
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
                let changed = self.confirmed_changed.notified();
                if !pending(self) || self.is_down() {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(READY_WAIT, waited).await;
    }

    /// Queues a job for the publisher; `false` (nothing queued, and the loss noted) while Redis
    /// is known to be away, before the tasks run, or when the queue is full.
    fn enqueue_job(&self, job: Job) -> bool {
        let refused = if self.is_down() || !self.started.load(Relaxed) {
            job
        } else {
            match self.publish_tx.try_send(job) {
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
    fn lose(&self, job: &Job) {
        if let Job::Append { channel, .. } = job {
            lock(&self.lost).add(channel);
            self.lost_any.store(true, Relaxed);
        }
    }

    /// When the next round of notices of lost events is due; `None` when nothing was lost, or
    /// while Redis is away (the probe tick sends them once it is back).
    fn lost_due(&self) -> Option<Instant> {
        if !self.lost_any.load(Relaxed) || self.is_down() {
            return None;
        }
        Some(lock(&self.lost_told).map_or_else(Instant::now, |at| at + LOST_EVERY))
    }

    /// Publishes the notices of lost events, at most once per [`LOST_EVERY`] and not while
    /// Redis is away (they wait for it); what could not be sent is kept for the next round.
    async fn tell_lost(&self) {
        if !self.lost_any.load(Relaxed) || self.is_down() {
            return;
        }
        // Logged as a warning at the first round after a quiet while, not at every round of a
        // long overload.
        let first = {
            let mut told = lock(&self.lost_told);
            if told.is_some_and(|at| at.elapsed() < LOST_EVERY) {
                return;
            }
            let first = told.is_none_or(|at| at.elapsed() >= LOST_QUIET);
            *told = Some(Instant::now());
            first
        };
        let lost = {
            let mut lost = lock(&self.lost);
            self.lost_any.store(false, Relaxed);
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
        *lock(&self.lost_told) = Some(Instant::now());
        match sent {
            Err(e) => {
                lock(&self.lost).merge(lost);
                self.lost_any.store(true, Relaxed);
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

    fn is_down(&self) -> bool {
        lock(&self.outage).is_some()
    }

    /// Ends a tenure in Redis (`HDEL` of its field), in the background: a leave is not awaited
    /// by the handler that makes it. Until Redis confirms it, it is pending.
    fn leave(&self, meta: String, field: String) {
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
    fn seed_tenures(&self, stream: &str, members: Vec<String>) {
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
    fn leaving(&self, meta: &str, field: &str) -> bool {
        let leaves = lock(&self.leaves);
        leaves.overflow
            || (!leaves.pending.is_empty()
                && leaves
                    .pending
                    .contains(&(meta.to_owned(), field.to_owned())))
    }

    /// Sends leaves to Redis; those it takes are no longer pending.
    async fn send_leaves(&self, batch: Vec<(String, String)>) {
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
    async fn retry_leaves(&self) {
        let batch: Vec<(String, String)> = lock(&self.leaves)
            .pending
            .iter()
            .take(1024)
            .cloned()
            .collect();
        self.send_leaves(batch).await;
    }

    /// Notes that a command failed: an outage when Redis cannot be reached (logged once per
    /// outage), a warning otherwise.
    fn failed(&self, e: &Fault) {
        if e.is_outage() {
            self.down(e);
        } else {
            static LAST: AtomicU64 = AtomicU64::new(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // At most one line a minute, whatever the rate of failures.
            if now.saturating_sub(LAST.swap(now, Relaxed)) >= 60 {
                tracing::warn!(node = %self.node, "Redis refused a command: {e}");
            }
        }
    }

    /// Notes that Redis cannot be reached; logged once per outage.
    fn down(&self, why: &Fault) {
        self.connected.store(false, Relaxed);
        let mut outage = lock(&self.outage);
        if outage.is_none() {
            *outage = Some((Instant::now(), self.counters.dropped.load(Relaxed)));
            self.counters.outages.fetch_add(1, Relaxed);
            tracing::warn!(
                node = %self.node,
                "Redis at {} cannot be reached ({why}). Calls and this server's own events go on; \
                 events for other servers are dropped and counted (ephaptic::metrics()) until it is \
                 back. Reconnecting by itself; check that Redis runs and that the URL is right",
                self.settings.url
            );
        }
        drop(outage);
        lock(&self.confirmed).clear();
        self.confirmed_changed.notify_waiters();
        // Try again soon, not at the next probe.
        self.wake.notify_one();
    }

    /// Notes that Redis answered; logs the end of an outage.
    fn up(&self) {
        self.connected.store(true, Relaxed);
        let mut outage = lock(&self.outage);
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

    /// This server may have missed events of other servers (Redis was away, or its
    /// subscription deaf): tells the connections that speak sessions, once subscribed again.
    fn gap(&self) {
        self.want_resync(None);
    }

    /// Tells the connections that speak sessions to refetch `stream` (a stream key; `None`:
    /// every stream), once this server is subscribed again; what is asked for while a resync is
    /// on its way goes with it.
    fn want_resync(&self, stream: Option<&str>) {
        let Some(meta_ttl) = *lock(&self.history_meta_ttl) else {
            return;
        };
        {
            let mut wanted = lock(&self.resync_wanted);
            match stream {
                Some(key) => wanted.add(key),
                None => wanted.add_all(),
            }
        }
        self.resync_asked.fetch_add(1, AcqRel);
        if self.resync_scheduled.swap(true, AcqRel) {
            return;
        }
        let (Some(link), Some(hub)) = (self.me.upgrade(), lock(&self.hub).upgrade()) else {
            self.resync_scheduled.store(false, Release);
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(resync(link, hub, meta_ttl));
        } else {
            self.resync_scheduled.store(false, Release);
        }
    }

    /// Makes Redis's subscriptions what this server holds: subscribes to what is not confirmed
    /// (after a start, a reconnect, an outage) and leaves what was left during an outage.
    /// `true` when Redis answered.
    async fn reconcile(&self) -> bool {
        let (missing, stale): (Vec<String>, Vec<String>) = {
            let desired = lock(&self.desired);
            let confirmed = lock(&self.confirmed);
            let mut stale = lock(&self.stale);
            stale.retain(|c| !desired.contains(c));
            (
                self.permanent
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

    async fn subscribe(&self, channels: &[String]) -> bool {
        match self.driver.subscribe(channels).await {
            Ok(()) => {
                self.up();
                lock(&self.confirmed).extend(channels.iter().cloned());
                self.confirmed_changed.notify_waiters();
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    async fn unsubscribe(&self, channels: &[String]) -> bool {
        match self.driver.unsubscribe(channels).await {
            Ok(()) => {
                let mut stale = lock(&self.stale);
                for c in channels {
                    stale.remove(c);
                }
                true
            }
            Err(e) => {
                // Redis may still hold them (and the manager re-subscribes what it
                // tracked): leave them once it answers again.
                lock(&self.stale).extend(channels.iter().cloned());
                self.failed(&e);
                false
            }
        }
    }

    /// Replaces a connection that stopped receiving. The old one first leaves everything (in
    /// the background, best effort), so that a connection that was not deaf after all does not
    /// deliver twice.
    fn reconnect(&self) {
        let mut all: Vec<String> = lock(&self.desired).iter().cloned().collect();
        all.extend(self.permanent.iter().cloned());
        self.driver.reconnect(all);
        lock(&self.confirmed).clear();
        self.gap();
    }

    /// What an append needs besides its job (see [`AppendContext`]).
    fn append_context(&self) -> AppendContext {
        AppendContext {
            head: channel::positioned_head(&self.node),
            new_epoch: crate::runtime::history::new_epoch(),
            meta_ttl_secs: lock(&self.history_meta_ttl).map_or(3600, |t| t.as_secs().max(1)),
            now_ms: history::now_ms(),
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// Sends queued publishes in order, in batches of one round trip each.
async fn publisher(link: Arc<Link>, hub: Weak<Hub>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut ended = link.shutdown.subscribe();
    loop {
        let lost_due = link.lost_due();
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = ended.wait_for(|gone| *gone) => 0,
            // Notices of lost events that waited for their round, with nothing else to send.
            _ = tokio::time::sleep_until(lost_due.map_or_else(far_future, Into::into)), if lost_due.is_some() => usize::MAX,
        };
        if received == usize::MAX {
            link.tell_lost().await;
            continue;
        }
        if received == 0 || link.is_shut_down() {
            return;
        }
        let n = batch.len() as u64;
        let appends = batch.iter().any(|j| matches!(j, Job::Append { .. }));
        if appends {
            // Our own listeners hear our events from Redis: a channel they just started to
            // listen on must be subscribed before the event is published on it.
            link.await_subscribed(&batch).await;
        }
        let sent = link.driver.send(&batch, &link.append_context()).await;
        match sent {
            Ok(()) => {
                link.up();
                link.counters.published.fetch_add(n, Relaxed);
                link.tell_lost().await;
            }
            Err(e) => {
                link.failed(&e);
                // What was queued while this batch failed would go out late: drop it too. Events
                // of streams were to reach this server's own listeners through Redis: those
                // that did not reach it get them now, without a position, as without sessions.
                // Not after a timeout: the batch may have run on a connection that still
                // works, and its events would come back from Redis too (the resync when Redis
                // answers again covers what did not). A refused connection, a dropped one, a
                // refused command: this server's own listeners would not hear them otherwise.
                let mut lost = n;
                let hub = hub.upgrade();
                let here = !e.is_timeout();
                for job in batch.drain(..) {
                    if here {
                        deliver_here(hub.as_deref(), &job);
                    }
                    // After a timeout the batch may have run after all: the other servers'
                    // clients then refetch for nothing, which is better than missing it.
                    link.lose(&job);
                }
                while let Ok(job) = rx.try_recv() {
                    deliver_here(hub.as_deref(), &job);
                    link.lose(&job);
                    lost += 1;
                }
                link.counters.dropped.fetch_add(lost, Relaxed);
            }
        }
        batch.clear();
    }
}

/// Sends `resync` (docs/PROTOCOL.md 5.6) for every stream of every connection that speaks
/// sessions, with the stream's position now, once this server is subscribed again (so what
/// follows the position arrives live).
async fn resync(link: Arc<Link>, hub: Arc<Hub>, meta_ttl: Duration) {
    let subscribed = || async {
        loop {
            let changed = link.confirmed_changed.notified();
            let done = {
                let desired = lock(&link.desired);
                let confirmed = lock(&link.confirmed);
                desired
                    .iter()
                    .chain(&link.permanent)
                    .all(|c| confirmed.contains(c))
            };
            if done {
                return;
            }
            changed.await;
        }
    };
    // A request that joined this resync while it waited (a gap after an outage, say) gets a
    // whole wait of its own: its subscriptions may only now be under way.
    for _ in 0..5 {
        let asked = link.resync_asked.load(Acquire);
        let _ = tokio::time::timeout(READY_WAIT, subscribed()).await;
        if link.resync_asked.load(Acquire) == asked {
            break;
        }
    }
    // What was asked for until now is this resync's; what is asked for after, the next one's.
    link.resync_scheduled.store(false, Release);
    let only = std::mem::take(&mut *lock(&link.resync_wanted));
    if only.is_empty() {
        return;
    }
    // Stream -> (its wire name, the connections that read it).
    let mut streams: std::collections::HashMap<
        String,
        (String, Vec<Arc<crate::session::Connection>>),
    > = std::collections::HashMap::new();
    for conn in hub
        .connections()
        .into_iter()
        .filter(|c| c.speaks_sessions())
    {
        let groups = conn.groups();
        let mut of = vec![Stream::All];
        of.extend(conn.identity().map(Stream::User));
        // The runtime's own groups (presence watchers) carry no stream.
        of.extend(
            groups
                .iter()
                .filter(|g| !g.starts_with(crate::session::names::RESERVED))
                .map(|g| Stream::Group(g)),
        );
        for stream in of {
            let (key, wire) = (stream.key(), stream.wire().into_owned());
            if !only.all && !only.named.contains(&key) {
                continue;
            }
            streams
                .entry(key)
                .or_insert_with(|| (wire, Vec::new()))
                .1
                .push(conn.clone());
        }
    }
    if streams.is_empty() {
        return;
    }
    // One line a minute at most at info (a long overload resyncs once a second).
    let now = history::now_ms() / 1000;
    let what = "events of other servers may have been missed (Redis was away, or they never reached it): telling the clients to refetch";
    if now.saturating_sub(link.resync_logged.swap(now, Relaxed)) >= 60 {
        tracing::info!(node = %link.node, streams = streams.len(), "{what}");
    } else {
        tracing::debug!(node = %link.node, streams = streams.len(), "{what}");
    }
    for (key, (wire, conns)) in streams {
        let (meta, stream) = history::keys(&key);
        let reply = link
            .driver
            .read(ReadRequest {
                meta: &meta,
                stream: &stream,
                from: u64::MAX,
                count: 1,
                new_epoch: crate::runtime::history::new_epoch(),
                meta_ttl_secs: meta_ttl.as_secs().max(1),
                asked_epoch: "",
                tenure_field: "",
                fresh: false,
                max_tenures: 0,
            })
            .await;
        let Ok(driver::ReadReply { epoch, top, .. }) = reply else {
            continue;
        };
        let mut extra = Vec::new();
        crate::wire::msgpack::put_str(&mut extra, "reason");
        crate::wire::msgpack::put_str(&mut extra, "gap");
        let frame = crate::wire::reply::position_frame("resync", &wire, &epoch, top, 1, &extra);
        for conn in conns {
            // Its position moves to the stream's now: what a replay left to drop no longer holds.
            conn.clear_floor(&wire);
            conn.push_event(frame.clone());
        }
    }
}

/// Delivers an event of a stream that Redis did not take to this server's own listeners.
fn deliver_here(hub: Option<&Hub>, job: &Job) {
    let (Some(hub), Job::Append { channel, frame, .. }) = (hub, job) else {
        return;
    };
    if let Some(channel::Channel::Stream(stream)) = channel::parse(channel.as_bytes()) {
        hub.offer(stream.as_stream(), frame, None);
    }
}

/// Delivers what Redis pushes to this server's connections.
async fn receiver(link: Arc<Link>, hub: Weak<Hub>, mut rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>) {
    let mut ended = link.shutdown.subscribe();
    loop {
        let push = tokio::select! {
            push = rx.recv() => push,
            _ = ended.wait_for(|gone| *gone) => None,
        };
        let (Some(push), Some(hub)) = (push, hub.upgrade()) else {
            return;
        };
        let (channel, body) = push;
        on_message(&link, &hub, &channel, &body);
    }
}

fn on_message(link: &Link, hub: &Hub, channel: &[u8], body: &[u8]) {
    use channel::Channel;
    let Some(channel) = channel::parse(channel) else {
        return;
    };
    let stream = match &channel {
        Channel::Stream(stream) => stream.as_stream(),
        Channel::Probe => {
            if let Some(n) = std::str::from_utf8(body).ok().and_then(|s| s.parse().ok()) {
                link.probe_seen.fetch_max(n, Relaxed);
            }
            return;
        }
        Channel::Legacy => {
            if let Some((users, frame)) = channel::read_legacy(&link.node, body) {
                hub.offer_users(&users, &frame);
                link.counters.received.fetch_add(1, Relaxed);
            }
            return;
        }
    };
    if let Some(everything) = channel::unwrap_lost(&link.node, body) {
        let key = (!everything).then(|| stream.key());
        link.want_resync(key.as_deref());
        return;
    }
    if body.starts_with(&[b'E', 2]) {
        let Some((epoch, seq, frame)) = channel::unwrap_positioned(&Bytes::copy_from_slice(body))
        else {
            return;
        };
        crate::runtime::delivery::offer_at(hub, stream, &frame, seq, &epoch);
        link.counters.received.fetch_add(1, Relaxed);
        if seq == 1
            && let Stream::Group(name) = stream
        {
            // A new epoch of a group's stream (a quiet group's keys expire): the members this
            // server holds were there all along, and resume it.
            link.seed_tenures(&stream.key(), hub.member_keys(name));
        }
        return;
    }
    let delivered = channel::unwrap(&link.node, Bytes::copy_from_slice(body))
        .map(|frame| hub.offer(stream, &frame, None));
    if delivered.is_some() {
        link.counters.received.fetch_add(1, Relaxed);
    }
}

/// Follows what this server holds (in batches), keeps its subscriptions complete after
/// outages, and runs the liveness probe.
async fn subscriptions(
    link: Arc<Link>,
    hub: Weak<Hub>,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    link.reconcile().await;
    let mut tick = tokio::time::interval(link.settings.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_sent = 0u64;
    let mut deaf = 0u32;
    let mut retry = Duration::from_millis(100);
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            n = changes.recv_many(&mut pending, CHANNELS_PER_COMMAND) => {
                if n == 0 {
                    return;
                }
                // The changes in order: what to join and what to leave, net of each other.
                let (mut join, mut leave) = (Vec::new(), Vec::new());
                {
                    let mut desired = lock(&link.desired);
                    for change in pending.drain(..) {
                        match change {
                            Change::Subscribe(c) => {
                                if desired.insert(c.clone()) {
                                    leave.retain(|l| *l != c);
                                    join.push(c);
                                }
                            }
                            Change::Unsubscribe(c) => {
                                if desired.remove(&c) {
                                    join.retain(|j| *j != c);
                                    leave.push(c);
                                }
                            }
                        }
                    }
                }
                if link.is_down() {
                    // Redis is away: the next reconcile makes its subscriptions right.
                    lock(&link.stale).extend(leave);
                    continue;
                }
                if !join.is_empty() {
                    link.subscribe(&join).await;
                }
                if !leave.is_empty() {
                    link.unsubscribe(&leave).await;
                }
            }
            _ = link.wake.notified() => {
                if link.is_shut_down() {
                    return;
                }
                // Redis was lost: try again at once, then backing off to the probe interval.
                tokio::time::sleep(retry).await;
                if link.reconcile().await {
                    retry = Duration::from_millis(100);
                } else {
                    retry = (retry * 2).min(link.settings.probe_every);
                    link.wake.notify_one();
                }
            }
            _ = tick.tick() => {
                if hub.strong_count() == 0 || link.is_shut_down() {
                    // The server is gone.
                    return;
                }
                // The previous probe should be back by now; twice missing while Redis answers
                // (and no push was dropped for a full queue) means the subscription went deaf.
                let dropped_pushes = link.pushes_dropped.swap(0, Relaxed) > 0;
                if link.gap_pending.swap(false, Relaxed) {
                    link.gap();
                }
                if probe_sent > 0
                    && link.probe_seen.load(Relaxed) < probe_sent
                    && !link.is_down()
                    && !dropped_pushes
                {
                    deaf += 1;
                    if deaf >= 2 {
                        tracing::warn!(
                            node = %link.node,
                            "the Redis subscription stopped receiving (its probe did not come back); reconnecting"
                        );
                        link.reconnect();
                        deaf = 0;
                    }
                } else {
                    deaf = 0;
                }
                link.reconcile().await;
                // Notices and leaves left for later (Redis was away).
                link.tell_lost().await;
                link.retry_leaves().await;
                probe_sent += 1;
                let probe = [Job::Publish(
                    channel::probe(&link.node),
                    probe_sent.to_string().into_bytes(),
                )];
                let probe = link.driver.send(&probe, &link.append_context()).await;
                match probe {
                    Ok(_) => link.up(),
                    Err(e) => link.failed(&e),
                }
            }
        }
    }
}
