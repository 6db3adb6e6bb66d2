//! The session side of a connection (docs/PROTOCOL.md 5.6): the reserved call
//! `__ephaptic.hello`, which replays what the client missed of its identity's stream and of
//! the broadcast stream and tells it who it is, and the `position` frame (with the replay of a
//! group) when it joins a group.
//!
//! The order that makes a resume exact: a stream's live events are held back for the
//! connection from before it is indexed for the stream (`init`, or the join) until its replay
//! is queued; then the held events after the replay follow, and a copy of a replayed event that
//! was still on its way is dropped (`session/gate.rs`). The history is read after the
//! connection is subscribed (with Redis, after the subscription is confirmed), so an event is
//! either in what was read or arrives live.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::Serialize;

use super::delivery::stamp;
use super::history::{Lost, Read};
use super::state::State;
use crate::identity::Identity;
use crate::session::hub::Joined;
use crate::session::{ALL_WIRE, Connection, Stream, USER_WIRE};
use crate::wire::reply;

/// The reserved name of the hello.
pub(crate) const HELLO: &[u8] = b"__ephaptic.hello";

/// What a stream's resume came to, as the hello and the `position` frame say it.
#[derive(Debug, Serialize)]
struct Outcome {
    epoch: String,
    offset: u64,
    recovered: bool,
    was_recovering: bool,
    replayed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// Below which a held live event is a copy of what was sent (`None`: the history could
    /// not be read, nothing was sent).
    #[serde(skip)]
    floor: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Limits {
    max_frame_size: usize,
    max_calls_in_flight: usize,
    max_sent_frame: usize,
    max_frame_nodes: usize,
}

#[derive(Debug, Serialize)]
struct Hello<'a> {
    v: u8,
    server: &'static str,
    identity: Option<&'a Identity>,
    schema: &'a str,
    resume: bool,
    limits: Limits,
    streams: BTreeMap<&'static str, Outcome>,
}

/// Answers a hello (run as a call in a task of its own: a replay waits for room in the queue
/// and, with Redis, for the history).
pub(crate) async fn hello(state: Arc<State>, conn: Arc<Connection>, id: Bytes) {
    {
        let mut streams = BTreeMap::new();
        if state.delivery.keeps_history() {
            if let Some(identity) = conn.identity() {
                let outcome = resume(&state, &conn, Stream::User(identity)).await;
                streams.insert(USER_WIRE, outcome);
            }
            streams.insert(ALL_WIRE, resume(&state, &conn, Stream::All).await);
        }
        let answer = Hello {
            v: 2,
            server: concat!("ephaptic-rs/", env!("CARGO_PKG_VERSION")),
            identity: conn.identity(),
            schema: state.schema_hash(),
            resume: state.delivery.keeps_history(),
            limits: Limits {
                max_frame_size: state.config.max_frame_size,
                max_calls_in_flight: state.config.max_calls_in_flight,
                max_sent_frame: state.config.max_sent_frame,
                max_frame_nodes: state.config.max_frame_nodes,
            },
            streams,
        };
        match reply::result_frame(&id, &answer) {
            Ok(frame) => {
                conn.send(frame).await;
            }
            Err(e) => tracing::error!("the hello could not be encoded: {e}"),
        }
        // Live events follow the answer.
        for (wire, outcome) in &answer.streams {
            conn.release(wire, outcome.floor).await;
        }
    }
}

/// Lets the connection start another hello once this one ended (or was cancelled).
/// Made before the hello's task is spawned and moved into it, so that a hello cancelled before
/// its first poll lets the next one start too.
pub(crate) struct HelloDone(pub Arc<Connection>);

impl Drop for HelloDone {
    fn drop(&mut self) {
        self.0.end_hello();
    }
}

/// Resumes one stream of `conn`: reads it from the position the client asked for (if it did)
/// and queues the replay. Its held live events wait for [`Connection::release`] with the
/// outcome's offset, once the answer is queued.
async fn resume(state: &State, conn: &Connection, of: Stream<'_>) -> Outcome {
    let wire = of.wire();
    let wire = wire.as_ref();
    let asked = conn.take_asked(wire);
    // With Redis, the history is read only once what other servers publish on the stream
    // reaches this one: an event in between would be neither read nor received.
    let topic = match of {
        Stream::User(id) => Some(Stream::User(id)),
        Stream::Group(g) => Some(Stream::Group(g)),
        Stream::All => None,
    };
    let subscribed = match topic.and_then(|t| state.hub.ready(t)) {
        Some(ready) => ready.await,
        None => true,
    };
    let read = if subscribed {
        state
            .delivery
            .read(of, asked.as_ref(), conn.identity())
            .await
    } else {
        Read::unavailable(asked.as_ref())
    };
    let replayed = replay(conn, wire, &read).await;
    let Read {
        epoch,
        top,
        asked,
        outcome,
    } = read;
    let floor = match outcome {
        Err(Lost::Unavailable) => None,
        _ => Some(top),
    };
    if let Some(t) = &state.telemetry {
        let kind = of.kind().name();
        let how = match &outcome {
            Ok(_) if asked => "recovered",
            Ok(_) => "fresh",
            Err(lost) => lost.as_str(),
        };
        t.resume(kind, how);
    }
    Outcome {
        epoch,
        offset: top,
        recovered: outcome.is_ok(),
        was_recovering: asked,
        replayed,
        reason: outcome.err().map(|lost| lost.as_str()),
        floor,
    }
}

/// Queues what a read found to replay, waiting for room; how many events.
async fn replay(conn: &Connection, wire: &str, read: &Read) -> usize {
    let Ok(events) = &read.outcome else {
        return 0;
    };
    for (seq, frame) in events {
        if !conn.send(stamp(frame, wire, *seq, &read.epoch)).await {
            break;
        }
    }
    events.len()
}

/// Follows up joins for the server's runtime: the `position` frame of the group, after what
/// the client missed of it when it asked.
#[derive(Debug)]
pub(crate) struct Resumer(pub Weak<State>);

impl Joined for Resumer {
    fn active(&self) -> bool {
        self.0.upgrade().is_some_and(|s| s.delivery.keeps_history())
    }

    fn left(&self, conn: &Arc<Connection>, group: &str) {
        if let (Some(state), Some(identity)) = (self.0.upgrade(), conn.identity()) {
            state.delivery.left(group, identity);
        }
    }

    fn joined(&self, conn: &Arc<Connection>, group: &str) {
        let Some(state) = self.0.upgrade() else {
            return;
        };
        let conn = conn.clone();
        let group = group.to_owned();
        tokio::spawn(async move {
            let stream = Stream::Group(&group);
            let wire = stream.wire();
            let outcome = resume(&state, &conn, stream).await;
            // The read started the identity's tenure; a leave that came first (a join and a
            // leave in one read of the socket) must not leave one behind.
            if !conn.in_group(&group)
                && let Some(identity) = conn.identity()
            {
                state.delivery.left(&group, identity);
            }
            let mut extra = Vec::new();
            let mut pairs = 3;
            put_pair(&mut extra, "recovered", outcome.recovered);
            put_pair(&mut extra, "was_recovering", outcome.was_recovering);
            put_pair(&mut extra, "replayed", outcome.replayed);
            if let Some(reason) = outcome.reason {
                put_pair(&mut extra, "reason", reason);
                pairs += 1;
            }
            let frame = reply::position_frame(
                "position",
                &wire,
                &outcome.epoch,
                outcome.offset,
                pairs,
                &extra,
            );
            conn.send(frame).await;
            conn.release(&wire, outcome.floor).await;
        });
    }
}

fn put_pair<T: Serialize>(buf: &mut Vec<u8>, key: &str, value: T) {
    crate::wire::msgpack::put_str(buf, key);
    let _ = rmp_serde::encode::write_named(buf, &value);
}
