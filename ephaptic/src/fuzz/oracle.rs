//! A second, slow reading of a client frame, made with `rmpv` (a general MessagePack decoder)
//! instead of the span reader of `wire/frame.rs`, to hold the fast one to it.
//!
//! It follows docs/PROTOCOL.md, not the reader's code: a frame is one MessagePack map with
//! string keys; `type`, `name` and the keys of `kwargs` must be valid UTF-8 where they are
//! strings; everything else is carried as encoded bytes.

use std::ops::Range;

use rmpv::Value;

use crate::wire::FrameKind;

/// What the slow reading makes of some bytes.
#[derive(Debug)]
pub(super) enum Verdict {
    /// A frame the server must accept, and where its parts are.
    Accept(Frame),
    /// Not a frame.
    Reject(Why),
    /// Nested deeper than `rmpv` reads: no opinion (the span reader has no depth limit).
    TooDeep,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// Not one complete MessagePack value.
    Undecodable,
    /// One complete value, but not a map.
    NotAMap,
    /// A map, but with a key that is not a string, or text that is not UTF-8.
    BadText,
}

/// Where the parts of an accepted frame are, as ranges of its bytes.
#[derive(Debug, Default)]
pub(super) struct Frame {
    pub kind: FrameKind,
    pub id: Option<Range<usize>>,
    pub name: Option<Range<usize>>,
    pub name_not_string: bool,
    pub args: Vec<Range<usize>>,
    pub args_not_array: bool,
    pub kwargs: Vec<(Range<usize>, Range<usize>)>,
    pub kwargs_not_map: bool,
    pub auth: Option<Range<usize>>,
    /// A key the server reads (`type`, `id`, `name`, `args`, `kwargs`, `auth`) came twice. What
    /// wins is not specified, so the parts are not compared then.
    pub duplicates: bool,
}

/// Reads `data` as a client frame.
pub(super) fn read(data: &[u8]) -> Verdict {
    match value_end(data, 0, DEPTH) {
        Ok(end) if end == data.len() => {}
        Ok(_) | Err(Bad::Invalid) => return Verdict::Reject(Why::Undecodable),
        Err(Bad::TooDeep) => return Verdict::TooDeep,
    }
    // Well-formed: rmpv reads it as it is (it would read the reserved byte as nil).
    let (whole, _) = value_at(data, 0);
    let Value::Map(entries) = &whole else {
        return Verdict::Reject(Why::NotAMap);
    };
    let mut out = Frame::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut pos = header_len(data, 0);
    for _ in entries {
        let (key, key_end) = value_at(data, pos);
        let Some(key) = key.as_str().map(str::to_owned) else {
            return Verdict::Reject(Why::BadText);
        };
        let (value, end) = value_at(data, key_end);
        let span = key_end..end;
        let known = ["type", "id", "name", "args", "kwargs", "auth"];
        if let Some(k) = known.iter().find(|k| **k == key) {
            if seen.contains(k) {
                out.duplicates = true;
            }
            seen.push(k);
        }
        match key.as_str() {
            "type" => {
                out.kind = match &value {
                    Value::String(s) => match s.as_str() {
                        Some("rpc") => FrameKind::Rpc,
                        Some("init") => FrameKind::Init,
                        Some("cancel") => FrameKind::Cancel,
                        Some(_) => FrameKind::Other,
                        None => return Verdict::Reject(Why::BadText),
                    },
                    _ => FrameKind::Other,
                }
            }
            "id" => out.id = Some(span),
            "auth" => out.auth = Some(span),
            "name" => match &value {
                Value::String(s) if s.is_str() => {
                    out.name = Some(end - s.as_bytes().len()..end);
                    out.name_not_string = false;
                }
                Value::String(_) => return Verdict::Reject(Why::BadText),
                _ => {
                    out.name = None;
                    out.name_not_string = true;
                }
            },
            "args" => match &value {
                Value::Array(items) => {
                    out.args.clear();
                    let mut at = header_len(data, span.start);
                    for _ in items {
                        let (_, item_end) = value_at(data, at);
                        out.args.push(at..item_end);
                        at = item_end;
                    }
                }
                Value::Nil => {}
                _ => out.args_not_array = true,
            },
            "kwargs" => match &value {
                Value::Map(pairs) => {
                    out.kwargs.clear();
                    let mut at = header_len(data, span.start);
                    for _ in pairs {
                        let (k, k_end) = value_at(data, at);
                        let (_, v_end) = value_at(data, k_end);
                        match &k {
                            Value::String(s) if s.is_str() => out
                                .kwargs
                                .push((k_end - s.as_bytes().len()..k_end, k_end..v_end)),
                            Value::String(_) => return Verdict::Reject(Why::BadText),
                            _ => out.kwargs_not_map = true,
                        }
                        at = v_end;
                    }
                }
                Value::Nil => {}
                _ => out.kwargs_not_map = true,
            },
            _ => {}
        }
        pos = end;
    }
    Verdict::Accept(out)
}

/// How deep [`value_end`] follows containers (`rmpv` reads as deep).
const DEPTH: usize = 500;

/// Why [`value_end`] found no value.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Bad {
    /// Truncated, or the reserved byte 0xc1.
    Invalid,
    /// Nested deeper than `depth`.
    TooDeep,
}

/// Where the MessagePack value that starts at `at` ends, read by the specification's marker
/// table (through `rmp`), recursively.
pub(super) fn value_end(data: &[u8], at: usize, depth: usize) -> Result<usize, Bad> {
    use rmp::Marker as M;
    let Some(depth) = depth.checked_sub(1) else {
        return Err(Bad::TooDeep);
    };
    let byte = *data.get(at).ok_or(Bad::Invalid)?;
    let field = |width: usize| -> Result<usize, Bad> {
        let bytes = data.get(at + 1..at + 1 + width).ok_or(Bad::Invalid)?;
        Ok(bytes.iter().fold(0, |n, b| n << 8 | *b as usize))
    };
    // (bytes of payload after the header, child values, header length)
    let (payload, children, header) = match M::from_u8(byte) {
        M::Reserved => return Err(Bad::Invalid),
        M::FixPos(_) | M::FixNeg(_) | M::Null | M::True | M::False => (0, 0, 1),
        M::U8 | M::I8 => (1, 0, 1),
        M::U16 | M::I16 => (2, 0, 1),
        M::U32 | M::I32 | M::F32 => (4, 0, 1),
        M::U64 | M::I64 | M::F64 => (8, 0, 1),
        M::FixStr(n) => (n as usize, 0, 1),
        M::Str8 | M::Bin8 => (field(1)?, 0, 2),
        M::Str16 | M::Bin16 => (field(2)?, 0, 3),
        M::Str32 | M::Bin32 => (field(4)?, 0, 5),
        M::FixExt1 => (2, 0, 1),
        M::FixExt2 => (3, 0, 1),
        M::FixExt4 => (5, 0, 1),
        M::FixExt8 => (9, 0, 1),
        M::FixExt16 => (17, 0, 1),
        M::Ext8 => (field(1)? + 1, 0, 2),
        M::Ext16 => (field(2)? + 1, 0, 3),
        M::Ext32 => (field(4)? + 1, 0, 5),
        M::FixArray(n) => (0, n as usize, 1),
        M::Array16 => (0, field(2)?, 3),
        M::Array32 => (0, field(4)?, 5),
        M::FixMap(n) => (0, 2 * n as usize, 1),
        M::Map16 => (0, 2 * field(2)?, 3),
        M::Map32 => (0, 2 * field(4)?, 5),
    };
    let mut end = at + header + payload;
    if end > data.len() {
        return Err(Bad::Invalid);
    }
    for _ in 0..children {
        if end >= data.len() {
            return Err(Bad::Invalid);
        }
        end = value_end(data, end, depth)?;
    }
    Ok(end)
}

/// The value that starts at `at` (inside a well-formed value) and where it ends.
fn value_at(data: &[u8], at: usize) -> (Value, usize) {
    let mut cursor = &data[at..];
    let value = rmpv::decode::read_value(&mut cursor).expect("inside a value rmpv read whole");
    (value, data.len() - cursor.len())
}

/// Where the first element of the array or map at `at` starts.
fn header_len(data: &[u8], at: usize) -> usize {
    let mut cursor = &data[at..];
    match rmp::decode::read_marker(&mut cursor).expect("a container") {
        rmp::Marker::Array16 | rmp::Marker::Map16 => at + 3,
        rmp::Marker::Array32 | rmp::Marker::Map32 => at + 5,
        _ => at + 1,
    }
}

/// The bytes `data` holds, split into its first complete values (at most `max`), as ranges;
/// what follows the last complete value is left out.
pub(super) fn values(data: &[u8], max: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < max && at < data.len() {
        let Ok(end) = value_end(data, at, DEPTH) else {
            break;
        };
        out.push(at..end);
        at = end;
    }
    out
}
