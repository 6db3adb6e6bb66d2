// Sessions the server ends (close code 4401) and credentials refreshed in band (PROTOCOL.md 5.11),
// against the real Rust server. Its loader grants `<user>` for `<ms>` ms to the token
// `expiring:<user>:<ms>`, and asks for a refresh at the expiry - min(ttl / 2, 30 s); `kick(user,
// reason)` ends every session of `user`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EphapticError, type ConnectionState, type ConnectOptions, type SessionEnded } from "../../dist/index.js";
import { recordingLogger } from "../helpers/fake-ws.js";
import { parityClient, parityFixture, sleep, until } from "../helpers/parity.js";

const parity = parityFixture({ proxy: true });

/** A client through the proxy (which counts connections), recording what it is told. */
function watched(options: ConnectOptions = {}) {
  const log = recordingLogger();
  // Quick retries: a client that wrongly reconnected would do so many times in the waits below.
  const client = parityClient(parity.proxy.url, { logger: log.logger, reconnect: { baseMs: 50, capMs: 200 }, ...options });
  parity.track(client);
  const ended: SessionEnded[] = [];
  client.onSessionEnded((e) => void ended.push(e));
  const states: ConnectionState[] = [];
  client.onStateChange((s) => void states.push(s));
  return { client, ended, states, log };
}

const sessionEnded = (reason: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, "SESSION_ENDED", e.message);
  assert.deepEqual(e.data, { code: 4401, reason });
  return true;
};

test("kick ends every session of the user: onSessionEnded once, closed, no reconnect; others go on; a new login works", async () => {
  let aliceAuth = 0;
  const asAlice = () => {
    aliceAuth++;
    return "alice";
  };
  const alice1 = watched({ auth: asAlice });
  const alice2 = watched({ auth: asAlice });
  const bob = watched({ auth: "bob" });
  const admin = watched({ auth: "admin" });
  await Promise.all([alice1, alice2, bob, admin].map((c) => c.client.ready()));
  assert.equal(await alice1.client.whoami(), "alice");
  assert.equal(await alice2.client.whoami(), "alice");
  assert.equal(await bob.client.whoami(), "bob");
  const pending = alice1.client.sleepy(10_000);
  const pendingFails = assert.rejects(pending, sessionEnded("revoked"));
  const authCalls = aliceAuth;
  const connections = parity.proxy.accepted;

  assert.equal(await admin.client.kick("alice", "revoked"), 2, "both of alice's connections closed");
  await until(() => alice1.ended.length > 0 && alice2.ended.length > 0, "both alice clients told");
  await pendingFails;
  for (const alice of [alice1, alice2]) {
    assert.equal(alice.client.state, "closed");
    assert.deepEqual(alice.client.sessionEnded, { code: 4401, reason: "revoked" });
    await assert.rejects(alice.client.whoami(), sessionEnded("revoked"));
  }

  // No reconnect attempt: neither the auth function nor a new connection, for 5 s.
  await sleep(5000);
  assert.equal(aliceAuth, authCalls, "the auth function was not called again");
  assert.equal(parity.proxy.accepted, connections, "no new connection");
  for (const alice of [alice1, alice2]) {
    assert.deepEqual(alice.ended, [{ code: 4401, reason: "revoked" }], "onSessionEnded fired once");
    assert.deepEqual(alice.states, ["connected", "closed"]);
  }

  // Bob's session was not touched.
  assert.equal(await bob.client.whoami(), "bob");
  assert.deepEqual(bob.states, ["connected"]);
  assert.deepEqual(bob.ended, []);

  // Logging in again: a new client.
  const again = watched({ auth: "alice" });
  await again.client.ready();
  assert.equal(await again.client.whoami(), "alice");
  assert.equal(again.client.state, "connected");
});

test("expiring credentials are refreshed in band: the same connection stays up for 10 s", async () => {
  let calls = 0;
  const { client, states, ended, log } = watched({
    auth: () => {
      calls++;
      return "expiring:alice:2000";
    },
  });
  await client.ready();
  const id = await client.connection_id();
  assert.equal(await client.whoami(), "alice");
  await sleep(10_000); // five grants' worth: each must have been refreshed
  assert.equal(await client.connection_id(), id, "the same connection");
  assert.equal(await client.whoami(), "alice");
  assert.deepEqual(states, ["connected"], "the state never left connected");
  assert.ok(calls >= 4, `the auth function was asked again at each refresh (called ${calls} times)`);
  assert.deepEqual(ended, []);
  assert.deepEqual(log.warnings, []);
});

test("credentials refreshed for another identity end the session, without a reconnect", async () => {
  let calls = 0;
  const { client, states, ended, log } = watched({
    auth: () => (++calls === 1 ? "expiring:alice:2000" : "expiring:mallory:2000"),
  });
  assert.equal(await client.whoami(), "alice");
  const connections = parity.proxy.accepted;
  await until(() => ended.length > 0, "the session ended");
  assert.deepEqual(ended, [{ code: 4401, reason: "credentials refreshed for another identity" }]);
  assert.equal(client.state, "closed");
  assert.match(log.warnings.join("\n"), /did not take the fresh credentials \(UNAUTHORIZED/);
  await assert.rejects(client.whoami(), sessionEnded("credentials refreshed for another identity"));
  // Past the first grant's expiry, and many backoffs long.
  await sleep(1500);
  assert.equal(calls, 2, "the auth function was not asked to reconnect");
  assert.equal(parity.proxy.accepted, connections, "no new connection");
  assert.deepEqual(states, ["connected", "closed"]);
  assert.equal(ended.length, 1);
});

test("credentials not refreshed by their expiry end the session: 4401 credentials expired", async () => {
  let calls = 0;
  const { client, ended, log } = watched({
    // The first refresh never gets its credentials.
    auth: () => (++calls === 1 ? "expiring:alice:1000" : new Promise<string>(() => undefined)),
  });
  assert.equal(await client.whoami(), "alice");
  await until(() => ended.length > 0, "the session ended", 5000);
  assert.deepEqual(ended, [{ code: 4401, reason: "credentials expired" }]);
  assert.equal(client.state, "closed");
  assert.equal(calls, 2);
  assert.deepEqual(log.warnings, []);
});

test("resume: false (no refresh: true): an expiry closes normally and the client reconnects", async () => {
  let calls = 0;
  const { client, ended } = watched({
    resume: false,
    auth: () => {
      calls++;
      return "expiring:alice:1000";
    },
  });
  const first = await client.connection_id();
  await until(() => calls >= 2 && client.state === "connected", "the reconnect after the expiry", 5000);
  assert.notEqual(await client.connection_id(), first, "a new connection");
  assert.equal(await client.whoami(), "alice");
  assert.deepEqual(ended, []);
});
