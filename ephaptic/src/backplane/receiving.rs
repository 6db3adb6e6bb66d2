//! What arrives from the engine: the driver hands it to the [`Inbox`] (bounded: a full queue
//! drops and makes this server's clients refetch), and the receiver task delivers it to this
//! server's connections, positioned when it is an event of a stream.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::channel;
use super::driver::{Fault, FaultKind, Inbox};
use super::link::Link;
use crate::session::credentials::SESSION_ENDED;
use crate::session::{Hub, Stream};

impl Inbox for Link {
    /// Queued for the receiver; a full queue drops it (counted), and this server's listeners
    /// are told to refetch at the next probe tick, once per burst.
    fn message(&self, channel: &[u8], body: &[u8]) {
        if self
            .inbox
            .push_tx
            .try_send((channel.to_vec(), body.to_vec()))
            .is_err()
        {
            self.subs.pushes_dropped.fetch_add(1, Relaxed);
            self.counters.dropped.fetch_add(1, Relaxed);
            self.subs.gap_pending.store(true, Relaxed);
        }
    }

    fn disconnected(&self) {
        self.down(&Fault::new(
            FaultKind::Unreachable,
            "the connection to the backplane was lost",
        ));
    }

    fn part_lost(&self) {
        Link::part_lost(self);
    }

    fn unsubscribed(&self, channel: &[u8]) {
        Link::unsubscribed(self, channel);
    }
}

/// Delivers what Redis pushes to this server's connections.
pub(super) async fn receiver(
    link: Arc<Link>,
    hub: Weak<Hub>,
    mut rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
) {
    let mut ended = link.lifecycle.shutdown.subscribe();
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
                link.subs.probe_seen.fetch_max(n, Relaxed);
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
    if let Some((target, reason)) = channel::unwrap_end(&link.node, body) {
        let reason = crate::session::credentials::close_reason(&reason);
        let closed = hub.close(target.as_stream(), SESSION_ENDED, reason);
        tracing::debug!(closed, "sessions ended by another server: {reason}");
        return;
    }
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
