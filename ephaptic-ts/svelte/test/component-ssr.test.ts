// The same component rendered on the server (svelte/server, no window): it renders the stores'
// initial values and registers nothing on the client.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Component } from "svelte";
import { render } from "svelte/server";
import { connect } from "@ephaptic/client";
import { ephapticStores, type EphapticStores } from "@ephaptic/svelte";
import type { EphapticErrors, EphapticEvents, EphapticService, Todo } from "../../client/test/helpers/bindings/schema.js";

type Props = { stores: EphapticStores<EphapticEvents>; fetchTodos: () => Promise<Todo[]>; enter: () => Promise<unknown> };
const probePath = "./components/Probe.server.js";
const { default: Probe } = (await import(probePath)) as { default: Component<Props> };

test("server rendering shows the initial values and touches nothing", async () => {
  assert.equal(typeof (globalThis as { window?: unknown }).window, "undefined");
  const client = connect<EphapticService, EphapticErrors>({ url: "/_ephaptic" });
  let ons = 0;
  let fetches = 0;
  let entered = 0;
  let presences = 0;
  const watched = new Proxy(client, {
    get: (t, k, r) =>
      k === "on"
        ? (...a: unknown[]) => (ons++, (t.on as (...x: unknown[]) => () => void)(...a))
        : k === "presence"
          ? (...a: unknown[]) => (presences++, (t.presence as (...x: unknown[]) => unknown)(...a))
          : Reflect.get(t, k, r),
  });
  const { body } = render(Probe, {
    props: { stores: ephapticStores<EphapticEvents>(watched), fetchTodos: async () => (fetches++, []), enter: async () => void entered++ },
  });
  assert.match(body, /<p id="state">disconnected<\/p>/);
  assert.match(body, /<p id="latest">none<\/p>/);
  assert.match(body, /<p id="count">0<\/p>/);
  assert.match(body, /<p id="here">nobody<\/p>/);
  assert.match(body, /<p id="ended">signed in<\/p>/);
  await new Promise((r) => setTimeout(r, 10)); // anything started would have run by now
  assert.equal(ons, 0);
  assert.equal(fetches, 0);
  assert.equal(presences + entered, 0, "no presence list opened");
  assert.equal(client.state, "disconnected");
});
