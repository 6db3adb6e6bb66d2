// Sessions the server ends and credentials it asks to refresh (PROTOCOL.md 5.11), against an
// in-memory socket: close code 4401 is final (no reconnect, SESSION_ENDED, onSessionEnded once),
// and a `refresh` frame is answered with fresh credentials in `__ephaptic.refresh`.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  EphapticError,
  SESSION_ENDED_CLOSE_CODE,
  type ConnectOptions,
  type ConnectionState,
  type SessionEnded,
  type StateChange,
} from "../../dist/index.js";
import { fakeClients } from "../helpers/fake-client.js";
import { flush } from "../helpers/fake-ws.js";

const fakeClient = fakeClients();

const HELLO_ANSWER = {
  id: 0,
  result: { v: 2, server: "ephaptic-rs/0.1.0", identity: "alice", schema: null, resume: true, limits: {}, streams: {} },
};

function setup(options: ConnectOptions = {}) {
  const { client, fake, log } = fakeClient(options);
  const changes: Array<[ConnectionState, StateChange]> = [];
  client.onStateChange((s, c) => void changes.push([s, c]));
  const ended: SessionEnded[] = [];
  client.onSessionEnded((e) => void ended.push(e));
  return { client, fake, log, changes, ended };
}

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Opens the client's first socket and answers its hello; resolves with that socket once ready. */
async function connected({ client, fake }: Pick<ReturnType<typeof setup>, "client" | "fake">) {
  await until(() => fake.sockets.length === 1, "the socket");
  const ws = fake.last();
  ws.open();
  ws.receive(HELLO_ANSWER);
  await client.ready();
  return ws;
}

/** An EphapticError SESSION_ENDED for `reason`, saying what to do. */
const sessionEnded = (reason: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, "SESSION_ENDED", e.message);
  assert.deepEqual(e.data, { code: 4401, reason });
  assert.match(e.message, /session ended/);
  assert.ok(e.message.includes(reason), e.message);
  assert.match(e.message, /new client with connect\(\) and new credentials/);
  return true;
};

test("close code 4401 ends the session: closed with code and reason, onSessionEnded once, calls SESSION_ENDED, no reconnect", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const fromOption: SessionEnded[] = [];
  const { client, fake, changes, ended } = setup({ onSessionEnded: (e) => void fromOption.push(e) });
  assert.equal(SESSION_ENDED_CLOSE_CODE, 4401);
  const ws = fake.last();
  ws.open();
  ws.receive(HELLO_ANSWER);
  assert.equal(client.state, "connected");
  assert.equal(client.sessionEnded, undefined);
  const inflight = client.sleepy(1000);
  const streamCall = client.ticker(5);
  ws.receive({ id: 2, stream: true });
  const stream = (await streamCall) as AsyncIterableIterator<unknown>;
  const inflightFails = assert.rejects(inflight, sessionEnded("revoked"));

  ws.drop(4401, "revoked");
  assert.equal(client.state, "closed");
  assert.deepEqual(changes.at(-1), ["closed", { previous: "connected", code: 4401, reason: "revoked" }]);
  await inflightFails;
  await assert.rejects(stream.next(), sessionEnded("revoked"));
  await assert.rejects(client.add(1, 2), sessionEnded("revoked"));
  await assert.rejects(client.ready(), sessionEnded("revoked"));

  // Well past any backoff: a dropped connection would have been retried many times by now.
  t.mock.timers.tick(10 * 60_000);
  await flush();
  assert.equal(fake.sockets.length, 1, "no reconnect after 4401");
  assert.equal(client.state, "closed");
  assert.deepEqual(ended, [{ code: 4401, reason: "revoked" }], "onSessionEnded, once");
  assert.deepEqual(fromOption, [{ code: 4401, reason: "revoked" }], "connect({ onSessionEnded }), once");
  assert.deepEqual(client.sessionEnded, { code: 4401, reason: "revoked" });
  client.disconnect();
  assert.equal(ended.length, 1, "disconnect() afterwards tells nobody again");
  assert.deepEqual(
    changes.map(([s]) => s),
    ["connected", "closed"],
  );
});

test("a dropped connection (not 4401) is retried: the control for the test above", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { client, fake, ended } = setup();
  fake.last().open();
  fake.last().receive(HELLO_ANSWER);
  fake.last().drop(4000, "some other application code");
  t.mock.timers.tick(10);
  await flush();
  assert.equal(fake.sockets.length, 2, "a reconnect attempt");
  assert.deepEqual(ended, []);
  client.disconnect();
});

test("4401 during a connection attempt ends the session instead of failing the attempt", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { client, fake, changes, ended } = setup();
  const queued = client.add(1, 2);
  const ready = client.ready();
  const queuedFails = assert.rejects(queued, sessionEnded("credentials refused"));
  const readyFails = assert.rejects(ready, sessionEnded("credentials refused"));
  fake.last().drop(4401, "credentials refused");
  await queuedFails;
  await readyFails;
  assert.equal(client.state, "closed");
  assert.deepEqual(changes.at(-1), ["closed", { previous: "connecting", code: 4401, reason: "credentials refused" }]);
  t.mock.timers.tick(10 * 60_000);
  await flush();
  assert.equal(fake.sockets.length, 1, "no retry");
  assert.deepEqual(ended, [{ code: 4401, reason: "credentials refused" }]);
});

test("4401 before the hello's answer ends the session: ready() rejects SESSION_ENDED, not CONNECT_FAILED", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { client, fake, ended } = setup();
  const ws = fake.last();
  ws.open();
  const ready = client.ready();
  const call = client.add(1, 2);
  const fails = Promise.all([
    assert.rejects(ready, sessionEnded("logged out")),
    assert.rejects(call, sessionEnded("logged out")),
  ]);
  ws.drop(4401, "logged out");
  await fails;
  t.mock.timers.tick(10 * 60_000);
  await flush();
  assert.equal(fake.sockets.length, 1, "no reconnect");
  assert.equal(client.state, "closed");
  assert.deepEqual(ended, [{ code: 4401, reason: "logged out" }]);
});

test("onSessionEnded: unsubscribing works, a throwing listener is reported, one added later is not called", async () => {
  const errors: Array<[unknown, unknown]> = [];
  const { client, fake, ended } = setup({ onError: (e, context) => void errors.push([e, context]) });
  const removed: SessionEnded[] = [];
  const stop = client.onSessionEnded((e) => void removed.push(e));
  client.onSessionEnded(() => {
    throw new Error("listener broke");
  });
  const afterThrow: SessionEnded[] = [];
  client.onSessionEnded((e) => void afterThrow.push(e));
  assert.throws(() => client.onSessionEnded(null as unknown as () => void), TypeError);
  stop();
  fake.last().open();
  fake.last().drop(4401, "");
  assert.deepEqual(ended, [{ code: 4401, reason: "" }]);
  assert.deepEqual(removed, [], "unsubscribed");
  assert.deepEqual(afterThrow, [{ code: 4401, reason: "" }], "a throwing listener does not stop the others");
  assert.equal(errors.length, 1);
  assert.deepEqual(errors[0]![1], { kind: "session-listener" });
  const late: SessionEnded[] = [];
  client.onSessionEnded((e) => void late.push(e))();
  await flush();
  assert.deepEqual(late, []);
  assert.deepEqual(client.sessionEnded, { code: 4401, reason: "" });
  await assert.rejects(client.add(1, 2), (e: unknown) => e instanceof EphapticError && e.code === "SESSION_ENDED" && /close code 4401\)/.test(e.message));
});

test("a new client after an ended session connects as usual", async () => {
  const first = setup({ auth: "old" });
  first.fake.last().open();
  first.fake.last().drop(4401, "revoked");
  assert.equal(first.client.state, "closed");
  const second = setup({ auth: "new" });
  const ws = second.fake.last();
  ws.open();
  ws.receive(HELLO_ANSWER);
  await second.client.ready();
  const call = second.client.add(1, 2);
  ws.receive({ id: 1, result: 3 });
  assert.equal(await call, 3);
  assert.equal(second.client.sessionEnded, undefined);
  second.client.disconnect();
});

test("a refresh frame: the auth function runs again and its token goes out in __ephaptic.refresh on the same connection", async () => {
  let n = 0;
  const traced: Array<["in" | "out", Record<string, unknown>]> = [];
  const { client, fake, log, changes } = setup({
    auth: async () => `tok-${++n}`,
    trace: (direction, frame) => void traced.push([direction, frame]),
  });
  await until(() => fake.sockets.length === 1, "the socket");
  const ws = fake.last();
  ws.open();
  assert.deepEqual(ws.sent[0], { type: "init", auth: "tok-1", v: 2, refresh: true });
  ws.receive(HELLO_ANSWER);
  await client.ready();
  const pending = client.sleepy(1000); // id 1, unanswered: the refresh must not wait for it

  const expires = Date.now() + 1000;
  ws.receive({ type: "refresh", expires });
  await until(() => ws.frames("rpc").some((f) => f.name === "__ephaptic.refresh"), "the refresh call");
  assert.equal(n, 2, "the auth function ran again");
  const refresh = ws.frames("rpc").find((f) => f.name === "__ephaptic.refresh")!;
  assert.deepEqual(refresh, { type: "rpc", id: 2, name: "__ephaptic.refresh", args: ["tok-2"] }, "the next id, the fresh token");
  assert.ok(traced.some(([d, f]) => d === "in" && f.type === "refresh"), "the trace hook saw the refresh frame");
  assert.ok(traced.some(([d, f]) => d === "out" && f.name === "__ephaptic.refresh"), "and the refresh call");
  ws.receive({ id: 2, result: { expires: expires + 2000 } });
  await flush();

  // Again, at the next expiry: each refresh asks the auth function anew.
  ws.receive({ type: "refresh", expires: expires + 2000 });
  await until(() => ws.frames("rpc").filter((f) => f.name === "__ephaptic.refresh").length === 2, "the second refresh");
  assert.deepEqual(ws.frames("rpc").at(-1), { type: "rpc", id: 3, name: "__ephaptic.refresh", args: ["tok-3"] });
  ws.receive({ id: 3, result: { expires: null } });
  ws.receive({ id: 1, result: null });
  assert.equal(await pending, null);
  await flush();

  assert.deepEqual(log.warnings, []);
  assert.equal(fake.sockets.length, 1, "the same connection throughout");
  assert.deepEqual(
    changes.map(([s]) => s),
    ["connected"],
  );
  client.disconnect();
});

test("refreshes run one at a time: a second request waits for the first answer", async () => {
  let n = 0;
  const { client, fake, log } = setup({ auth: () => `tok-${++n}` });
  await until(() => fake.sockets.length === 1, "the socket");
  const ws = fake.last();
  ws.open();
  ws.receive(HELLO_ANSWER);
  const refreshes = () => ws.frames("rpc").filter((f) => f.name === "__ephaptic.refresh");
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => refreshes().length === 1, "the first refresh call");
  await flush();
  assert.equal(refreshes().length, 1, "the second waits");
  ws.receive({ id: 1, result: { expires: Date.now() + 2000 } });
  await until(() => refreshes().length === 2, "the second refresh call");
  assert.deepEqual(refreshes()[1], { type: "rpc", id: 2, name: "__ephaptic.refresh", args: ["tok-3"] });
  ws.receive({ id: 2, result: { expires: Date.now() + 2000 } });
  await flush();
  assert.equal(refreshes().length, 2);
  assert.deepEqual(log.warnings, []);
  client.disconnect();
});

test("refresh with a plain auth value sends it again; without auth the call has no argument", async () => {
  const { client, fake } = setup({ auth: { token: "static" } });
  const ws = fake.last();
  ws.open();
  ws.receive(HELLO_ANSWER);
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => ws.frames("rpc").length === 2, "the refresh call");
  assert.deepEqual(ws.frames("rpc")[1], { type: "rpc", id: 1, name: "__ephaptic.refresh", args: [{ token: "static" }] });
  client.disconnect();

  const anonymous = setup();
  const ws2 = anonymous.fake.last();
  ws2.open();
  ws2.receive(HELLO_ANSWER);
  ws2.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => ws2.frames("rpc").length === 2, "the refresh call");
  assert.deepEqual(ws2.frames("rpc")[1], { type: "rpc", id: 1, name: "__ephaptic.refresh", args: [] });
  anonymous.client.disconnect();
});

test("a refused refresh is logged, then the server's 4401 ends the session", async () => {
  let n = 0;
  const { client, fake, log, ended } = setup({ auth: () => (++n === 1 ? "expiring:alice:2000" : "expiring:mallory:2000") });
  const ws = await connected({ client, fake });
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => ws.frames("rpc").length === 2, "the refresh call");
  assert.deepEqual(ws.frames("rpc")[1]!.args, ["expiring:mallory:2000"]);
  ws.receive({
    id: 1,
    error: { code: "UNAUTHORIZED", message: "The session ended: credentials refreshed for another identity.", data: null },
  });
  await until(() => log.warnings.length > 0, "the warning");
  assert.match(log.warnings[0]!, /did not take the fresh credentials \(UNAUTHORIZED: The session ended: credentials refreshed for another identity\.\)/);
  ws.drop(4401, "credentials refreshed for another identity");
  assert.equal(client.state, "closed");
  assert.deepEqual(ended, [{ code: 4401, reason: "credentials refreshed for another identity" }]);
});

test("an auth function that throws at a refresh is logged and nothing is sent; the connection goes on", async () => {
  let n = 0;
  const { client, fake, log } = setup({
    auth: () => {
      if (++n > 1) throw new Error("token service down");
      return "tok";
    },
  });
  const ws = await connected({ client, fake });
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => log.warnings.length > 0, "the warning");
  assert.match(log.warnings[0]!, /auth function failed when the server asked for fresh credentials: token service down/);
  assert.deepEqual(ws.frames("rpc").map((f) => f.name), ["__ephaptic.hello"]);
  assert.equal(client.state, "connected");
  client.disconnect();
});

test("a refresh whose connection closes while the auth function runs is not sent on the next one", async () => {
  let release: (token: string) => void = () => undefined;
  let n = 0;
  const { client, fake, log } = setup({
    auth: () => (++n === 2 ? new Promise<string>((r) => (release = r)) : `tok-${n}`),
  });
  await until(() => fake.sockets.length === 1, "the socket");
  const first = fake.last();
  first.open();
  first.receive(HELLO_ANSWER);
  first.receive({ type: "refresh", expires: Date.now() + 1000 });
  await until(() => n === 2, "the auth function asked");
  first.drop(1006);
  await until(() => fake.sockets.length === 2, "the reconnect");
  const second = fake.last();
  second.open();
  release("tok-late");
  await flush();
  assert.deepEqual(second.sent[0], { type: "init", auth: "tok-3", v: 2, refresh: true });
  assert.deepEqual(
    [...first.frames("rpc"), ...second.frames("rpc")].filter((f) => f.name === "__ephaptic.refresh"),
    [],
  );
  assert.deepEqual(log.warnings, []);
  client.disconnect();
});

test("resume: false: init says nothing of refresh, and refresh frames are ignored", async () => {
  let n = 0;
  const { client, fake } = setup({ resume: false, auth: () => `tok-${++n}` });
  await until(() => fake.sockets.length === 1, "the socket");
  const ws = fake.last();
  ws.open();
  assert.deepEqual(ws.sent, [{ type: "init", auth: "tok-1" }]);
  ws.receive({ type: "refresh", expires: Date.now() + 1000 });
  await flush();
  assert.equal(n, 1);
  assert.deepEqual(ws.sent, [{ type: "init", auth: "tok-1" }]);
  client.disconnect();
});
