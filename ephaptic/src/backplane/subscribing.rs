//! The hub's interest and the subscriptions task: the first connection of a user or a group
//! here subscribes its channel, the last one leaves it, in batches; subscriptions are made
//! complete again after outages; the liveness probe finds a deaf subscription.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::channel;
use super::driver::Job;
use super::link::Link;
use super::settings::{READY_WAIT, lock};
use super::subscriptions::{CHANNELS_PER_COMMAND, Change};
use crate::session::{Hub, Interest, Stream};

impl Interest for Link {
    fn ready(&self, stream: Stream<'_>) -> Option<crate::session::hub::Ready> {
        let channel = match stream {
            // Identity events come through the compatibility channel, and events to everyone
            // through theirs: both always subscribed.
            Stream::User(_) if self.settings.compat => return None,
            Stream::All => return None,
            other => channel::of(other),
        };
        if self.is_down() || lock(&self.subs.confirmed).contains(&channel) {
            // Redis is away, and waiting would not help; or it is subscribed already.
            return None;
        }
        let link = self.me.upgrade()?;
        Some(Box::pin(async move {
            let confirmed = async {
                loop {
                    let changed = link.subs.confirmed_changed.notified();
                    if lock(&link.subs.confirmed).contains(&channel) {
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
            lock(&self.subs.wanted).insert(channel.clone());
            Change::Subscribe(channel)
        } else {
            lock(&self.subs.wanted).remove(&channel);
            // At once, not when the task gets to it: a connection of the same user arriving
            // meanwhile must wait for the subscription to be made again.
            lock(&self.subs.confirmed).remove(&channel);
            Change::Unsubscribe(channel)
        };
        let _ = self.subs.changes_tx.send(change);
    }
}

/// Follows the engine when it moved (Redis Sentinel's master); a question the sentinels could
/// not answer changes nothing (the commands on the current master say whether it works).
async fn follow(link: &Link) {
    if let Ok(Some(to)) = link.driver.follow().await {
        link.switched(&to);
    }
}

/// Follows what this server holds (in batches), keeps its subscriptions complete after
/// outages, and runs the liveness probe.
pub(super) async fn subscriptions(
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
                    let mut desired = lock(&link.subs.desired);
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
                    lock(&link.subs.stale).extend(leave);
                    continue;
                }
                if !join.is_empty() {
                    link.subscribe(&join).await;
                }
                if !leave.is_empty() {
                    link.unsubscribe(&leave).await;
                }
            }
            _ = link.subs.wake.notified() => {
                if link.is_shut_down() {
                    return;
                }
                // Redis was lost: try again at once, then backing off to the probe interval
                // (at most a second: a failover is over in a few).
                tokio::time::sleep(retry).await;
                follow(&link).await;
                if link.reconcile().await {
                    retry = Duration::from_millis(100);
                } else {
                    retry = (retry * 2).min(link.settings.probe_every.min(Duration::from_secs(1)));
                    link.subs.wake.notify_one();
                }
            }
            _ = tick.tick() => {
                if hub.strong_count() == 0 || link.is_shut_down() {
                    // The server is gone.
                    return;
                }
                // The previous probe should be back by now; twice missing while Redis answers
                // (and no push was dropped for a full queue) means the subscription went deaf.
                let dropped_pushes = link.subs.pushes_dropped.swap(0, Relaxed) > 0;
                if link.subs.gap_pending.swap(false, Relaxed) {
                    link.gap();
                }
                if probe_sent > 0
                    && link.subs.probe_seen.load(Relaxed) < probe_sent
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
                follow(&link).await;
                link.renew().await;
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
