//! Subscriptions that follow what this server holds: the hub says when its first connection of
//! a user or a group arrives and its last one leaves, the task subscribes and leaves in batches,
//! keeps them complete after outages, and runs the liveness probe that finds a deaf one.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use tokio::sync::{Notify, mpsc};

use super::channel;
use crate::session::Stream;

/// How many channels one `SUBSCRIBE` or `UNSUBSCRIBE` names at most.
pub(super) const CHANNELS_PER_COMMAND: usize = 512;

/// A change of what this server holds, for the subscription task.
#[derive(Debug)]
pub(super) enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

/// What the subscriptions own.
pub(super) struct Subscriptions {
    /// Channels this server subscribes to whatever it holds.
    pub permanent: Vec<String>,
    /// Channels it should be subscribed to for what it holds, those the engine confirmed, and
    /// those it left while the engine was away (to unsubscribe from once it is back).
    pub desired: Mutex<HashSet<String>>,
    pub confirmed: Mutex<HashSet<String>>,
    pub stale: Mutex<HashSet<String>>,
    pub confirmed_changed: Notify,
    /// Channels this server holds listeners for, from the moment the hub says so (before the
    /// task has subscribed): the publisher waits for these to be confirmed before it sends an
    /// event to one, or the engine could publish it before this server listens.
    pub wanted: Mutex<HashSet<String>>,
    pub changes_tx: mpsc::UnboundedSender<Change>,
    /// Wakes the task: the engine was lost, or has to be tried again.
    pub wake: Notify,
    /// The last probe number that came back.
    pub probe_seen: AtomicU64,
    /// Pushes dropped because the receive queue was full (since the last probe check).
    pub pushes_dropped: AtomicU64,
    /// Pushes were dropped since the last probe tick: a resync is due.
    pub gap_pending: AtomicBool,
}

pub(super) fn permanent_channels(node: &str, compat: bool) -> Vec<String> {
    let mut channels = vec![channel::of(Stream::All), channel::probe(node)];
    if compat {
        channels.push(channel::LEGACY.to_owned());
    }
    channels
}
