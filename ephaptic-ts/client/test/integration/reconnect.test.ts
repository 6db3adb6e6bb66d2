// Connection life: a server restart on the same port, and disconnect().
import assert from "node:assert/strict";
import { test } from "node:test";
import { EphapticError, type ConnectionState } from "../../dist/index.js";
import { parityClient, sleep, startParity, until } from "../helpers/parity.js";

const isCode = (expected: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, expected, e.message);
  return true;
};

test("the server restarts: pending calls fail with DISCONNECTED, the client reconnects with fresh auth, listeners stay", async () => {
  let server = await startParity();
  const port = server.port;
  let tokens = 0;
  const states: ConnectionState[] = [];
  const client = parityClient(server.url, {
    auth: async () => `tok-${++tokens}`,
    reconnect: { baseMs: 200 },
  });
  try {
    client.onStateChange((s) => void states.push(s));
    const notices: unknown[] = [];
    client.on("Notice", (d) => void notices.push(d));

    assert.equal(await client.whoami(), "tok-1");
    const pending = client.sleepy(10_000);
    const ticker = (await client.ticker(20)) as AsyncIterableIterator<number>;
    assert.deepEqual(await ticker.next(), { value: 0, done: false });

    const pendingFails = assert.rejects(pending, isCode("DISCONNECTED"));
    await server.stop("SIGKILL");
    await pendingFails;
    await assert.rejects(
      (async () => {
        for (;;) if ((await ticker.next()).done) return;
      })(),
      isCode("DISCONNECTED"),
    );
    await until(() => client.state === "reconnecting", "state reconnecting");

    await sleep(300); // let an attempt or two fail against the stopped server
    server = await startParity(port);
    await until(() => client.state === "connected", "the reconnect", 10_000);

    const who = await client.whoami();
    assert.match(String(who), /^tok-\d+$/);
    assert.notEqual(who, "tok-1", "the auth function ran again for the new connection");
    assert.equal(await client.add(20, 22), 42);
    await client.shout("after restart");
    await until(() => notices.length > 0, "the Notice after the restart");
    assert.deepEqual(notices, [{ message: "after restart", level: 2 }]);
    // (the listener was added after connect() had already moved to "connecting")
    assert.equal(states[0], "connected");
    assert.ok(states.includes("reconnecting"));
    assert.equal(states.at(-1), "connected");
  } finally {
    client.disconnect();
    await server.stop();
  }
});

test("disconnect(): state closed, pending calls DISCONNECTED, later calls too, and no reconnect", async () => {
  const server = await startParity();
  const client = parityClient(server.url);
  try {
    const states: ConnectionState[] = [];
    client.onStateChange((s) => void states.push(s));
    assert.equal(await client.add(1, 2), 3);
    const pending = client.sleepy(5000);
    const stream = (await client.ticker(20)) as AsyncIterableIterator<number>;
    const pendingFails = assert.rejects(pending, isCode("DISCONNECTED"));
    client.disconnect();
    assert.equal(client.state, "closed");
    await pendingFails;
    await assert.rejects(stream.next(), isCode("DISCONNECTED"));
    await assert.rejects(client.add(1, 2), isCode("DISCONNECTED"));
    await sleep(700);
    assert.deepEqual(states, ["connected", "closed"]);

    // The server is fine, and a new client works.
    const again = parityClient(server.url);
    assert.equal(await again.add(2, 2), 4);
    again.disconnect();
  } finally {
    client.disconnect();
    await server.stop();
  }
});

test("a server that is down: calls fail with CONNECT_FAILED instead of hanging", async () => {
  const server = await startParity();
  const url = server.url;
  await server.stop();
  const client = parityClient(url, { reconnect: { baseMs: 100 } });
  try {
    await assert.rejects(client.add(1, 2), isCode("CONNECT_FAILED"));
    assert.equal(client.state, "reconnecting");
  } finally {
    client.disconnect();
  }
});
