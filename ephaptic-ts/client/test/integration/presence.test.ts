// client.presence(group) against the real server: the synced list matches the server's own list
// (parity's `presence_members`) after joins, leaves, and a server restart with reconnects.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EphapticError, type Presence, type PresenceMember } from "../../dist/index.js";
import { parityClient, startParity, until, type ParityClient } from "../helpers/parity.js";

interface Online {
  name: string;
}

/** A member list as comparable data: key -> sorted meta names. */
function shape(members: readonly PresenceMember<Online>[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of members) out[m.key] = m.connections.map((c) => c.meta.name).sort();
  return out;
}

async function serverShape(client: ParityClient, group: string): Promise<Record<string, string[]>> {
  const list = (await client.presence_members(group)) as { members: PresenceMember<Online>[] };
  return shape(list.members);
}

/** Waits until the synced list equals the server's list and `check` holds. */
async function converged(
  room: Presence<Online>,
  asker: ParityClient,
  group: string,
  check: (s: Record<string, string[]>) => boolean,
  what: string,
): Promise<void> {
  let server: Record<string, string[]> = {};
  const end = Date.now() + 8000;
  for (;;) {
    server = await serverShape(asker, group);
    const mine = shape(room.members);
    if (room.synced && check(server) && JSON.stringify(mine) === JSON.stringify(server)) return;
    if (Date.now() > end) {
      assert.fail(`${what}: the synced list ${JSON.stringify(mine)} never matched the server's ${JSON.stringify(server)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("the synced list follows joins and leaves, one member per identity", async () => {
  const server = await startParity();
  const clients: ParityClient[] = [];
  const client = (auth: string) => {
    const c = parityClient(server.url, { auth });
    clients.push(c);
    return c;
  };
  try {
    const watcher = client("watcher");
    const room = watcher.presence<Online>("room:ts", { enter: () => watcher.presence_track("room:ts", "watcher") });
    const joined: string[] = [];
    const left: string[] = [];
    room.onJoin((m) => void joined.push(m.key));
    room.onLeave((k) => void left.push(k));
    let syncs = 0;
    const stop = room.subscribe(() => void syncs++);
    await room.ready();
    assert.equal(watcher.presence("room:ts"), room, "one list per group");
    room.close(); // the second handle; the first keeps watching

    const alice1 = client("alice");
    const alice2 = client("alice");
    const bob = client("bob");
    await alice1.presence_track("room:ts", "alice-1");
    await alice2.presence_track("room:ts", "alice-2");
    await bob.presence_track("room:ts", "bob");
    await converged(room, watcher, "room:ts", (s) => Object.keys(s).length === 3, "after the joins");
    assert.deepEqual(shape(room.members)["s:alice"], ["alice-1", "alice-2"]);

    alice1.disconnect();
    await converged(room, watcher, "room:ts", (s) => s["s:alice"]?.length === 1, "after one of alice's tabs left");
    assert.ok(!left.includes("s:alice"), "alice has not left: one tab remains");
    await bob.presence_untrack("room:ts");
    alice2.disconnect();
    await converged(room, watcher, "room:ts", (s) => Object.keys(s).length === 1, "after the leaves");
    assert.deepEqual(Object.keys(shape(room.members)), ["s:watcher"]);
    assert.deepEqual(joined.sort(), ["s:alice", "s:bob", "s:watcher"]);
    assert.deepEqual(left.sort(), ["s:alice", "s:bob"]);
    assert.ok(syncs >= 3, `subscribe ran ${syncs} times`);
    stop();

    // Watching a group the connection has not joined is refused, and said so.
    const stranger = client("stranger");
    const other = stranger.presence<Online>("room:private");
    await until(() => other.error !== undefined, "the refusal");
    assert.ok(other.error instanceof EphapticError && other.error.code === "FORBIDDEN", String(other.error));
    assert.equal(other.synced, false);
  } finally {
    for (const c of clients) c.disconnect();
    await server.stop();
  }
});

test("after a server restart the list resyncs from a new snapshot and matches the server", async () => {
  let server = await startParity();
  const port = server.port;
  const clients: ParityClient[] = [];
  const tracked = (auth: string, name: string) => {
    const c = parityClient(server.url, { auth, reconnect: { baseMs: 100 } });
    clients.push(c);
    // Presence lives with the connection: an app tracks again when it reconnects.
    c.onStateChange((state, change) => {
      if (state === "connected" && change.previous === "reconnecting") void c.presence_track("room:r", name).catch(() => undefined);
    });
    return c;
  };
  try {
    const watcher = tracked("watcher", "watcher");
    const room = watcher.presence<Online>("room:r", { enter: () => watcher.presence_track("room:r", "watcher") });
    const carol = tracked("carol", "carol");
    await carol.presence_track("room:r", "carol");
    const dan = tracked("dan", "dan");
    await dan.presence_track("room:r", "dan");
    await converged(room, watcher, "room:r", (s) => Object.keys(s).length === 3, "before the restart");

    await server.stop("SIGKILL");
    await until(() => watcher.state === "reconnecting", "the drop");
    dan.disconnect(); // dan does not come back
    assert.ok(room.synced, "the list keeps what it knew while reconnecting");
    server = await startParity(port);
    await until(() => watcher.state === "connected", "the reconnect", 10_000);
    await converged(
      room,
      watcher,
      "room:r",
      (s) => JSON.stringify(Object.keys(s).sort()) === JSON.stringify(["s:carol", "s:watcher"]),
      "after the restart",
    );
    assert.ok(room.get("s:dan") === undefined, "dan is gone");
  } finally {
    for (const c of clients) c.disconnect();
    await server.stop();
  }
});
