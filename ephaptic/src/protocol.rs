//! The wire format: reading client frames and writing server frames (docs/PROTOCOL.md).
//!
//! A client frame is read once, without copying: [`parse`] walks the MessagePack map and records
//! where each interesting value lies in the frame. Argument values stay encoded until the
//! function's own parameter types deserialise them. The call `id` is never decoded at all: its
//! bytes are copied verbatim into every reply, which is what "echoed whatever its msgpack type"
//! means on the wire.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// The encoded MessagePack `nil`, used where a frame has no `id`.
pub(crate) const NIL: &[u8] = &[0xc0];

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes are not one complete MessagePack value.
    Malformed(&'static str),
    /// The value is not a map.
    NotAMap,
    /// A key of the top-level map is not a string.
    NonStringKey,
    /// The bytes hold more than one value.
    TrailingBytes,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Malformed(why) => write!(f, "undecodable MessagePack ({why})"),
            FrameError::NotAMap => f.write_str("the frame is not a MessagePack map"),
            FrameError::NonStringKey => {
                f.write_str("the frame's map has a key that is not a string")
            }
            FrameError::TrailingBytes => f.write_str("the frame has bytes after its value"),
        }
    }
}

/// The parts of a client frame the server uses, as byte ranges into the frame.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawFrame {
    /// `type`, when it is a string.
    pub kind: Option<Range<usize>>,
    /// `id`, the whole encoded value.
    pub id: Option<Range<usize>>,
    /// `name`, when it is a string.
    pub name: Option<Range<usize>>,
    /// `name` was present but not a string.
    pub name_not_string: bool,
    /// Each element of `args`, encoded.
    pub args: SmallList<Range<usize>, 4>,
    /// `args` was present but neither an array nor nil.
    pub args_not_array: bool,
    /// Each `kwargs` entry: the key (a string) and the encoded value.
    pub kwargs: SmallList<(Range<usize>, Range<usize>), 4>,
    /// `kwargs` was present but neither a map with string keys nor nil.
    pub kwargs_not_map: bool,
    /// `auth`, the whole encoded value.
    pub auth: Option<Range<usize>>,
}

/// A list that keeps its first `N` items inline and moves to the heap only beyond them: the
/// arguments of a call are almost always few, and reading a frame should not allocate.
#[derive(Debug, Clone)]
pub(crate) enum SmallList<T, const N: usize> {
    Inline([T; N], usize),
    Heap(Vec<T>),
}

impl<T: Default, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        SmallList::Inline(std::array::from_fn(|_| T::default()), 0)
    }
}

impl<T: Default, const N: usize> SmallList<T, N> {
    /// `n` default items.
    pub fn filled(n: usize) -> Self
    where
        T: Clone,
    {
        if n <= N {
            SmallList::Inline(std::array::from_fn(|_| T::default()), n)
        } else {
            SmallList::Heap(vec![T::default(); n])
        }
    }

    pub fn push(&mut self, item: T) {
        match self {
            SmallList::Inline(items, len) if *len < N => {
                items[*len] = item;
                *len += 1;
            }
            SmallList::Inline(items, len) => {
                let mut v: Vec<T> = Vec::with_capacity(2 * N);
                v.extend(items.iter_mut().take(*len).map(std::mem::take));
                v.push(item);
                *self = SmallList::Heap(v);
            }
            SmallList::Heap(v) => v.push(item),
        }
    }

    pub fn clear(&mut self) {
        match self {
            SmallList::Inline(_, len) => *len = 0,
            SmallList::Heap(v) => v.clear(),
        }
    }
}

impl<T, const N: usize> std::ops::Deref for SmallList<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            SmallList::Inline(items, len) => &items[..*len],
            SmallList::Heap(v) => v,
        }
    }
}

impl<T, const N: usize> std::ops::DerefMut for SmallList<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            SmallList::Inline(items, len) => &mut items[..*len],
            SmallList::Heap(v) => v,
        }
    }
}

/// What a client frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Init,
    Rpc,
    Cancel,
    Other,
}

impl RawFrame {
    pub fn kind(&self, frame: &[u8]) -> FrameKind {
        match self.kind.clone().map(|r| &frame[r]) {
            Some(b"init") => FrameKind::Init,
            Some(b"rpc") => FrameKind::Rpc,
            Some(b"cancel") => FrameKind::Cancel,
            _ => FrameKind::Other,
        }
    }
}

/// Reads a client frame. Nothing is decoded beyond what is needed to find its parts.
pub(crate) fn parse(frame: &[u8]) -> Result<RawFrame, FrameError> {
    let mut r = Reader { buf: frame, pos: 0 };
    let entries = match r.map_len()? {
        Some(n) => n,
        None => {
            r.pos = 0;
            r.skip()?;
            return Err(if r.pos == frame.len() {
                FrameError::NotAMap
            } else {
                FrameError::TrailingBytes
            });
        }
    };
    let mut out = RawFrame::default();
    for _ in 0..entries {
        let Some(key) = r.str()? else {
            return Err(FrameError::NonStringKey);
        };
        let key = &frame[key];
        let start = r.pos;
        match key {
            b"type" => out.kind = r.str_or_skip()?,
            b"name" => {
                out.name = r.str_or_skip()?;
                out.name_not_string = out.name.is_none();
            }
            b"id" => {
                r.skip()?;
                out.id = Some(start..r.pos);
            }
            b"auth" => {
                r.skip()?;
                out.auth = Some(start..r.pos);
            }
            b"args" => match r.array_len()? {
                Some(n) => {
                    out.args.clear();
                    for _ in 0..n {
                        let s = r.pos;
                        r.skip()?;
                        out.args.push(s..r.pos);
                    }
                }
                None => {
                    out.args_not_array = !r.nil()?;
                    if out.args_not_array {
                        r.skip()?;
                    }
                }
            },
            b"kwargs" => match r.map_len()? {
                Some(n) => {
                    out.kwargs.clear();
                    for _ in 0..n {
                        match r.str()? {
                            Some(k) => {
                                let s = r.pos;
                                r.skip()?;
                                out.kwargs.push((k, s..r.pos));
                            }
                            None => {
                                out.kwargs_not_map = true;
                                r.skip()?;
                                r.skip()?;
                            }
                        }
                    }
                }
                None => {
                    out.kwargs_not_map = !r.nil()?;
                    if out.kwargs_not_map {
                        r.skip()?;
                    }
                }
            },
            _ => r.skip()?,
        }
    }
    if r.pos != frame.len() {
        return Err(FrameError::TrailingBytes);
    }
    Ok(out)
}

/// Finds the `id` of a frame that [`parse`] rejected, where the frame is a map whose `id` can
/// still be found, so that the client gets an error reply instead of a silent drop.
pub(crate) fn salvage_id(frame: &[u8]) -> Option<Range<usize>> {
    let mut r = Reader { buf: frame, pos: 0 };
    let n = r.map_len().ok()??;
    for _ in 0..n {
        let key = match r.str() {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                r.skip().ok()?;
                None
            }
            Err(_) => return None,
        };
        let start = r.pos;
        r.skip().ok()?;
        if key.is_some_and(|k| &frame[k] == b"id") {
            return Some(start..r.pos);
        }
    }
    None
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const TRUNCATED: FrameError = FrameError::Malformed("truncated value");

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, FrameError> {
        let b = *self.buf.get(self.pos).ok_or(TRUNCATED)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, FrameError> {
        self.buf.get(self.pos).copied().ok_or(TRUNCATED)
    }

    fn be(&mut self, n: usize) -> Result<usize, FrameError> {
        let bytes = self.buf.get(self.pos..self.pos + n).ok_or(TRUNCATED)?;
        self.pos += n;
        Ok(bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
    }

    fn advance(&mut self, n: usize) -> Result<(), FrameError> {
        let end = self.pos.checked_add(n).ok_or(TRUNCATED)?;
        if end > self.buf.len() {
            return Err(TRUNCATED);
        }
        self.pos = end;
        Ok(())
    }

    /// The length of a map at the cursor (consuming its header), or `None` (consuming nothing).
    fn map_len(&mut self) -> Result<Option<usize>, FrameError> {
        let n = match self.peek()? {
            b @ 0x80..=0x8f => {
                self.pos += 1;
                (b & 0x0f) as usize
            }
            0xde => {
                self.pos += 1;
                self.be(2)?
            }
            0xdf => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Ok(None),
        };
        Ok(Some(n))
    }

    fn array_len(&mut self) -> Result<Option<usize>, FrameError> {
        let n = match self.peek()? {
            b @ 0x90..=0x9f => {
                self.pos += 1;
                (b & 0x0f) as usize
            }
            0xdc => {
                self.pos += 1;
                self.be(2)?
            }
            0xdd => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Ok(None),
        };
        Ok(Some(n))
    }

    fn nil(&mut self) -> Result<bool, FrameError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// A string at the cursor (its content range), or `None` (consuming nothing).
    fn str(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        let len = match self.peek()? {
            b @ 0xa0..=0xbf => {
                self.pos += 1;
                (b & 0x1f) as usize
            }
            0xd9 => {
                self.pos += 1;
                self.be(1)?
            }
            0xda => {
                self.pos += 1;
                self.be(2)?
            }
            0xdb => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Ok(None),
        };
        let start = self.pos;
        self.advance(len)?;
        // Keys and names are ASCII: check that first, cheaply, before full UTF-8 validation.
        let bytes = &self.buf[start..self.pos];
        if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
            return Err(FrameError::Malformed("a string is not valid UTF-8"));
        }
        Ok(Some(start..self.pos))
    }

    fn str_or_skip(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        match self.str()? {
            Some(r) => Ok(Some(r)),
            None => {
                self.skip()?;
                Ok(None)
            }
        }
    }

    /// Moves past one whole value. Nesting is walked with a counter, not recursion, so a
    /// deeply nested frame cannot exhaust the stack.
    fn skip(&mut self) -> Result<(), FrameError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let b = self.byte()?;
            let (skip, children) = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * (b & 0x0f) as usize),
                0x90..=0x9f => (0, (b & 0x0f) as usize),
                0xa0..=0xbf => ((b & 0x1f) as usize, 0),
                0xc1 => return Err(FrameError::Malformed("reserved byte 0xc1")),
                0xc4 | 0xd9 => (self.be(1)?, 0),
                0xc5 | 0xda => (self.be(2)?, 0),
                0xc6 | 0xdb => (self.be(4)?, 0),
                0xc7 => (self.be(1)? + 1, 0),
                0xc8 => (self.be(2)? + 1, 0),
                0xc9 => (self.be(4)? + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)?),
                0xdd => (0, self.be(4)?),
                0xde => (0, 2 * self.be(2)?),
                0xdf => (0, 2 * self.be(4)?),
            };
            self.advance(skip)?;
            // Every child needs at least one byte: a count larger than what is left is a lie,
            // and refusing it here keeps a forged length from spinning the loop.
            if children > self.buf.len() - self.pos {
                return Err(TRUNCATED);
            }
            pending += children;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Writing server frames. Keys are written in the order docs/PROTOCOL.md gives.

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = s.len();
    if len < 32 {
        buf.put_u8(0xa0 | len as u8);
    } else if len < 256 {
        buf.put_u8(0xd9);
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(0xda);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xdb);
        buf.put_u32(len as u32);
    }
    buf.put_slice(s.as_bytes());
}

/// Writes `{id, <key>` leaving the value of `key` to the caller.
fn reply_head(buf: &mut BytesMut, id: &[u8], key: &str) {
    buf.put_u8(0x82);
    buf.put_slice(b"\xa2id");
    buf.put_slice(id);
    put_str(buf, key);
}

/// Encodes a value the way every frame carries values: structs as maps with named fields,
/// enums in serde's external representation, and types that ask (UUIDs, datetimes) in their
/// human-readable string form.
pub(crate) fn encode_value<T: Serialize + ?Sized>(
    buf: &mut BytesMut,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let mut ser = rmp_serde::Serializer::new((&mut *buf).writer())
        .with_struct_map()
        .with_human_readable();
    value.serialize(&mut ser)
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

/// `{id, <key>: value}`.
fn value_frame<T: Serialize + ?Sized>(
    id: &[u8],
    key: &str,
    value: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    let mut buf = BytesMut::with_capacity(32 + id.len());
    reply_head(&mut buf, id, key);
    encode_value(&mut buf, value)?;
    Ok(buf.freeze())
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
    let mut value = BytesMut::with_capacity(64);
    encode_value(&mut value, payload)?;
    let is_map = matches!(value.first(), Some(0x80..=0x8f | 0xde | 0xdf));
    let mut buf = BytesMut::with_capacity(48 + name.len() + value.len());
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
        buf.put_slice(&value);
    } else {
        buf.put_u8(0x91);
        buf.put_slice(&value);
        put_str(&mut buf, "kwargs");
        buf.put_u8(0x80);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn s(x: &str) -> rmpv::Value {
        rmpv::Value::from(x)
    }

    #[test]
    fn finds_every_part_of_an_rpc_frame() {
        let frame = enc(&rmpv::Value::Map(vec![
            (s("type"), s("rpc")),
            (s("id"), rmpv::Value::from(7)),
            (s("name"), s("add")),
            (
                s("args"),
                rmpv::Value::Array(vec![2.into(), rmpv::Value::Array(vec![1.into()])]),
            ),
            (s("kwargs"), rmpv::Value::Map(vec![(s("b"), 5.into())])),
        ]));
        let raw = parse(&frame).unwrap();
        assert_eq!(raw.kind(&frame), FrameKind::Rpc);
        assert_eq!(&frame[raw.id.clone().unwrap()], &[7]);
        assert_eq!(&frame[raw.name.clone().unwrap()], b"add");
        assert_eq!(raw.args.len(), 2);
        assert_eq!(&frame[raw.args[1].clone()], &[0x91, 1]);
        assert_eq!(&frame[raw.kwargs[0].0.clone()], b"b");
        assert_eq!(&frame[raw.kwargs[0].1.clone()], &[5]);
    }

    #[test]
    fn rejects_what_is_not_a_string_keyed_map() {
        assert_eq!(
            parse(&enc(&rmpv::Value::from(3))).unwrap_err(),
            FrameError::NotAMap
        );
        let bad_key = enc(&rmpv::Value::Map(vec![(1.into(), 2.into())]));
        assert_eq!(parse(&bad_key).unwrap_err(), FrameError::NonStringKey);
        assert!(matches!(
            parse(&[0x82, 0xa1]).unwrap_err(),
            FrameError::Malformed(_)
        ));
        assert!(matches!(
            parse(&[0xc1]).unwrap_err(),
            FrameError::Malformed(_)
        ));
        assert_eq!(parse(&[0x80, 0x01]).unwrap_err(), FrameError::TrailingBytes);
    }

    #[test]
    fn a_forged_length_is_refused_without_looping() {
        // An array that claims 4 billion elements in a five-byte frame.
        let frame = [0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            parse(&frame).unwrap_err(),
            FrameError::Malformed(_)
        ));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut frame = vec![0x81, 0xa4];
        frame.extend_from_slice(b"args");
        frame.extend(std::iter::repeat_n(0x91, 100_000));
        frame.push(0xc0);
        let raw = parse(&frame).unwrap();
        assert_eq!(raw.args.len(), 1);
    }

    #[test]
    fn salvages_the_id_of_a_frame_with_a_bad_key() {
        let frame = enc(&rmpv::Value::Map(vec![
            (s("id"), s("x")),
            (1.into(), 2.into()),
        ]));
        assert!(parse(&frame).is_err());
        assert_eq!(&frame[salvage_id(&frame).unwrap()], &enc(&s("x"))[..]);
    }

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
}
