// The built ESM client in a real browser (Debian's chromium, driven by playwright-core): a page
// served from 127.0.0.1 imports dist/index.js, connects with no URL (so to its own host at
// /_ephaptic, which this test's server proxies to the parity server), calls, streams and receives
// an event, and reports back.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect as tcpConnect, type AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { test } from "node:test";
import { PACKAGE_DIR, startParity } from "../helpers/parity.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(PACKAGE_DIR, "dist");
const MSGPACK = join(PACKAGE_DIR, "node_modules", "@msgpack", "msgpack", "dist.esm");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ephaptic smoke</title>
<script type="importmap">{ "imports": { "@msgpack/msgpack": "/msgpack/index.mjs" } }</script>
<script type="module">
import { connect, isEphapticError } from "/client/index.js";
const report = (r) => { window.__result = r; };
try {
  const client = connect(); // no url: this page's host at /_ephaptic
  const notice = new Promise((resolve) => client.once("Notice", resolve));
  const sum = await client.add(2, 3);
  await client.shout("from the browser");
  const event = await notice;
  const bytes = await client.echo(new Uint8Array([1, 2, 255]));
  const chunks = [];
  for await (const c of await client.countdown(3)) chunks.push(c);
  let errorCode = null;
  try { await client.boom(); } catch (e) { if (isEphapticError(e)) errorCode = e.code; }
  report({
    ok: true, url: client.url, sum, event, chunks, errorCode, state: client.state,
    bytes: Array.from(bytes), isBytes: bytes instanceof Uint8Array,
    globalWebSocket: typeof WebSocket === "function",
  });
  client.disconnect();
} catch (e) {
  report({ ok: false, error: String((e && e.stack) || e) });
}
</script></head><body>smoke</body></html>`;

function serveFile(res: import("node:http").ServerResponse, root: string, rel: string): void {
  const path = normalize(join(root, rel));
  if (!path.startsWith(root) || !existsSync(path)) {
    res.writeHead(404).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(readFileSync(path));
}

/** Serves the page and the modules, and passes WebSocket upgrades through to the parity server. */
function pageServer(parityPort: number): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    else if (url.pathname.startsWith("/client/")) serveFile(res, DIST, url.pathname.slice("/client/".length));
    else if (url.pathname.startsWith("/msgpack/")) serveFile(res, MSGPACK, url.pathname.slice("/msgpack/".length));
    else res.writeHead(404).end("not found");
  });
  server.on("upgrade", (req, socket, head) => {
    const upstream = tcpConnect(parityPort, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test(
  "browser: the built ESM client connects to the page's host, calls, streams and gets an event",
  { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (install it: apt-get install -y chromium)`, timeout: 60_000 },
  async () => {
    assert.ok(existsSync(join(DIST, "index.js")), "dist/ is built (npm run build)");
    const { chromium } = await import("playwright-core");
    const parity = await startParity();
    const http = await pageServer(parity.port);
    const { port } = http.address() as AddressInfo;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      // A new context is a fresh profile: nothing cached from another run.
      const context = await browser.newContext();
      const page = await context.newPage();
      const consoleLines: string[] = [];
      page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, {
        timeout: 30_000,
      });
      const result = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as Record<
        string,
        unknown
      >;
      assert.equal(result.ok, true, `page failed: ${String(result.error)}\n${consoleLines.join("\n")}`);
      assert.equal(result.globalWebSocket, true);
      assert.equal(result.url, `ws://127.0.0.1:${port}/_ephaptic`);
      assert.equal(result.sum, 5);
      assert.deepEqual(result.event, { message: "from the browser", level: 2 });
      assert.equal(result.isBytes, true);
      assert.deepEqual(result.bytes, [1, 2, 255]);
      assert.deepEqual(result.chunks, [3, 2, 1]);
      assert.equal(result.errorCode, "INSUFFICIENT_FUNDS");
      assert.equal(result.state, "connected");
      await context.close();
    } finally {
      await browser.close();
      await new Promise((r) => http.close(r));
      http.closeAllConnections();
      await parity.stop();
    }
  },
);
