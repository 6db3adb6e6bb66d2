// The stores against the real @ephaptic/client over an in-memory server (fake-server.ts). A
// `window` is put in place first: the stores only listen in a browser (ssr.test.ts is the other
// side).
(globalThis as { window?: unknown }).window = globalThis;
(globalThis as { document?: unknown }).document = {};

import assert from "node:assert/strict";
import { test } from "node:test";
import { get } from "svelte/store";
import { connect, type Client, type SessionEnded } from "@ephaptic/client";
import { ephapticStores } from "@ephaptic/svelte";
import { fakeServer, lobby, sessions, sleep, until, type FakeServer } from "../../client/test/helpers/bindings/fake-server.js";
import type { EphapticErrors, EphapticEvents, EphapticService, PresenceMember, SomethingHappened, Todo, User } from "../../client/test/helpers/bindings/schema.js";

type C = Client<EphapticService, EphapticErrors>;

/** A real client on `server`, with `on` counted: `active()` is how many listeners are registered. */
function counted(server: FakeServer): { client: C; active: () => number } {
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://test/_ephaptic",
    WebSocket: server.WebSocket,
    reconnect: { baseMs: 5, capMs: 10 },
  });
  let active = 0;
  const on = client.on.bind(client) as (name: string, cb: (data: unknown) => void) => () => void;
  const wrapped = new Proxy(client, {
    get(target, key, receiver) {
      if (key !== "on") return Reflect.get(target, key, receiver);
      return (name: string, cb: (data: unknown) => void) => {
        active++;
        const stop = on(name, cb);
        let stopped = false;
        return () => {
          if (!stopped) active--;
          stopped = true;
          stop();
        };
      };
    },
  });
  return { client: wrapped, active: () => active };
}

const happened = (message: string): SomethingHappened => ({ code: 1, message, isError: false });

test("event: the latest value while subscribed; the listener goes with the last subscriber", async () => {
  const server = fakeServer();
  const { client, active } = counted(server);
  await client.ready();
  const stores = ephapticStores<EphapticEvents>(client);
  const latest = stores.event("SomethingHappened");
  assert.equal(active(), 0, "nothing listens before a subscriber");
  const seen: Array<string | undefined> = [];
  const stopA = latest.subscribe((v) => seen.push(v?.message));
  const stopB = latest.subscribe(() => undefined);
  assert.equal(active(), 1, "one listener for any number of subscribers");
  server.emit("SomethingHappened", happened("one"));
  assert.deepEqual(seen, [undefined, "one"]);
  stopA();
  assert.equal(active(), 1);
  stopB();
  assert.equal(active(), 0, "the last unsubscribe (a component destroyed) removed the listener");
  server.emit("SomethingHappened", happened("two"));
  assert.deepEqual(seen, [undefined, "one"]);
  client.disconnect();
});

test("eventList keeps the newest max, and starts again when subscribed anew", async () => {
  const server = fakeServer();
  const { client, active } = counted(server);
  await client.ready();
  const list = ephapticStores<EphapticEvents>(client).eventList("SomethingHappened", { max: 2 });
  let stop = list.subscribe(() => undefined);
  for (const m of ["a", "b", "c"]) server.emit("SomethingHappened", happened(m));
  assert.deepEqual(get(list).map((e) => e.message), ["b", "c"]);
  stop();
  assert.equal(active(), 0);
  stop = list.subscribe(() => undefined);
  assert.deepEqual(get(list), []);
  stop();
  client.disconnect();
});

test("connectionState follows the connection", async () => {
  const server = fakeServer();
  const { client } = counted(server);
  const stores = ephapticStores<EphapticEvents>(client);
  const states: string[] = [];
  const stop = stores.connectionState.subscribe((s) => states.push(s));
  await client.ready();
  server.dropAll();
  await until(() => client.state === "connected" && states.length >= 4, "the reconnection");
  assert.deepEqual(states.slice(-3), ["connected", "reconnecting", "connected"]);
  stop();
  client.disconnect();
});

test("sessionEnded: undefined until the server ends the session, then its code and reason; no reconnect", async () => {
  const server = fakeServer();
  const { client } = counted(server);
  const stores = ephapticStores<EphapticEvents>(client);
  const seen: Array<SessionEnded | undefined> = [];
  const stop = stores.sessionEnded.subscribe((e) => seen.push(e));
  await client.ready();
  assert.deepEqual(seen, [undefined]);
  server.endSessions("logged out");
  assert.deepEqual(seen, [undefined, { code: 4401, reason: "logged out" }]);
  assert.equal(get(stores.connectionState), "closed");
  stop();
  // A store subscribed after the end (a component created later) has it at once.
  assert.deepEqual(get(ephapticStores<EphapticEvents>(client).sessionEnded), { code: 4401, reason: "logged out" });
  await sleep(30); // several backoffs (5-10 ms): a dropped connection would have been retried
  assert.equal(server.sockets.length, 1, "no reconnect after 4401");

  // Logging in again: a new client, and stores for it.
  const again = counted(server).client;
  await again.ready();
  assert.equal(get(ephapticStores<EphapticEvents>(again).sessionEnded), undefined);
  again.disconnect();
});

test("live refetches on its channels and after a reconnection, and stops with its subscribers", async () => {
  const todos: Todo[] = [];
  const server = fakeServer({ listTodos: () => [...todos] });
  const { client, active } = counted(server);
  const stores = ephapticStores<EphapticEvents>(client);
  const list = stores.live(() => client.listTodos(), { on: ["todoCreated"], initial: [] });
  assert.equal(server.calls.get("listTodos"), undefined, "nothing fetched before a subscriber");
  const stop = list.subscribe(() => undefined);
  await until(() => get(list).data !== undefined && server.calls.get("listTodos") === 1 && !get(list).loading, "the first fetch");
  assert.deepEqual(get(list).data, []);

  todos.push({ id: 1, title: "milk" });
  server.emit("todoCreated", todos[0]);
  await until(() => get(list).data?.length === 1, "the refetch after todoCreated");
  assert.equal(server.calls.get("listTodos"), 2);

  todos.push({ id: 2, title: "missed while away" });
  server.dropAll();
  await until(() => get(list).data?.length === 2, "the refetch after the reconnection");

  stop();
  assert.equal(active(), 0, "no listener left");
  const fetches = server.calls.get("listTodos");
  server.emit("todoCreated", { id: 3, title: "late" });
  await sleep(30);
  assert.equal(server.calls.get("listTodos"), fetches, "no refetch once unsubscribed");
  client.disconnect();
});

test("live drops a reply that a newer fetch overtook", async () => {
  let n = 0;
  const server = fakeServer();
  const { client } = counted(server);
  const stores = ephapticStores<EphapticEvents>(client);
  const resolvers: Array<(v: number) => void> = [];
  const value = stores.live(() => new Promise<number>((resolve) => resolvers.push(resolve)));
  const stop = value.subscribe(() => undefined);
  void value.refetch();
  assert.equal(resolvers.length, 2);
  resolvers[1]?.(++n + 1); // the newer fetch answers first: 2
  resolvers[0]?.(++n - 1); // then the older one: 1, which must be dropped
  await sleep(5);
  assert.equal(get(value).data, 2);
  stop();
  client.disconnect();
});

const names = (members: readonly PresenceMember<User>[]): string => members.map((m) => m.connections[0]?.meta.name).join(" ");

test("presence: the members while subscribed; the last subscriber stops watching", async () => {
  const group = lobby({ 1: "Ann" });
  const server = fakeServer(group.handlers);
  const { client } = counted(server);
  await client.ready();
  const stores = ephapticStores<EphapticEvents>(client);
  const here = stores.presence("lobby", { enter: () => client.enterLobby() });
  await sleep(10);
  assert.equal(server.calls.get("__ephaptic.presence.watch"), undefined, "nothing watched before a subscriber");
  const seen: string[] = [];
  const stopA = here.subscribe((m) => seen.push(names(m)));
  const stopB = here.subscribe(() => undefined);
  await until(() => seen.at(-1) === "Ann", "the snapshot");
  assert.deepEqual(server.log.map((c) => c.name), ["__ephaptic.hello", "enterLobby", "__ephaptic.presence.watch"], "entered, then one watch");
  assert.deepEqual(server.log.at(-1)?.args, ["lobby"]);

  group.join(server, 2, "Bob");
  await until(() => seen.at(-1) === "Ann Bob", "Bob's join");
  group.leave(server, 1);
  await until(() => seen.at(-1) === "Bob", "Ann's leave");
  assert.deepEqual(seen.filter((v, i) => v !== seen[i - 1]), ["", "Ann", "Ann Bob", "Bob"], "empty until the snapshot, then each change");

  stopA();
  await sleep(10);
  assert.equal(server.calls.get("__ephaptic.presence.unwatch"), undefined, "a subscriber is left");
  stopB();
  await until(() => server.calls.get("__ephaptic.presence.unwatch") === 1, "the unwatch");
  const count = seen.length;
  group.join(server, 3, "Cy");
  await sleep(20);
  assert.equal(seen.length, count, "nothing after the last unsubscribe");

  // Subscribed anew: a new list, entered and watched again.
  const stopC = here.subscribe((m) => seen.push(names(m)));
  await until(() => seen.at(-1) === "Bob Cy", "the new snapshot");
  assert.equal(server.calls.get("enterLobby"), 2);
  assert.equal(server.calls.get("__ephaptic.presence.watch"), 2);
  stopC();
  client.disconnect();
});

test("presence enters and resyncs after a reconnect", async () => {
  const group = lobby({ 1: "Ann" });
  const server = fakeServer(group.handlers);
  const { client } = counted(server);
  await client.ready();
  const here = ephapticStores<EphapticEvents>(client).presence("lobby", { enter: () => client.enterLobby() });
  const stop = here.subscribe(() => undefined);
  await until(() => names(get(here)) === "Ann", "the snapshot");
  // Away: Bob arrives and Ann leaves, and the diffs are lost with the connection.
  server.dropAll();
  group.join(null, 2, "Bob");
  group.leave(null, 1);
  await until(() => names(get(here)) === "Bob", "the resync from a new snapshot");
  const calls = server.log.map((c) => c.name).filter((n) => n !== "__ephaptic.hello");
  assert.deepEqual(calls, ["enterLobby", "__ephaptic.presence.watch", "enterLobby", "__ephaptic.presence.watch"]);
  stop();
  client.disconnect();
});

test("with sessions, a recovered reconnect still refetches live and resyncs presence", async () => {
  const todos: Todo[] = [];
  const group = lobby({ 1: "Ann" });
  const server = fakeServer({ ...sessions(), ...group.handlers, listTodos: () => [...todos] });
  const { client } = counted(server);
  await client.ready();
  assert.equal(client.session?.legacy, false, "the fake speaks sessions");
  const stores = ephapticStores<EphapticEvents>(client);
  const list = stores.live(() => client.listTodos(), { on: ["todoCreated"], initial: [] });
  const here = stores.presence("lobby", { enter: () => client.enterLobby() });
  const stops = [list.subscribe(() => undefined), here.subscribe(() => undefined)];
  await until(() => server.calls.get("listTodos") === 1 && names(get(here)) === "Ann", "the first fetch and snapshot");
  let recovered: boolean | undefined;
  const stopState = client.onStateChange((state, change) => {
    if (state === "connected") recovered = change.session?.recovered;
  });
  server.dropAll();
  // Changed while away without an event (as data a restarted server lost would be), and a
  // presence diff lost with the connection (diffs are never replayed).
  todos.push({ id: 1, title: "changed while away" });
  group.join(null, 2, "Bob");
  await until(() => get(list).data?.length === 1 && names(get(here)) === "Ann Bob", "the refetch and the resync");
  assert.equal(recovered, true, "the reconnect recovered every stream");
  for (const stop of [...stops, stopState]) stop();
  client.disconnect();
});

// Not a test: the types. `tsc --strict` (npm run build:test) must reject each line marked.
export function typeChecks(client: C): void {
  const stores = ephapticStores<EphapticEvents>(client);
  // @ts-expect-error: a misspelt event name
  stores.event("SomethingHapened");
  const e = get(stores.event("SomethingHappened"));
  // @ts-expect-error: the payload is typed
  void e?.mesage;
  const title: string | undefined = get(stores.event("todoCreated"))?.title;
  void title;
  // @ts-expect-error: not an event or channel
  stores.live(() => client.listTodos(), { on: ["todoDeleted"] });
  const data: Todo[] | undefined = get(stores.live(() => client.listTodos())).data;
  void data;
  // The meta is the schema's (presence_meta!), unless given.
  const here: string | undefined = get(stores.presence("lobby"))[0]?.connections[0]?.meta.name;
  // @ts-expect-error: the meta is typed
  void get(stores.presence("lobby"))[0]?.connections[0]?.meta.nam;
  const own: number | undefined = get(stores.presence<{ x: number }>("room:1"))[0]?.connections[0]?.meta.x;
  // @ts-expect-error: enter returns a promise
  stores.presence("lobby", { enter: () => 1 });
  const reason: string | undefined = get(stores.sessionEnded)?.reason;
  // @ts-expect-error: the store holds { code, reason } or undefined
  const wrong: string = get(stores.sessionEnded);
  void [reason, wrong];
  void here;
  void own;
}
