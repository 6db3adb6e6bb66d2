// Sessions (PROTOCOL.md 5.6) against an in-memory socket: the init and hello frames, duplicates
// dropped by offset, legacy servers (hello answered NOT_FOUND), resume positions, position and
// resync frames, onResync and the invalidation it drives, schema skew.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  EphapticError,
  type ConnectOptions,
  type ConnectionState,
  type Resync,
  type SchemaMismatch,
  type StateChange,
} from "../../dist/index.js";
import { MAX_RESUME, Positions } from "../../dist/session.js";
import { fakeClients } from "../helpers/fake-client.js";
import { fakeWebSocket, flush, type FakeSocket } from "../helpers/fake-ws.js";

const fakeClient = fakeClients();

const HELLO = { type: "rpc", id: 0, name: "__ephaptic.hello", args: [] };

function setup(options: ConnectOptions = {}) {
  const { client, fake, log } = fakeClient(options);
  const resyncs: Resync[] = [];
  client.onResync((r) => void resyncs.push(r));
  const changes: Array<[ConnectionState, StateChange]> = [];
  client.onStateChange((s, c) => void changes.push([s, c]));
  return { client, fake, log, resyncs, changes };
}

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface StreamInfo {
  epoch: string;
  offset: number;
  recovered?: boolean;
  was_recovering?: boolean;
  replayed?: number;
  reason?: string;
}

function helloResult(streams: Record<string, StreamInfo>, extra: Record<string, unknown> = {}) {
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(streams)) {
    out[name] = { recovered: false, was_recovering: false, replayed: 0, ...s };
  }
  return {
    id: 0,
    result: {
      v: 2,
      server: "ephaptic-rs/0.1.0",
      identity: "alice",
      schema: "9f2c51e08ab3d4c7",
      resume: true,
      limits: { max_frame_size: 1048576, max_calls_in_flight: 1024 },
      streams: out,
      ...extra,
    },
  };
}

const NOT_FOUND = { id: 0, error: { code: "NOT_FOUND", message: "Function '__ephaptic.hello' not found.", data: null } };

function ev(message: string, stream?: string, epoch?: string, seq?: number, name = "Notice") {
  const frame: Record<string, unknown> = { type: "event", name, payload: { args: [], kwargs: { message } } };
  if (stream !== undefined) Object.assign(frame, { stream, seq, epoch });
  return frame;
}

/** Drops the socket and waits for the client's next one, opened. */
async function reconnect(fake: ReturnType<typeof fakeWebSocket>, ws: FakeSocket): Promise<FakeSocket> {
  const before = fake.sockets.length;
  ws.drop(1006);
  await until(() => fake.sockets.length > before, "a reconnect attempt");
  const next = fake.last();
  next.open();
  return next;
}

test("sessions on (default): init says v 2 and refresh: true, the hello follows before any call, calls count from 1", async () => {
  const { client, fake, changes } = setup({ auth: "alice" });
  const early = client.add(1, 2);
  const ws = fake.last();
  ws.open();
  assert.deepEqual(ws.sent, [
    { type: "init", auth: "alice", v: 2, refresh: true },
    HELLO,
    { type: "rpc", id: 1, name: "add", args: [1, 2] },
  ]);
  // Connected once the hello is answered, not before: calls are out already.
  assert.equal(client.state, "connecting");
  assert.equal(client.session, undefined);
  assert.equal(client.identity, undefined);
  ws.receive({ id: 1, result: 3 });
  assert.equal(await early, 3);
  const ready = client.ready();
  ws.receive(helloResult({ u: { epoch: "E1", offset: 4 }, b: { epoch: "B1", offset: 10 } }));
  await ready;
  assert.equal(client.state, "connected");
  assert.equal(client.identity, "alice");
  const session = client.session!;
  assert.equal(session.legacy, false);
  assert.equal(session.server, "ephaptic-rs/0.1.0");
  assert.equal(session.schema, "9f2c51e08ab3d4c7");
  assert.equal(session.resume, true);
  assert.equal(session.reconnected, false);
  assert.equal(session.recovered, true);
  assert.deepEqual(session.limits, { max_frame_size: 1048576, max_calls_in_flight: 1024 });
  assert.deepEqual(
    Object.fromEntries(Object.entries(session.streams).map(([k, v]) => [k, [v.epoch, v.offset]])),
    { u: ["E1", 4], b: ["B1", 10] },
  );
  const [state, change] = changes.at(-1)!;
  assert.equal(state, "connected");
  assert.equal(change.previous, "connecting");
  assert.equal(change.session?.identity, "alice");
  client.disconnect();
});

test("resume: false sends exactly the frames of a client without sessions and drops nothing", async () => {
  const { client, fake } = setup({ resume: false, auth: "t" });
  const ws = fake.last();
  ws.open();
  assert.equal(client.state, "connected");
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  const call = client.add(1, 2);
  assert.deepEqual(ws.sent, [{ type: "init", auth: "t" }, { type: "rpc", id: 1, name: "add", args: [1, 2] }]);
  ws.receive(ev("a", "u", "E", 1));
  ws.receive(ev("a again", "u", "E", 1));
  ws.receive({ type: "position", stream: "g:r", epoch: "G", offset: 1, recovered: false, was_recovering: true, replayed: 0 });
  assert.deepEqual(got, ["a", "a again"]);
  assert.equal(client.session?.legacy, true);
  assert.deepEqual(client.session?.streams, {});
  ws.receive({ id: 1, result: 3 });
  assert.equal(await call, 3);
  client.disconnect();
});

test("duplicates are dropped by offset per stream and epoch; a new epoch resets; unpositioned events always pass", async () => {
  const { client, fake } = setup();
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  const ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 5 }, b: { epoch: "B", offset: 0 } }));
  ws.receive(ev("u6", "u", "E", 6));
  ws.receive(ev("u7", "u", "E", 7));
  ws.receive(ev("u7 dup", "u", "E", 7));
  ws.receive(ev("u5 old", "u", "E", 5));
  ws.receive(ev("b1", "b", "B", 1)); // another stream, its own offsets
  ws.receive(ev("u1 new epoch", "u", "F", 1));
  ws.receive(ev("u1 dup", "u", "F", 1));
  ws.receive(ev("u9 gap", "u", "F", 9)); // a gap is delivered (the server tells losses with resync)
  ws.receive(ev("mine"));
  ws.receive(ev("mine"));
  assert.deepEqual(got, ["u6", "u7", "b1", "u1 new epoch", "u9 gap", "mine", "mine"]);
  assert.deepEqual(
    [client.session!.streams.u!.epoch, client.session!.streams.u!.offset, client.session!.streams.b!.offset],
    ["F", 9, 1],
  );
  client.disconnect();
});

test("a reconnect sends the positions; a recovered stream reports nothing and invalidates nothing", async () => {
  const { client, fake, resyncs, changes } = setup({ auth: "alice" });
  const invalidated: unknown[] = [];
  client.invalidateOn("Notice", { invalidateQueries: ({ queryKey }) => void invalidated.push(queryKey) }, [["inbox"]]);
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 2 }, b: { epoch: "B", offset: 7 } }));
  ws.receive(ev("u3", "u", "E", 3));
  assert.deepEqual(invalidated, [["inbox"]]); // the event itself
  invalidated.length = 0;

  ws = await reconnect(fake, ws);
  assert.deepEqual(ws.sent.slice(0, 2), [{ type: "init", auth: "alice", v: 2, resume: { u: ["E", 3], b: ["B", 7] }, refresh: true }, HELLO]);
  assert.equal(client.state, "reconnecting");
  // Replayed events come before the result, as ordinary positioned events; one also sent live
  // arrives twice and is dropped.
  ws.receive(ev("u4", "u", "E", 4));
  ws.receive(ev("u5", "u", "E", 5));
  ws.receive(ev("u5", "u", "E", 5));
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 5, recovered: true, was_recovering: true, replayed: 2 },
      b: { epoch: "B", offset: 7, recovered: true, was_recovering: true, replayed: 0 },
    }),
  );
  await flush();
  assert.equal(client.state, "connected");
  assert.deepEqual(got, ["u3", "u4", "u5"]);
  assert.deepEqual(resyncs, []);
  // Two for the replayed events themselves; none for the reconnect.
  assert.deepEqual(invalidated, [["inbox"], ["inbox"]]);
  const change = changes.at(-1)![1];
  assert.equal(change.previous, "reconnecting");
  assert.equal(change.session?.reconnected, true);
  assert.equal(change.session?.recovered, true);
  assert.equal(change.session?.streams.u?.replayed, 2);
  client.disconnect();
});

test("a stream not recovered: onResync with its reason, and only the queries its events feed are invalidated", async () => {
  const { client, fake, resyncs } = setup({ auth: "alice" });
  const invalidated: unknown[] = [];
  const qc = { invalidateQueries: ({ queryKey }: { queryKey: readonly unknown[] }) => void invalidated.push(queryKey) };
  client.invalidateOn("Notice", qc, [["inbox"]]); // seen on u
  client.invalidateOn("todoCreated", qc, [["todos"]]); // seen on b only
  client.invalidateOn("neverSeen", qc, [["other"]]); // stream unknown: may be on any
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 0 }, b: { epoch: "B", offset: 0 } }));
  ws.receive(ev("u1", "u", "E", 1));
  ws.receive(ev("t1", "b", "B", 1, "todoCreated"));
  invalidated.length = 0;

  ws = await reconnect(fake, ws);
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 300, recovered: false, was_recovering: true, reason: "trimmed" },
      b: { epoch: "B", offset: 1, recovered: true, was_recovering: true },
    }),
  );
  await flush();
  assert.deepEqual(resyncs, [{ stream: "u", reason: "trimmed", epoch: "E", offset: 300, source: "hello" }]);
  assert.deepEqual(invalidated.sort(), [["inbox"], ["other"]]);
  assert.equal(client.session!.recovered, false);
  assert.equal(client.session!.streams.u!.reason, "trimmed");
  assert.equal(client.session!.streams.u!.offset, 300, "goes on from the server's position");

  // A later event of the old range is a duplicate now.
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  ws.receive(ev("u250", "u", "E", 250));
  ws.receive(ev("u301", "u", "E", 301));
  assert.deepEqual(got, ["u301"]);
  client.disconnect();
});

test("a legacy server (hello NOT_FOUND): works as before, every reconnect counts as lost", async () => {
  const { client, fake, resyncs, log } = setup({ auth: "x" });
  const invalidated: unknown[] = [];
  client.invalidateOn("Notice", { invalidateQueries: ({ queryKey }) => void invalidated.push(queryKey) }, [["n"]]);
  let ws = fake.last();
  ws.open();
  const call = client.add(1, 2);
  ws.receive(NOT_FOUND);
  ws.receive({ id: 1, result: 3 });
  assert.equal(await call, 3);
  assert.equal(client.state, "connected");
  assert.equal(client.session?.legacy, true);
  assert.equal(client.identity, undefined);
  assert.deepEqual(resyncs, [], "a first connection lost nothing");
  assert.deepEqual(invalidated, []);
  assert.deepEqual(log.warnings, [], "NOT_FOUND is the expected answer: no warning");

  ws = await reconnect(fake, ws);
  assert.deepEqual(ws.sent.slice(0, 2), [{ type: "init", auth: "x", v: 2, refresh: true }, HELLO], "no positions to send");
  ws.receive(NOT_FOUND);
  await flush();
  assert.equal(client.state, "connected");
  assert.deepEqual(resyncs, [{ stream: "*", reason: "legacy", source: "legacy" }]);
  assert.deepEqual(invalidated, [["n"]]);
  assert.equal(client.session?.reconnected, true);
  assert.equal(client.session?.recovered, false);
  client.disconnect();
});

test("resume: false keeps invalidating after every reconnection, and reports it as a legacy resync", async () => {
  const { client, fake, resyncs } = setup({ resume: false });
  const invalidated: unknown[] = [];
  client.invalidateOn("Notice", { invalidateQueries: ({ queryKey }) => void invalidated.push(queryKey) }, [["n"]]);
  const ws = fake.last();
  ws.open();
  await reconnect(fake, ws);
  assert.equal(client.state, "connected");
  assert.deepEqual(invalidated, [["n"]]);
  assert.deepEqual(resyncs, [{ stream: "*", reason: "legacy", source: "legacy" }]);
  client.disconnect();
});

test("schemaHash: a server with another schema calls onSchemaMismatch (option and method) once per hash", async () => {
  const fromOption: SchemaMismatch[] = [];
  const { client, fake } = setup({ schemaHash: "aaaa", onSchemaMismatch: (m) => void fromOption.push(m) });
  const fromMethod: SchemaMismatch[] = [];
  client.onSchemaMismatch((m) => void fromMethod.push(m));
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ b: { epoch: "B", offset: 0 } }, { schema: "bbbb" }));
  await flush();
  assert.equal(fromOption.length, 1);
  assert.equal(fromOption[0]!.expected, "aaaa");
  assert.equal(fromOption[0]!.actual, "bbbb");
  assert.equal(fromOption[0]!.session.schemaMismatch, true);
  assert.equal(fromMethod.length, 1);
  assert.equal(client.session!.schemaMismatch, true);
  assert.equal(client.session!.expectedSchema, "aaaa");
  assert.equal(client.state, "connected", "never a reload or a disconnect: the app decides");

  // The same server again: not told twice. A matching one clears the flag.
  ws = await reconnect(fake, ws);
  ws.receive(helloResult({ b: { epoch: "B", offset: 0, recovered: true, was_recovering: true } }, { schema: "bbbb" }));
  await flush();
  assert.equal(fromMethod.length, 1);
  ws = await reconnect(fake, ws);
  ws.receive(helloResult({ b: { epoch: "B", offset: 0, recovered: true, was_recovering: true } }, { schema: "aaaa" }));
  await flush();
  assert.equal(client.session!.schemaMismatch, false);
  assert.equal(fromMethod.length, 1);
  client.disconnect();

  // The same hash, or a server without one: no callback.
  for (const schema of ["aaaa", null]) {
    const other = setup({ schemaHash: "aaaa", onSchemaMismatch: () => assert.fail("no mismatch") });
    const s = other.fake.last();
    s.open();
    s.receive(helloResult({ b: { epoch: "B", offset: 0 } }, { schema }));
    await flush();
    assert.equal(other.client.session!.schemaMismatch, false);
    other.client.disconnect();
  }
});

test("groups: position frames answer a (re-)join; not recovered or resync frames are reported", async () => {
  const { client, fake, resyncs } = setup({ auth: "alice" });
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 0 }, b: { epoch: "B", offset: 0 } }));
  // A first join: a fresh position, nothing to report.
  ws.receive({ type: "position", stream: "g:room", epoch: "G", offset: 3, recovered: false, was_recovering: false, replayed: 0 });
  ws.receive(ev("r4", "g:room", "G", 4));
  assert.deepEqual(resyncs, []);

  ws = await reconnect(fake, ws);
  assert.deepEqual(ws.sent[0]!.resume, { u: ["E", 0], b: ["B", 0], "g:room": ["G", 4] });
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 0, recovered: true, was_recovering: true },
      b: { epoch: "B", offset: 0, recovered: true, was_recovering: true },
    }),
  );
  // The app re-joins: replayed events of the group, then its position.
  ws.receive(ev("r5", "g:room", "G", 5));
  ws.receive({ type: "position", stream: "g:room", epoch: "G", offset: 5, recovered: true, was_recovering: true, replayed: 1 });
  ws.receive(ev("r5", "g:room", "G", 5));
  assert.deepEqual(got, ["r4", "r5"]);
  assert.deepEqual(resyncs, []);
  assert.equal(client.session!.streams["g:room"]!.replayed, 1);

  // Another group whose history is gone, then a resync frame for b.
  ws.receive({ type: "position", stream: "g:lobby", epoch: "L2", offset: 9, recovered: false, was_recovering: true, replayed: 0, reason: "epoch" });
  ws.receive({ type: "resync", stream: "b", epoch: "B", offset: 40, reason: "gap" });
  assert.deepEqual(resyncs, [
    { stream: "g:lobby", reason: "epoch", epoch: "L2", offset: 9, source: "position" },
    { stream: "b", reason: "gap", epoch: "B", offset: 40, source: "resync" },
  ]);
  assert.equal(client.session!.streams.b!.offset, 40);
  assert.equal(client.session!.recovered, false);
  client.disconnect();
});

test("the connection closes before the hello is answered: ready() fails, the client reconnects", async () => {
  const { client, fake } = setup();
  const ws = fake.last();
  ws.open();
  const ready = client.ready();
  const failed = assert.rejects(ready, (e: unknown) => e instanceof EphapticError && e.code === "CONNECT_FAILED");
  ws.drop(1001, "server shutting down");
  await failed;
  assert.equal(client.state, "reconnecting");
  await until(() => fake.sockets.length === 2, "the reconnect");
  const next = fake.last();
  next.open();
  next.receive(helloResult({ b: { epoch: "B", offset: 0 } }));
  await client.ready();
  assert.equal(client.state, "connected");
  client.disconnect();
});

test("a hello never answered: after connectTimeout the connection goes on without sessions, with a warning", async () => {
  const { client, fake, log } = setup({ connectTimeout: 30 });
  const ws = fake.last();
  ws.open();
  await client.ready();
  assert.equal(client.state, "connected");
  assert.equal(client.session?.legacy, true);
  assert.match(log.warnings.join("\n"), /did not answer the session hello/);
  // A late answer changes nothing.
  ws.receive(helloResult({ b: { epoch: "B", offset: 0 } }));
  assert.equal(client.session?.legacy, true);
  client.disconnect();
});

test("another identity after a reconnect: its u stream is another one, reported lost", async () => {
  const tokens = ["alice", "bob"];
  const { client, fake, resyncs } = setup({ auth: () => tokens.shift() });
  await until(() => fake.sockets.length === 1, "the socket (after the auth function)");
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 7 }, b: { epoch: "B", offset: 0 } }));
  ws = await (async () => {
    ws.drop(1006);
    await until(() => fake.sockets.length === 2 && fake.last().onopen !== null, "a reconnect");
    const s = fake.last();
    s.open();
    return s;
  })();
  ws.receive(
    helloResult(
      {
        u: { epoch: "E", offset: 12, recovered: true, was_recovering: true },
        b: { epoch: "B", offset: 0, recovered: true, was_recovering: true },
      },
      { identity: "bob" },
    ),
  );
  await flush();
  assert.equal(client.identity, "bob");
  assert.deepEqual(resyncs, [{ stream: "u", reason: "identity", epoch: "E", offset: 12, source: "hello" }]);
  client.disconnect();
});

test("a listener of onResync that throws is reported and does not stop the others", async () => {
  const errors: unknown[] = [];
  const { client, fake, resyncs } = setup({ onError: (e, ctx) => void errors.push([e, ctx]) });
  client.onResync(() => {
    throw new Error("boom");
  });
  let ws = fake.last();
  ws.open();
  ws.receive(NOT_FOUND);
  ws = await reconnect(fake, ws);
  ws.receive(NOT_FOUND);
  await flush();
  assert.equal(resyncs.length, 1);
  assert.equal(errors.length, 1);
  assert.deepEqual((errors[0] as unknown[])[1], { kind: "resync-listener", stream: "*" });
  client.disconnect();
});

test("Positions: at most 64 sent, u and b first, then the groups moved last", () => {
  const p = new Positions();
  p.accept("u", "E", 1);
  for (let i = 0; i < 100; i++) p.accept(`g:${i}`, "G", 1);
  p.accept("b", "B", 1);
  const resume = p.resume()!;
  const names = Object.keys(resume);
  assert.equal(names.length, MAX_RESUME);
  assert.deepEqual(names.slice(0, 3), ["u", "b", "g:99"]);
  assert.ok(!names.includes("g:0"));
  // moveTo keeps the furthest in one epoch, replaces across epochs.
  p.moveTo("u", "E", 0);
  assert.deepEqual(p.get("u"), { epoch: "E", offset: 1 });
  p.moveTo("u", "F", 0);
  assert.deepEqual(p.get("u"), { epoch: "F", offset: 0 });
  assert.equal(p.accept("u", "F", 0), false);
  assert.equal(p.accept("u", "F", 1), true);
});

test("a position sent but not looked at (recovered without was_recovering) counts as lost: ignored", async () => {
  const { client, fake, resyncs } = setup({ auth: "alice" });
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 3 }, b: { epoch: "B", offset: 0 } }));
  ws = await reconnect(fake, ws);
  ws.receive(
    helloResult({
      u: { epoch: "E2", offset: 0, recovered: true, was_recovering: false },
      b: { epoch: "B", offset: 0, recovered: true, was_recovering: true },
    }),
  );
  await flush();
  assert.deepEqual(resyncs, [{ stream: "u", reason: "ignored", epoch: "E2", offset: 0, source: "hello" }]);
  assert.equal(client.session!.streams.u!.recovered, false);
  client.disconnect();
});

test("events before the hello's answer wait for it, then come per stream in seq order, without copies or old ones", async () => {
  const { client, fake } = setup({ auth: "alice" });
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 0 }, b: { epoch: "B", offset: 9 } }));

  ws = await reconnect(fake, ws);
  // Live broadcasts can precede the replay; an unpositioned event is not held.
  ws.receive(ev("b12", "b", "B", 12));
  ws.receive(ev("mine"));
  ws.receive(ev("b13", "b", "B", 13));
  ws.receive(ev("b9 old", "b", "B", 9));
  ws.receive(ev("b10", "b", "B", 10));
  ws.receive(ev("u1", "u", "E", 1));
  ws.receive(ev("b11", "b", "B", 11));
  ws.receive(ev("b12", "b", "B", 12));
  assert.deepEqual(got, ["mine"], "positioned events wait for the answer");
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 1, recovered: true, was_recovering: true, replayed: 1 },
      b: { epoch: "B", offset: 13, recovered: true, was_recovering: true, replayed: 3 },
    }),
  );
  // Each stream's events in seq order, in the places its events arrived in (u1 came 5th of 7).
  assert.deepEqual(got, ["mine", "b10", "b11", "b12", "u1", "b13"]);
  assert.equal(client.state, "connected");

  // Closed before the answer: what waited is dropped and the position stays, so the next
  // resume asks for it again.
  ws = await reconnect(fake, ws);
  ws.receive(ev("b14", "b", "B", 14));
  ws = await reconnect(fake, ws);
  assert.deepEqual((ws.sent[0]!.resume as Record<string, unknown>).b, ["B", 13]);
  ws.receive(ev("b14", "b", "B", 14));
  ws.receive(helloResult({ u: { epoch: "E", offset: 1, recovered: true, was_recovering: true }, b: { epoch: "B", offset: 14, recovered: true, was_recovering: true, replayed: 1 } }));
  assert.deepEqual(got.slice(-1), ["b14"]);
  assert.equal(got.filter((m) => m === "b14").length, 1);
  client.disconnect();
});

test("a server with sessions off (hello resume: false, no streams): every reconnect counts as lost, reason disabled", async () => {
  const { client, fake, resyncs } = setup({ auth: "alice" });
  const invalidated: unknown[] = [];
  client.invalidateOn("Notice", { invalidateQueries: ({ queryKey }) => void invalidated.push(queryKey) }, [["n"]]);
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({}, { resume: false }));
  assert.equal(client.session?.legacy, false);
  assert.equal(client.session?.resume, false);
  assert.deepEqual(resyncs, []);
  ws = await reconnect(fake, ws);
  ws.receive(helloResult({}, { resume: false }));
  await flush();
  assert.deepEqual(resyncs, [{ stream: "*", reason: "disabled", source: "hello" }]);
  assert.deepEqual(invalidated, [["n"]]);
  client.disconnect();
});

test("a group joined by a call sent before the hello's answer: its position frame waits with its events", async () => {
  const { client, fake, resyncs } = setup({ auth: "alice" });
  const got: string[] = [];
  client.on("Notice", (d) => void got.push((d as { message: string }).message));
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 0 }, b: { epoch: "B", offset: 0 } }));
  ws.receive({ type: "position", stream: "g:r", epoch: "G", offset: 2, recovered: false, was_recovering: false, replayed: 0 });
  ws = await reconnect(fake, ws);
  // The join went out with the queued calls; the replay of g:r and its position come first.
  ws.receive(ev("r3", "g:r", "G", 3));
  ws.receive(ev("r4", "g:r", "G", 4));
  ws.receive({ type: "position", stream: "g:r", epoch: "G", offset: 4, recovered: true, was_recovering: true, replayed: 2 });
  ws.receive(ev("r5", "g:r", "G", 5));
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 0, recovered: true, was_recovering: true },
      b: { epoch: "B", offset: 0, recovered: true, was_recovering: true },
    }),
  );
  assert.deepEqual(got, ["r3", "r4", "r5"]);
  assert.deepEqual(resyncs, []);
  assert.equal(client.session!.streams["g:r"]!.offset, 5);
  assert.equal(client.session!.streams["g:r"]!.replayed, 2);
  client.disconnect();
});

test("a lost stream nothing was ever seen on invalidates every registration (nothing rules an event out)", async () => {
  const { client, fake } = setup({ auth: "alice" });
  const invalidated: unknown[] = [];
  const qc = { invalidateQueries: ({ queryKey }: { queryKey: readonly unknown[] }) => void invalidated.push(queryKey) };
  client.invalidateOn("Notice", qc, [["inbox"]]);
  client.invalidateOn("todoCreated", qc, [["todos"]]);
  let ws = fake.last();
  ws.open();
  ws.receive(helloResult({ u: { epoch: "E", offset: 0 }, b: { epoch: "B", offset: 0 } }));
  ws.receive(ev("u1", "u", "E", 1));
  ws.receive(ev("t1", "u", "E", 2, "todoCreated"));
  invalidated.length = 0;
  ws = await reconnect(fake, ws);
  ws.receive(
    helloResult({
      u: { epoch: "E", offset: 2, recovered: true, was_recovering: true },
      b: { epoch: "B2", offset: 5, recovered: false, was_recovering: true, reason: "epoch" },
    }),
  );
  await flush();
  assert.deepEqual(invalidated.sort(), [["inbox"], ["todos"]]);
  client.disconnect();
});

test("a listener that disconnects while held events are handed over: the client stays closed", async () => {
  const { client, fake } = setup({ auth: "alice" });
  client.on("Notice", () => client.disconnect());
  const ws = fake.last();
  ws.open();
  ws.receive(ev("u1", "u", "E", 1));
  ws.receive(helloResult({ u: { epoch: "E", offset: 1 }, b: { epoch: "B", offset: 0 } }));
  assert.equal(client.state, "closed");
  await assert.rejects(client.ready(), (e: unknown) => e instanceof EphapticError && e.code === "DISCONNECTED");
});
