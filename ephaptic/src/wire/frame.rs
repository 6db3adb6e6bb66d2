//! Reading client frames (docs/PROTOCOL.md section 3) without copying.
//!
//! A client frame is read once: [`parse`] walks the MessagePack map and records where each
//! interesting value lies in the frame. Argument values stay encoded until the function's own
//! parameter types deserialise them. The call `id` is never decoded at all: its bytes are copied
//! verbatim into every reply, which is what "echoed whatever its msgpack type" means on the
//! wire.

use std::ops::Range;

use super::msgpack::NIL;
use super::small_list::SmallList;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes are not one complete MessagePack value.
    Malformed(Malformed),
    /// The value is not a map.
    NotAMap,
    /// A key of the top-level map is not a string.
    NonStringKey,
    /// The bytes hold more than one value.
    TrailingBytes,
}

/// What makes bytes undecodable. A one-byte code (not a string) so that the reader's results
/// fit in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Truncated,
    ReservedByte,
    NotUtf8,
    TooLarge,
}

impl Malformed {
    fn text(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated value",
            Malformed::ReservedByte => "reserved byte 0xc1",
            Malformed::NotUtf8 => "a string is not valid UTF-8",
            Malformed::TooLarge => "the frame is larger than 4 GiB",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Malformed(why) => write!(f, "undecodable MessagePack ({})", why.text()),
            FrameError::NotAMap => f.write_str("the frame is not a MessagePack map"),
            FrameError::NonStringKey => {
                f.write_str("the frame's map has a key that is not a string")
            }
            FrameError::TrailingBytes => f.write_str("the frame has bytes after its value"),
        }
    }
}

/// Where a value lies in a frame: a byte range kept in 32 bits a side, so that a parsed frame
/// is small and cheap to keep on the stack. Frames are far below 4 GiB (the WebSocket layer and
/// `max_frame_size` refuse larger ones long before; [`parse`] refuses them too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        // `parse` refuses frames whose positions would not fit.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The bytes this span covers in `frame`.
    #[inline]
    pub fn of(self, frame: &[u8]) -> &[u8] {
        &frame[self.range()]
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// What a client frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FrameKind {
    Init,
    Rpc,
    Cancel,
    #[default]
    Other,
}

/// The parts of a client frame the server uses, as spans of the frame. Filled in place by
/// [`parse`], on the caller's stack, so a parsed frame is never moved.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawFrame {
    /// What `type` asks for (`Other` when it is absent, unknown or not a string).
    pub kind: FrameKind,
    /// `id`, the whole encoded value; empty when absent (an encoded value is never empty).
    pub id: Span,
    /// `name`, when it is a string.
    pub name: Option<Span>,
    /// `name` was present but not a string.
    pub name_not_string: bool,
    /// `args` was present but neither an array nor nil.
    pub args_not_array: bool,
    /// `kwargs` was present but neither a map with string keys nor nil.
    pub kwargs_not_map: bool,
    /// `auth`, the whole encoded value; empty when absent.
    pub auth: Span,
    /// `v` and `resume` (an `init` of a client that speaks sessions, docs/PROTOCOL.md 5.6),
    /// whole encoded values; empty when absent.
    pub version: Span,
    pub resume: Span,
    /// `refresh`: the client answers `refresh` frames (docs/PROTOCOL.md 5.11); empty when absent.
    pub refresh: Span,
    /// `key`, a call's idempotency key (docs/PROTOCOL.md 5.12), the whole encoded value; empty
    /// when absent.
    pub key: Span,
    /// `traceparent`, a call's W3C trace context (docs/PROTOCOL.md 5.13), the whole encoded
    /// value; empty when absent.
    pub traceparent: Span,
    /// Each element of `args`, encoded.
    pub args: SmallList<Span, 4>,
    /// Each `kwargs` entry: the key (a string) and the encoded value.
    pub kwargs: SmallList<(Span, Span), 4>,
}

impl RawFrame {
    fn reset(&mut self) {
        self.kind = FrameKind::Other;
        self.id = Span::default();
        self.name = None;
        self.name_not_string = false;
        self.args_not_array = false;
        self.kwargs_not_map = false;
        self.auth = Span::default();
        self.version = Span::default();
        self.resume = Span::default();
        self.refresh = Span::default();
        self.key = Span::default();
        self.traceparent = Span::default();
        self.args.clear();
        self.kwargs.clear();
    }

    /// The encoded `id`, or nil when the frame has none.
    #[inline]
    pub fn id<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        if self.id.is_empty() {
            NIL
        } else {
            self.id.of(frame)
        }
    }
}

/// The top-level keys a client frame may carry, told apart by length and content.
#[derive(Clone, Copy)]
enum Key {
    Type,
    Id,
    Name,
    Args,
    Kwargs,
    Auth,
    Version,
    Resume,
    Refresh,
    Idempotency,
    TraceParent,
    Other,
}

fn which_key(bytes: &[u8]) -> Key {
    match bytes {
        b"id" => Key::Id,
        b"type" => Key::Type,
        b"name" => Key::Name,
        b"args" => Key::Args,
        b"auth" => Key::Auth,
        b"kwargs" => Key::Kwargs,
        b"v" => Key::Version,
        b"resume" => Key::Resume,
        b"refresh" => Key::Refresh,
        b"key" => Key::Idempotency,
        b"traceparent" => Key::TraceParent,
        _ => Key::Other,
    }
}

fn frame_kind(bytes: &[u8]) -> FrameKind {
    match bytes {
        b"rpc" => FrameKind::Rpc,
        b"init" => FrameKind::Init,
        b"cancel" => FrameKind::Cancel,
        _ => FrameKind::Other,
    }
}

/// Reads a client frame into `out` (whatever it held before is replaced). Nothing is decoded
/// beyond what is needed to find its parts.
pub(crate) fn parse(frame: &[u8], out: &mut RawFrame) -> Result<(), FrameError> {
    out.reset();
    if frame.len() > u32::MAX as usize {
        return Err(FrameError::Malformed(Malformed::TooLarge));
    }
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
    for _ in 0..entries {
        let Some(k) = r.key()? else {
            return Err(FrameError::NonStringKey);
        };
        let start = r.pos;
        match which_key(k.of(frame)) {
            Key::Type => {
                out.kind = match r.str()? {
                    Some(s) => frame_kind(s.of(frame)),
                    None => {
                        r.skip()?;
                        FrameKind::Other
                    }
                }
            }
            Key::Name => {
                out.name = r.str()?;
                out.name_not_string = out.name.is_none();
                if out.name_not_string {
                    r.skip()?;
                }
            }
            Key::Id => {
                r.skip()?;
                out.id = Span::new(start, r.pos);
            }
            Key::Auth => {
                r.skip()?;
                out.auth = Span::new(start, r.pos);
            }
            Key::Version => {
                r.skip()?;
                out.version = Span::new(start, r.pos);
            }
            Key::Resume => {
                r.skip()?;
                out.resume = Span::new(start, r.pos);
            }
            Key::Refresh => {
                r.skip()?;
                out.refresh = Span::new(start, r.pos);
            }
            Key::Idempotency => {
                r.skip()?;
                out.key = Span::new(start, r.pos);
            }
            Key::TraceParent => {
                r.skip()?;
                out.traceparent = Span::new(start, r.pos);
            }
            Key::Args => match r.array_len()? {
                Some(n) => {
                    out.args.clear();
                    for _ in 0..n {
                        let s = r.pos;
                        r.skip()?;
                        out.args.push(Span::new(s, r.pos));
                    }
                }
                None => {
                    out.args_not_array = !r.nil()?;
                    if out.args_not_array {
                        r.skip()?;
                    }
                }
            },
            Key::Kwargs => match r.map_len()? {
                Some(n) => {
                    out.kwargs.clear();
                    for _ in 0..n {
                        match r.str()? {
                            Some(k) => {
                                let s = r.pos;
                                r.skip()?;
                                out.kwargs.push((k, Span::new(s, r.pos)));
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
            Key::Other => {
                // The keys above are ASCII; any other is checked here, and skipped.
                let k = k.of(frame);
                if !k.is_ascii() && std::str::from_utf8(k).is_err() {
                    return Err(FrameError::Malformed(Malformed::NotUtf8));
                }
                r.skip()?
            }
        }
    }
    if r.pos != frame.len() {
        return Err(FrameError::TrailingBytes);
    }
    Ok(())
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
        if key.is_some_and(|k| k.of(frame) == b"id") {
            return Some(start..r.pos);
        }
    }
    None
}

/// The whole encoded size of a value that begins with each marker byte, where the marker alone
/// tells it (integers, floats, nil, booleans, fixed-size extensions); 0 for the rest (strings,
/// binaries, containers, sized extensions, the reserved byte).
const SCALAR_SIZE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 => 3,
            0xca | 0xce | 0xd2 => 5,
            0xcb | 0xcf | 0xd3 => 9,
            // fixext 1, 2, 4, 8, 16: marker, type, data.
            0xd4 => 3,
            0xd5 => 4,
            0xd6 => 6,
            0xd7 => 10,
            0xd8 => 18,
            _ => 0,
        };
        b += 1;
    }
    t
};

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

const TRUNCATED: FrameError = FrameError::Malformed(Malformed::Truncated);

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
    pub(super) fn map_len(&mut self) -> Result<Option<usize>, FrameError> {
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

    /// A top-level key at the cursor, like [`str`](Self::str) but without the UTF-8 check,
    /// which `parse` makes only for keys it does not know (the ones it knows are ASCII).
    /// Keys are short: the one-byte header is read inline.
    #[inline(always)]
    fn key(&mut self) -> Result<Option<Span>, FrameError> {
        let b = self.peek()?;
        if b & 0xe0 != 0xa0 {
            return self.str();
        }
        let start = self.pos + 1;
        let end = start + (b & 0x1f) as usize;
        if end > self.buf.len() {
            return Err(TRUNCATED);
        }
        self.pos = end;
        Ok(Some(Span::new(start, end)))
    }

    /// A string at the cursor (its content span), or `None` (consuming nothing). Inlined: its
    /// result returned through memory stalled the CPU (a store-to-load forwarding miss).
    #[inline(always)]
    pub(super) fn str(&mut self) -> Result<Option<Span>, FrameError> {
        let b = self.peek()?;
        let len = match b {
            0xa0..=0xbf => {
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
        let bytes = self.buf.get(start..start + len).ok_or(TRUNCATED)?;
        // Keys and names are ASCII: check that first, cheaply, before full UTF-8 validation.
        if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
            return Err(FrameError::Malformed(Malformed::NotUtf8));
        }
        self.pos = start + len;
        Ok(Some(Span::new(start, self.pos)))
    }

    /// Moves past one whole value. Most values in a call are small integers, read inline.
    #[inline(always)]
    pub(super) fn skip(&mut self) -> Result<(), FrameError> {
        let size = SCALAR_SIZE[self.peek()? as usize] as usize;
        if size == 0 {
            return self.skip_nested();
        }
        self.advance(size)
    }

    /// Moves past one whole value of any kind. Nesting is walked with a counter, not
    /// recursion, so a deeply nested frame cannot exhaust the stack.
    #[inline(never)]
    fn skip_nested(&mut self) -> Result<(), FrameError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            pending += self.head()?;
        }
        Ok(())
    }

    /// Reads one value's header and moves past its own bytes (a string's or an extension's
    /// content); returns how many values it contains (a map counts its keys and its values),
    /// which follow it.
    #[inline(always)]
    pub(super) fn head(&mut self) -> Result<usize, FrameError> {
        let b = self.byte()?;
        let (skip, children) = match b {
            0x80..=0x8f => (0, 2 * (b & 0x0f) as usize),
            0x90..=0x9f => (0, (b & 0x0f) as usize),
            0xa0..=0xbf => ((b & 0x1f) as usize, 0),
            0xc1 => return Err(FrameError::Malformed(Malformed::ReservedByte)),
            0xc4 | 0xd9 => (self.be(1)?, 0),
            0xc5 | 0xda => (self.be(2)?, 0),
            0xc6 | 0xdb => (self.be(4)?, 0),
            0xc7 => (self.be(1)? + 1, 0),
            0xc8 => (self.be(2)? + 1, 0),
            0xc9 => (self.be(4)? + 1, 0),
            0xdc => (0, self.be(2)?),
            0xdd => (0, self.be(4)?),
            0xde => (0, 2 * self.be(2)?),
            0xdf => (0, 2 * self.be(4)?),
            // Every other marker is fixed-size: the table has its whole size.
            _ => (SCALAR_SIZE[b as usize] as usize - 1, 0),
        };
        self.advance(skip)?;
        // Every child needs at least one byte: a count larger than what is left is a lie,
        // and refusing it here keeps a forged length from spinning the loop.
        if children > self.buf.len() - self.pos {
            return Err(TRUNCATED);
        }
        Ok(children)
    }
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

    fn parsed(frame: &[u8]) -> Result<RawFrame, FrameError> {
        let mut raw = RawFrame::default();
        parse(frame, &mut raw).map(|()| raw)
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
        let raw = parsed(&frame).unwrap();
        assert_eq!(raw.kind, FrameKind::Rpc);
        assert_eq!(raw.id(&frame), &[7]);
        assert_eq!(raw.name.unwrap().of(&frame), b"add");
        assert_eq!(raw.args.len(), 2);
        assert_eq!(raw.args[1].of(&frame), &[0x91, 1]);
        assert_eq!(raw.kwargs[0].0.of(&frame), b"b");
        assert_eq!(raw.kwargs[0].1.of(&frame), &[5]);
    }

    #[test]
    fn rejects_what_is_not_a_string_keyed_map() {
        assert_eq!(
            parsed(&enc(&rmpv::Value::from(3))).unwrap_err(),
            FrameError::NotAMap
        );
        let bad_key = enc(&rmpv::Value::Map(vec![(1.into(), 2.into())]));
        assert_eq!(parsed(&bad_key).unwrap_err(), FrameError::NonStringKey);
        assert!(matches!(
            parsed(&[0x82, 0xa1]).unwrap_err(),
            FrameError::Malformed(_)
        ));
        assert!(matches!(
            parsed(&[0xc1]).unwrap_err(),
            FrameError::Malformed(_)
        ));
        assert_eq!(
            parsed(&[0x80, 0x01]).unwrap_err(),
            FrameError::TrailingBytes
        );
    }

    #[test]
    fn every_kind_of_value_is_skipped_whole() {
        // `{args: [fixext1, fixext16, u64, f32, [str8, bin8, ext8], -1]}`, as raw bytes.
        let mut frame = vec![0x81, 0xa4];
        frame.extend_from_slice(b"args");
        frame.push(0x96);
        let values: [&[u8]; 6] = [
            &[0xd4, 0x01, 0xaa],
            &[&[0xd8, 0x02][..], &[0x55; 16]].concat(),
            &[0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xca, 0x3f, 0x80, 0, 0],
            &[
                0x93, 0xd9, 0x01, b'x', 0xc4, 0x02, 9, 9, 0xc7, 0x01, 0x05, 0xee,
            ],
            &[0xff],
        ];
        for v in values {
            frame.extend_from_slice(v);
        }
        let raw = parsed(&frame).unwrap();
        assert_eq!(raw.args.len(), values.len());
        for (span, v) in raw.args.iter().zip(values) {
            assert_eq!(span.of(&frame), v);
        }
    }

    #[test]
    fn a_forged_length_is_refused_without_looping() {
        // An array that claims 4 billion elements in a five-byte frame.
        let frame = [0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            parsed(&frame).unwrap_err(),
            FrameError::Malformed(_)
        ));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut frame = vec![0x81, 0xa4];
        frame.extend_from_slice(b"args");
        frame.extend(std::iter::repeat_n(0x91, 100_000));
        frame.push(0xc0);
        let raw = parsed(&frame).unwrap();
        assert_eq!(raw.args.len(), 1);
    }

    #[test]
    fn salvages_the_id_of_a_frame_with_a_bad_key() {
        let frame = enc(&rmpv::Value::Map(vec![
            (s("id"), s("x")),
            (1.into(), 2.into()),
        ]));
        assert!(parsed(&frame).is_err());
        assert_eq!(&frame[salvage_id(&frame).unwrap()], &enc(&s("x"))[..]);
    }
}
