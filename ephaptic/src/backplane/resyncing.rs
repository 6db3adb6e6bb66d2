//! The resync task: once this server is subscribed again, tells each connection that speaks
//! sessions to refetch each of its streams that was asked for (one `resync` each), with the
//! stream's position now.

use std::sync::Arc;
use std::sync::atomic::{Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::Duration;

use super::channel;
use super::driver::{self, ReadRequest};
use super::history;
use super::link::{Link, ResyncTask};
use super::settings::{READY_WAIT, a_minute_since, lock};
use crate::session::{Hub, Stream};

/// Sends `resync` (docs/PROTOCOL.md 5.6) for every stream of every connection that speaks
/// sessions, with the stream's position now, once this server is subscribed again (so what
/// follows the position arrives live).
/// The resync task, boxed for [`Lifecycle::resync_task`](super::link::Lifecycle::resync_task).
pub(super) fn task(link: Arc<Link>, hub: Arc<Hub>, meta_ttl: Duration) -> ResyncTask {
    Box::pin(resync(link, hub, meta_ttl))
}

async fn resync(link: Arc<Link>, hub: Arc<Hub>, meta_ttl: Duration) {
    let subscribed = || async {
        loop {
            let changed = link.subs.confirmed_changed.notified();
            let done = {
                let desired = lock(&link.subs.desired);
                let confirmed = lock(&link.subs.confirmed);
                desired
                    .iter()
                    .chain(&link.subs.permanent)
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
        let asked = link.resync.asked.load(Acquire);
        let _ = tokio::time::timeout(READY_WAIT, subscribed()).await;
        if link.resync.asked.load(Acquire) == asked {
            break;
        }
    }
    // What was asked for until now is this resync's; what is asked for after, the next one's.
    link.resync.scheduled.store(false, Release);
    let only = std::mem::take(&mut *lock(&link.resync.wanted));
    if only.is_empty() {
        return;
    }
    // Stream -> (its wire name, its channel, the connections that read it).
    let mut streams: std::collections::HashMap<
        String,
        (String, String, Vec<Arc<crate::session::Connection>>),
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
                .or_insert_with(|| (wire, channel::of(stream), Vec::new()))
                .2
                .push(conn.clone());
        }
    }
    if streams.is_empty() {
        return;
    }
    // One line a minute at most at info (a long overload resyncs once a second).
    let what = "events of other servers may have been missed (Redis was away, or they never reached it): telling the clients to refetch";
    if a_minute_since(&link.resync.logged) {
        tracing::info!(node = %link.node, streams = streams.len(), "{what}");
    } else {
        tracing::debug!(node = %link.node, streams = streams.len(), "{what}");
    }
    // A stream whose channel is not subscribed yet (on a Redis Cluster, its shard may still be
    // down) is told later: a resync before the subscription would let what follows it go
    // unheard, and untold.
    let mut later = Vec::new();
    for (key, (wire, channel, conns)) in streams {
        if link.holds(&channel)
            && !lock(&link.subs.confirmed).contains(&channel)
            && !link.is_shut_down()
        {
            later.push(key);
            continue;
        }
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
        link.counters.resyncs.fetch_add(conns.len() as u64, Relaxed);
        if let Some(t) = link.counters.telemetry.get() {
            t.resynced(conns.len() as u64);
        }
        for conn in conns {
            // Its position moves to the stream's now: what a replay left to drop no longer holds.
            conn.clear_floor(&wire);
            conn.push_event(frame.clone());
        }
    }
    for key in later {
        link.want_resync(Some(&key));
    }
}
