//! The publisher task: sends what waits in the queue in order, in batches of one round trip;
//! what the engine did not take is delivered here without a position and noted as lost.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::channel;
use super::driver::Job;
use super::link::Link;
use super::publisher::BATCH;
use crate::session::Hub;

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// Sends queued publishes in order, in batches of one round trip each.
pub(super) async fn publisher(link: Arc<Link>, hub: Weak<Hub>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut ended = link.lifecycle.shutdown.subscribe();
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
        let began = std::time::Instant::now();
        let sent = link.driver.send(&batch, &link.append_context()).await;
        match sent {
            Ok(()) => {
                if let Some(t) = link.counters.telemetry.get() {
                    t.redis_publish(began.elapsed());
                }
                link.up();
                link.counters.published.fetch_add(n, Relaxed);
                link.tell_lost().await;
            }
            Err(e) => {
                // A cluster whose shards answered apart: what was sent went out.
                let sent = e.sent.clone().unwrap_or_default();
                let was_sent = |i: usize| sent.get(i).copied().unwrap_or(false);
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
                for (i, job) in batch.drain(..).enumerate() {
                    if was_sent(i) {
                        lost -= 1;
                        link.counters.published.fetch_add(1, Relaxed);
                        continue;
                    }
                    if here {
                        deliver_here(hub.as_deref(), &job);
                    }
                    // After a timeout the batch may have run after all: the other servers'
                    // clients then refetch for nothing, which is better than missing it.
                    link.lose(&job);
                }
                // (Not after one shard of a cluster failed: the others take what waits.)
                while !e.is_partial()
                    && let Ok(job) = rx.try_recv()
                {
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

/// Delivers an event of a stream that Redis did not take to this server's own listeners.
fn deliver_here(hub: Option<&Hub>, job: &Job) {
    let (Some(hub), Job::Append { channel, frame, .. }) = (hub, job) else {
        return;
    };
    if let Some(channel::Channel::Stream(stream)) = channel::parse(channel.as_bytes()) {
        hub.offer(stream.as_stream(), frame, None);
    }
}
