// Presence on a fake host: diffs before the snapshot are buffered, other groups' diffs ignored,
// a reconnect resyncs from a new snapshot and reports who left meanwhile.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PresenceRegistry, type PresenceHost } from "../../dist/presence.js";
import type { ConnectionState, StateChange } from "../../dist/index.js";

function fakeHost() {
  const calls: Array<{ name: string; args: unknown[]; resolve: (v: unknown) => void }> = [];
  let listener: ((d: unknown) => void) | undefined;
  let stateListener: ((s: ConnectionState, c: StateChange) => void) | undefined;
  const host: PresenceHost = {
    call: (name, ...args) => new Promise((resolve) => calls.push({ name, args, resolve })),
    on: (_event, cb) => {
      listener = cb;
      return () => (listener = undefined);
    },
    onStateChange: (cb) => {
      stateListener = cb;
      return () => (stateListener = undefined);
    },
    report: (e) => {
      throw e;
    },
  };
  return {
    host,
    calls,
    diff: (d: unknown) => listener?.(d),
    reconnect: () => stateListener?.("connected", { previous: "reconnecting" } as StateChange),
  };
}

const member = (key: string, ...ids: string[]) => ({ key, connections: ids.map((id) => ({ id, meta: { name: id } })) });
const tick = () => new Promise((r) => setTimeout(r, 0));

test("diffs that arrive before the snapshot are applied after it, in order", async () => {
  const f = fakeHost();
  const room = new PresenceRegistry(f.host).get<{ name: string }>("room");
  await tick();
  assert.equal(f.calls[0]?.name, "__ephaptic.presence.watch");
  assert.deepEqual(f.calls[0]?.args, ["room"]);
  f.diff({ group: "room", joins: [member("s:b", "b1")], leaves: [] });
  f.diff({ group: "other", joins: [member("s:x", "x1")], leaves: [] });
  f.diff({ group: "room", joins: [], leaves: [{ key: "s:a", connections: ["a2"] }] });
  assert.equal(room.synced, false);
  assert.equal(room.members.length, 0);
  const joins: string[] = [];
  room.onJoin((m) => void joins.push(m.key));
  f.calls[0]!.resolve({ group: "room", members: [member("s:a", "a1", "a2")], truncated: false, users: 1, connections: 2 });
  await room.ready();
  assert.deepEqual(
    room.members.map((m) => [m.key, m.connections.map((c) => c.id)]),
    [
      ["s:a", ["a1"]],
      ["s:b", ["b1"]],
    ],
  );
  assert.deepEqual(joins, ["s:a", "s:b"]);
});

test("a reconnect watches again and reports who left meanwhile", async () => {
  const f = fakeHost();
  const room = new PresenceRegistry(f.host).get("room");
  await tick();
  f.calls[0]!.resolve({ group: "room", members: [member("s:a", "a1"), member("s:b", "b1")], truncated: false, users: 2, connections: 2 });
  await room.ready();
  const before = room.members;
  const left: string[] = [];
  room.onLeave((k) => void left.push(k));
  f.reconnect();
  await tick();
  assert.equal(room.synced, false);
  assert.equal(f.calls[1]?.name, "__ephaptic.presence.watch");
  f.calls[1]!.resolve({ group: "room", members: [member("s:a", "a9")], truncated: false, users: 1, connections: 1 });
  await room.ready();
  assert.notEqual(room.members, before, "a new array after a change");
  assert.deepEqual(left, ["s:b"]);
  assert.equal(room.get("s:a")?.connections[0]?.id, "a9");
  room.close();
  assert.equal(f.calls[2]?.name, "__ephaptic.presence.unwatch");
});
