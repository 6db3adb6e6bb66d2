//! What a client frame asks for: the size check, the parse, and the switch on its type.

use std::sync::Arc;

use bytes::Bytes;

use super::dispatch;
use super::state::State;
use crate::error::Error;
use crate::session::gate::{MAX_ASKED, MAX_STREAM_NAME};
use crate::session::{Asked, Connection, Outbox};
use crate::wire::{self, FrameKind, RawFrame};

/// What the identity loader must see before the next frame is handled.
#[derive(Debug)]
pub(crate) enum Init {
    /// The first frame was `init`.
    Auth {
        /// Its `auth`, absent when the client sent none.
        auth: Option<Bytes>,
        /// When it said `v: 2`, the positions it asks to resume from (docs/PROTOCOL.md 5.6).
        session: Option<Vec<(String, Asked)>>,
        /// It said `refresh: true`: it answers `refresh` frames (docs/PROTOCOL.md 5.11).
        refresh: bool,
    },
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
        FrameKind::Init if first => return Some(init_of(&frame, &raw)),
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
            return init_of(&frame, &raw);
        }
    }
    Init::NoInit(Some(frame))
}

fn init_of(frame: &Bytes, raw: &RawFrame) -> Init {
    Init::Auth {
        auth: auth_of(frame, raw),
        session: session_of(frame, raw),
        refresh: raw.refresh.of(frame) == [0xc3],
    }
}

fn auth_of(frame: &Bytes, raw: &RawFrame) -> Option<Bytes> {
    (!raw.auth.is_empty()).then(|| frame.slice(raw.auth.range()))
}

/// The positions of an `init` with `v` 2 or more: `Some` (maybe empty) when the client speaks
/// sessions. At most [`MAX_ASKED`] are kept; a name or an epoch out of bounds, or an entry that
/// does not read as `[epoch, offset]`, is left out.
fn session_of(frame: &Bytes, raw: &RawFrame) -> Option<Vec<(String, Asked)>> {
    if raw.version.is_empty() {
        return None;
    }
    let v = rmpv::decode::read_value(&mut &frame[raw.version.range()]).ok()?;
    if v.as_u64()? < 2 {
        return None;
    }
    let mut asked = Vec::new();
    if raw.resume.is_empty() {
        return Some(asked);
    }
    // Entry by entry, only the first MAX_ASKED: a client must not make the server decode a
    // map of a million positions.
    let mut rest = &frame[raw.resume.range()];
    let Ok(len) = rmp::decode::read_map_len(&mut rest) else {
        return Some(asked);
    };
    for _ in 0..len.min(MAX_ASKED as u32) {
        let (Ok(name), Ok(pos)) = (
            rmpv::decode::read_value_with_max_depth(&mut rest, 8),
            rmpv::decode::read_value_with_max_depth(&mut rest, 8),
        ) else {
            break;
        };
        let (Some(name), Some([epoch, offset])) =
            (name.as_str(), pos.as_array().map(Vec::as_slice))
        else {
            continue;
        };
        let (Some(epoch), Some(offset)) = (epoch.as_str(), offset.as_u64()) else {
            continue;
        };
        if name.len() > MAX_STREAM_NAME || epoch.len() > 16 || asked.iter().any(|(n, _)| n == name)
        {
            continue;
        }
        asked.push((
            name.to_owned(),
            Asked {
                epoch: epoch.to_owned(),
                offset,
            },
        ));
    }
    Some(asked)
}

#[derive(serde::Serialize)]
struct FrameSize {
    size: usize,
    limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_with_v2_carries_its_positions() {
        use rmpv::Value;
        let init = Value::Map(vec![
            (Value::from("type"), Value::from("init")),
            (Value::from("auth"), Value::from("alice")),
            (Value::from("v"), Value::from(2)),
            (
                Value::from("resume"),
                Value::Map(vec![(
                    Value::from("u"),
                    Value::Array(vec![Value::from("abc"), Value::from(3)]),
                )]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &init).unwrap();
        let frame = Bytes::from(bytes);
        let mut raw = RawFrame::default();
        wire::parse(&frame, &mut raw).unwrap();
        let asked = session_of(&frame, &raw).expect("v: 2");
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert_eq!(asked[0].0, "u");
        assert_eq!(asked[0].1.offset, 3);

        // A thousand positions: the first 64 are kept, the rest not even decoded.
        let many = Value::Map(
            (0..1000)
                .map(|i| {
                    (
                        Value::from(format!("g:{i}")),
                        Value::Array(vec![Value::from("e"), Value::from(i)]),
                    )
                })
                .collect(),
        );
        let init = Value::Map(vec![
            (Value::from("type"), Value::from("init")),
            (Value::from("v"), Value::from(2)),
            (Value::from("resume"), many),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &init).unwrap();
        let frame = Bytes::from(bytes);
        wire::parse(&frame, &mut raw).unwrap();
        assert_eq!(session_of(&frame, &raw).unwrap().len(), MAX_ASKED);
    }
}
