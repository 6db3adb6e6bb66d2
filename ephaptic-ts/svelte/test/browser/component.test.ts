// A real Svelte component (test/components/Probe.svelte, compiled for the browser) mounted into
// happy-dom and destroyed: its stores' listeners (and its presence list) must go with it. Run with
// `node --conditions=browser` so that `svelte` is its browser build.
import { Window } from "happy-dom";
const window = new Window({ url: "http://127.0.0.1/" });
for (const key of ["window", "document", "navigator", "Node", "Element", "HTMLElement", "Text", "Comment", "Event", "getComputedStyle"] as const) {
  const value = key === "window" ? window : (window as unknown as Record<string, unknown>)[key];
  Object.defineProperty(globalThis, key, { value: typeof value === "function" && key === "getComputedStyle" ? value.bind(window) : value, configurable: true, writable: true });
}

import assert from "node:assert/strict";
import { test } from "node:test";
import { flushSync, mount, unmount, type Component } from "svelte";
import { connect } from "@ephaptic/client";
import { ephapticStores, type EphapticStores } from "@ephaptic/svelte";
import { fakeServer, lobby, until } from "../../../client/test/helpers/bindings/fake-server.js";
import type { EphapticErrors, EphapticEvents, EphapticService, Todo } from "../../../client/test/helpers/bindings/schema.js";

type Props = { stores: EphapticStores<EphapticEvents>; fetchTodos: () => Promise<Todo[]>; enter: () => Promise<unknown> };
const probePath = "../components/Probe.client.js";
const { default: Probe } = (await import(probePath)) as { default: Component<Props> };

test("a mounted component listens; destroying it removes every listener", async () => {
  const todos: Todo[] = [{ id: 1, title: "milk" }];
  const group = lobby({ 1: "Ann" });
  const server = fakeServer({ listTodos: () => [...todos], ...group.handlers });
  const client = connect<EphapticService, EphapticErrors>({ url: "ws://test/_ephaptic", WebSocket: server.WebSocket });
  let active = 0;
  const on = client.on.bind(client) as (n: string, cb: (d: unknown) => void) => () => void;
  const counted = new Proxy(client, {
    get: (t, k, r) =>
      k === "on"
        ? (n: string, cb: (d: unknown) => void) => {
            active++;
            const stop = on(n, cb);
            return () => {
              active--;
              stop();
            };
          }
        : Reflect.get(t, k, r),
  });
  await client.ready();
  const target = window.document.createElement("div") as unknown as HTMLElement;
  const component = mount(Probe, { target, props: { stores: ephapticStores<EphapticEvents>(counted), fetchTodos: () => client.listTodos(), enter: () => client.enterLobby() },
  });
  flushSync();
  const text = (id: string) => target.querySelector(`#${id}`)?.textContent;
  assert.equal(text("state"), "connected");
  assert.equal(text("latest"), "none");
  assert.equal(active, 3, "event, eventList and live's channel: one listener each");
  await until(() => target.querySelectorAll("li").length === 1, "the first fetch");
  await until(() => text("here") === "Ann", "the lobby's snapshot");
  group.join(server, 2, "Bob");
  await until(() => text("here") === "Ann Bob", "Bob's join");

  server.emit("SomethingHappened", { code: 1, message: "hello", isError: false });
  flushSync();
  assert.equal(text("latest"), "hello");
  assert.equal(text("count"), "1");

  todos.push({ id: 2, title: "bread" });
  server.emit("todoCreated", todos[1]);
  await until(() => target.querySelectorAll("li").length === 2, "the refetch after todoCreated");

  unmount(component);
  assert.equal(active, 0, "destroying the component removed its listeners");
  await until(() => server.calls.get("__ephaptic.presence.unwatch") === 1, "the presence list closed with the component");
  client.disconnect();
});

test("the component shows that the server ended the session", async () => {
  const server = fakeServer({ listTodos: () => [], ...lobby({}).handlers });
  const client = connect<EphapticService, EphapticErrors>({ url: "ws://test/_ephaptic", WebSocket: server.WebSocket });
  await client.ready();
  const target = window.document.createElement("div") as unknown as HTMLElement;
  const component = mount(Probe, {
    target,
    props: { stores: ephapticStores<EphapticEvents>(client), fetchTodos: () => client.listTodos(), enter: async () => undefined },
  });
  flushSync();
  const text = (id: string) => target.querySelector(`#${id}`)?.textContent;
  assert.equal(text("ended"), "signed in");
  server.endSessions("revoked");
  flushSync();
  assert.equal(text("ended"), "signed out: revoked");
  assert.equal(text("state"), "closed");
  unmount(component);
});
