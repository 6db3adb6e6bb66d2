//! A graceful shutdown, once the server has stopped accepting: new calls are refused with
//! `SHUTTING_DOWN`, open streams are ended with it at once (they may never end by themselves,
//! and a deploy should not wait for them), calls in flight get until the drain deadline to
//! finish and be answered, what still runs then is stopped and answered `SHUTTING_DOWN`, and
//! every connection is
//! closed with 1001 ("going away"), which clients take as a cue to reconnect (to another
//! server, or to this one once it is back).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::state::State;
use crate::error::Error;
use crate::session::Connection;
use crate::wire::NIL;

/// WebSocket close code "going away" (RFC 6455): the server is shutting down.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;

/// How often the drain looks at what is still running.
const POLL: Duration = Duration::from_millis(25);
/// How long the last answers get to leave, and then the connections to close.
const LAST_FRAMES: Duration = Duration::from_secs(1);

/// `SHUTTING_DOWN`: a call that arrived during a shutdown, or did not finish before its
/// deadline.
#[cold]
pub(crate) fn shutting_down() -> Error {
    Error::new(
        "SHUTTING_DOWN",
        "The server is shutting down; call again once the client has reconnected.",
    )
}

/// What a drain did, for its log line and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    pub connections: usize,
    /// Calls (and streams) that had to be stopped at the deadline.
    pub stopped: usize,
}

/// Drains every connection of `state`'s server (see the module docs).
pub(crate) async fn drain(state: &Arc<State>, timeout: Duration) -> Drained {
    state.start_draining();
    let hub = &state.hub;
    let connections = hub.len();
    let deadline = Instant::now() + timeout;
    tracing::info!(
        connections,
        "shutting down: letting calls in flight finish (up to {timeout:?})"
    );

    // 1. Streams, which may never end by themselves, end now; calls in flight finish and
    // their answers leave.
    let mut streams = 0;
    for conn in hub.connections() {
        for key in conn.abort_streams() {
            streams += 1;
            answer_shutting_down(&conn, key);
        }
    }
    wait_until(deadline, || {
        hub.connections()
            .iter()
            .all(|c| c.calls_running() == 0 && c.queued() == 0)
    })
    .await;

    // 2. What still runs is stopped and answered.
    let mut stopped = 0;
    for conn in hub.connections() {
        for key in conn.abort_running() {
            stopped += 1;
            answer_shutting_down(&conn, key);
        }
    }
    if stopped > 0 {
        tracing::warn!("shutting down: stopped {stopped} call(s) still running at the deadline");
    }

    // 3. Every connection is told to go away (after what is queued for it, for a second at
    // most); their tasks end. Connections that opened meanwhile were closed as they opened.
    for conn in hub.connections() {
        conn.close(CLOSE_GOING_AWAY, "server shutting down");
    }
    wait_until(Instant::now() + 2 * LAST_FRAMES, || {
        state.live_tasks.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;
    tracing::info!(connections, streams, stopped, "shut down");
    Drained {
        connections,
        stopped,
    }
}

/// Answers the call with encoded id `key` `SHUTTING_DOWN` (if its queue has room).
fn answer_shutting_down(conn: &Connection, key: Bytes) {
    let id = if key.is_empty() {
        Bytes::from_static(NIL)
    } else {
        key
    };
    conn.try_answer(shutting_down().to_frame(&id, false));
}

async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}
