//! What a client frame asks for: the size check, the parse, and the switch on its type.

use std::sync::Arc;

use bytes::Bytes;

use super::dispatch;
use super::state::State;
use crate::error::Error;
use crate::session::{Connection, Outbox};
use crate::wire::{self, FrameKind, RawFrame};

/// What the identity loader must see before the next frame is handled.
#[derive(Debug)]
pub(crate) enum Init {
    /// The first frame was `init`: its `auth`, absent when the client sent none.
    Auth(Option<Bytes>),
    /// The first frame was something else (a call, say) and the server has a loader: it runs
    /// without `auth` (a cookie in the upgrade request may still name the user), then this
    /// frame is handled. `None` for a first frame that carries nothing (text).
    NoInit(Option<Bytes>),
}

/// Handles one binary frame from the client, without waiting: a call's first poll runs
/// here, anything longer in a task of its own. Immediate answers go into `out`, which the
/// connection's task writes right after. `first` is true for the connection's first frame,
/// the only one that may be `init`; for it, the result says what the identity loader must
/// see before the frame (or the next one) is handled.
pub(crate) fn on_frame(
    state: &Arc<State>,
    conn: &Arc<Connection>,
    frame: Bytes,
    first: bool,
    out: &mut Outbox,
) -> Option<Init> {
    let limit = state.config.max_frame_size;
    if first && state.loader.is_some() {
        return Some(first_for_loader(frame, limit));
    }
    if frame.len() > limit {
        if conn.note_bad_frame() {
            tracing::warn!(
                connection = conn.id(),
                size = frame.len(),
                limit,
                "skipping a frame larger than the limit"
            );
        }
        if let Some(id) = wire::salvage_id(&frame) {
            let e = Error::new(
                "FRAME_TOO_LARGE",
                format!(
                    "The frame is {} bytes; this server accepts at most {limit}.",
                    frame.len()
                ),
            )
            .with_data(&FrameSize {
                size: frame.len(),
                limit,
            });
            out.push(e.to_frame(&frame[id], false));
        }
        return None;
    }
    let mut raw = RawFrame::default();
    if let Err(why) = wire::parse(&frame, &mut raw) {
        if conn.note_bad_frame() {
            tracing::warn!(connection = conn.id(), "skipping a bad frame: {why}");
        }
        if let Some(id) = wire::salvage_id(&frame) {
            let e = Error::new("BAD_FRAME", format!("The frame could not be read: {why}."));
            out.push(e.to_frame(&frame[id], false));
        }
        return None;
    }
    match raw.kind {
        FrameKind::Rpc => dispatch::start(state, conn, &frame, &raw, out),
        FrameKind::Init if first => return Some(Init::Auth(auth_of(&frame, &raw))),
        FrameKind::Cancel => {
            if !raw.id.is_empty() {
                conn.cancel_call(raw.id.of(&frame));
            }
        }
        // A later `init` and unknown frame types are ignored, which is what lets clients
        // add frame types safely.
        FrameKind::Init | FrameKind::Other => {}
    }
    None
}

/// A connection's first frame when the server has an identity loader, which must run before
/// any frame is handled: on `init.auth` when the frame is `init`, without `auth` otherwise
/// (the frame, whatever it is, is then handled as usual once the loader is done). Parsed here
/// and again then; it happens once per connection.
fn first_for_loader(frame: Bytes, limit: usize) -> Init {
    if frame.len() <= limit {
        let mut raw = RawFrame::default();
        if wire::parse(&frame, &mut raw).is_ok() && matches!(raw.kind, FrameKind::Init) {
            return Init::Auth(auth_of(&frame, &raw));
        }
    }
    Init::NoInit(Some(frame))
}

fn auth_of(frame: &Bytes, raw: &RawFrame) -> Option<Bytes> {
    (!raw.auth.is_empty()).then(|| frame.slice(raw.auth.range()))
}

#[derive(serde::Serialize)]
struct FrameSize {
    size: usize,
    limit: usize,
}
