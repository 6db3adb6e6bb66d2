// The client against an in-memory socket: what it sends, and what it makes of what it receives.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { connect, EphapticError, type ConnectOptions, type ConnectionState } from "../../dist/index.js";
import { fakeClients } from "../helpers/fake-client.js";
import { fakeWebSocket, flush, recordingLogger } from "../helpers/fake-ws.js";

// These tests pin the frames of a client without sessions (exactly what it sent before
// PROTOCOL.md 5.6); sessions have their own tests (session.test.ts).
const setup = fakeClients({ resume: false });

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test("init is the first frame, with auth only when one is given", async () => {
  for (const [auth, expected] of [
    [undefined, { type: "init" }],
    ["tok", { type: "init", auth: "tok" }],
    [{ token: "t" }, { type: "init", auth: { token: "t" } }],
    ["", { type: "init", auth: "" }],
    [null, { type: "init", auth: null }],
  ] as const) {
    const { client, fake } = setup(auth === undefined ? {} : { auth });
    const ws = fake.last();
    assert.equal(ws.binaryType, "arraybuffer");
    assert.equal(ws.url, "ws://test/_ephaptic");
    ws.open();
    assert.deepEqual(ws.sent[0], expected);
    client.disconnect();
  }
});

test("calls made while connecting wait, then go out in order with ids from 1", async () => {
  const { client, fake } = setup();
  assert.equal(client.state, "connecting");
  const a = client.add(1, 2);
  const b = client.call("named", "x", "y");
  const ws = fake.last();
  assert.equal(ws.sent.length, 0);
  ws.open();
  assert.equal(client.state, "connected");
  assert.deepEqual(ws.sent, [
    { type: "init" },
    { type: "rpc", id: 1, name: "add", args: [1, 2] },
    { type: "rpc", id: 2, name: "named", args: ["x", "y"] },
  ]);
  ws.receive({ id: 2, result: "x|y" });
  ws.receive({ id: 1, result: 3 });
  assert.equal(await a, 3);
  assert.equal(await b, "x|y");
  client.disconnect();
});

test("await connect() gives the client; then and other probes are never calls", async () => {
  const fake = fakeWebSocket();
  const client = await connect({ url: "ws://test/_ephaptic", WebSocket: fake.WebSocket, resume: false });
  const ws = fake.last();
  ws.open();
  assert.equal(client.then, undefined);
  assert.equal((client as unknown as Record<string, unknown>).toJSON, undefined);
  assert.equal(typeof client.whatever, "function");
  assert.equal(client.whatever, client.whatever, "stable function per name");
  const { disconnect, state } = client;
  assert.equal(state, "connected");
  assert.deepEqual(ws.frames("rpc"), []);
  disconnect();
  assert.equal(client.state, "closed");
});

test("result nil resolves to null; error replies map to EphapticError", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const nil = client.returns_null();
  const typed = client.boom();
  const bare = client.old();
  ws.receive({ id: 1, result: null });
  ws.receive({ id: 2, error: { code: "INSUFFICIENT_FUNDS", message: "Not enough funds.", data: { available: 3 } } });
  ws.receive({ id: 3, error: "it broke" });
  assert.equal(await nil, null);
  await assert.rejects(typed, (e: EphapticError) => {
    assert.ok(client.isError(e, "INSUFFICIENT_FUNDS"));
    assert.deepEqual(e.data, { available: 3 });
    assert.equal(e.message, "Not enough funds.");
    return true;
  });
  await assert.rejects(bare, (e: EphapticError) => e.code === "ERROR" && e.message === "it broke" && e.data === null);
  client.disconnect();
});

test("undecodable and unknown frames are skipped with a warning; the connection carries on", async () => {
  const { client, fake, log } = setup();
  const ws = fake.last();
  ws.open();
  const call = client.add(1, 2);
  ws.receiveRaw(new Uint8Array([0xc1]).buffer); // 0xc1 is never valid msgpack
  ws.receiveRaw(new Uint8Array([0x92, 0x01]).buffer); // truncated array
  ws.receiveRaw("a text frame");
  ws.receive([1, 2, 3]); // not a map
  ws.receive({ type: "future_frame_type", stuff: 1 }); // unknown: ignored quietly
  ws.receive({ id: 99, result: "nobody asked" }); // unknown id: ignored quietly
  assert.equal(log.warnings.length, 4, log.warnings.join("\n"));
  assert.match(log.warnings[0]!, /undecodable/);
  ws.receive({ id: 1, result: 3 });
  assert.equal(await call, 3);
  assert.equal(client.state, "connected");
  client.disconnect();
});

test("an argument that cannot be encoded fails the call with ENCODE_ERROR and sends nothing", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  await assert.rejects(client.echo(Symbol("x")), isCode("ENCODE_ERROR"));
  await assert.rejects(client.echo(() => 1), isCode("ENCODE_ERROR"));
  const ok = client.echo({ when: new Date("2024-01-02T03:04:05.000Z"), skip: undefined, bytes: new Uint8Array([1, 2]) });
  const sent = ws.frames("rpc");
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.id, 1, "failed calls use no id");
  // Dates travel as ISO strings; undefined fields are left out; bytes as bin.
  assert.deepEqual(sent[0]!.args, [{ when: "2024-01-02T03:04:05.000Z", bytes: new Uint8Array([1, 2]) }]);
  ws.receive({ id: 1, result: "ok" });
  assert.equal(await ok, "ok");
  client.disconnect();
});

test("integers beyond 32 bits travel as integers, not floats", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  client.add(2 ** 40, -(2 ** 40)).catch(() => {});
  client.add(Number.MAX_SAFE_INTEGER, 1.5).catch(() => {});
  const [a, b] = ws.frames("rpc");
  // The fake socket decodes 64-bit integers as bigint: a float would come back as a number.
  assert.deepEqual(a!.args, [2n ** 40n, -(2n ** 40n)]);
  assert.deepEqual(b!.args, [BigInt(Number.MAX_SAFE_INTEGER), 1.5]);
  client.disconnect();
});

test("a call that times out rejects with TIMEOUT and is cancelled on the server", async () => {
  const { client, fake } = setup({ timeout: 30 });
  const ws = fake.last();
  ws.open();
  await assert.rejects(client.sleepy(2000), (e: EphapticError) => {
    assert.equal(e.code, "TIMEOUT");
    assert.match(e.message, /'sleepy' got no reply within 30 ms/);
    return true;
  });
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: 1 }]);
  ws.receive({ id: 1, result: 2000 }); // too late: ignored
  const next = client.add(1, 1);
  ws.receive({ id: 2, result: 2 });
  assert.equal(await next, 2);
  client.disconnect();
});

test("withOptions sets the timeout of its calls only", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const quick = client.withOptions({ timeout: 20 });
  await assert.rejects(quick.sleepy(1000), isCode("TIMEOUT"));
  await assert.rejects(quick.call("sleepy", 1000), isCode("TIMEOUT"));
  assert.deepEqual(
    ws.frames("cancel").map((f) => f.id),
    [1, 2],
  );
  const normal = client.sleepy(10);
  await new Promise((r) => setTimeout(r, 40));
  ws.receive({ id: 3, result: 10 });
  assert.equal(await normal, 10);
  assert.throws(() => client.withOptions({ timeout: -1 }), /timeout must be/);
  client.disconnect();
});

test("the timeout runs while a call waits for the connection; a timed-out call is never sent", async () => {
  const { client, fake } = setup({ timeout: 20 });
  await assert.rejects(client.add(1, 2), isCode("TIMEOUT"));
  const ws = fake.last();
  ws.open();
  assert.deepEqual(ws.frames("rpc"), []);
  assert.deepEqual(ws.frames("cancel"), []);
  client.disconnect();
});

test("timeout 0, null and Infinity disable the timeout; the default is 30 s", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const hour = 3_600_000;
  for (const timeout of [0, null, Infinity] as const) {
    const { client, fake } = setup({ timeout });
    const ws = fake.last();
    ws.open();
    let settled = false;
    const call = client.sleepy(1).finally(() => (settled = true));
    t.mock.timers.tick(10 * hour);
    await flush();
    assert.equal(settled, false, `timeout ${timeout}: still waiting after 10 hours`);
    ws.receive({ id: 1, result: 1 });
    assert.equal(await call, 1);
    client.disconnect();
  }
  const { client, fake } = setup();
  fake.last().open();
  const call = client.sleepy(1);
  t.mock.timers.tick(29_999);
  await flush();
  t.mock.timers.tick(1);
  await assert.rejects(call, isCode("TIMEOUT"));
  client.disconnect();
  mock.timers.reset();
});

test("an aborted signal rejects the call with its reason and cancels it", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const controller = new AbortController();
  const call = client.withOptions({ signal: controller.signal }).sleepy(1000);
  controller.abort();
  await assert.rejects(call, (e: Error) => e.name === "AbortError");
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: 1 }]);
  client.disconnect();
});

test("streams: falsy chunks arrive; break cancels; late chunks are ignored", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const pending = client.falsy_stream();
  ws.receive({ id: 1, stream: true });
  for (const chunk of [0, null, false, ""]) ws.receive({ id: 1, chunk });
  ws.receive({ id: 1, done: true });
  const got: unknown[] = [];
  for await (const c of (await pending) as AsyncIterable<unknown>) got.push(c);
  assert.deepEqual(got, [0, null, false, ""]);
  assert.deepEqual(ws.frames("cancel"), [], "a finished stream is not cancelled");

  const ticker = client.ticker(10);
  ws.receive({ id: 2, stream: true });
  ws.receive({ id: 2, chunk: 0 });
  ws.receive({ id: 2, chunk: 1 });
  const seen: unknown[] = [];
  for await (const c of (await ticker) as AsyncIterable<unknown>) {
    seen.push(c);
    break;
  }
  assert.deepEqual(seen, [0]);
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: 2 }]);
  ws.receive({ id: 2, chunk: 2 }); // already queued on the server: ignored
  ws.receive({ id: 2, done: true });
  client.disconnect();
});

test("a stream error rejects the iteration after the earlier chunks", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const pending = client.badstream();
  ws.receive({ id: 1, stream: true });
  ws.receive({ id: 1, chunk: 1 });
  ws.receive({ id: 1, error: { code: "STREAM_FAILED", message: "The stream failed.", data: { after: 1 } } });
  const got: unknown[] = [];
  await assert.rejects(
    async () => {
      for await (const c of (await pending) as AsyncIterable<unknown>) got.push(c);
    },
    (e: EphapticError) => e.code === "STREAM_FAILED" && (e.data as { after: number }).after === 1,
  );
  assert.deepEqual(got, [1]);
  client.disconnect();
});

test("events: kwargs or the single arg reach listeners; a throwing listener is reported", async () => {
  const errors: Array<[unknown, unknown]> = [];
  const { client, fake } = setup({ onError: (e, ctx) => void errors.push([e, ctx]) });
  const ws = fake.last();
  ws.open();
  const got: unknown[] = [];
  client.on("Notice", () => {
    throw new Error("listener bug");
  });
  client.on("Notice", (d) => void got.push(d));
  client.on("todoCreated", (d) => void got.push(d));
  ws.receive({ type: "event", name: "Notice", payload: { args: [], kwargs: { message: "hi", level: 1 } } });
  ws.receive({ type: "event", name: "todoCreated", payload: { args: [[1, 2]], kwargs: {} } });
  ws.receive({ type: "event", name: "Unlistened", payload: { args: [], kwargs: {} } });
  assert.deepEqual(got, [{ message: "hi", level: 1 }, [1, 2]]);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]![0]), /listener bug/);
  assert.deepEqual(errors[0]![1], { kind: "event-listener", event: "Notice" });
  client.disconnect();
});

test("a dropped connection fails pending work with DISCONNECTED, reconnects, keeps listeners, restarts ids", async () => {
  let n = 0;
  const states: ConnectionState[] = [];
  const { client, fake } = setup({ auth: async () => `tok-${++n}` });
  client.onStateChange((s) => void states.push(s));
  const notices: unknown[] = [];
  client.on("Notice", (d) => void notices.push(d));
  await until(() => fake.sockets.length === 1, "the first socket");
  const first = fake.last();
  first.open();
  assert.deepEqual(first.sent[0], { type: "init", auth: "tok-1" });
  const pending = client.sleepy(1000);
  const streamCall = client.ticker(5);
  first.receive({ id: 2, stream: true });
  first.receive({ id: 2, chunk: 0 });
  const stream = (await streamCall) as AsyncIterableIterator<unknown>;
  first.drop(1006);
  await assert.rejects(pending, (e: EphapticError) => {
    assert.equal(e.code, "DISCONNECTED");
    assert.match(e.message, /code 1006/);
    return true;
  });
  assert.deepEqual(await stream.next(), { value: 0, done: false }, "buffered chunks first");
  await assert.rejects(stream.next(), isCode("DISCONNECTED"));
  assert.equal(client.state, "reconnecting");
  await until(() => fake.sockets.length === 2, "a reconnect");
  const second = fake.last();
  second.open();
  assert.equal(client.state, "connected");
  assert.deepEqual(second.sent[0], { type: "init", auth: "tok-2" }, "the auth function runs again");
  const call = client.add(2, 2);
  assert.equal(second.frames("rpc")[0]!.id, 1, "ids restart at 1 on a new connection");
  second.receive({ id: 1, result: 4 });
  assert.equal(await call, 4);
  second.receive({ type: "event", name: "Notice", payload: { args: [], kwargs: { message: "again", level: 2 } } });
  assert.deepEqual(notices, [{ message: "again", level: 2 }]);
  assert.deepEqual(states, ["connected", "reconnecting", "connected"]);
  client.disconnect();
});

test("a failed connection attempt rejects waiting calls with CONNECT_FAILED and retries", async () => {
  const { client, fake } = setup();
  const waiting = client.add(1, 2);
  const ready = client.ready();
  fake.last().drop(1006);
  await assert.rejects(waiting, isCode("CONNECT_FAILED"));
  await assert.rejects(ready, isCode("CONNECT_FAILED"));
  assert.equal(client.state, "reconnecting");
  await until(() => fake.sockets.length === 2, "a retry");
  const readyAgain = client.ready();
  fake.last().open();
  await readyAgain;
  assert.equal(client.state, "connected");
  client.disconnect();
});

test("an auth function that throws fails the attempt and is retried", async () => {
  let calls = 0;
  const { client, fake } = setup({
    auth: () => {
      calls++;
      if (calls === 1) throw new Error("token service down");
      return "tok";
    },
  });
  await assert.rejects(client.ready(), (e: EphapticError) => e.code === "CONNECT_FAILED" && /token service down/.test(e.message));
  await until(() => fake.sockets.length === 1, "a retry");
  fake.last().open();
  assert.deepEqual(fake.last().sent[0], { type: "init", auth: "tok" });
  client.disconnect();
});

test("a step of a connection attempt that throws fails it with CONNECT_FAILED, naming the step", async () => {
  const boom = new Error("boom");
  const failedWith = (message: string | ((cause: unknown) => string)) => (e: unknown) => {
    assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
    assert.equal(e.code, "CONNECT_FAILED");
    assert.ok(e.cause !== undefined, "the error is kept as the cause");
    assert.equal(e.message, typeof message === "string" ? message : message(e.cause));
    assert.equal(e.data, null);
    return true;
  };

  const auth = setup({ auth: () => Promise.reject(boom) });
  await assert.rejects(auth.client.ready(), failedWith("The auth function failed: boom"));
  auth.client.disconnect();

  const encode = setup({ auth: { token: Symbol("t") } });
  await assert.rejects(
    encode.client.ready(),
    failedWith((cause) => `Could not encode the auth value: ${(cause as Error).message}`),
  );
  assert.equal(encode.fake.sockets.length, 0, "no socket is opened for an init that cannot be sent");
  encode.client.disconnect();

  const refusing = fakeWebSocket();
  class Refused extends refusing.WebSocket {
    constructor(url: string) {
      super(url);
      throw boom;
    }
  }
  const construct = setup({ WebSocket: Refused });
  await assert.rejects(construct.client.ready(), failedWith("Could not connect to ws://test/_ephaptic: boom"));
  construct.client.disconnect();

  const send = setup();
  const socket = send.fake.last();
  socket.send = () => {
    throw boom;
  };
  const ready = send.client.ready();
  socket.open();
  await assert.rejects(ready, failedWith("Could not send init to ws://test/_ephaptic: boom"));
  assert.ok(socket.closedByClient, "the socket that could not take init is closed");
  send.client.disconnect();
});

test("an attempt that does not connect within connectTimeout fails, auth function included", async () => {
  // A socket that never opens:
  const a = setup({ connectTimeout: 30 });
  await assert.rejects(a.client.add(1, 2), (e: EphapticError) => e.code === "CONNECT_FAILED" && /within 30 ms/.test(e.message));
  assert.equal(a.fake.sockets[0]!.readyState, 3, "the stuck socket was closed");
  assert.equal(a.client.state, "reconnecting");
  a.client.disconnect();
  // An auth function that never settles:
  let calls = 0;
  const b = setup({ connectTimeout: 30, auth: () => (++calls === 1 ? new Promise(() => {}) : "tok") });
  await assert.rejects(b.client.ready(), isCode("CONNECT_FAILED"));
  assert.equal(b.fake.sockets.length, 0);
  await until(() => b.fake.sockets.length === 1, "the retry");
  b.fake.last().open();
  assert.deepEqual(b.fake.last().sent[0], { type: "init", auth: "tok" });
  b.client.disconnect();
});

test("close code 1008 (too slow) is reported and followed by a reconnect", async () => {
  const { client, fake, log } = setup();
  const changes: Array<{ state: ConnectionState; code: number | undefined }> = [];
  client.onStateChange((state, change) => void changes.push({ state, code: change.code }));
  fake.last().open();
  fake.last().drop(1008, "outbound queue full: the client reads too slowly");
  assert.match(log.warnings.join("\n"), /1008 \(outbound queue full: the client reads too slowly\)/);
  assert.deepEqual(changes.at(-1), { state: "reconnecting", code: 1008 });
  await until(() => fake.sockets.length === 2, "a reconnect");
  client.disconnect();
});

test("disconnect() closes for good: pending calls DISCONNECTED, state closed, no reconnect", async () => {
  const { client, fake } = setup();
  const states: ConnectionState[] = [];
  client.onStateChange((s) => void states.push(s));
  const ws = fake.last();
  ws.open();
  const pending = client.sleepy(1000);
  client.disconnect();
  await assert.rejects(pending, isCode("DISCONNECTED"));
  assert.equal(client.state, "closed");
  assert.deepEqual(ws.closedByClient, { code: 1000, reason: "client disconnect" });
  await assert.rejects(client.add(1, 2), isCode("DISCONNECTED"));
  await assert.rejects(client.ready(), isCode("DISCONNECTED"));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(fake.sockets.length, 1, "no reconnect after disconnect()");
  assert.deepEqual(states, ["connected", "closed"]);
});

test("with reconnect: false a drop leaves the client disconnected until the next call", async () => {
  const { client, fake } = setup({ reconnect: false });
  fake.last().open();
  fake.last().drop(1006);
  assert.equal(client.state, "disconnected");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fake.sockets.length, 1);
  const call = client.add(1, 2);
  assert.equal(client.state, "connecting");
  fake.last().open();
  fake.last().receive({ id: 1, result: 3 });
  assert.equal(await call, 3);
  client.disconnect();
});

test("a state listener that throws is reported and does not stop the others", async () => {
  const errors: unknown[] = [];
  const { client, fake } = setup({ onError: (e) => void errors.push(e) });
  const seen: ConnectionState[] = [];
  client.onStateChange(() => {
    throw new Error("state listener bug");
  });
  const stop = client.onStateChange((s) => void seen.push(s));
  fake.last().open();
  stop();
  client.disconnect();
  assert.deepEqual(seen, ["connected"]);
  assert.equal(errors.length, 2);
});

test("queries give TanStack options; a stream's queryFn collects it", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const q = client.queries.add(1, 2);
  assert.deepEqual(q.queryKey, ["add", 1, 2]);
  const value = q.queryFn();
  ws.receive({ id: 1, result: 3 });
  assert.equal(await value, 3);
  const s = client.queries.countdown(3).queryFn();
  await flush(1);
  ws.receive({ id: 2, stream: true });
  for (const chunk of [3, 2, 1]) ws.receive({ id: 2, chunk });
  ws.receive({ id: 2, done: true });
  assert.deepEqual(await s, [3, 2, 1]);
  // TanStack passes a signal: cancelling the query cancels the call.
  const controller = new AbortController();
  const slow = client.queries.sleepy(1000).queryFn({ signal: controller.signal });
  controller.abort();
  await assert.rejects(slow);
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: 3 }]);
  client.disconnect();
});

test("invalidateOn invalidates on the channel and after a reconnect, until unsubscribed", async () => {
  const { client, fake } = setup();
  const invalidated: unknown[] = [];
  const queryClient = { invalidateQueries: (f: { queryKey: readonly unknown[] }) => void invalidated.push(f.queryKey) };
  fake.last().open();
  const stop = client.invalidateOn("todoCreated", queryClient, [["listTodos"], ["stats", "todos"]]);
  const todo = { type: "event", name: "todoCreated", payload: { args: [], kwargs: { id: 1, title: "t", done: false } } };
  fake.last().receive(todo);
  assert.deepEqual(invalidated, [["listTodos"], ["stats", "todos"]]);
  fake.last().drop(1006);
  await until(() => fake.sockets.length === 2, "a reconnect");
  fake.last().open();
  assert.equal(invalidated.length, 4, "events may have been missed while disconnected");
  stop();
  fake.last().receive(todo);
  assert.equal(invalidated.length, 4);
  client.disconnect();
});

const noGlobalWebSocket = typeof (globalThis as { WebSocket?: unknown }).WebSocket === "undefined";

test("without a WebSocket implementation connect() works; calls and ready() say what to pass", { skip: !noGlobalWebSocket && "this runtime has a global WebSocket" }, async () => {
  const client = connect({ url: "ws://127.0.0.1:1/_ephaptic" });
  setup.track(client);
  assert.equal(client.state, "disconnected");
  const says = (e: unknown) => isCode("CONNECT_FAILED")(e) && /No WebSocket implementation[\s\S]*from "ws"[\s\S]*--experimental-websocket/.test((e as Error).message);
  await assert.rejects(client.call("add", 1, 2), says);
  await assert.rejects(client.ready(), says);
  assert.equal(client.state, "disconnected");
});

test("on() and once() return a function that removes just that listener", async () => {
  const { client, fake } = setup();
  fake.last().open();
  const got: string[] = [];
  const a = (d: unknown) => void got.push(`a${String(d)}`);
  const stopA = client.on("n", a);
  const stopOnce = client.once("n", a);
  client.on("n", (d) => void got.push(`b${String(d)}`));
  const send = (v: number) => fake.last().receive({ type: "event", name: "n", payload: { args: [v], kwargs: {} } });
  stopOnce();
  send(1);
  stopA();
  stopA(); // a second call does nothing
  send(2);
  assert.deepEqual(got, ["a1", "b1", "b2"]);
  client.off("n", a); // off still works, with nothing left to remove
  client.disconnect();
});

test("ready() with reconnect: false rejects when the first attempt fails at once", async () => {
  let n = 0;
  class Throwing {
    constructor() {
      n++;
      throw new Error("refused");
    }
  }
  const client = connect({
    url: "ws://test/_ephaptic",
    WebSocket: Throwing as unknown as ConnectOptions["WebSocket"] & object,
    reconnect: false,
    logger: recordingLogger().logger,
  });
  setup.track(client);
  // The first attempt (made by connect()) already failed; ready() makes another and learns how it ended.
  assert.equal(client.state, "disconnected");
  await assert.rejects(client.ready(), (e) => isCode("CONNECT_FAILED")(e) && /refused/.test((e as Error).message));
  assert.equal(n, 2);
  client.disconnect();
});

test("names the proxy never forwards are Object.prototype's and the probed ones, and are never calls", async () => {
  const { OBJECT_PROTOTYPE_NAMES, NOT_PROXIED, PROBED_NAMES } = await import("../../dist/names.js");
  assert.deepEqual([...OBJECT_PROTOTYPE_NAMES].sort(), Object.getOwnPropertyNames(Object.prototype).sort());
  const { client, fake } = setup();
  fake.last().open();
  const asRecord = client as unknown as Record<string, unknown>;
  for (const name of PROBED_NAMES) assert.equal(asRecord[name], undefined, name);
  for (const name of NOT_PROXIED) {
    const v = asRecord[name];
    if (typeof v === "function") {
      try {
        (v as () => unknown).call(client);
      } catch {
        // Object.prototype's own (`__defineGetter__` without arguments) may throw: still no call
      }
    }
  }
  assert.equal(fake.last().frames("rpc").length, 0);
  client.disconnect();
});

test("mutations: mutationFn calls with the variables as arguments; onSuccess runs the channels' invalidations", async () => {
  const mutations = {
    create_todo: { params: 1, channels: ["todoCreated"] },
    none: { params: 0, channels: ["a"] },
    two: { params: 2, channels: ["a", "b"] },
  } as const;
  const { client, fake } = setup({ mutations });
  const ws = fake.last();
  ws.open();
  const create = client.mutations.create_todo();
  assert.deepEqual(create.mutationKey, ["create_todo"]);
  assert.deepEqual(create.channels, ["todoCreated"]);
  const r = create.mutationFn("milk");
  ws.receive({ id: 1, result: { id: 1, title: "milk" } });
  assert.deepEqual(await r, { id: 1, title: "milk" });
  const pending = [client.mutations.none().mutationFn(undefined), client.mutations.two().mutationFn(["x", 2])];
  pending.forEach((p) => p.catch(() => {})); // never answered: the disconnect below rejects them
  assert.deepEqual(
    ws.frames("rpc").map((f) => [f.name, f.args]),
    [["create_todo", ["milk"]], ["none", []], ["two", ["x", 2]]],
  );

  // onSuccess invalidates what invalidateOn tied to the channels, and resolves after it.
  const invalidated: unknown[] = [];
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  const queryClient = {
    invalidateQueries: (f: { queryKey: readonly unknown[] }) => {
      invalidated.push(f.queryKey);
      return slow;
    },
  };
  const stopTodos = client.invalidateOn("todoCreated", queryClient, [["listTodos"]]);
  client.invalidateOn("b", queryClient, [["stats"]]);
  let done = false;
  const success = create.onSuccess().then(() => (done = true));
  await flush();
  assert.deepEqual(invalidated, [["listTodos"]]);
  assert.equal(done, false, "onSuccess waits for the invalidation");
  release();
  await success;
  await client.mutations.two().onSuccess();
  assert.deepEqual(invalidated, [["listTodos"], ["stats"]]);
  stopTodos();
  await create.onSuccess();
  assert.equal(invalidated.length, 2, "an invalidation stopped is not run by onSuccess");
  client.disconnect();
});

test("mutations without the schema's map say how to pass it", () => {
  const { client } = setup();
  assert.throws(() => client.mutations.create_todo(), /connect\(\{ url, mutations: ephapticMutations \}\)/);
  client.disconnect();
});
