//! What decoding a call's arguments would cost, counted on their bytes before anything is
//! decoded.
//!
//! The frame bound (`max_frame_size`) bounds bytes, not what they decode to: a value takes one
//! byte on the wire (an empty list, a small integer) and tens of bytes once decoded, plus an
//! allocation for each list or map. One 1 MB argument of 8,000 lists nested 120 deep is about
//! a million values: decoding it into a dynamic `Value` (and writing it back, for `echo`) took
//! 856 ms and 168 MB. So the values a frame's arguments hold are counted first, in one pass
//! over their bytes that allocates nothing and stops at the bound, and a call over it is
//! refused without being decoded.

use super::frame::{RawFrame, Reader};
use super::msgpack::MAX_NESTING;

/// Why a call's arguments are refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooCostly {
    /// They hold more values than the bound.
    Values,
    /// Lists or maps nest [`MAX_NESTING`] deep or more, where the decoders stop.
    Depth,
}

/// Checks that a frame's arguments (each `args` element and each `kwargs` key and value, with
/// every list, map, key and scalar inside them) hold at most `max_values` values, and that
/// lists and maps nest less than [`MAX_NESTING`] deep (the decoders refuse that depth anyway,
/// after decoding what lies above it).
///
/// `parse` has already read the frame whole, so bytes that do not read here are left to the
/// binder, which reports them as it always has.
pub(crate) fn check(frame: &[u8], raw: &RawFrame, max_values: usize) -> Result<(), TooCostly> {
    // Every value takes a byte at least, and depth takes a byte a level: a frame this short
    // cannot hold too much, which spares the common small call the walk.
    if frame.len() <= max_values.min(MAX_NESTING) {
        return Ok(());
    }
    count(frame, raw, max_values)
}

/// [`check`] without its shortcut for short frames: every argument's values, and each keyword
/// argument's key, counted against `max_values`.
fn count(frame: &[u8], raw: &RawFrame, max_values: usize) -> Result<(), TooCostly> {
    let mut left = max_values;
    for span in raw.args.iter() {
        values(span.of(frame), &mut left)?;
    }
    for (_, value) in raw.kwargs.iter() {
        // The key.
        left = left.checked_sub(1).ok_or(TooCostly::Values)?;
        values(value.of(frame), &mut left)?;
    }
    Ok(())
}

/// Counts the values of one encoded value against `left`, without recursion: `open` holds how
/// many values each enclosing list or map still has to come.
fn values(bytes: &[u8], left: &mut usize) -> Result<(), TooCostly> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut open = [0usize; MAX_NESTING];
    let mut depth = 0;
    loop {
        *left = left.checked_sub(1).ok_or(TooCostly::Values)?;
        let container = matches!(bytes.get(r.pos), Some(0x80..=0x9f | 0xdc..=0xdf));
        let Ok(children) = r.head() else {
            return Ok(());
        };
        // An empty list is a level too: the decoders count it.
        if container && depth + 1 >= MAX_NESTING {
            return Err(TooCostly::Depth);
        }
        if children > 0 {
            open[depth] = children;
            depth += 1;
            continue;
        }
        // A value with nothing inside ends here, and with it every list or map it was last in.
        loop {
            let Some(top) = depth.checked_sub(1) else {
                return Ok(());
            };
            open[top] -= 1;
            if open[top] > 0 {
                break;
            }
            depth = top;
        }
    }
}

#[cfg(test)]
mod tests {
    use rmpv::Value;

    use super::*;
    use crate::wire::parse;

    fn call(args: Vec<Value>, kwargs: Vec<(&str, Value)>) -> Vec<u8> {
        let frame = Value::Map(vec![
            ("type".into(), "rpc".into()),
            ("name".into(), "f".into()),
            ("args".into(), Value::Array(args)),
            (
                "kwargs".into(),
                Value::Map(kwargs.into_iter().map(|(k, v)| (k.into(), v)).collect()),
            ),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &frame).unwrap();
        out
    }

    /// The fewest values `frame`'s arguments may be bounded to and still pass.
    fn count(frame: &[u8]) -> usize {
        let mut raw = RawFrame::default();
        parse(frame, &mut raw).unwrap();
        // Past the shortcut for short frames: every bound below is far under their length.
        (0..frame.len())
            .find(|&n| super::count(frame, &raw, n).is_ok())
            .expect("a bound as large as the frame passes")
    }

    fn nested(depth: usize, inner: Value) -> Value {
        (0..depth).fold(inner, |v, _| Value::Array(vec![v]))
    }

    #[test]
    fn every_list_map_key_and_scalar_counts_one() {
        assert_eq!(count(&call(vec![], vec![])), 0);
        assert_eq!(count(&call(vec![1.into(), "two".into()], vec![])), 2);
        // A string or a binary is one value however long.
        let long = Value::Binary(vec![0; 100_000]);
        assert_eq!(count(&call(vec![long], vec![])), 1);
        // [[], [1, 2], {a: nil}]: the list, an empty list, a list and its two items, a map,
        // its key and its value.
        let mixed = Value::Array(vec![
            Value::Array(vec![]),
            Value::Array(vec![1.into(), 2.into()]),
            Value::Map(vec![("a".into(), Value::Nil)]),
        ]);
        assert_eq!(count(&call(vec![mixed], vec![])), 8);
        // Keyword arguments: each key and its value (here three lists around a scalar).
        assert_eq!(
            count(&call(
                vec![],
                vec![("x", 1.into()), ("y", nested(3, 0.into()))]
            )),
            7
        );
        // Values of every remaining kind: extensions, floats, 64-bit integers.
        let kinds = vec![
            Value::Ext(1, vec![1, 2, 3]),
            Value::F64(0.5),
            Value::from(u64::MAX),
            Value::from(-1_000_000),
        ];
        assert_eq!(count(&call(kinds, vec![])), 4);
    }

    #[test]
    fn the_bound_is_for_the_whole_frame() {
        let frame = call(vec![Value::Array(vec![0.into(); 10]); 3], vec![]);
        let mut raw = RawFrame::default();
        parse(&frame, &mut raw).unwrap();
        assert_eq!(super::count(&frame, &raw, 33), Ok(()));
        assert_eq!(super::count(&frame, &raw, 32), Err(TooCostly::Values));
        // Under the frame's length in bytes, so not spared the walk.
        assert!(frame.len() > 33);
        assert_eq!(check(&frame, &raw, 32), Err(TooCostly::Values));
        assert_eq!(check(&frame, &raw, 33), Ok(()));
    }

    #[test]
    fn nesting_deeper_than_the_decoders_go_is_refused() {
        // `rmp_serde` and `rmpv`, at the server's depth, read 127 lists deep and not 128.
        let at_limit = call(vec![nested(MAX_NESTING - 1, Value::Nil)], vec![]);
        let mut raw = RawFrame::default();
        parse(&at_limit, &mut raw).unwrap();
        assert_eq!(check(&at_limit, &raw, 100_000), Ok(()));
        let deeper = call(vec![nested(MAX_NESTING, Value::Nil)], vec![]);
        parse(&deeper, &mut raw).unwrap();
        assert_eq!(check(&deeper, &raw, 100_000), Err(TooCostly::Depth));
        // Deep but empty at the bottom: the innermost list holds nothing.
        let empty = call(vec![nested(MAX_NESTING - 1, Value::Array(vec![]))], vec![]);
        parse(&empty, &mut raw).unwrap();
        assert_eq!(check(&empty, &raw, 100_000), Err(TooCostly::Depth));
        // Deep nesting that closes and opens again stays within the bound.
        let wide = Value::Array(vec![nested(100, Value::Nil); 50]);
        let wide = call(vec![wide], vec![]);
        parse(&wide, &mut raw).unwrap();
        assert_eq!(check(&wide, &raw, 100_000), Ok(()));
    }

    #[test]
    fn the_attack_of_the_issue_stops_at_the_bound() {
        // One argument of 8,000 lists nested 120 deep: 960,001 values in 960 KB (written by
        // hand: as a decoded `Value` it is the 168 MB this bound is for).
        let mut frame = b"\x82\xa4type\xa3rpc\xa4args\x91\xdd".to_vec();
        frame.extend_from_slice(&8_000u32.to_be_bytes());
        for _ in 0..8_000 {
            frame.extend(std::iter::repeat_n(0x91, 119));
            frame.push(0xc0);
        }
        let mut raw = RawFrame::default();
        parse(&frame, &mut raw).unwrap();
        assert_eq!(check(&frame, &raw, 100_000), Err(TooCostly::Values));
        assert_eq!(check(&frame, &raw, 960_001), Ok(()));
        assert_eq!(check(&frame, &raw, 960_000), Err(TooCostly::Values));
    }
}
