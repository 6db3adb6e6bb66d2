//! The fuzz properties as property tests, bounded for CI: 512 to 2,048 cases each by default
//! (about 10 s in debug on two busy cores), any number with `PROPTEST_CASES=N`. Below them,
//! every input a fuzz run found is kept as a test with its exact bytes.

use proptest::prelude::*;
use rmpv::Value;

use super::mutate::{Rng, mutate};
use super::{Inbound, bind, frame, seeds};

/// `cases` unless `PROPTEST_CASES` says otherwise; failures are not written to files (a
/// failing input becomes a regression test below instead).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-c]{1,3}",
        "\\PC{0,12}",
        (0usize..70_000).prop_map(|n| "y".repeat(n)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let edges = [
        0i64,
        -1,
        127,
        128,
        -32,
        -33,
        255,
        256,
        -129,
        65_535,
        65_536,
        i32::MIN as i64,
        u32::MAX as i64,
        i64::MIN,
        i64::MAX,
    ];
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        proptest::sample::select(edges.to_vec()).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        string().prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Value::Ext(t, d)),
        // Strings that are not UTF-8.
        Just(rmpv::decode::read_value(&mut &b"\xa2\xff\xfe"[..]).expect("a string")),
    ]
}

/// Any value, nested a few levels: lists, and maps with string or other keys.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner.clone()), 0..5).prop_map(Value::Map),
            proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
        ]
    })
}

/// Keys a frame or an argument map may have: the real ones, the parameters', and others.
fn key() -> impl Strategy<Value = Value> {
    let names = [
        "type", "id", "name", "args", "kwargs", "auth", "a", "b", "c", "s", "tags", "n", "item",
        "count", "v", "f", "small", "title", "urgent", "due",
    ];
    prop_oneof![
        4 => proptest::sample::select(names.to_vec()).prop_map(Value::from),
        1 => string().prop_map(Value::from),
    ]
}

/// Values of the shape a call expects (and of other shapes), for the parameter names.
fn argument() -> impl Strategy<Value = Value> {
    let item = (
        string(),
        any::<bool>(),
        proptest::collection::vec(string(), 0..3),
        any::<Option<u32>>(),
    )
        .prop_map(|(title, urgent, tags, due)| {
            let mut fields = vec![
                (Value::from("title"), Value::from(title)),
                (
                    Value::from("tags"),
                    Value::Array(tags.into_iter().map(Value::from).collect()),
                ),
                (Value::from("due"), due.map_or(Value::Nil, Value::from)),
            ];
            if urgent {
                fields.push((Value::from("urgent"), Value::from(true)));
            }
            Value::Map(fields)
        });
    prop_oneof![
        3 => leaf(),
        1 => item,
        1 => value(),
    ]
}

/// A frame that is mostly right: known keys with values of the right or wrong type, the
/// harness's function names, arguments by position and by name.
fn frame_value() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => Just(Value::from("rpc")),
        1 => Just(Value::from("init")),
        1 => Just(Value::from("cancel")),
        1 => leaf(),
    ];
    let name = prop_oneof![
        6 => proptest::sample::select(vec!["fuzz_ints", "fuzz_text", "fuzz_item", "fuzz_any", "fuzz_none", "nope"])
            .prop_map(Value::from),
        1 => leaf(),
    ];
    let args = prop_oneof![
        6 => proptest::collection::vec(argument(), 0..5).prop_map(Value::Array),
        1 => leaf(),
    ];
    let kwargs = prop_oneof![
        6 => proptest::collection::vec((key(), argument()), 0..4).prop_map(Value::Map),
        1 => proptest::collection::vec((leaf(), argument()), 0..2).prop_map(Value::Map),
        1 => leaf(),
    ];
    let optional = |s: BoxedStrategy<Value>| proptest::option::weighted(0.85, s);
    (
        optional(kind.boxed()),
        optional(leaf().boxed()),
        optional(name.boxed()),
        optional(args.boxed()),
        optional(kwargs.boxed()),
        proptest::option::weighted(0.1, value()),
        proptest::collection::vec((key(), value()), 0..2),
    )
        .prop_map(|(kind, id, name, args, kwargs, auth, extra)| {
            let mut entries = Vec::new();
            for (k, v) in [
                ("type", kind),
                ("id", id),
                ("name", name),
                ("args", args),
                ("kwargs", kwargs),
                ("auth", auth),
            ] {
                if let Some(v) = v {
                    entries.push((Value::from(k), v));
                }
            }
            entries.extend(extra);
            Value::Map(entries)
        })
}

/// A frame's bytes, whole or damaged: cut short, a byte changed, a length blown up, or
/// through the long runner's mutations.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    (frame_value(), 0u8..8, any::<u64>()).prop_map(|(v, damage, seed)| {
        let mut bytes = super::encode(&v);
        let mut rng = Rng::new(seed);
        match damage {
            0 if !bytes.is_empty() => bytes.truncate(rng.below(bytes.len())),
            1 => bytes = mutate(&mut rng, &bytes, &[]),
            _ => {}
        }
        bytes
    })
}

/// A seed frame through a few rounds of the long runner's mutations.
fn mutated_seed() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 1usize..6).prop_map(|(seed, rounds)| {
        let corpus = seeds();
        let mut rng = Rng::new(seed);
        let mut bytes = corpus[rng.below(corpus.len())].clone();
        for _ in 0..rounds {
            bytes = mutate(&mut rng, &bytes, &corpus);
        }
        bytes
    })
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..200)
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn the_frame_reader_on_any_bytes(data in any_bytes()) {
        frame(&data);
    }

    #[test]
    fn the_frame_reader_on_frames(data in frame_bytes()) {
        frame(&data);
    }

    #[test]
    fn the_frame_reader_on_mutated_seeds(data in mutated_seed()) {
        frame(&data);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn binding_on_any_bytes(data in any_bytes()) {
        bind(&data);
    }

    #[test]
    fn binding_on_frames(data in frame_bytes()) {
        bind(&data);
    }

    #[test]
    fn binding_on_argument_values(values in proptest::collection::vec(argument(), 0..4)) {
        let bytes: Vec<u8> = values.iter().flat_map(super::encode).collect();
        bind(&bytes);
    }

    #[test]
    fn binding_on_mutated_seeds(data in mutated_seed()) {
        bind(&data);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_inbound_path_answers_once_and_briefly(frames in proptest::collection::vec(
        prop_oneof![frame_bytes(), mutated_seed(), any_bytes()], 1..8)
    ) {
        let mut inbound = Inbound::new();
        for data in &frames {
            inbound.frame(data);
        }
    }
}

#[test]
fn every_seed_is_a_frame_the_harness_accepts() {
    let mut inbound = Inbound::new();
    for seed in seeds() {
        frame(&seed);
        bind(&seed);
        inbound.frame(&seed);
    }
}

#[test]
fn the_mutator_is_the_same_for_the_same_seed() {
    // The long runner reports its seed; a run must be reproducible from it.
    let corpus = seeds();
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..50)
            .map(|i| mutate(&mut rng, &corpus[i % corpus.len()], &corpus))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

// Regressions: inputs the fuzz runs found, with their exact bytes.

/// Runs `f` on a thread with the stack of a tokio worker (2 MiB), where calls are bound.
fn on_a_worker_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("a thread")
        .join()
        .expect("no panic");
}

/// `{type: "rpc", id: 1, name: "fuzz_any", args: [[[...nil...]], 0.5, 1]}`, `depth` lists deep.
fn deep_call(depth: usize) -> Vec<u8> {
    let mut frame = b"\x84\xa4type\xa3rpc\xa2id\x01\xa4name\xa8fuzz_any\xa4args\x93".to_vec();
    frame.extend(std::iter::repeat_n(0x91, depth));
    frame.push(0xc0);
    frame.extend_from_slice(b"\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00\x01");
    frame
}

#[test]
fn a_deeply_nested_argument_is_refused_not_a_stack_overflow() {
    // Found by `binding_on_mutated_seeds`: a mutation nested an argument of a `Value`
    // parameter 1,000 lists deep; `rmp_serde` follows up to 1,024 levels, recursively, and
    // overflowed the stack (the whole server aborts) long before.
    on_a_worker_stack(|| {
        let frame = deep_call(1000);
        bind(&frame);
        let mut inbound = Inbound::new();
        let answers = inbound.bench.every_answer(frame.into(), false);
        let reply = rmpv::decode::read_value(&mut &answers[0][..]).expect("a reply");
        let error = super::field(&reply, "error").expect("an error");
        assert_eq!(
            super::field(error, "code").and_then(Value::as_str),
            Some("VALIDATION_ERROR")
        );
    });
}

#[test]
fn a_long_unknown_keyword_is_not_echoed_three_times() {
    // Found by `the_inbound_path_answers_once_and_briefly` (shrunk): `fuzz_ints` called with
    // one unknown keyword of 3,946 bytes. The key was in the issue's `loc`, its `msg` and the
    // joined `message`: a 12,219-byte reply to a 3,983-byte frame.
    let mut frame = b"\x83\xa4type\xa3rpc\xa4name\xa9fuzz_ints\xa6kwargs\x81\xda\x0f\x6a".to_vec();
    frame.extend(std::iter::repeat_n(b'y', 0x0f6a));
    frame.push(0xc0);
    assert_eq!(frame.len(), 3983);
    let mut inbound = Inbound::new();
    inbound.frame(&frame);
    let answers = inbound.bench.every_answer(frame.clone().into(), false);
    assert!(
        answers[0].len() <= super::reply_limit(frame.len()),
        "{} bytes",
        answers[0].len()
    );
    let reply = rmpv::decode::read_value(&mut &answers[0][..]).expect("a reply");
    let error = super::field(&reply, "error").expect("an error");
    let Some(Value::Array(issues)) = super::field(error, "data") else {
        panic!("no issues: {error}");
    };
    let msg = super::field(&issues[0], "msg")
        .and_then(Value::as_str)
        .expect("a msg");
    assert!(
        msg.len() <= crate::handler::bind::MAX_MSG && msg.ends_with('…'),
        "{msg}"
    );
    // The key itself is still there, once.
    let loc = super::field(&issues[0], "loc")
        .and_then(Value::as_array)
        .expect("a loc");
    assert_eq!(loc[0].as_str().map(str::len), Some(0x0f6a));
}
