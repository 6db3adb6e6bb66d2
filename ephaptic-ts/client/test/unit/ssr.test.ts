// A client created at import time must survive server-side rendering: no window, no location,
// maybe no WebSocket. Node is such a runtime, so this file imports and creates one as a module
// would, at the top level, before any test runs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, EphapticError } from "../../dist/index.js";
import { fakeWebSocket } from "../helpers/fake-ws.js";

const g = globalThis as { window?: unknown; location?: unknown };
assert.equal(g.window, undefined, "this test needs a runtime without window");
assert.equal(g.location, undefined, "this test needs a runtime without location");

// What `src/lib/ephaptic.ts` does in a SvelteKit or Next app.
const fake = fakeWebSocket();
const client = connect({ url: "/_ephaptic", WebSocket: fake.WebSocket, reconnect: false });
const bare = connect({ url: "/_ephaptic" }); // no WebSocket either (Node 20)

test("importing and creating a client with a relative URL outside a browser does not throw or connect", () => {
  assert.equal(client.state, "disconnected");
  assert.equal(client.url, "/_ephaptic");
  assert.equal(fake.sockets.length, 0);
  const stop = client.on("Notice", () => {}); // listeners may be added on the server too
  stop();
  assert.equal(fake.sockets.length, 0);
  assert.equal(bare.state, "disconnected");
});

test("a call on the server rejects with CONNECT_FAILED naming the fix", async () => {
  const fix = (e: unknown) => {
    assert.ok(e instanceof EphapticError);
    assert.equal(e.code, "CONNECT_FAILED");
    assert.match(e.message, /"\/_ephaptic" is relative and there is no page location/);
    assert.match(e.message, /server-side rendering/);
    assert.match(e.message, /in the browser \(onMount, useEffect/);
    assert.match(e.message, /absolute URL, e\.g\. connect\(\{ url: "ws:\/\/127\.0\.0\.1:8000\/_ephaptic" \}\)/);
    return true;
  };
  await assert.rejects(client.call("add", 1, 2), fix);
  await assert.rejects((client as unknown as { add(a: number, b: number): Promise<number> }).add(1, 2), fix);
  await assert.rejects(client.ready(), fix);
  await assert.rejects(bare.call("add", 1, 2), fix);
  assert.equal(fake.sockets.length, 0);
});

test("once a page location exists, the first call or on() connects to it", async (t) => {
  g.location = { href: "https://app.example/todos/1" };
  t.after(() => {
    delete g.location;
    client.disconnect();
    bare.disconnect();
  });
  const stop = client.on("Notice", () => {});
  assert.equal(fake.sockets.length, 1);
  assert.equal(fake.last().url, "wss://app.example/_ephaptic");
  assert.equal(client.url, "wss://app.example/_ephaptic");
  assert.equal(client.state, "connecting");
  const sum = client.call("add", 1, 2);
  fake.last().open();
  fake.last().receive({ id: 1, result: 3 });
  assert.equal(await sum, 3);
  stop();
});
