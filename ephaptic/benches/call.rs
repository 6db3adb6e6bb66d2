//! One call through the server's frame path, with no socket: parse the frame, find the
//! function, bind its arguments, run it (its first poll) and encode the reply.
//!
//! ```text
//! cargo bench -p ephaptic --bench call
//! ```
//! The whole-server numbers (sockets, fan-out, memory) are `examples/bench/run.sh`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ephaptic::__bench::Bench;

#[ephaptic::expose]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// `{"type": "rpc", "id": 7, "name": "add", "args": [2, 3]}`, as the TypeScript client sends it.
const ADD_ARGS: &[u8] = b"\x84\xa4type\xa3rpc\xa2id\x07\xa4name\xa3add\xa4args\x92\x02\x03";

/// The same call as the Python client sends it: keyword arguments, empty `args`.
const ADD_KWARGS: &[u8] =
    b"\x85\xa4type\xa3rpc\xa2id\x07\xa4name\xa3add\xa4args\x90\xa6kwargs\x82\xa1a\x02\xa1b\x03";

fn call(c: &mut Criterion) {
    let mut bench = Bench::new(ephaptic::Server::new().register::<add>());
    let reply = bench.call(Bytes::from_static(ADD_ARGS));
    assert_eq!(reply.as_deref(), Some(&b"\x82\xa2id\x07\xa6result\x05"[..]));
    let reply = bench.call(Bytes::from_static(ADD_KWARGS));
    assert_eq!(reply.as_deref(), Some(&b"\x82\xa2id\x07\xa6result\x05"[..]));

    c.bench_function("call add (args)", |b| {
        b.iter(|| bench.call(Bytes::from_static(ADD_ARGS)))
    });
    c.bench_function("call add (kwargs)", |b| {
        b.iter(|| bench.call(Bytes::from_static(ADD_KWARGS)))
    });
}

criterion_group!(benches, call);
criterion_main!(benches);
