//! How the link follows changes of the engine that are not outages of it: Redis Sentinel naming
//! another master, a Redis Cluster node lost (and, once every node answers, a new cluster
//! connection), and a cluster slot moved to another shard. Each ends with the clients that speak
//! sessions told to refetch what may have gone unheard: every stream, or the one that moved.

use std::sync::atomic::Ordering::Relaxed;

use super::channel;
use super::link::Link;
use super::settings::lock;

impl Link {
    /// A part of the engine (a Redis Cluster node) lost its connection; the others work on.
    /// This server subscribes everything again (what is subscribed already stays; what was on
    /// that node is retried until it is back) and, once it is, tells its clients to refetch.
    /// Since redis-rs's own repair of that node's subscriptions cannot be relied on, the
    /// connection is renewed once every node answers ([`renew`](Self::renew)).
    pub(super) fn part_lost(&self) {
        tracing::warn!(
            node = %self.node,
            "the connection to a node of the Redis Cluster was lost: subscribing again; \
             clients are told to refetch what they may have missed meanwhile"
        );
        self.health.parted.store(true, Relaxed);
        self.subscribe_anew();
    }

    /// The engine ended a subscription: a Redis Cluster moved the channel's slot to another
    /// shard (its node says so to every subscriber), or it confirms a leave this server asked
    /// for. When this server still wants the channel, it is subscribed again (on the slot's new
    /// shard) and, once it is, that stream's clients are told to refetch: what was published
    /// on it between the move and the new subscription went unheard. Only that stream.
    pub(super) fn unsubscribed(&self, channel: &[u8]) {
        let Ok(name) = std::str::from_utf8(channel) else {
            return;
        };
        if !self.holds(name) || !lock(&self.subs.confirmed).remove(name) {
            return;
        }
        tracing::info!(
            node = %self.node,
            "the Redis Cluster moved {name}'s slot: subscribing again on its new shard"
        );
        self.subs.confirmed_changed.notify_waiters();
        if let Some(channel::Channel::Stream(stream)) = channel::parse(channel) {
            self.want_resync(Some(&stream.as_stream().key()));
        }
        self.subs.wake.notify_one();
    }

    /// After a part of the engine was lost: once every part answers, a new connection holds
    /// all of this server's subscriptions, and its clients are told to refetch once more (what
    /// the old one missed while it seemed subscribed). Called at each probe tick.
    pub(super) async fn renew(&self) {
        if !self.health.parted.load(Relaxed) {
            return;
        }
        let all = self.held();
        if let Ok(true) = self.driver.renew(&all).await {
            self.health.parted.store(false, Relaxed);
            lock(&self.subs.confirmed).extend(all);
            self.subs.confirmed_changed.notify_waiters();
            tracing::info!(
                node = %self.node,
                "every node of the Redis Cluster answers again: subscribed anew on a new connection"
            );
            self.gap();
        }
    }

    /// The engine's master moved (Redis Sentinel named another) and the driver follows it:
    /// the new one has none of this server's subscriptions, and what was published on the old
    /// one after it fell is lost. Counted, logged once per move; this server subscribes again
    /// and tells its clients to refetch (a gap, as after an outage).
    pub(super) fn switched(&self, to: &str) {
        self.counters.failovers.fetch_add(1, Relaxed);
        let url = super::settings::masked(&self.settings.url);
        tracing::warn!(
            node = %self.node,
            "Redis Sentinel names a new master for {url}: {to}. Following it; clients are told \
             to refetch what they may have missed during the failover"
        );
        if !tracing::dispatcher::has_been_set() {
            eprintln!("ephaptic: Redis failed over to {to} (Sentinel); following it");
        }
        self.subscribe_anew();
    }
}
