//! Fuzz entry points: what the property tests (`tests.rs`), the stable long runner
//! (`examples/fuzz.rs`) and the cargo-fuzz targets (`ephaptic/fuzz/`) feed bytes to. Each takes
//! any bytes and panics when a property of the server does not hold; a panic is a finding.
//! Not a public API: it changes without notice.
//!
//! - [`frame`]: the frame reader (`wire/frame.rs`) never panics, its spans lie inside the
//!   frame, and it accepts exactly what a general MessagePack decoder (`rmpv`) reads as a
//!   frame, with the same parts; the cost check (`wire/cost.rs`) counts the values of its
//!   arguments as `rmpv` decodes them.
//! - [`bind`]: binding arguments to a few real signatures agrees with `rmp_serde` alone, on
//!   what binds, to which values, and on which parameters are reported; the fast argument
//!   reader (`wire/unpack.rs`) never binds a value `rmp_serde` would not bind the same way.
//! - [`Inbound`]: the whole path of a frame through a server answers at most once, with a
//!   well-formed reply that echoes the frame's id and is bounded in size.

pub mod mutate;
mod oracle;
mod sigs;
#[cfg(test)]
mod tests;

use std::fmt::Debug;

use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;

use self::oracle::{Verdict, Why};
use crate::handler::bind::{Binder, MAX_ISSUES};
use crate::wire::{self, FrameKind, NIL, RawFrame, unpack};

/// The largest reply a frame of `frame_len` bytes may cause: the frame's own parts echoed
/// back (an `input`, a key in a message) and a fixed allowance for the rest. A validation
/// error lists at most `MAX_ISSUES` problems, whatever the frame holds.
pub fn reply_limit(frame_len: usize) -> usize {
    2 * frame_len + 4096
}

/// Whether the server reads `data` as a frame (a mutation worth mutating further).
pub fn is_frame(data: &[u8]) -> bool {
    wire::parse(data, &mut RawFrame::default()).is_ok()
}

/// The frame reader on any bytes.
pub fn frame(data: &[u8]) {
    let mut raw = RawFrame::default();
    let parsed = wire::parse(data, &mut raw);
    let salvaged = wire::salvage_id(data);
    if let Some(id) = &salvaged {
        assert!(
            id.start < id.end && id.end <= data.len(),
            "salvaged id {id:?}"
        );
        assert_one_value(&data[id.clone()], "the salvaged id");
    }
    let verdict = oracle::read(data);
    match (&parsed, &verdict) {
        (Ok(()), Verdict::Accept(reference)) => {
            check_spans(data, &raw);
            if !reference.duplicates {
                same_parts(data, &raw, reference);
                same_cost(data, &raw, reference);
                assert_eq!(salvaged, reference.id.clone(), "salvage_id finds the id");
            }
        }
        (Ok(()), Verdict::TooDeep) => check_spans(data, &raw),
        (Ok(()), Verdict::Reject(why)) => {
            panic!("the reader accepted a frame rmpv reads as not a frame ({why:?})")
        }
        (Err(e), Verdict::Accept(_)) => {
            panic!("the reader refused ({e}) a frame rmpv reads whole")
        }
        (Err(e), Verdict::Reject(why)) => assert_eq!(
            *e == wire::frame::FrameError::NotAMap,
            *why == Why::NotAMap,
            "one complete value that is not a map is told apart ({e} / {why:?})"
        ),
        (Err(_), Verdict::TooDeep) => {}
    }
}

/// Argument binding on any bytes, read three ways: as a whole frame, as a list of argument
/// values (sent positionally and by name) for each signature, and as single values for the
/// fast reader.
pub fn bind(data: &[u8]) {
    let mut raw = RawFrame::default();
    if wire::parse(data, &mut raw).is_ok()
        && let Verdict::Accept(reference) = oracle::read(data)
        && !reference.duplicates
    {
        for sig in sigs::ALL {
            check_call(sig, data, &raw, &reference);
        }
    }
    let values = oracle::values(data, 4);
    for range in &values {
        fast_agrees(&data[range.clone()]);
    }
    for by_name in [false, true] {
        let call = call_frame(data, &values, by_name);
        let mut raw = RawFrame::default();
        wire::parse(&call, &mut raw).expect("a call made of complete values");
        let Verdict::Accept(reference) = oracle::read(&call) else {
            continue; // nested too deep for rmpv
        };
        for sig in sigs::ALL {
            check_call(sig, &call, &raw, &reference);
        }
    }
}

/// A server with the harness's functions, and one connection of it, without a socket.
#[derive(Debug)]
pub struct Inbound {
    bench: crate::__bench::Bench,
    frames: u64,
}

impl Default for Inbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbound {
    /// # Panics
    /// When the functions linked into the binary conflict with the harness's.
    pub fn new() -> Self {
        Inbound {
            bench: crate::__bench::Bench::new(sigs::server()),
            frames: 0,
        }
    }

    /// Hands `data` to the server as a frame of its connection (the first one, now and then,
    /// so `init` is read as the first frame too) and checks what it answers.
    pub fn frame(&mut self, data: &[u8]) {
        self.frames += 1;
        let first = self.frames % 8 == 1;
        let answers = self.bench.every_answer(Bytes::copy_from_slice(data), first);
        assert!(answers.len() <= 1, "{} answers to one frame", answers.len());
        let too_large = data.len() > self.bench.max_frame_size();
        let mut raw = RawFrame::default();
        let expected_id = match wire::parse(data, &mut raw) {
            Ok(()) if !too_large => match raw.kind {
                FrameKind::Rpc => Some(raw.id(data)),
                // `init` and unknown types are not answered, nor is a cancel.
                _ => None,
            },
            _ => wire::salvage_id(data).map(|id| &data[id]),
        };
        let Some(answer) = answers.first() else {
            // Every call is answered at once (the harness's functions finish on their first
            // poll), except the unit tests' own functions that wait on purpose.
            let may_wait = raw.kind == FrameKind::Rpc
                && raw
                    .name
                    .is_some_and(|n| n.of(data).starts_with(b"dispatch_test_"));
            assert!(
                expected_id.is_none() || may_wait,
                "no answer to a frame with a readable id: {data:02x?}"
            );
            return;
        };
        let Some(expected_id) = expected_id else {
            panic!("an answer to a frame that asks for none: {answer:02x?}");
        };
        assert!(
            answer.len() <= reply_limit(data.len()),
            "a reply of {} bytes to a frame of {}",
            answer.len(),
            data.len()
        );
        // One map with string keys (the span reader, held to rmpv by [`frame`], reads it at
        // any depth: an id is echoed however deeply it nests).
        let mut reply_parts = RawFrame::default();
        if let Err(e) = wire::parse(answer, &mut reply_parts) {
            panic!("a reply that is not a map with string keys ({e}): {answer:02x?}");
        }
        assert!(
            answer.starts_with(&[0x82, 0xa2, b'i', b'd']) && answer[4..].starts_with(expected_id),
            "a reply that does not start with the frame's id"
        );
        let reply = assert_one_value(answer, "a reply");
        if let Some(error) = field(&reply, "error") {
            let code = field(error, "code").and_then(Value::as_str).unwrap_or("");
            assert!(
                [
                    "VALIDATION_ERROR",
                    "NOT_FOUND",
                    "BAD_FRAME",
                    "FRAME_TOO_LARGE"
                ]
                .contains(&code),
                "an unexpected error: {error}"
            );
            if let Some(Value::Array(issues)) = field(error, "data") {
                assert!(issues.len() <= MAX_ISSUES + 1, "{} issues", issues.len());
            }
        }
    }
}

/// Seed frames: valid calls of every signature, positional and by name, at the edges of their
/// types, and the other frame types; what mutation starts from.
pub fn seeds() -> Vec<Vec<u8>> {
    let s = |x: &str| Value::from(x);
    let rpc = |name: &str, args: Vec<Value>, kwargs: Vec<(Value, Value)>| {
        Value::Map(vec![
            (s("type"), s("rpc")),
            (s("id"), Value::from(7)),
            (s("name"), s(name)),
            (s("args"), Value::Array(args)),
            (s("kwargs"), Value::Map(kwargs)),
        ])
    };
    let item = Value::Map(vec![
        (s("title"), s("milk")),
        (s("tags"), Value::Array(vec![s("a"), s("bé")])),
        (s("due"), Value::Nil),
    ]);
    let frames = vec![
        rpc("fuzz_ints", vec![i64::MIN.into(), u64::MAX.into()], vec![]),
        rpc(
            "fuzz_ints",
            vec![(-1).into()],
            vec![(s("b"), 0.into()), (s("c"), 127.into())],
        ),
        rpc(
            "fuzz_ints",
            vec![i64::MAX.into(), 1.into(), (-128).into()],
            vec![],
        ),
        rpc(
            "fuzz_text",
            vec![s("héllo"), Value::Array(vec![s("x")])],
            vec![],
        ),
        rpc(
            "fuzz_text",
            vec![],
            vec![
                (s("s"), s("")),
                (s("tags"), Value::Array(vec![])),
                (s("n"), Value::Nil),
            ],
        ),
        rpc("fuzz_item", vec![item.clone(), 3.into()], vec![]),
        rpc("fuzz_item", vec![], vec![(s("item"), item)]),
        rpc(
            "fuzz_any",
            vec![Value::Ext(5, vec![1, 2]), Value::F64(0.5), 255.into()],
            vec![],
        ),
        rpc(
            "fuzz_any",
            vec![Value::Binary(vec![0; 3]), Value::F32(1.5), 0.into()],
            vec![],
        ),
        rpc("fuzz_none", vec![], vec![]),
        rpc(
            "fuzz_ints",
            vec![s("1"), Value::Nil, Value::Boolean(true)],
            vec![(s("zz"), 1.into())],
        ),
        Value::Map(vec![
            (s("type"), s("init")),
            (s("auth"), Value::Map(vec![(s("token"), s("t"))])),
        ]),
        Value::Map(vec![(s("type"), s("cancel")), (s("id"), s("abc"))]),
        Value::Map(vec![
            (s("type"), s("rpc")),
            (s("id"), Value::Array(vec![1.into()])),
            (s("name"), 5.into()),
            (s("args"), 1.into()),
            (s("kwargs"), s("x")),
        ]),
    ];
    let mut out: Vec<Vec<u8>> = frames.iter().map(encode).collect();
    // The same call with wide headers and integers, as other encoders write them.
    out.push(
        [
            &b"\xde\x00\x04\xd9\x04type\xda\x00\x03rpc\xa2id\xcf\x00\x00\x00\x00\x00\x00\x00\x07"[..],
            b"\xa4name\xdb\x00\x00\x00\x09fuzz_ints\xa4args\xdd\x00\x00\x00\x02\xd3\x00\x00\x00\x00\x00\x00\x00\x02\xcc\x03",
        ]
        .concat(),
    );
    out
}

/// `value` as MessagePack.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec");
    out
}

fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Checks that `bytes` is exactly one MessagePack value, and decodes it (nil when it is nested
/// deeper than the reference reads: the frame reader has no depth limit).
fn assert_one_value(bytes: &[u8], what: &str) -> Value {
    match oracle::value_end(bytes, 0, 500) {
        Ok(end) => assert_eq!(end, bytes.len(), "{what} has bytes after its value"),
        Err(oracle::Bad::TooDeep) => return Value::Nil,
        Err(oracle::Bad::Invalid) => panic!("{what} is not MessagePack: {bytes:02x?}"),
    }
    rmpv::decode::read_value(&mut &bytes[..]).expect("well-formed")
}

/// Every span the reader recorded lies inside the frame and covers what it says.
fn check_spans(data: &[u8], raw: &RawFrame) {
    let inside = |span: wire::Span| {
        let r = span.range();
        assert!(
            r.start <= r.end && r.end <= data.len(),
            "span {r:?} of {}",
            data.len()
        );
        &data[r]
    };
    for span in [raw.id, raw.auth] {
        if !span.is_empty() {
            assert_one_value(inside(span), "an id or auth span");
        }
    }
    if let Some(name) = raw.name {
        assert!(
            std::str::from_utf8(inside(name)).is_ok(),
            "a name that is not UTF-8"
        );
    }
    for arg in raw.args.iter() {
        assert_one_value(inside(*arg), "an argument span");
    }
    for (key, value) in raw.kwargs.iter() {
        assert!(
            std::str::from_utf8(inside(*key)).is_ok(),
            "a keyword that is not UTF-8"
        );
        assert_one_value(inside(*value), "a keyword argument span");
    }
}

/// The reader found the same parts as the reference reading.
fn same_parts(data: &[u8], raw: &RawFrame, reference: &oracle::Frame) {
    let range = |span: wire::Span| (!span.is_empty()).then(|| span.range());
    assert_eq!(raw.kind, reference.kind, "type");
    assert_eq!(range(raw.id), reference.id, "id");
    assert_eq!(
        raw.id(data),
        reference.id.clone().map_or(NIL, |r| &data[r]),
        "id bytes"
    );
    assert_eq!(raw.name.map(|s| s.range()), reference.name, "name");
    assert_eq!(
        raw.name_not_string, reference.name_not_string,
        "name is not a string"
    );
    assert_eq!(range(raw.auth), reference.auth, "auth");
    let args: Vec<_> = raw.args.iter().map(|s| s.range()).collect();
    assert_eq!(args, reference.args, "args");
    assert_eq!(
        raw.args_not_array, reference.args_not_array,
        "args is not a list"
    );
    let kwargs: Vec<_> = raw
        .kwargs
        .iter()
        .map(|(k, v)| (k.range(), v.range()))
        .collect();
    assert_eq!(kwargs, reference.kwargs, "kwargs");
    assert_eq!(
        raw.kwargs_not_map, reference.kwargs_not_map,
        "kwargs is not a map"
    );
}

/// The cost check (`wire/cost.rs`) counts the values of a frame's arguments, and the depth of
/// their lists and maps, as `rmpv` decodes them: exactly that many pass its bound, one fewer
/// does not, and nesting `MAX_NESTING` deep is refused whatever the bound.
fn same_cost(data: &[u8], raw: &RawFrame, reference: &oracle::Frame) {
    use wire::cost::{TooCostly, check};
    fn count(v: &Value, depth: usize, deepest: &mut usize) -> usize {
        let children: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            Value::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return 1,
        };
        *deepest = (*deepest).max(depth + 1);
        1 + children
            .into_iter()
            .map(|c| count(c, depth + 1, deepest))
            .sum::<usize>()
    }
    let decoded = |r: &std::ops::Range<usize>| {
        rmpv::decode::read_value(&mut &data[r.clone()]).expect("read whole by the oracle")
    };
    let mut deepest = 0;
    let mut values = 0;
    for arg in &reference.args {
        values += count(&decoded(arg), 0, &mut deepest);
    }
    for (_, value) in &reference.kwargs {
        values += 1 + count(&decoded(value), 0, &mut deepest);
    }
    if deepest >= wire::MAX_NESTING {
        assert_eq!(check(data, raw, values), Err(TooCostly::Depth), "too deep");
        return;
    }
    assert_eq!(check(data, raw, values), Ok(()), "{values} values");
    if values > 0 {
        assert_eq!(
            check(data, raw, values - 1),
            Err(TooCostly::Values),
            "{values} values"
        );
    }
}

/// Binds the call in `frame` to `sig` through the server's binder, and checks it against
/// binding it by the rules of docs/PROTOCOL.md with `rmp_serde` alone.
fn check_call(sig: &sigs::Sig, frame: &[u8], raw: &RawFrame, reference: &oracle::Frame) {
    let mut binder = Binder::new(sig.call, frame, raw);
    let bound = (sig.bind)(&mut binder);
    let got = binder
        .finish()
        .map(|()| bound.expect("bound when nothing is wrong"));

    // The rules: positions first, then names; each problem of the call's shape is an issue
    // (`None`: any kind of issue), and so is each parameter that does not bind.
    let params = sig.call.params;
    let mut slots: Vec<Option<&[u8]>> = vec![None; params.len()];
    let mut issues: Vec<(Option<&str>, String)> = Vec::new();
    if reference.args_not_array {
        issues.push((Some("invalid_type"), "args".into()));
    }
    if reference.kwargs_not_map {
        issues.push((Some("invalid_type"), "kwargs".into()));
    }
    for (slot, arg) in slots.iter_mut().zip(&reference.args) {
        *slot = Some(&frame[arg.clone()]);
    }
    if reference.args.len() > params.len() {
        issues.push((Some("unexpected_argument"), params.len().to_string()));
    }
    for (key, value) in &reference.kwargs {
        let key = std::str::from_utf8(&frame[key.clone()]).expect("checked by the oracle");
        match params.iter().position(|p| *p == key) {
            Some(i) if slots[i].is_some() => issues.push((Some("multiple_values"), key.into())),
            Some(i) => slots[i] = Some(&frame[value.clone()]),
            None => issues.push((Some("unexpected_keyword_argument"), key.into())),
        }
    }
    let want = (sig.reference)(&slots);
    if let Err(failed) = &want {
        issues.extend(failed.iter().map(|p| (None, p.to_string())));
    }
    let want = if issues.is_empty() {
        want.map_err(|_| ())
    } else {
        Err(())
    };

    match (&got, &want) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{}: bound to other values", sig.call.name),
        (Err(e), Err(())) => {
            assert_eq!(e.code(), "VALIDATION_ERROR");
            let Value::Array(listed) = e.data() else {
                panic!("VALIDATION_ERROR without an issue list: {e:?}");
            };
            let shown = issues.len().min(MAX_ISSUES);
            let more = issues.len() - shown;
            assert_eq!(
                listed.len(),
                shown + usize::from(more > 0),
                "{}: issues {listed:?}, expected {issues:?}",
                sig.call.name
            );
            for (item, (kind, loc)) in listed.iter().zip(&issues) {
                let item_kind = field(item, "type").and_then(Value::as_str);
                if let Some(kind) = kind {
                    assert_eq!(item_kind, Some(*kind), "{}: issue {item}", sig.call.name);
                }
                let first = field(item, "loc")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first());
                let first = first.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                assert_eq!(
                    first.as_deref(),
                    Some(loc.as_str()),
                    "{}: issue {item}",
                    sig.call.name
                );
            }
            if more > 0 {
                let last = listed.last().expect("not empty");
                assert_eq!(
                    field(last, "type").and_then(Value::as_str),
                    Some("too_many_issues")
                );
                let msg = field(last, "msg").and_then(Value::as_str).unwrap_or("");
                assert!(
                    msg.contains(&format!(" {more} ")),
                    "{}: {msg}",
                    sig.call.name
                );
            }
        }
        (Ok(got), Err(())) => panic!(
            "{}: bound to {got} where rmp_serde reports {issues:?}",
            sig.call.name
        ),
        (Err(e), Ok(want)) => panic!(
            "{}: refused ({}) where rmp_serde binds {want}",
            sig.call.name,
            e.message()
        ),
    }
}

/// `{type: "rpc", id: 1, name: "x", args: [values]}`, or with the values in `kwargs` under the
/// parameter names of the first signatures (`a`, `b`, ...), written byte by byte so that each
/// value keeps its own encoding.
fn call_frame(data: &[u8], values: &[std::ops::Range<usize>], by_name: bool) -> Vec<u8> {
    let mut out = b"\x84\xa4type\xa3rpc\xa2id\x01\xa4name\xa1x".to_vec();
    if by_name {
        out.extend_from_slice(b"\xa6kwargs");
        out.push(0x80 | values.len() as u8);
    } else {
        out.extend_from_slice(b"\xa4args");
        out.push(0x90 | values.len() as u8);
    }
    const NAMES: [&str; 4] = ["a", "s", "tags", "v"];
    for (range, name) in values.iter().zip(NAMES) {
        if by_name {
            crate::wire::msgpack::put_str(&mut out, name);
        }
        out.extend_from_slice(&data[range.clone()]);
    }
    out
}

/// The fast reader, on one complete value, for every type the signatures use and a few more:
/// whatever it binds, `rmp_serde` binds the same way.
fn fast_agrees(bytes: &[u8]) {
    fn one<T: DeserializeOwned + Debug>(bytes: &[u8]) {
        if let Ok(fast) = unpack::<T>(bytes) {
            match sigs::slow::<T>(bytes) {
                Ok(slow) => assert_eq!(
                    format!("{fast:?}"),
                    format!("{slow:?}"),
                    "the fast reader bound {bytes:02x?} otherwise as {}",
                    std::any::type_name::<T>()
                ),
                Err(e) => panic!(
                    "the fast reader bound {bytes:02x?} as {} to {fast:?}; rmp_serde: {e}",
                    std::any::type_name::<T>()
                ),
            }
        }
    }
    one::<i64>(bytes);
    one::<u64>(bytes);
    one::<i8>(bytes);
    one::<u8>(bytes);
    one::<i32>(bytes);
    one::<u32>(bytes);
    one::<f32>(bytes);
    one::<f64>(bytes);
    one::<bool>(bytes);
    one::<()>(bytes);
    one::<char>(bytes);
    one::<String>(bytes);
    one::<Option<i64>>(bytes);
    one::<Option<String>>(bytes);
    one::<Vec<u8>>(bytes);
    one::<Vec<String>>(bytes);
    one::<Vec<Option<i64>>>(bytes);
    one::<(i64, String)>(bytes);
    one::<std::collections::BTreeMap<String, i64>>(bytes);
    one::<std::collections::BTreeMap<i64, bool>>(bytes);
    one::<sigs::Item>(bytes);
    one::<Value>(bytes);
}
