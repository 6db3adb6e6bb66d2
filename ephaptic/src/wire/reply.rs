//! Writing server frames (docs/PROTOCOL.md section 4), keys in the order the protocol gives,
//! and the one value encoder every frame uses: results, chunks, events and error data.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::msgpack::{NIL, put_str, put_uint};

/// Writes `{id, <key>` leaving the value of `key` to the caller.
fn reply_head(buf: &mut impl BufMut, id: &[u8], key: &str) {
    buf.put_u8(0x82);
    buf.put_slice(b"\xa2id");
    buf.put_slice(id);
    put_str(buf, key);
}

/// Encodes a value the way every frame carries values: structs as maps with named fields,
/// enums in serde's external representation, and types that ask (UUIDs, datetimes) in their
/// human-readable string form. The one encoder of the wire: results, chunks, events and error
/// data all go through it. It tries the fast writer ([`pack`](super::pack)) and, where that
/// gives up, cuts off what it wrote and encodes again with `rmp_serde`, which writes the same
/// bytes for everything the fast writer handles.
pub(crate) fn encode_value<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let start = buf.len();
    super::pack::pack(buf, value).or_else(|_| {
        buf.truncate(start);
        encode_rmp(buf, value)
    })
}

/// `rmp_serde` with the frame settings (what [`encode_value`] falls back to).
fn encode_rmp<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let mut ser = rmp_serde::Serializer::new(buf)
        .with_struct_map()
        .with_human_readable();
    value.serialize(&mut ser)
}

/// Runs `f` with a reusable per-thread buffer, emptied. A serializer may re-enter (a
/// `Serialize` impl that encodes a frame itself): then the inner call uses a buffer of its own.
/// A buffer grown past 64 KiB by a huge value is not kept, so it does not stay pinned to the
/// thread.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut own = Vec::new();
        let mut guard = scratch.try_borrow_mut();
        let buf = match &mut guard {
            Ok(b) => &mut **b,
            Err(_) => &mut own,
        };
        buf.clear();
        let out = f(buf);
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::new();
        }
        out
    })
}

/// A value encoded on its own, as an error's `data` carries it.
pub(crate) fn encoded<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, rmp_serde::encode::Error> {
    with_scratch(|buf| encode_value(buf, value).map(|()| Bytes::copy_from_slice(buf)))
}

/// `{id, result}`.
pub(crate) fn result_frame<T: Serialize + ?Sized>(
    id: &[u8],
    value: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    value_frame(id, "result", value)
}

/// `{id, chunk}`.
pub(crate) fn chunk_frame<T: Serialize + ?Sized>(
    id: &[u8],
    value: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    value_frame(id, "chunk", value)
}

/// `{id, stream: true}`.
pub(crate) fn stream_open_frame(id: &[u8]) -> Bytes {
    true_frame(id, "stream")
}

/// `{id, done: true}`.
pub(crate) fn stream_done_frame(id: &[u8]) -> Bytes {
    true_frame(id, "done")
}

/// `{id, <key>: value}`. Encoded into the per-thread buffer, then copied into an allocation
/// of exactly its size: a frame frozen from a growable buffer with spare capacity costs `bytes`
/// a second allocation (its shared header) and a second free.
fn value_frame<T: Serialize + ?Sized>(
    id: &[u8],
    key: &str,
    value: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    with_scratch(|buf| {
        reply_head(buf, id, key);
        encode_value(buf, value)?;
        Ok(Bytes::copy_from_slice(buf))
    })
}

/// What follows the id in an answer (`{id, result}`, `{id, error}`), to answer another call
/// with it ([`with_id`]): a repeat of an idempotent call. `None` for a frame not of that shape.
pub(crate) fn after_id(frame: &Bytes, id: &[u8]) -> Option<Bytes> {
    let head = 4 + id.len();
    (frame.len() > head && frame[..4] == *b"\x82\xa2id" && frame[4..head] == *id)
        .then(|| frame.slice(head..))
}

/// The answer [`after_id`] took apart, under `id`.
pub(crate) fn with_id(id: &[u8], rest: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + id.len() + rest.len());
    buf.put_slice(b"\x82\xa2id");
    buf.put_slice(id);
    buf.put_slice(rest);
    buf.freeze()
}

/// `{id, <key>: true}`.
fn true_frame(id: &[u8], key: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(16 + id.len());
    reply_head(&mut buf, id, key);
    buf.put_u8(0xc3);
    buf.freeze()
}

/// `{id, error: {code, message, data}}`; `data` is already encoded (or absent: nil).
pub(crate) fn error_frame(id: &[u8], code: &str, message: &str, data: Option<&[u8]>) -> Bytes {
    let data = data.unwrap_or(NIL);
    let mut buf = BytesMut::with_capacity(48 + id.len() + code.len() + message.len() + data.len());
    reply_head(&mut buf, id, "error");
    buf.put_u8(0x83);
    put_str(&mut buf, "code");
    put_str(&mut buf, code);
    put_str(&mut buf, "message");
    put_str(&mut buf, message);
    put_str(&mut buf, "data");
    buf.put_slice(data);
    buf.freeze()
}

/// `{type: "event", name, payload: {args: [], kwargs: <payload>}}` when the payload encodes as a
/// map (a struct: clients hand its fields to the callback); otherwise
/// `{..., payload: {args: [<payload>], kwargs: {}}}`.
pub(crate) fn event_frame<T: Serialize + ?Sized>(
    name: &str,
    payload: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    with_scratch(|value| {
        encode_value(value, payload)?;
        let is_map = super::msgpack::is_map(value);
        let mut buf = BytesMut::with_capacity(40 + name.len() + value.len());
        buf.put_u8(0x83);
        put_str(&mut buf, "type");
        put_str(&mut buf, "event");
        put_str(&mut buf, "name");
        put_str(&mut buf, name);
        put_str(&mut buf, "payload");
        buf.put_u8(0x82);
        put_str(&mut buf, "args");
        if is_map {
            buf.put_u8(0x90);
            put_str(&mut buf, "kwargs");
            buf.put_slice(value);
        } else {
            buf.put_u8(0x91);
            buf.put_slice(value);
            put_str(&mut buf, "kwargs");
            buf.put_u8(0x80);
        }
        Ok(buf.freeze())
    })
}

/// An event frame with its place in a stream (docs/PROTOCOL.md 5.6): `frame` (as
/// [`event_frame`] wrote it: a map of three keys) with `stream`, `seq` and `epoch` appended.
/// The payload is not encoded again: the map's header counts six keys instead of three and the
/// new keys follow. `None` when `frame` is not an event frame of three keys.
pub(crate) fn positioned(frame: &[u8], stream: &str, seq: u64, epoch: &str) -> Option<Bytes> {
    let (&0x83, rest) = frame.split_first()? else {
        return None;
    };
    let mut buf = BytesMut::with_capacity(frame.len() + 32 + stream.len() + epoch.len());
    buf.put_u8(0x86);
    buf.put_slice(rest);
    put_str(&mut buf, "stream");
    put_str(&mut buf, stream);
    put_str(&mut buf, "seq");
    put_uint(&mut buf, seq);
    put_str(&mut buf, "epoch");
    put_str(&mut buf, epoch);
    Some(buf.freeze())
}

/// A stream's position as a `position` (after a join) or `resync` frame: `{type, stream, epoch,
/// offset, ...extra}`, `extra` being already encoded key-value pairs counted by `extra_len`.
pub(crate) fn position_frame(
    kind: &str,
    stream: &str,
    epoch: &str,
    offset: u64,
    extra_len: u8,
    extra: &[u8],
) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + stream.len() + epoch.len() + extra.len());
    buf.put_u8(0x84 + extra_len);
    put_str(&mut buf, "type");
    put_str(&mut buf, kind);
    put_str(&mut buf, "stream");
    put_str(&mut buf, stream);
    put_str(&mut buf, "epoch");
    put_str(&mut buf, epoch);
    put_str(&mut buf, "offset");
    put_uint(&mut buf, offset);
    buf.put_slice(extra);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_frames_have_the_documented_key_order() {
        let f = result_frame(&[0x01], &5u8).unwrap();
        assert_eq!(&f[..], b"\x82\xa2id\x01\xa6result\x05");
        let e = error_frame(&[0x07], "NOT_FOUND", "x", None);
        assert_eq!(
            &e[..],
            b"\x82\xa2id\x07\xa5error\x83\xa4code\xa9NOT_FOUND\xa7message\xa1x\xa4data\xc0"
        );
        assert_eq!(
            &stream_open_frame(&[1])[..],
            b"\x82\xa2id\x01\xa6stream\xc3"
        );
        assert_eq!(&stream_done_frame(&[1])[..], b"\x82\xa2id\x01\xa4done\xc3");
    }

    #[test]
    fn event_frames_put_struct_fields_in_kwargs_and_other_values_in_args() {
        #[derive(serde::Serialize)]
        struct Pong {
            ok: bool,
        }
        let f = event_frame("Pong", &Pong { ok: true }).unwrap();
        assert_eq!(&f[..], b"\x83\xa4type\xa5event\xa4name\xa4Pong\xa7payload\x82\xa4args\x90\xa6kwargs\x81\xa2ok\xc3");
        let f = event_frame("n", &7u8).unwrap();
        assert_eq!(
            &f[..],
            b"\x83\xa4type\xa5event\xa4name\xa1n\xa7payload\x82\xa4args\x91\x07\xa6kwargs\x80"
        );
    }

    #[test]
    fn positioned_frames_read_as_the_event_with_three_more_keys() {
        let f = event_frame("n", &7u8).unwrap();
        let p = positioned(&f, "u", 300, "Ab3").unwrap();
        let v: rmpv::Value = rmpv::decode::read_value(&mut &p[..]).unwrap();
        let map = v.as_map().unwrap();
        let keys: Vec<_> = map.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["type", "name", "payload", "stream", "seq", "epoch"]);
        assert_eq!(map[3].1.as_str(), Some("u"));
        assert_eq!(map[4].1.as_u64(), Some(300));
        assert_eq!(map[5].1.as_str(), Some("Ab3"));
        assert!(positioned(b"\x81\xa1a\x01", "u", 1, "e").is_none());
        for n in [0, 127, 128, 255, 256, 65_535, 65_536, u32::MAX as u64 + 1] {
            let mut b = Vec::new();
            put_uint(&mut b, n);
            assert_eq!(
                rmpv::decode::read_value(&mut &b[..]).unwrap().as_u64(),
                Some(n)
            );
        }
    }
}
