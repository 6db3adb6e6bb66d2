// Events from the real server: to one identity, to the caller only, to everyone, and a channel.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ConnectOptions } from "../../dist/index.js";
import { parityClient, parityFixture, until, type ParityClient } from "../helpers/parity.js";

const parity = parityFixture();

interface Recorded {
  client: ParityClient;
  events: Array<[string, unknown]>;
}

async function listener(options: ConnectOptions): Promise<Recorded> {
  const client = parityClient(parity.server.url, options);
  parity.track(client);
  const events: Array<[string, unknown]> = [];
  for (const name of ["Notice", "Pong", "todoCreated"]) client.on(name, (d) => void events.push([name, d]));
  await client.ready();
  return { client, events };
}

/**
 * Waits until every one of `who` has received a `shout` sent after the action under test. Each
 * connection's frames are delivered in order, so anything meant for it arrived before the barrier.
 */
async function barrier(who: Recorded[], tag: string): Promise<void> {
  await who[0]!.client.shout(tag);
  const isBarrier = ([name, d]: [string, unknown]) => name === "Notice" && (d as { message: string }).message === tag;
  await until(() => who.every((r) => r.events.some(isBarrier)), `barrier ${tag}`);
  for (const r of who) r.events.splice(r.events.findIndex(isBarrier), 1);
}

test("notify reaches every connection of that identity and no one else", async () => {
  const alice1 = await listener({ auth: "alice" });
  const alice2 = await listener({ auth: { token: "alice" } });
  const carol = await listener({ auth: "carol" });
  const reached = await carol.client.notify("alice", "hello alice");
  assert.equal(reached, 2);
  await barrier([alice1, alice2, carol], "b1");
  assert.deepEqual(alice1.events, [["Notice", { message: "hello alice", level: 1 }]]);
  assert.deepEqual(alice2.events, [["Notice", { message: "hello alice", level: 1 }]]);
  assert.deepEqual(carol.events, []);
  assert.equal(await carol.client.notify("nobody", "x"), 0);
});

test("ping emits Pong to the caller only, not to other connections of the same identity", async () => {
  const caller = await listener({ auth: "pinger" });
  const sameUser = await listener({ auth: "pinger" });
  assert.equal(await caller.client.ping(), "pong");
  await barrier([caller, sameUser], "b2");
  assert.deepEqual(caller.events, [["Pong", { ok: true }]]);
  assert.deepEqual(sameUser.events, []);
});

test("shout reaches every connection, anonymous ones included", async () => {
  const a = await listener({});
  const b = await listener({ auth: "bob" });
  const reached = await b.client.shout("everyone");
  assert.ok(reached >= 2, `reached ${reached}`);
  await until(() => a.events.length > 0 && b.events.length > 0, "the shout");
  assert.deepEqual(a.events[0], ["Notice", { message: "everyone", level: 2 }]);
  assert.deepEqual(b.events[0], ["Notice", { message: "everyone", level: 2 }]);
});

test("create_todo announces the Todo on the todoCreated channel to every connection", async () => {
  const a = await listener({});
  const b = await listener({ auth: "bob" });
  const todo = await a.client.create_todo("write the client");
  assert.equal((todo as { title: string }).title, "write the client");
  assert.equal((todo as { done: boolean }).done, false);
  await until(
    () => [a, b].every((r) => r.events.some(([n]) => n === "todoCreated")),
    "todoCreated on both",
  );
  for (const r of [a, b]) assert.deepEqual(r.events.find(([n]) => n === "todoCreated"), ["todoCreated", todo]);
});

test("once fires once, off stops delivery, and invalidateOn ties the channel to query keys", async () => {
  const r = await listener({ auth: "eve" });
  const c = r.client;
  const onceGot: unknown[] = [];
  const onGot: unknown[] = [];
  const onNotice = (d: unknown) => void onGot.push(d);
  c.once("Notice", (d) => void onceGot.push(d));
  c.on("Notice", onNotice);
  const invalidated: unknown[] = [];
  const stop = c.invalidateOn("todoCreated", { invalidateQueries: ({ queryKey }) => void invalidated.push(queryKey) }, [
    ["listTodos"],
  ]);
  await c.notify("eve", "one");
  await c.notify("eve", "two");
  await c.create_todo("t");
  await barrier([r], "b3");
  assert.deepEqual(onceGot, [{ message: "one", level: 1 }]);
  assert.deepEqual(
    onGot.filter((d) => (d as { message: string }).message !== "b3"),
    [
      { message: "one", level: 1 },
      { message: "two", level: 1 },
    ],
  );
  assert.deepEqual(invalidated, [["listTodos"]]);
  c.off("Notice", onNotice);
  stop();
  await c.notify("eve", "three");
  await c.create_todo("u");
  await barrier([r], "b4");
  assert.equal(onGot.filter((d) => (d as { message: string }).message === "three").length, 0);
  assert.deepEqual(invalidated, [["listTodos"]]);
});
