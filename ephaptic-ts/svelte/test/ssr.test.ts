// Server-side rendering: no window. The package imports, the stores hold their initial values,
// and nothing listens, fetches or connects.
import assert from "node:assert/strict";
import { test } from "node:test";
import { get } from "svelte/store";
import { connect } from "@ephaptic/client";
import { ephapticStores, inBrowser } from "@ephaptic/svelte";
import type { EphapticErrors, EphapticEvents, EphapticService } from "../../client/test/helpers/bindings/schema.js";

test("on the server the stores keep their initial values and touch nothing", async () => {
  assert.equal(typeof (globalThis as { window?: unknown }).window, "undefined");
  assert.equal(inBrowser(), false);
  let sockets = 0;
  class NoSocket {
    constructor() {
      sockets++;
      throw new Error("no socket on the server");
    }
  }
  const client = connect<EphapticService, EphapticErrors>({ url: "/_ephaptic", WebSocket: NoSocket as never });
  let ons = 0;
  const watched = new Proxy(client, {
    get: (t, k, r) => (k === "on" ? (...a: unknown[]) => (ons++, (t.on as (...x: unknown[]) => () => void)(...a)) : Reflect.get(t, k, r)),
  });
  const stores = ephapticStores<EphapticEvents>(watched);
  let fetches = 0;
  const live = stores.live(async () => (fetches++, []), { on: ["todoCreated"], initial: [] });
  // What a component's `$store` does during SSR: subscribe, read, unsubscribe.
  assert.equal(get(stores.event("SomethingHappened")), undefined);
  assert.deepEqual(get(stores.eventList("SomethingHappened")), []);
  assert.equal(get(stores.connectionState), "disconnected");
  assert.equal(get(stores.sessionEnded), undefined);
  assert.deepEqual(get(live), { data: [], error: undefined, loading: false });
  let presences = 0;
  const counting = new Proxy(watched, {
    get: (t, k, r) => (k === "presence" ? (...a: unknown[]) => (presences++, (t.presence as (...x: unknown[]) => unknown)(...a)) : Reflect.get(t, k, r)),
  });
  let entered = 0;
  assert.deepEqual(get(ephapticStores<EphapticEvents>(counting).presence("lobby", { enter: async () => void entered++ })), []);
  await live.refetch();
  assert.equal(ons, 0, "no listener registered");
  assert.equal(fetches, 0, "nothing fetched");
  assert.equal(presences + entered, 0, "no presence list opened");
  assert.equal(sockets, 0, "no connection attempt");
});
