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
//! **Layout.** The logic reaches its engine only through [`driver::Driver`] (Redis in
//! `redis_driver.rs`; an in-process bus for the tests in `in_process.rs`). Each part owns its
//! state in its own file (health, subscriptions, publisher, receiver, resync, leaves),
//! `link.rs` holds and coordinates them, and the tasks that run on the link are above it
//! (publishing, receiving, subscribing, resyncing). ARCHITECTURE.md has the map.
//!
//! [`Server::redis`]: crate::Server::redis

mod answers;
mod channel;
mod connection;
mod driver;
mod following;
mod health;
mod history;
#[cfg(test)]
mod in_process;
mod leaves;
mod limit;
mod link;
mod presence;
mod publisher;
mod publishing;
mod receiver;
mod receiving;
mod redis_driver;
mod resync;
mod resyncing;
mod settings;
mod stream_set;
mod subscribing;
mod subscriptions;
mod target;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use self::driver::{Driver, Job, ReadRequest};
use self::health::Health;
use self::link::{Counters, Lifecycle, Link, Tasks};
use self::publisher::{PUBLISH_QUEUE, Publisher};
use self::receiver::{RECEIVE_QUEUE, Receiving};
use self::redis_driver::RedisDriver;
use self::resync::Resync;
pub(crate) use self::settings::{Settings, masked};
use self::settings::{lock, node_id};
use self::subscriptions::{Subscriptions, permanent_channels};
use crate::handler::{Audience, Sent};
use crate::identity::Identity;
use crate::runtime::delivery::{Backplane, Delivery, DeliveryStats, Local, Outgoing};
use crate::runtime::ratelimit::Remote;
use crate::session::{Hub, Interest, Stream};

/// What the start line and the logs call the Redis at `url` ("Redis at redis://h:6379", "a Redis
/// Cluster at redis+cluster://..."), its password masked.
pub(crate) fn describe(url: &str) -> String {
    let kind = target::Target::parse(url).map_or_else(|_| "Redis".to_owned(), |t| t.kind());
    format!("{kind} at {}", masked(url))
}

/// The backplane before its server's hub exists.
pub(crate) struct Redis {
    link: Arc<Link>,
}

impl Redis {
    /// A backplane on `settings.url` (one Redis, Sentinel's master, or a Redis Cluster). Fails
    /// only when the URL cannot be read; an unreachable Redis is retried in the background.
    pub fn new(settings: Settings) -> Result<Self, String> {
        let url = masked(&settings.url);
        let target = target::Target::parse(&settings.url)
            .map_err(|e| format!("the Redis URL {url:?} cannot be used: {e}"))?;
        if settings.compat && target.is_cluster() {
            return Err(format!(
                "the Redis URL {url:?} is a Redis Cluster, which the Python ephaptic servers of \
                 `redis_compat` cannot use (they speak to one Redis): give them one Redis (or \
                 Sentinel's master), or leave compatibility mode off"
            ));
        }
        let driver = RedisDriver::new(target)
            .map_err(|e| format!("the Redis URL {url:?} cannot be used: {e}"))?;
        Ok(Self::with_driver(settings, driver))
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
                subs: Subscriptions {
                    permanent: permanent_channels(&node, settings.compat),
                    desired: Mutex::default(),
                    confirmed: Mutex::default(),
                    stale: Mutex::default(),
                    confirmed_changed: Notify::new(),
                    wanted: Mutex::default(),
                    changes_tx,
                    wake: Notify::new(),
                    probe_seen: AtomicU64::new(0),
                    pushes_dropped: AtomicU64::new(0),
                    gap_pending: AtomicBool::new(false),
                },
                node,
                settings,
                driver,
                counters: Counters::default(),
                health: Health::default(),
                publisher: Publisher {
                    publish_tx,
                    lost: Mutex::default(),
                    lost_any: AtomicBool::new(false),
                    lost_told: Mutex::new(None),
                },
                inbox: Receiving { push_tx },
                resync: Resync::default(),
                leaves: Mutex::default(),
                lifecycle: Lifecycle {
                    tasks: Mutex::new(Some(Tasks {
                        publish_rx,
                        push_rx,
                        changes_rx,
                        hub: Weak::new(),
                    })),
                    resync_task: resyncing::task,
                    started: AtomicBool::new(false),
                    shutdown: tokio::sync::watch::channel(false).0,
                },
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
        let link: Arc<Link> = self.link.clone();
        let reports: Weak<dyn driver::Reports> = Arc::downgrade(&link) as Weak<dyn driver::Reports>;
        let store = self.link.driver.presence_store(ttl, reports);
        (store, self.link.node.clone())
    }
}

impl Backplane for Redis {
    fn interest(&self) -> Option<Arc<dyn Interest>> {
        Some(self.link.clone())
    }

    fn limiter(&self) -> Option<Arc<dyn Remote>> {
        Some(Arc::new(limit::Shared::new(self.link.clone())))
    }

    fn answers(&self) -> Option<Arc<dyn crate::runtime::window::Shared>> {
        Some(Arc::new(answers::Answers::new(self.link.clone())))
    }

    fn into_delivery(
        self: Box<Self>,
        hub: Arc<Hub>,
        history: Option<crate::runtime::history::Retentions>,
    ) -> Box<dyn Delivery> {
        let link = self.link;
        if let Some(tasks) = lock(&link.lifecycle.tasks).as_mut() {
            tasks.hub = Arc::downgrade(&hub);
        }
        // With a runtime at hand, connect now; otherwise at the first connection.
        if tokio::runtime::Handle::try_current().is_ok() {
            start(&link);
        }
        // In compatibility mode `to(..)` events go through the reference's envelope, which has
        // no position: so no history there.
        let history = history.filter(|_| !link.settings.compat);
        *lock(&link.resync.hub) = Arc::downgrade(&hub);
        *lock(&link.resync.meta_ttl) = history.map(|h| h.meta_ttl);
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
    ) -> Sent {
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
        let mut sent = Sent {
            local: 0,
            published: true,
        };
        for stream in event.audience.streams() {
            sent.local += if append(stream) {
                // It reaches this server's listeners when Redis publishes it back.
                self.hub.listeners(stream)
            } else {
                self.link.counters.dropped.fetch_add(1, Relaxed);
                sent.published = false;
                self.hub.offer(stream, &event.frame, None)
            };
        }
        sent
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
                Ok(reply) => history::decide_read(&reply, asked, retention),
                Err(e) => {
                    self.link.failed(&e);
                    crate::runtime::history::Read::unavailable(asked)
                }
            }
        })
    }

    fn deliver(&self, event: Outgoing<'_>) -> Sent {
        if let Some(retentions) = &self.history
            && event.keep != crate::runtime::delivery::Keep::Not
        {
            return self.deliver_kept(&event, retentions);
        }
        let link = &self.link;
        let published = match event.audience {
            // In compatibility mode `to(..)` goes through the reference's envelope.
            Audience::Users(ids) if link.settings.compat => {
                let body = channel::legacy_envelope(&link.node, ids, &event.frame);
                link.enqueue(channel::LEGACY.to_owned(), body)
            }
            audience => audience.streams().fold(true, |all, stream| {
                link.publish(&channel::of(stream), &event.frame) & all
            }),
        };
        Sent {
            published,
            ..self.local.deliver(event)
        }
    }

    fn opened(&self) {
        start(&self.link);
    }

    fn observe(&self, telemetry: Arc<crate::runtime::telemetry::Telemetry>) {
        let _ = self.link.counters.telemetry.set(telemetry);
    }

    fn end_sessions(&self, stream: Stream<'_>, reason: &str) -> bool {
        let link = &self.link;
        let channel = match stream {
            // No server of ours subscribes to a user's channel in compatibility mode.
            Stream::User(_) if link.settings.compat => channel::ALL.to_owned(),
            other => channel::of(other),
        };
        let body = channel::end(&link.node, stream, reason);
        let queued = link.enqueue_job(Job::Publish(channel, body));
        if !queued {
            link.counters.dropped.fetch_add(1, Relaxed);
        }
        queued
    }

    fn stats(&self) -> DeliveryStats {
        let c = &self.link.counters;
        DeliveryStats {
            published: c.published.load(Relaxed),
            received: c.received.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            outages: c.outages.load(Relaxed),
            failovers: c.failovers.load(Relaxed),
            resyncs: c.resyncs.load(Relaxed),
            connected: Some(self.link.health.connected.load(Relaxed)),
        }
    }
}

impl Drop for RedisDelivery {
    fn drop(&mut self) {
        // The server is gone: its tasks end and its connection to Redis closes.
        self.link.lifecycle.shutdown.send_replace(true);
        self.link.subs.wake.notify_one();
        self.link.driver.close();
    }
}

/// Starts a link's background tasks, once (there must be a runtime).
fn start(link: &Arc<Link>) {
    if link.lifecycle.started.swap(true, Relaxed) {
        return;
    }
    let Some(tasks) = lock(&link.lifecycle.tasks).take() else {
        return;
    };
    let Tasks {
        publish_rx,
        push_rx,
        changes_rx,
        hub,
    } = tasks;
    tracing::info!(
        node = %link.node,
        compat = link.settings.compat,
        "ephaptic delivers events across servers through {}",
        describe(&link.settings.url)
    );
    tokio::spawn(publishing::publisher(link.clone(), hub.clone(), publish_rx));
    tokio::spawn(receiving::receiver(link.clone(), hub.clone(), push_rx));
    tokio::spawn(subscribing::subscriptions(link.clone(), hub, changes_rx));
}
