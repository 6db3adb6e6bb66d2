// Calls that take effect once (PROTOCOL.md 5.12) against the real server: a connection cut after
// an idempotent call ran but before its answer reached the client. The client reconnects by
// itself, sends the call again with its key, and gets the first run's answer: one todo, announced
// once. Other calls cut mid-flight say they may have run; the outbox waits out failed attempts.
//
// A TCP proxy (helpers/proxy.ts) stands between the client and parity: `stall()` keeps the
// server's answer from reaching the client, `cut()` then drops the connection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { isEphapticError } from "../../dist/index.js";
import { parityClient, parityFixture, sleep, until, type ParityClient } from "../helpers/parity.js";

// parity's schema.ts: `export const ephapticIdempotent = ["create_todo"] as const;` (the runtime
// tests use the untyped client, so the list is spelt here; test/types.test-d.ts checks the real one).
const ephapticIdempotent = ["create_todo"] as const;
const FAST = { baseMs: 50, capMs: 200, maxPerMinute: 1000 };

interface Todo {
  id: number;
  title: string;
  done: boolean;
}

const parity = parityFixture({ proxy: true });

function client(url: string, options: Parameters<typeof parityClient>[1] = {}): ParityClient {
  const c = parityClient(url, { reconnect: FAST, idempotent: ephapticIdempotent, ...options });
  parity.track(c);
  return c;
}

/** A client straight to the server that records every `todoCreated`. */
async function todoListener(): Promise<{ todos: Todo[]; client: ParityClient }> {
  const c = client(parity.server.url, { auth: "listener" });
  const todos: Todo[] = [];
  c.on("todoCreated", (t) => void todos.push(t as Todo));
  await c.ready();
  return { todos, client: c };
}

/**
 * Waits until the listener has seen everything announced so far: a `shout` it sends after comes
 * back to it after them (its frames arrive in order), then a little longer for good measure.
 */
async function settle(listener: { client: ParityClient }, tag: string): Promise<void> {
  let back = false;
  const stop = listener.client.on("Notice", (n) => {
    if ((n as { message: string }).message === tag) back = true;
  });
  await listener.client.shout(tag);
  await until(() => back, `the barrier ${tag}`);
  stop();
  await sleep(300);
}

test("an idempotent call whose answer was lost to a cut is sent again after the reconnect: one todo, announced once, resolved once", async () => {
  const listener = await todoListener();
  const sentKeys: unknown[] = [];
  const states: string[] = [];
  const proxied = client(parity.proxy.url, {
    auth: "idem-user",
    trace: (direction, frame) => {
      if (direction === "out" && frame.type === "rpc" && frame.name === "create_todo") sentKeys.push(frame.key);
    },
  });
  proxied.onStateChange((s) => void states.push(s));
  await proxied.ready();
  const accepted = parity.proxy.accepted;

  // The server's answer never gets through; the call runs there (the listener sees its channel).
  parity.proxy.stall();
  let settledTimes = 0;
  const call = proxied.create_todo("x").finally(() => void settledTimes++) as Promise<Todo>;
  await until(() => listener.todos.length === 1, "the todo created on the server");
  assert.equal(settledTimes, 0, "the answer has not reached the client");
  parity.proxy.cut();

  const todo = await call;
  assert.equal(todo.title, "x");
  assert.deepEqual(todo, listener.todos[0], "the answer of the run the listener saw");
  assert.ok(parity.proxy.accepted > accepted, "it came over a new connection");
  assert.ok(states.includes("reconnecting"), "the client reconnected by itself");
  assert.equal(sentKeys.length, 2, "sent twice: before the cut and after the reconnect");
  assert.equal(sentKeys[0], sentKeys[1], "with the same key");
  assert.match(String(sentKeys[0]), /^[0-9a-f-]{36}$/);

  await settle(listener, "after the retry");
  assert.equal(listener.todos.length, 1, "announced once: the retry did not run it again");
  assert.equal(settledTimes, 1);

  // The same call again, made anew (a new key): a new todo.
  const second = (await proxied.create_todo("x")) as Todo;
  assert.notEqual(second.id, todo.id);
  assert.equal(sentKeys.length, 3);
  assert.notEqual(sentKeys[2], sentKeys[0]);
  await until(() => listener.todos.length === 2, "the second todo announced");
  assert.deepEqual(listener.todos[1], second);
});

test("a non-idempotent call cut mid-flight rejects DISCONNECTED with mayHaveRun: true; the client carries on", async () => {
  let sent = false;
  const proxied = client(parity.proxy.url, {
    trace: (direction, frame) => {
      if (direction === "out" && frame.type === "rpc" && frame.name === "sleepy") sent = true;
    },
  });
  await proxied.ready();
  const call = proxied.sleepy(500);
  const fails = assert.rejects(call, (e: unknown) => {
    assert.ok(isEphapticError(e, "DISCONNECTED"), String(e));
    assert.equal(e.data.mayHaveRun, true);
    assert.equal(e.data.idempotencyKey, undefined);
    assert.match(e.message, /may or may not have run on the server/);
    return true;
  });
  await until(() => sent, "sleepy sent");
  parity.proxy.cut();
  await fails;
  assert.equal(await proxied.add(2, 3), 5, "it reconnected");
});

test("outbox: a call made while the server is unreachable waits out the failed attempts and is answered once it is back", async () => {
  const proxied = client(parity.proxy.url, { outbox: true });
  await proxied.ready();
  const before = parity.proxy.accepted;
  parity.proxy.hold();
  parity.proxy.cut();
  try {
    await until(() => proxied.state === "reconnecting", "the client to see the cut");
    const call = proxied.add(20, 22);
    // ready() rejects when the attempt under way fails.
    for (let i = 0; i < 2; i++) {
      await assert.rejects(proxied.ready(), (e: unknown) => isEphapticError(e, "CONNECT_FAILED"));
    }
    parity.proxy.release();
    assert.equal(await call, 42);
    assert.ok(parity.proxy.accepted > before);
  } finally {
    parity.proxy.release();
  }
});
