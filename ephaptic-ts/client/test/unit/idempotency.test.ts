// Calls that take effect once (PROTOCOL.md 5.12) against an in-memory socket: the idempotency
// key of `connect({ idempotent })`'s functions, their calls kept across a drop and sent again with
// the same key, what a drop tells the others (`data.mayHaveRun`), and the outbox.
import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, EphapticError, isEphapticError } from "../../dist/index.js";
import { checkIdempotencyKey, newIdempotencyKey } from "../../dist/idempotency.js";
import { fakeClients } from "../helpers/fake-client.js";
import { fakeWebSocket, flush, type FakeSocket } from "../helpers/fake-ws.js";

const IDEMPOTENT = ["create_todo", "feed"] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// The frames of a client without sessions, so the tests read just the calls.
const setup = fakeClients({ resume: false, idempotent: IDEMPOTENT });

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Records how a promise settled, and how many times (a promise settles once; the count says it was not re-made). */
function watch<T>(p: Promise<T>) {
  const w = { settled: 0, value: undefined as T | undefined, error: undefined as unknown };
  p.then(
    (v) => {
      w.settled++;
      w.value = v;
    },
    (e: unknown) => {
      w.settled++;
      w.error = e;
    },
  );
  return w;
}

const disconnected = (mayHaveRun: boolean, key?: string) => (e: unknown) => {
  assert.ok(isEphapticError(e, "DISCONNECTED"), `expected DISCONNECTED, got ${String(e)}`);
  assert.equal(e.data.mayHaveRun, mayHaveRun, e.message);
  assert.equal(e.data.idempotencyKey, key);
  assert.match(e.message, mayHaveRun ? /may or may not have run on the server; check before retrying/ : /never sent: it did not run/);
  return true;
};

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

/** Waits for the client's next socket (after a drop) and returns it, unopened. */
async function nextSocket(fake: ReturnType<typeof fakeWebSocket>, count: number): Promise<FakeSocket> {
  await until(() => fake.sockets.length === count, `socket ${count}`);
  return fake.last();
}

test("the key is attached only to the listed functions' calls: a fresh UUID per call, through calls, queries and mutations", async () => {
  const outgoing: Array<Record<string, unknown>> = [];
  const { client, fake } = setup({
    mutations: { create_todo: { params: 1, channels: ["todoCreated"] } },
    trace: (direction, frame) => void (direction === "out" && frame.type === "rpc" && outgoing.push(frame)),
  });
  const ws = fake.last();
  ws.open();
  const calls = [
    client.create_todo("a"),
    client.call("create_todo", "b"),
    client.add(1, 2),
    client.mutations.create_todo().mutationFn("c"),
    client.queries.create_todo("d").queryFn(),
    client.echo("e"),
  ];
  const frames = ws.frames("rpc");
  assert.deepEqual(
    frames.map((f) => [f.id, f.name, f.args]),
    [
      [1, "create_todo", ["a"]],
      [2, "create_todo", ["b"]],
      [3, "add", [1, 2]],
      [4, "create_todo", ["c"]],
      [5, "create_todo", ["d"]],
      [6, "echo", ["e"]],
    ],
  );
  const keys = frames.filter((f) => f.name === "create_todo").map((f) => f.key);
  for (const key of keys) assert.match(String(key), UUID);
  assert.equal(new Set(keys).size, 4, "a fresh key per call");
  for (const f of frames.filter((f) => f.name !== "create_todo")) assert.equal("key" in f, false, `no key for ${String(f.name)}`);
  assert.deepEqual(
    outgoing.map((f) => f.key),
    frames.map((f) => f.key),
    "the trace hook shows the keys sent",
  );
  frames.forEach((f) => ws.receive({ id: f.id, result: f.args }));
  assert.deepEqual(await Promise.all(calls), [["a"], ["b"], [1, 2], ["c"], ["d"], ["e"]]);
  client.disconnect();
});

test("after a drop an idempotent call in flight is sent again with the same key on the next connection and resolves once", async () => {
  const { client, fake } = setup();
  const first = fake.last();
  first.open();
  const todo = watch(client.create_todo("milk"));
  const other = client.add(1, 2);
  const sent = first.frames("rpc")[0]!;
  assert.equal(sent.name, "create_todo");

  first.drop(1006);
  await assert.rejects(other, disconnected(true));
  await flush();
  assert.equal(todo.settled, 0, "the idempotent call is kept, not failed");
  assert.equal(client.state, "reconnecting");

  // A failed attempt does not fail it either; a call of the same function never sent does fail.
  const failing = await nextSocket(fake, 2);
  const neverSent = client.create_todo("not sent");
  failing.drop(1006);
  await assert.rejects(neverSent, isCode("CONNECT_FAILED"));
  await flush();
  assert.equal(todo.settled, 0, "still kept after a failed attempt");

  const third = await nextSocket(fake, 3);
  third.open();
  const again = third.frames("rpc");
  assert.deepEqual(again, [{ type: "rpc", id: 1, name: "create_todo", args: ["milk"], key: sent.key }], "same name, args and key; a new id");
  first.receive({ id: sent.id, result: { id: 0, title: "stale" } }); // the old socket is gone: ignored
  third.receive({ id: 1, result: { id: 7, title: "milk" } });
  third.receive({ id: 1, result: { id: 8, title: "milk" } }); // a duplicate reply: ignored
  await until(() => todo.settled > 0, "the answer");
  await flush();
  assert.equal(todo.settled, 1);
  assert.deepEqual(todo.value, { id: 7, title: "milk" });
  // It is answered on the new connection: nothing more goes out for it.
  const next = client.add(2, 2);
  third.receive({ id: 2, result: 4 });
  assert.equal(await next, 4);
  assert.deepEqual(
    third.frames("rpc").map((f) => f.name),
    ["create_todo", "add"],
  );
  client.disconnect();
});

test("kept calls go out again in the order they were made, ahead of calls made while reconnecting", async () => {
  const { client, fake } = setup({ outbox: true });
  const first = fake.last();
  first.open();
  const a = client.create_todo("a");
  const b = client.create_todo("b");
  const keys = first.frames("rpc").map((f) => f.key);
  first.drop(1006);
  const c = client.echo("c");
  const second = await nextSocket(fake, 2);
  second.open();
  assert.deepEqual(
    second.frames("rpc").map((f) => [f.id, f.name, f.args, f.key]),
    [
      [1, "create_todo", ["a"], keys[0]],
      [2, "create_todo", ["b"], keys[1]],
      [3, "echo", ["c"], undefined],
    ],
  );
  for (const id of [1, 2, 3]) second.receive({ id, result: id });
  assert.deepEqual(await Promise.all([a, b, c]), [1, 2, 3]);
  client.disconnect();
});

test("a call of another function in flight at a drop rejects DISCONNECTED mayHaveRun true; one never sent, false", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  // Queued while connecting, then disconnect(): never sent.
  const queued = client.add(1, 2);
  const queuedKeyed = client.create_todo("q");
  client.disconnect();
  await assert.rejects(queued, disconnected(false));
  await assert.rejects(queuedKeyed, (e: unknown) => {
    assert.ok(isEphapticError(e, "DISCONNECTED"));
    assert.equal(e.data.mayHaveRun, false);
    assert.match(String(e.data.idempotencyKey), UUID);
    return true;
  });
  await assert.rejects(client.ready(), (e: unknown) => isEphapticError(e, "DISCONNECTED") && e.data.mayHaveRun === false);
  assert.deepEqual(ws.frames("rpc"), []);

  // Sent, then the connection drops.
  const { client: c2, fake: f2 } = setup();
  f2.last().open();
  const inflight = c2.sleepy(500);
  f2.last().drop(1006);
  await assert.rejects(inflight, (e: unknown) => {
    disconnected(true)(e);
    assert.match((e as Error).message, /^The connection closed \(code 1006\) before the reply arrived\. 'sleepy' was sent/);
    return true;
  });

  // Sent, then disconnect(): it may have run too; an idempotent one says its key.
  const second = await nextSocket(f2, 2);
  second.open();
  const running = c2.sleepy(500);
  const keyed = c2.create_todo("k");
  const key = String(second.frames("rpc")[1]!.key);
  c2.disconnect();
  await assert.rejects(running, disconnected(true));
  await assert.rejects(keyed, disconnected(true, key));

  // A socket that refuses the frame (it is closing): never sent.
  const { client: c3, fake: f3 } = setup();
  const ws3 = f3.last();
  ws3.open();
  ws3.readyState = 2;
  await assert.rejects(c3.add(1, 2), (e: unknown) => {
    disconnected(false)(e);
    assert.match((e as Error).message, /The socket refused the frame/);
    return true;
  });
  c3.disconnect();
});

test("an open stream of an idempotent function is not kept: it fails DISCONNECTED, mayHaveRun true", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const opening = client.feed();
  ws.receive({ id: 1, stream: true });
  ws.receive({ id: 1, chunk: "x" });
  const stream = (await opening) as AsyncIterableIterator<unknown>;
  ws.drop(1006);
  assert.deepEqual(await stream.next(), { value: "x", done: false });
  await assert.rejects(stream.next(), (e: unknown) => isEphapticError(e, "DISCONNECTED") && e.data.mayHaveRun === true);
  const second = await nextSocket(fake, 2);
  second.open();
  assert.deepEqual(second.frames("rpc"), [], "a stream is not sent again");
  client.disconnect();
});

test("a kept call whose timeout passes rejects TIMEOUT and is not sent again", async () => {
  const { client, fake } = setup();
  const first = fake.last();
  first.open();
  const todo = client.withOptions({ timeout: 60 }).create_todo("late");
  first.drop(1006);
  const second = await nextSocket(fake, 2);
  await assert.rejects(todo, isCode("TIMEOUT"));
  second.open();
  assert.deepEqual(second.frames("rpc"), []);
  client.disconnect();
});

test("the timeout counts from the call: a call kept across a drop has what is left of it", async () => {
  const { client, fake } = setup();
  const first = fake.last();
  first.open();
  const todo = watch(client.withOptions({ timeout: 150 }).create_todo("x"));
  const made = Date.now();
  first.drop(1006);
  const second = await nextSocket(fake, 2);
  second.open();
  assert.equal(second.frames("rpc").length, 1);
  await until(() => todo.settled > 0, "the timeout");
  assert.ok(isEphapticError(todo.error, "TIMEOUT"));
  assert.ok(Date.now() - made < 1000, "not a fresh timeout from the re-send");
  assert.deepEqual(second.frames("cancel"), [{ type: "cancel", id: 1 }]);
  client.disconnect();
});

test("with reconnect: false nothing is sent again: DISCONNECTED with the key, which withOptions({ idempotencyKey }) retries with", async () => {
  const { client, fake } = setup({ reconnect: false });
  fake.last().open();
  const todo = client.create_todo("x");
  const key = String(fake.last().frames("rpc")[0]!.key);
  fake.last().drop(1006);
  await assert.rejects(todo, (e: unknown) => {
    disconnected(true, key)(e);
    assert.match((e as Error).message, /withOptions\(\{ idempotencyKey: error\.data\.idempotencyKey \}\)/);
    return true;
  });
  assert.equal(client.state, "disconnected");
  const retry = client.withOptions({ idempotencyKey: key });
  const r1 = retry.create_todo("x");
  const second = fake.last();
  assert.equal(fake.sockets.length, 2);
  second.open();
  const r2 = retry.call("create_todo", "x");
  assert.deepEqual(
    second.frames("rpc").map((f) => [f.name, f.key]),
    [
      ["create_todo", key],
      ["create_todo", key],
    ],
    "every call of the view carries its key",
  );
  second.receive({ id: 1, result: 1 });
  second.receive({ id: 2, result: 1 });
  assert.deepEqual(await Promise.all([r1, r2]), [1, 1]);
  client.disconnect();
});

test("withOptions({ idempotencyKey }) takes a string of 1 to 128 bytes, for idempotent functions only", async () => {
  const { client, fake } = setup({ idempotent: ["create_todo"] });
  fake.last().open();
  for (const bad of ["", "é".repeat(65), 7 as unknown as string]) {
    assert.throws(() => client.withOptions({ idempotencyKey: bad }), (e: unknown) => e instanceof TypeError && /1 to 128 bytes/.test(e.message));
  }
  const ok = client.withOptions({ idempotencyKey: "k".repeat(128) });
  await assert.rejects(ok.add(1, 2), (e: unknown) => e instanceof TypeError && /'add' is not an idempotent function/.test(e.message));
  assert.deepEqual(fake.last().frames("rpc"), [], "nothing sent");
  const call = ok.create_todo("x");
  assert.equal(fake.last().frames("rpc")[0]!.key, "k".repeat(128));
  fake.last().receive({ id: 1, result: 1 });
  assert.equal(await call, 1);
  assert.throws(() => connect({ url: "ws://test/_ephaptic", WebSocket: fake.WebSocket, idempotent: "create_todo" as unknown as string[] }), /idempotent must be/);
  client.disconnect();
});

test("without the list no call carries a key, and a drop fails every call in flight", async () => {
  const { client, fake } = setup({ idempotent: undefined });
  fake.last().open();
  const todo = client.create_todo("x");
  assert.equal("key" in fake.last().frames("rpc")[0]!, false);
  fake.last().drop(1006);
  await assert.rejects(todo, disconnected(true));
  await assert.rejects(Promise.resolve().then(() => client.withOptions({ idempotencyKey: "k" }).create_todo("x")), TypeError);
  client.disconnect();
});

test("outbox: calls made while reconnecting outlive failed attempts and go out on the next connection", async () => {
  const { client, fake } = setup({ outbox: true });
  const first = fake.last();
  first.open();
  first.drop(1006);
  const queued = watch(client.add(1, 2));
  const late = client.withOptions({ timeout: 40 }).echo("late");
  const ready = client.ready();
  const failing = await nextSocket(fake, 2);
  failing.drop(1006);
  await assert.rejects(ready, isCode("CONNECT_FAILED"), "ready() still says the attempt failed");
  await assert.rejects(late, isCode("TIMEOUT"), "an outbox call's timeout still runs");
  const failingAgain = await nextSocket(fake, 3);
  failingAgain.drop(1006);
  await flush();
  assert.equal(queued.settled, 0, "kept across two failed attempts");
  const up = await nextSocket(fake, 4);
  up.open();
  assert.deepEqual(
    up.frames("rpc").map((f) => [f.id, f.name, f.args]),
    [[1, "add", [1, 2]]],
    "the timed-out call is not sent",
  );
  up.receive({ id: 1, result: 3 });
  await until(() => queued.settled > 0, "the answer");
  assert.equal(queued.value, 3);
  client.disconnect();
});

test("outbox: the first attempt's failure keeps calls too; without it they fail CONNECT_FAILED", async () => {
  const kept = setup({ outbox: true });
  const call = watch(kept.client.add(1, 2));
  kept.fake.last().drop(1006);
  const next = await nextSocket(kept.fake, 2);
  await flush();
  assert.equal(call.settled, 0);
  next.open();
  next.receive({ id: 1, result: 3 });
  await until(() => call.settled > 0, "the answer");
  assert.equal(call.value, 3);
  kept.client.disconnect();

  const plain = setup();
  const failed = plain.client.add(1, 2);
  plain.fake.last().drop(1006);
  await assert.rejects(failed, isCode("CONNECT_FAILED"));
  plain.client.disconnect();
});

test("outbox with reconnect: false keeps nothing (no attempt would come); disconnect() rejects what it kept", async () => {
  const { client, fake } = setup({ outbox: true, reconnect: false });
  const call = client.add(1, 2);
  fake.last().drop(1006);
  await assert.rejects(call, isCode("CONNECT_FAILED"));

  const other = setup({ outbox: true });
  other.fake.last().open();
  other.fake.last().drop(1006);
  const waiting = other.client.add(1, 2);
  (await nextSocket(other.fake, 2)).drop(1006);
  other.client.disconnect();
  await assert.rejects(waiting, disconnected(false));
  client.disconnect();
});

test("keys: a v4 UUID from randomUUID, or from getRandomValues where there is none (insecure pages); the server's limits", () => {
  assert.match(newIdempotencyKey(), UUID);
  const bytes = (a: Uint8Array) => {
    for (let i = 0; i < a.length; i++) a[i] = 0xff;
    return a;
  };
  assert.equal(newIdempotencyKey({ getRandomValues: bytes }), "ffffffff-ffff-4fff-bfff-ffffffffffff");
  const zero = (a: Uint8Array) => a.fill(0);
  assert.equal(newIdempotencyKey({ getRandomValues: zero }), "00000000-0000-4000-8000-000000000000");
  assert.throws(() => newIdempotencyKey({}), /withOptions\(\{ idempotencyKey \}\)/);
  checkIdempotencyKey("x");
  checkIdempotencyKey("é".repeat(64));
  assert.throws(() => checkIdempotencyKey("é".repeat(64) + "x"), /got a string of 129 bytes/);
});
