//! How a call's answers are written, wherever the call ran (inline, in a task of its own, or
//! once per idempotency key): with details of internal errors in debug mode or not, never
//! larger than the server sends, failures logged within their budget, a stream's chunks one by
//! one.

use std::sync::Arc;

use bytes::Bytes;

use super::loglimit;
use super::panic::{CatchUnwind, panicked};
use super::state::State;
use super::telemetry::Meter;
use crate::error::Error;
use crate::handler::{FunctionDef, Outcome};
use crate::session::Connection;
use crate::session::names::Every;
use crate::wire::reply;

/// How a call's answers are written: with details of internal errors (debug mode) or not, and
/// no frame larger than the server sends ([`Server::max_sent_frame`](crate::Server::max_sent_frame)).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub debug: bool,
    max_frame: usize,
    /// The call's timing, with metrics on.
    meter: Option<Meter>,
}

impl Answer {
    pub fn of(state: &State, meter: Option<Meter>) -> Self {
        Answer {
            debug: state.config.debug,
            max_frame: state.config.max_sent_frame,
            meter,
        }
    }

    /// The same, measuring the call with `meter` (a call answered in a task of its own).
    pub fn metered(self, meter: Option<Meter>) -> Self {
        Answer { meter, ..self }
    }

    /// Counts the call as answered with `code` (with metrics on).
    #[inline]
    pub fn answered(&self, code: &str) {
        if let Some(m) = &self.meter {
            m.answered(code);
        }
    }

    /// `frame`, or `FRAME_TOO_LARGE` in its place when it is larger than a client is promised.
    pub fn bounded(&self, frame: Bytes, id: &[u8], def: &FunctionDef) -> Bytes {
        if frame.len() <= self.max_frame {
            return frame;
        }
        static LOGGED: Every = Every::new();
        if LOGGED.ready() {
            tracing::warn!(
                function = def.name,
                size = frame.len(),
                limit = self.max_frame,
                "an answer larger than Server::max_sent_frame was not sent; the caller got FRAME_TOO_LARGE"
            );
        }
        too_large(frame.len(), self.max_frame).to_frame(id, self.debug)
    }
}

/// The error in place of a frame larger than the server sends.
fn too_large(size: usize, limit: usize) -> Error {
    #[derive(serde::Serialize)]
    struct SizeLimit {
        size: usize,
        limit: usize,
    }
    Error::new(
        "FRAME_TOO_LARGE",
        format!(
            "The answer is {size} bytes, more than the {limit} this server sends in one frame \
             (Server::max_sent_frame); return less at once, or stream it in parts."
        ),
    )
    .with_data(&SizeLimit { size, limit })
}

/// Logs a call's internal error, a few times a minute per function at most (`loglimit`): a
/// client that can make a function fail can make it fail at every call. A panic's line was
/// decided where it was caught.
pub(crate) fn log_internal(def: &FunctionDef, e: &Error) {
    if e.is_unlogged_internal() {
        let verdict = loglimit::failure(def.name);
        loglimit::log_failure(def.name, verdict, e.detail().unwrap_or("no detail"));
    }
}

/// Sends every frame a call's outcome answers with.
pub(crate) async fn send_outcome(
    conn: Arc<Connection>,
    how: Answer,
    def: &'static FunctionDef,
    id: Bytes,
    outcome: Outcome,
) {
    let span = tracing::Span::current();
    let code = match &outcome {
        Outcome::Error(e) => e.code(),
        _ => "OK",
    };
    super::spans::record_code(&span, code);
    how.answered(code);
    match outcome {
        Outcome::Reply(frame) => {
            conn.send(how.bounded(frame, &id, def)).await;
        }
        Outcome::Error(e) => {
            log_internal(def, &e);
            conn.send(e.to_frame(&id, how.debug)).await;
        }
        Outcome::Stream(stream) => {
            // A function whose first poll was pending runs as a call until it turns out to be
            // a stream: from here a shutdown ends it at once instead of waiting for it.
            conn.mark_stream(&id);
            if !conn.send(reply::stream_open_frame(&id)).await {
                return;
            }
            let mut stream = CatchUnwind::handler(def.name, stream);
            loop {
                match std::future::poll_fn(|cx| stream.poll_next_caught(cx)).await {
                    Ok(Some(Ok(frame))) if frame.len() > how.max_frame => {
                        // An error ends the stream: the client is told, rather than sent a
                        // frame it may not accept.
                        conn.send(how.bounded(frame, &id, def)).await;
                        return;
                    }
                    Ok(Some(Ok(frame))) => {
                        // Awaiting room in the connection's queue is the stream's backpressure:
                        // a client that reads slowly slows its own stream, nothing else.
                        if !conn.send(frame).await {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        log_internal(def, &e);
                        conn.send(e.to_frame(&id, how.debug)).await;
                        return;
                    }
                    Ok(None) => {
                        conn.send(reply::stream_done_frame(&id)).await;
                        return;
                    }
                    Err(panic) => {
                        let e = panicked(def.name, panic);
                        conn.send(e.to_frame(&id, how.debug)).await;
                        return;
                    }
                }
            }
        }
    }
}
