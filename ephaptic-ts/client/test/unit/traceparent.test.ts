// Distributed tracing (W3C Trace Context, PROTOCOL.md 5.13) against an in-memory socket: what
// `connect({ traceparent })` puts in the `rpc` frames, when it is asked, and what it drops.
import assert from "node:assert/strict";
import { test } from "node:test";
import { encode } from "@msgpack/msgpack";
import { connect } from "../../dist/index.js";
import { encodeValue, isTraceparent, rpcFrame } from "../../dist/codec.js";
import { fakeClients } from "../helpers/fake-client.js";
import { fakeWebSocket, flush, type FakeSocket } from "../helpers/fake-ws.js";

// The frames of a client without sessions, so the tests read just the calls.
const setup = fakeClients({ resume: false });

const TP1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const TP3 = "00-11111111111111111111111111111111-2222222222222222-ff";

/** A traceparent function that gives `values` in turn, counting how often it was asked. */
function sequence(values: ReadonlyArray<string | undefined>) {
  const seq = { asked: 0, fn: () => values[seq.asked++ % values.length] };
  return seq;
}

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function answerAll(ws: FakeSocket): void {
  for (const f of ws.frames("rpc")) ws.receive({ id: f.id, result: f.args });
}

test("each call's frame carries the traceparent the function gives for it, last, after args; the trace hook shows it", async () => {
  const seq = sequence([TP1, TP2, undefined, TP3]);
  const outgoing: Array<Record<string, unknown>> = [];
  const { client, fake, log } = setup({
    traceparent: seq.fn,
    trace: (direction, frame) => void (direction === "out" && frame.type === "rpc" && outgoing.push(frame)),
  });
  const ws = fake.last();
  ws.open();
  const calls = [client.add(1, 2), client.call("echo", "x"), client.queries.add(3, 4).queryFn(), client.echo("y")];
  assert.equal(seq.asked, 4, "asked once per call");
  const frames = ws.frames("rpc");
  assert.deepEqual(
    frames.map((f) => f.traceparent),
    [TP1, TP2, undefined, TP3],
  );
  assert.deepEqual(Object.keys(frames[0]!), ["type", "id", "name", "args", "traceparent"]);
  assert.deepEqual(Object.keys(frames[2]!), ["type", "id", "name", "args"], "undefined: no key at all");
  assert.deepEqual(
    outgoing.map((f) => f.traceparent),
    [TP1, TP2, undefined, TP3],
    "the trace hook shows the traceparent sent",
  );
  assert.deepEqual(Object.keys(outgoing[0]!), ["type", "id", "name", "args", "traceparent"]);
  answerAll(ws);
  assert.deepEqual(await Promise.all(calls), [[1, 2], ["x"], [3, 4], ["y"]]);
  assert.deepEqual(log.warnings, []);
  client.disconnect();
});

test("with an idempotency key the traceparent comes after it (and after args)", async () => {
  const { client, fake } = setup({ idempotent: ["create_todo"], traceparent: () => TP1 });
  const ws = fake.last();
  ws.open();
  const call = client.create_todo("milk");
  const [frame] = ws.frames("rpc");
  assert.deepEqual(Object.keys(frame!), ["type", "id", "name", "key", "args", "traceparent"]);
  assert.equal(frame!.traceparent, TP1);
  ws.receive({ id: frame!.id, result: "ok" });
  assert.equal(await call, "ok");
  client.disconnect();
});

test("rpcFrame: byte for byte the map the encoder writes, with and without key and traceparent", () => {
  const args = [1, "two", { three: 3 }];
  const same = (a: Uint8Array, b: Uint8Array, what: string) => assert.deepEqual([...a], [...b], what);
  same(rpcFrame(7, "add", encodeValue(args)), encode({ type: "rpc", id: 7, name: "add", args }), "no key, no traceparent");
  same(
    rpcFrame(7, "add", encodeValue(args), "k-1"),
    encode({ type: "rpc", id: 7, name: "add", key: "k-1", args }),
    "key only",
  );
  same(
    rpcFrame(7, "add", encodeValue(args), undefined, TP1),
    encode({ type: "rpc", id: 7, name: "add", args, traceparent: TP1 }),
    "traceparent only",
  );
  same(
    rpcFrame(7, "add", encodeValue(args), "k-1", TP1),
    encode({ type: "rpc", id: 7, name: "add", key: "k-1", args, traceparent: TP1 }),
    "key and traceparent",
  );
});

test("without the option no frame has a traceparent: the frames are unchanged", async () => {
  const outgoing: Array<Record<string, unknown>> = [];
  const { client, fake } = setup({
    idempotent: ["create_todo"],
    trace: (direction, frame) => void (direction === "out" && outgoing.push(frame)),
  });
  const ws = fake.last();
  ws.open();
  const calls = [client.add(1, 2), client.create_todo("milk")];
  const frames = ws.frames("rpc");
  assert.deepEqual(Object.keys(frames[0]!), ["type", "id", "name", "args"]);
  assert.deepEqual(Object.keys(frames[1]!), ["type", "id", "name", "key", "args"]);
  for (const f of [...ws.sent, ...outgoing]) assert.equal("traceparent" in f, false);
  answerAll(ws);
  await Promise.all(calls);
  client.disconnect();
});

test("invalid values are dropped, with one warning per client; undefined and null are no value, without a warning", async () => {
  const invalid: unknown[] = [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // uppercase
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // another version
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // the invalid version
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // trace id all zeros
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // parent id all zeros
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // 31 hex digits
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // more than version 00 has
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", // one flag digit
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", // not hex
    ` ${TP1}`, // padded
    "",
    42,
    { traceparent: TP1 },
    Promise.resolve(TP1), // an async function
  ];
  for (const v of invalid) assert.equal(isTraceparent(v), false, `isTraceparent(${String(v)})`);
  for (const v of [TP1, TP2, TP3]) assert.equal(isTraceparent(v), true, v);

  const values: unknown[] = [undefined, null, ...invalid, TP1];
  let i = 0;
  const { client, fake, log } = setup({ traceparent: (() => values[i++]) as () => string | undefined });
  const ws = fake.last();
  ws.open();
  const calls = values.map((_, n) => client.add(n, 0));
  const frames = ws.frames("rpc");
  assert.equal(frames.length, values.length);
  assert.deepEqual(
    frames.map((f) => f.traceparent),
    [...values.slice(0, -1).map(() => undefined), TP1],
    "only the valid one is sent",
  );
  answerAll(ws);
  await Promise.all(calls);
  assert.equal(log.warnings.length, 1, log.warnings.join("\n"));
  assert.match(log.warnings[0]!, /traceparent function returned "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", which is not a W3C traceparent/);
  assert.match(log.warnings[0]!, /reported once/);

  // Another client warns once too.
  const other = setup({ traceparent: () => "nope" });
  other.fake.last().open();
  const more = [other.client.add(1, 1), other.client.add(2, 2)];
  answerAll(other.fake.last());
  await Promise.all(more);
  assert.equal(other.log.warnings.length, 1);
  assert.match(other.log.warnings[0]!, /returned "nope"/);
  client.disconnect();
  other.client.disconnect();
});

test("a function that throws is reported each time and the call goes out without a traceparent", async () => {
  let n = 0;
  const { client, fake, log } = setup({
    traceparent: () => {
      if (++n <= 2) throw new Error(`no context ${n}`);
      return TP2;
    },
  });
  const ws = fake.last();
  ws.open();
  const calls = [client.add(1, 2), client.echo("x"), client.add(3, 4)];
  const frames = ws.frames("rpc");
  assert.deepEqual(
    frames.map((f) => [f.name, f.traceparent]),
    [
      ["add", undefined],
      ["echo", undefined],
      ["add", TP2],
    ],
  );
  answerAll(ws);
  assert.deepEqual(await Promise.all(calls), [[1, 2], ["x"], [3, 4]]);
  assert.equal(log.warnings.length, 2, log.warnings.join("\n"));
  assert.match(log.warnings[0]!, /the traceparent function threw; 'add' goes out without a traceparent: Error: no context 1/);
  assert.match(log.warnings[1]!, /'echo' goes out without a traceparent: Error: no context 2/);
});

test("taken when the call is made: a call queued before the connection opens carries the context of its caller", async () => {
  let current: string | undefined = TP1;
  const { client, fake } = setup({ traceparent: () => current });
  const first = client.add(1, 2); // made while connecting
  current = TP2;
  const second = client.add(3, 4);
  current = undefined; // the socket opens outside any caller's context
  const ws = fake.last();
  ws.open();
  assert.deepEqual(
    ws.frames("rpc").map((f) => f.traceparent),
    [TP1, TP2],
  );
  answerAll(ws);
  assert.deepEqual(await Promise.all([first, second]), [[1, 2], [3, 4]]);
  client.disconnect();
});

test("an idempotent call re-sent after a drop keeps its original traceparent, with its key; the function is not asked again", async () => {
  const seq = sequence([TP1, TP3]);
  const { client, fake } = setup({ idempotent: ["create_todo"], traceparent: seq.fn });
  const ws = fake.last();
  ws.open();
  const call = client.create_todo("milk");
  const [sent] = ws.frames("rpc");
  assert.equal(sent!.traceparent, TP1);
  ws.drop();
  await until(() => fake.sockets.length === 2, "the reconnect");
  const ws2 = fake.last();
  ws2.open();
  const [again] = ws2.frames("rpc");
  assert.deepEqual(
    [again!.name, again!.key, again!.args, again!.traceparent],
    ["create_todo", sent!.key, ["milk"], TP1],
  );
  assert.equal(seq.asked, 1, "asked once, when the call was made");
  ws2.receive({ id: again!.id, result: "done" });
  assert.equal(await call, "done");
  client.disconnect();
});

test("the hello and the client's reserved calls carry none; a stream call does", async () => {
  const seq = sequence([TP1]);
  const { client, fake } = setup({ resume: true, traceparent: seq.fn });
  const ws = fake.last();
  ws.open();
  const [hello] = ws.frames("rpc");
  assert.equal(hello!.name, "__ephaptic.hello");
  assert.equal("traceparent" in hello!, false);
  const presence = client.presence("room:1");
  await flush();
  const watch = ws.frames("rpc").find((f) => f.name === "__ephaptic.presence.watch");
  assert.ok(watch, "the presence watch was sent");
  assert.equal("traceparent" in watch, false);
  assert.equal(seq.asked, 0, "not asked for the client's own calls");
  const stream = client.countdown(2);
  const frame = ws.frames("rpc").find((f) => f.name === "countdown");
  assert.equal(frame!.traceparent, TP1);
  ws.receive({ id: frame!.id, stream: true });
  const it = (await stream) as AsyncIterable<number>;
  ws.receive({ id: frame!.id, done: true });
  const got: number[] = [];
  for await (const n of it) got.push(n);
  assert.deepEqual(got, []);
  presence.close();
  client.disconnect();
});

test("the option must be a function", () => {
  const fake = fakeWebSocket();
  for (const bad of ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1, {}, null]) {
    assert.throws(
      () => connect({ url: "ws://test/_ephaptic", WebSocket: fake.WebSocket, traceparent: bad as unknown as () => string }),
      (e: unknown) => e instanceof TypeError && /traceparent must be a function/.test(e.message),
    );
  }
  assert.equal(fake.sockets.length, 0, "no client was made");
});
