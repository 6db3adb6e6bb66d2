// The inspector page in a real browser: Debian's chromium driven by playwright-core (headless,
// --no-sandbox). tests/tests/inspector.rs starts a server with `Server::inspector("/_inspect")`
// on a free loopback port and runs this script against it:
//
//   INSPECTOR_URL=http://127.0.0.1:PORT/_inspect WS_URL=ws://127.0.0.1:PORT/_ephaptic \
//   SHOT_DIR=target/inspector-browser node tests/browser/inspector.mjs
//
// It opens the page, traces s:alice, then a second page of the server's origin opens a WebSocket
// as alice and calls `inspect_say`; the test passes when the page's live view shows the call in
// the functions table and in alice's trace (the call, its result, the event she was sent).
// On failure it saves a screenshot in SHOT_DIR, prints its path and exits 1; on success it saves
// SHOT_DIR/inspector.png. Env: CHROMIUM_PATH (default /usr/bin/chromium).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const PAGE = process.env.INSPECTOR_URL;
const WS = process.env.WS_URL;
const SHOTS = resolve(process.env.SHOT_DIR ?? "target/inspector-browser");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// How long the page may take to show what it should: it polls every second.
const SEE_MS = 10_000;

if (!PAGE || !WS) {
  console.error("INSPECTOR_URL and WS_URL are needed");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout: 30_000,
});
const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
const page = await context.newPage();
// A Content-Security-Policy violation, a script error, a failed request: all fail the test.
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));

/** Waits for `check` (run in the page) to return a truthy value; fails with `what`. */
async function see(what, check, arg) {
  try {
    await page.waitForFunction(check, arg, { timeout: SEE_MS, polling: 100 });
  } catch {
    throw new Error(`the page should show ${what}; status: ${await page.locator("#status").innerText().catch(() => "?")}`);
  }
}

let step = "open the page";
try {
  const response = await page.goto(PAGE);
  if (!response || response.status() !== 200) throw new Error(`the page answered ${response?.status()}`);
  await see("that it is live", () => document.querySelector("#status")?.textContent.startsWith("live"));

  step = "trace s:alice";
  await page.fill("#trace-input", "s:alice");
  await page.click("#trace-start");
  await see("that it traces s:alice", () => document.querySelector("#trace-note")?.textContent.startsWith("Tracing s:alice"));

  step = "a second client calls inspect_say as alice";
  // A second tab of the inspector (a page of the server's origin, on loopback: a WebSocket from
  // there passes the server's origin check and chromium's local network checks, and the page's
  // policy lets it connect to its own origin).
  const client = await context.newPage();
  client.on("console", (m) => {
    if (m.type() === "error") problems.push(`client console: ${m.text()}`);
  });
  await client.goto(PAGE);
  const reply = await client.evaluate(async (url) => {
    // Just enough MessagePack for these two frames: short strings, small integers, arrays, maps.
    const text = new TextEncoder();
    const encode = (value) => {
      const out = [];
      const put = (v) => {
        if (typeof v === "string") {
          const b = text.encode(v);
          out.push(0xa0 | b.length, ...b);
        } else if (typeof v === "number") {
          out.push(v);
        } else if (Array.isArray(v)) {
          out.push(0x90 | v.length);
          v.forEach(put);
        } else {
          const entries = Object.entries(v);
          out.push(0x80 | entries.length);
          for (const [k, x] of entries) {
            put(k);
            put(x);
          }
        }
      };
      put(value);
      return new Uint8Array(out);
    };
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    window.__ws = ws; // kept open: the connection stays listed
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = () => fail(new Error("the WebSocket did not open"));
    });
    const frames = [];
    const answered = new Promise((ok) => {
      ws.onmessage = (m) => {
        const seen = new TextDecoder().decode(m.data);
        frames.push(seen);
        if (seen.includes("result") || seen.includes("error")) ok();
      };
    });
    ws.send(encode({ type: "init", auth: "alice" }));
    ws.send(encode({ type: "rpc", id: 1, name: "inspect_say", args: ["from the browser"] }));
    await Promise.race([answered, new Promise((_, fail) => setTimeout(() => fail(new Error("no answer within 5 s")), 5000))]);
    return frames.join(" | ");
  }, WS);
  if (!reply.includes("result")) throw new Error(`inspect_say was not answered with a result: ${reply}`);

  step = "the call shows live";
  await see("one call of inspect_say in the functions table", () => {
    const row = document.querySelector('#functions-body tr[data-name="inspect_say"]');
    return row && row.children[4].textContent === "1";
  });
  await see("alice's connection in the identities", () =>
    [...document.querySelectorAll("#identities-body td")].some((td) => td.textContent === "s:alice"),
  );
  await see("the call, its result and the event in alice's trace", () => {
    const rows = [...document.querySelectorAll("#trace-rows tr")].map((tr) => [...tr.children].map((td) => td.textContent));
    const call = rows.some((r) => r[3] === "rpc" && r[4] === "inspect_say" && r[5] === "1");
    const result = rows.some((r) => r[3] === "result" && r[5] === "1");
    const event = rows.some((r) => r[3] === "event" && r[4] === "Said");
    return call && result && event;
  });
  const shown = await page.locator("#trace-rows").innerText();
  if (shown.includes("from the browser")) throw new Error(`the trace shows a value: ${shown}`);
  if (problems.length) throw new Error(`the page reported problems:\n${problems.join("\n")}`);

  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, "inspector.png"), fullPage: true });
  console.log("ok: the inspector showed the call live");
  await browser.close();
} catch (e) {
  mkdirSync(SHOTS, { recursive: true });
  const shot = join(SHOTS, "failure.png");
  await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
  console.error(`failed at "${step}": ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  console.error(`screenshot: ${shot}`);
  await browser.close().catch(() => undefined);
  process.exit(1);
}
