// Sessions against the real server (PROTOCOL.md 5.6): a connection cut under a burst of events
// resumes with every event once and in order; history overflow and expiry report "not
// recovered" and invalidate the queries of that stream; a group re-joined replays through its
// position frame; a draining server's 1001 is followed by a reconnect to its successor.
//
// A TCP proxy (helpers/proxy.ts) stands between the client and parity, so the test can cut the
// connection without a clean close, and keep the client away until the events went out.
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { decode, encode } from "@msgpack/msgpack";
import { WebSocket } from "ws";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { EphapticError, type QueryClientLike, type Resync, type StateChange } from "../../dist/index.js";
import { parityClient, REPO_ROOT, startParity, until, sleep, type Parity, type ParityClient } from "../helpers/parity.js";
import { startProxy, type Proxy } from "../helpers/proxy.js";

const FAST = { baseMs: 50, capMs: 200, maxPerMinute: 1000 };
const BOUND = { timeout: 60_000 };

/**
 * Parity with `args`, or undefined (the test skipped, saying why) while the server side is not
 * there yet: a flag parity does not know, or a hello answered NOT_FOUND.
 */
async function sessionParity(
  t: TestContext,
  args: readonly string[] = [],
  { probeResume = true } = {},
): Promise<Parity | undefined> {
  let server: Parity;
  try {
    server = await startParity(0, args);
  } catch (error) {
    if (/unknown argument/.test(String(error))) {
      t.skip(`TODO: parity does not take ${args.join(" ")} yet (the lead adds the flags)`);
      return undefined;
    }
    throw error;
  }
  const probe = parityClient(server.url, { auth: "probe" });
  try {
    await probe.ready();
    if (probe.session?.legacy !== false) {
      t.skip("TODO: this parity answers the hello NOT_FOUND (the server side of sessions is not merged yet)");
      await server.stop();
      return undefined;
    }
  } finally {
    probe.disconnect();
  }
  if (probeResume) await assertHonoursResume(server);
  return server;
}

/** Fails, saying where, when a parity with sessions ignores `init.resume`. */
async function assertHonoursResume(server: Parity): Promise<void> {
  if (!(await honoursResume(server.url))) {
    await server.stop();
    assert.fail(
      "this parity answers the hello but ignores init.resume (positions sent by hand, raw frames, come back " +
        "was_recovering: false): a server bug, not the client's (926bc6f had one: the resume map read at too " +
        "small a msgpack depth, fixed in 35b2161).",
    );
  }
}

/** Raw frames, no client: does a hello after `init.resume` replay what the position missed? */
async function honoursResume(url: string): Promise<boolean> {
  const session = (frames: Record<string, unknown>[], until: (f: Record<string, unknown>) => boolean) =>
    new Promise<{ ws: WebSocket; got: Record<string, unknown>[] }>((resolve, reject) => {
      const ws = new WebSocket(url);
      const got: Record<string, unknown>[] = [];
      const timer = setTimeout(() => reject(new Error("the resume probe got no answer")), 5000);
      ws.on("open", () => frames.forEach((f) => ws.send(encode(f))));
      ws.on("error", reject);
      ws.on("message", (data: Buffer) => {
        const f = decode(data) as Record<string, unknown>;
        got.push(f);
        if (until(f)) {
          clearTimeout(timer);
          resolve({ ws, got });
        }
      });
    });
  const hello = { type: "rpc", id: 0, name: "__ephaptic.hello", args: [] };
  const who = `resume-probe-${Math.random().toString(36).slice(2)}`;
  const first = await session(
    [{ type: "init", auth: who, v: 2 }, hello, { type: "rpc", id: 1, name: "notify", args: [who, "x"] }],
    (f) => f.type === "event",
  );
  first.ws.terminate();
  const answer = first.got.find((f) => f.id === 0) as { result: { streams: { u: { epoch: string } } } } | undefined;
  const epoch = answer?.result.streams.u.epoch ?? (first.got.find((f) => f.type === "event")?.epoch as string);
  const second = await session([{ type: "init", auth: who, v: 2, resume: { u: [epoch, 0] } }, hello], (f) => f.id === 0);
  second.ws.terminate();
  const result = second.got.find((f) => f.id === 0)?.result as { streams?: { u?: { was_recovering?: boolean } } } | undefined;
  return result?.streams?.u?.was_recovering === true;
}

interface Recorder {
  client: ParityClient;
  /** The messages of `Notice`s of `level` received, in order. */
  messages: string[];
  resyncs: Resync[];
  changes: StateChange[];
}

function recorder(url: string, auth: string, level: number, extra: Parameters<typeof parityClient>[1] = {}): Recorder {
  const client = parityClient(url, { auth, reconnect: FAST, ...extra });
  const r: Recorder = { client, messages: [], resyncs: [], changes: [] };
  client.on("Notice", (d) => {
    const n = d as { message: string; level: number };
    if (n.level === level) r.messages.push(n.message);
  });
  client.onResync((x) => void r.resyncs.push(x));
  client.onStateChange((_s, c) => void r.changes.push(c));
  return r;
}

const range = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => String(from + i));

/** A QueryClientLike that records what it was asked to invalidate. */
function recordingQueryClient(): QueryClientLike & { keys: unknown[][] } {
  const keys: unknown[][] = [];
  return { keys, invalidateQueries: ({ queryKey }) => void keys.push([...queryKey]) };
}

/** Cuts the proxied connections and keeps the client away; resolves once it knows it is away. */
async function cutAndHold(proxy: Proxy, who: Recorder): Promise<void> {
  proxy.hold();
  proxy.cut();
  await until(() => who.client.state === "reconnecting", "the proxied client to see the cut");
}

/** Lets the client back in and waits for its session to be re-established. */
async function releaseAndWait(proxy: Proxy, who: Recorder): Promise<void> {
  const before = proxy.accepted;
  proxy.release();
  await until(() => who.client.state === "connected" && proxy.accepted > before, "the reconnect through the proxy", 20_000);
}

test("a connection cut under 500 events resumes with all of them, in order, once, before later ones; the other tab saw each once", BOUND, async (t) => {
  const server = await sessionParity(t, ["--history-size", "1024"]);
  if (!server) return;
  const proxy = await startProxy(server.port);
  const tab1 = recorder(proxy.url, "alice", 3);
  const tab2 = recorder(server.url, "alice", 3);
  const sender = parityClient(server.url, { auth: "sender" });
  try {
    await Promise.all([tab1.client.ready(), tab2.client.ready(), sender.ready()]);
    assert.equal(tab1.client.identity, "alice");
    assert.equal(tab1.client.session?.legacy, false);

    await cutAndHold(proxy, tab1);
    assert.equal(await sender.burst_to("alice", 0, 500), 500);
    await until(() => tab2.messages.length === 500, "the other tab's 500");
    await releaseAndWait(proxy, tab1);
    // Replayed events arrive before the hello's answer, so they are all in already.
    assert.deepEqual(tab1.messages, range(0, 500));

    assert.equal(await sender.burst_to("alice", 500, 10), 10);
    await until(() => tab1.messages.length >= 510 && tab2.messages.length >= 510, "the 10 later events");
    await sleep(50); // room for a stray duplicate to show
    assert.deepEqual(tab1.messages, range(0, 510), "every event once, in order, the replayed before the later");
    assert.deepEqual(tab2.messages, range(0, 510), "the other tab saw each once");
    assert.deepEqual(tab1.resyncs, []);
    const u = tab1.client.session!.streams.u!;
    assert.equal(u.recovered, true);
    assert.equal(u.replayed, 500);
    const reconnected = tab1.changes.at(-1)!;
    assert.equal(reconnected.previous, "reconnecting");
    assert.equal(reconnected.session?.recovered, true);
  } finally {
    for (const c of [tab1.client, tab2.client, sender]) c.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test("history overflow: not recovered, onResync says trimmed, the stream's queries are invalidated; a recovered reconnect invalidates nothing", BOUND, async (t) => {
  const server = await sessionParity(t, ["--history-size", "50"]);
  if (!server) return;
  const proxy = await startProxy(server.port);
  const alice = recorder(proxy.url, "alice", 3);
  const sender = parityClient(server.url, { auth: "sender" });
  const qc = recordingQueryClient();
  alice.client.invalidateOn("Notice", qc, [["inbox"]]);
  alice.client.invalidateOn("todoCreated", qc, [["todos"]]);
  try {
    await Promise.all([alice.client.ready(), sender.ready()]);
    // Seen once each: Notice on u, todoCreated on b.
    await sender.burst_to("alice", 0, 1);
    await sender.create_todo("t");
    await until(() => alice.messages.length === 1 && qc.keys.length === 2, "the first events");

    // Away while nothing happens: recovered, nothing invalidated, nothing reported.
    qc.keys.length = 0;
    await cutAndHold(proxy, alice);
    await releaseAndWait(proxy, alice);
    await sleep(50);
    assert.deepEqual(qc.keys, []);
    assert.equal(alice.resyncs.length, 0, "nothing reported");
    assert.equal(alice.client.session?.recovered, true);

    // Away while 200 events go to alice, more than the 50 kept.
    await cutAndHold(proxy, alice);
    assert.equal(await sender.burst_to("alice", 1, 200), 200);
    await releaseAndWait(proxy, alice);
    await until(() => alice.resyncs.length > 0, "onResync");
    assert.deepEqual(
      alice.resyncs.map((r) => [r.stream, r.reason, r.source]),
      [["u", "trimmed", "hello"]],
    );
    assert.deepEqual(qc.keys, [["inbox"]], "the queries Notice feeds; not todoCreated's (b was recovered)");
    assert.deepEqual(alice.messages, ["0"], "nothing replayed when the stream is not recovered");
    assert.equal(alice.client.session?.recovered, false);
    assert.equal(alice.client.session?.streams.u?.reason, "trimmed");

    // It goes on from the server's position: the next event arrives.
    await sender.burst_to("alice", 201, 1);
    await until(() => alice.messages.length === 2, "the next event");
    assert.deepEqual(alice.messages, ["0", "201"]);
  } finally {
    alice.client.disconnect();
    sender.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test("history expiry: events older than the time to live are not recovered (expired)", BOUND, async (t) => {
  const server = await sessionParity(t, ["--history-ttl-ms", "200"]);
  if (!server) return;
  const proxy = await startProxy(server.port);
  const alice = recorder(proxy.url, "alice", 3);
  const sender = parityClient(server.url, { auth: "sender" });
  const qc = recordingQueryClient();
  alice.client.invalidateOn("Notice", qc, [["inbox"]]);
  try {
    await Promise.all([alice.client.ready(), sender.ready()]);
    await cutAndHold(proxy, alice);
    await sender.burst_to("alice", 0, 5);
    await sleep(600); // past the time to live (a wait, not an assertion on time)
    await releaseAndWait(proxy, alice);
    await until(() => alice.resyncs.length > 0, "onResync");
    assert.deepEqual(
      alice.resyncs.map((r) => [r.stream, r.reason]),
      [["u", "expired"]],
    );
    assert.deepEqual(qc.keys, [["inbox"]], "Notice's queries (never seen with a position: may be on any stream)");
    assert.deepEqual(alice.messages, []);
  } finally {
    alice.client.disconnect();
    sender.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test("a group re-joined after a cut replays what was said meanwhile, through its position frame", BOUND, async (t) => {
  const server = await sessionParity(t);
  if (!server) return;
  const proxy = await startProxy(server.port);
  const alice = recorder(proxy.url, "alice", 4);
  const sender = parityClient(server.url, { auth: "sender" });
  try {
    await Promise.all([alice.client.ready(), sender.ready()]);
    assert.equal(await alice.client.enter_room("r1"), true);
    await until(() => alice.client.session?.streams["g:r1"] !== undefined, "the group's position frame");
    assert.equal(await sender.room_say("r1", "before"), 1);
    await until(() => alice.messages.length === 1, "the first room event");

    await cutAndHold(proxy, alice);
    for (const m of ["a", "b", "c"]) await sender.room_say("r1", m);
    await releaseAndWait(proxy, alice);
    // The app re-joins its groups after a reconnect (joins are the application's, not the session's).
    await alice.client.enter_room("r1");
    await until(() => alice.client.session?.streams["g:r1"]?.replayed === 3, "the re-join's position frame");
    assert.deepEqual(alice.messages, ["before", "a", "b", "c"]);
    assert.deepEqual(alice.resyncs, []);
    assert.equal(alice.client.session?.streams["g:r1"]?.recovered, true);

    await sender.room_say("r1", "after");
    await until(() => alice.messages.length === 5, "a live room event");
    assert.deepEqual(alice.messages, ["before", "a", "b", "c", "after"]);
  } finally {
    alice.client.disconnect();
    sender.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test("a draining server (SIGTERM): calls in flight finish or fail SHUTTING_DOWN, 1001, the client reconnects to the next server and reports what it lost", BOUND, async () => {
  // Runs against a parity with or without sessions: without, the loss is the legacy "*".
  let server = await startParity();
  const port = server.port;
  const alice = recorder(server.url, "alice", 1); // notify's level
  const qc = recordingQueryClient();
  alice.client.invalidateOn("Notice", qc, [["inbox"]]);
  try {
    await alice.client.ready();
    if (alice.client.session?.legacy === false) await assertHonoursResume(server);
    await alice.client.notify("alice", "hi"); // a position on u
    await until(() => alice.messages.length === 1, "the first notice");
    qc.keys.length = 0;
    const inflight = alice.client.sleepy(300).then(
      (v) => v,
      (e: unknown) => e,
    );
    await sleep(50); // let the call reach the server before the signal
    await server.stop("SIGTERM");
    const outcome = await inflight;
    if (outcome instanceof EphapticError) assert.equal(outcome.code, "SHUTTING_DOWN", outcome.message);
    else assert.equal(outcome, 300);
    await until(() => alice.client.state === "reconnecting", "the drop");
    assert.ok(alice.changes.some((c) => c.code === 1001), "closed with 1001 going away");

    server = await startParity(port);
    await until(() => alice.client.state === "connected", "the reconnect to the new server", 20_000);
    if (alice.client.session?.legacy) {
      assert.deepEqual(alice.resyncs.map((r) => [r.stream, r.reason]), [["*", "legacy"]]);
    } else {
      // In-memory history: the new server's streams are new epochs, so nothing is recovered.
      await until(() => alice.resyncs.length >= 2, "onResync for u and b");
      assert.deepEqual(alice.resyncs.map((r) => [r.stream, r.reason]).sort(), [
        ["b", "epoch"],
        ["u", "epoch"],
      ]);
    }
    assert.deepEqual(qc.keys, [["inbox"]], "invalidated once for the reconnect, however many streams were lost");
    assert.equal(await alice.client.add(1, 2), 3, "the client keeps working");
    await alice.client.notify("alice", "again");
    await until(() => alice.messages.length === 2, "a notice on the new server");
    assert.deepEqual(alice.messages, ["hi", "again"]);
  } finally {
    alice.client.disconnect();
    await server.stop();
  }
});

test("a server with sessions off (--no-resume): the hello says so, and a reconnect reports everything lost", BOUND, async (t) => {
  const server = await sessionParity(t, ["--no-resume"], { probeResume: false });
  if (!server) return;
  const proxy = await startProxy(server.port);
  const alice = recorder(proxy.url, "alice", 1);
  const qc = recordingQueryClient();
  alice.client.invalidateOn("Notice", qc, [["inbox"]]);
  try {
    await alice.client.ready();
    assert.equal(alice.client.session?.resume, false);
    assert.equal(alice.client.identity, "alice");
    await cutAndHold(proxy, alice);
    await releaseAndWait(proxy, alice);
    assert.deepEqual(alice.resyncs.map((r) => [r.stream, r.reason]), [["*", "disabled"]]);
    assert.deepEqual(qc.keys, [["inbox"]]);
    assert.equal(await alice.client.notify("alice", "x"), 1);
    await until(() => alice.messages.length === 1, "an event without a position");
  } finally {
    alice.client.disconnect();
    await proxy.close();
    await server.stop();
  }
});

test("schema skew against the real server: its hello carries the hash of its generated schema.ts; another hash is reported", BOUND, async (t) => {
  const server = await sessionParity(t, [], { probeResume: false });
  if (!server) return;
  // examples/parity/schema.ts lies outside this package's compilation root: read its constant.
  const schemaTs = readFileSync(resolve(REPO_ROOT, "examples/parity/schema.ts"), "utf8");
  const hash = /export const ephapticSchemaHash = "([0-9a-f]+)";/.exec(schemaTs)?.[1];
  assert.ok(hash, "examples/parity/schema.ts exports ephapticSchemaHash");
  const mismatches: Array<[string, string]> = [];
  const fresh = parityClient(server.url, { schemaHash: hash, onSchemaMismatch: (m) => void mismatches.push([m.expected, m.actual]) });
  const stale = parityClient(server.url, { schemaHash: "0000000000000000", onSchemaMismatch: (m) => void mismatches.push([m.expected, m.actual]) });
  try {
    await Promise.all([fresh.ready(), stale.ready()]);
    assert.equal(fresh.session?.schema, hash, "the server's hash is its schema.ts's (regenerate it if not)");
    assert.equal(fresh.session?.schemaMismatch, false);
    assert.equal(stale.session?.schemaMismatch, true);
    assert.deepEqual(mismatches, [["0000000000000000", hash]]);
    assert.equal(await stale.add(1, 2), 3, "a mismatch only reports; the client works on");
  } finally {
    fresh.disconnect();
    stale.disconnect();
    await server.stop();
  }
});
