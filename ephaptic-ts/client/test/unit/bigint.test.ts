// 64-bit integers: safe ones are numbers; others fail loudly by default, or arrive as bigint with
// connect({ bigint: true }). Never a silently rounded number.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { connect, EphapticError } from "../../dist/index.js";
import { decodeFrame, fixIntegers } from "../../dist/codec.js";
import { fakeWebSocket, flush, recordingLogger, wire } from "../helpers/fake-ws.js";

const BIG = 2n ** 53n; // MAX_SAFE_INTEGER + 1

function decoded(value: unknown, keepBigInt: boolean) {
  return fixIntegers(decodeFrame(wire(value)), keepBigInt);
}

test("64-bit encoded integers within the safe range decode as numbers", () => {
  for (const keep of [false, true]) {
    const { value, unsafe } = decoded(
      { a: 5n, b: -5n, max: BigInt(Number.MAX_SAFE_INTEGER), min: BigInt(Number.MIN_SAFE_INTEGER), small: 7 },
      keep,
    );
    assert.deepEqual(value, { a: 5, b: -5, max: Number.MAX_SAFE_INTEGER, min: Number.MIN_SAFE_INTEGER, small: 7 });
    assert.equal(unsafe, undefined);
  }
});

test("default mode: an integer outside the safe range is reported, not rounded", () => {
  const { unsafe } = decoded({ id: 1, result: [{ deep: [BIG] }] }, false);
  assert.equal(unsafe, BIG);
  assert.equal(decoded({ x: -(2n ** 63n) }, false).unsafe, -(2n ** 63n));
  assert.equal(decoded({ x: 2n ** 64n - 1n }, false).unsafe, 2n ** 64n - 1n);
});

test("bigint mode: integers outside the safe range arrive as bigint, the rest as numbers", () => {
  const { value, unsafe } = decoded({ big: BIG, neg: -(2n ** 63n), u: 2n ** 64n - 1n, n: 3n, list: [BIG, 1n] }, true);
  assert.equal(unsafe, undefined);
  assert.deepEqual(value, { big: BIG, neg: -(2n ** 63n), u: 2n ** 64n - 1n, n: 3, list: [BIG, 1] });
});

const clients: Array<{ disconnect(): void }> = [];
after(() => clients.forEach((c) => c.disconnect()));

function setup(bigint: boolean) {
  const fake = fakeWebSocket();
  const log = recordingLogger();
  const client = connect({ url: "ws://test/_ephaptic", WebSocket: fake.WebSocket, logger: log.logger, bigint, resume: false });
  clients.push(client);
  const ws = fake.last();
  ws.open();
  return { client, ws, log };
}

test("default mode: a reply with an unrepresentable integer fails with PROTOCOL_ERROR naming the fix", async () => {
  const { client, ws } = setup(false);
  const call = client.call("add", 9007199254740991, 1);
  ws.receive({ id: 1, result: BIG });
  await assert.rejects(call, (e: EphapticError) => {
    assert.equal(e.code, "PROTOCOL_ERROR");
    assert.match(e.message, /9007199254740992/);
    assert.match(e.message, /cannot be represented exactly/);
    assert.match(e.message, /bigint: true/);
    return true;
  });
  // A safe 64-bit integer on the same connection is fine.
  const ok = client.call("add", 1, 2);
  ws.receive({ id: 2, result: 3n });
  assert.equal(await ok, 3);
  client.disconnect();
});

test("default mode: a stream chunk with an unrepresentable integer fails the stream and cancels it", async () => {
  const { client, ws } = setup(false);
  const pending = client.call("ticker", 1);
  ws.receive({ id: 1, stream: true });
  const stream = (await pending) as AsyncIterableIterator<unknown>;
  ws.receive({ id: 1, chunk: 1n });
  ws.receive({ id: 1, chunk: BIG });
  const got: unknown[] = [];
  await assert.rejects(
    async () => {
      for await (const c of stream) got.push(c);
    },
    (e: EphapticError) => e.code === "PROTOCOL_ERROR",
  );
  assert.deepEqual(got, [1]);
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: 1 }]);
  client.disconnect();
});

test("default mode: an event with an unrepresentable integer is dropped with a warning", async () => {
  const { client, ws, log } = setup(false);
  const got: unknown[] = [];
  client.on("Big", (d) => void got.push(d));
  ws.receive({ type: "event", name: "Big", payload: { args: [], kwargs: { n: BIG } } });
  ws.receive({ type: "event", name: "Big", payload: { args: [], kwargs: { n: 5n } } });
  assert.deepEqual(got, [{ n: 5 }]);
  assert.equal(log.warnings.length, 1);
  assert.match(log.warnings[0]!, /dropping event 'Big'/);
  assert.match(log.warnings[0]!, /bigint: true/);
  client.disconnect();
});

test("bigint mode: replies and events carry bigint; arguments may be bigint", async () => {
  const { client, ws } = setup(true);
  const call = client.call("add", 2n ** 62n, 1);
  const sent = ws.frames("rpc")[0]!;
  assert.deepEqual(sent.args, [2n ** 62n, 1]);
  ws.receive({ id: 1, result: 2n ** 62n + 1n });
  assert.equal(await call, 2n ** 62n + 1n);
  const got: unknown[] = [];
  client.on("Big", (d) => void got.push(d));
  ws.receive({ type: "event", name: "Big", payload: { args: [BIG], kwargs: {} } });
  await flush(1);
  assert.deepEqual(got, [BIG]);
  client.disconnect();
});
