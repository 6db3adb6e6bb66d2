// End to end, as a user sees it: the demo server, two browser windows signed in as Ann and Bob
// (Debian's chromium driven by playwright-core), and assertions on the text on their pages.
//
//   examples/demo/test/run.sh                            # builds what is needed, then runs this
//   node --test examples/demo/test/e2e.test.mjs          # when everything is built
//
// Env: DEMO_BIN  the demo binary (default target/debug/demo, honouring CARGO_TARGET_DIR)
//      CHROMIUM_PATH  the browser (default /usr/bin/chromium)
// Leaves a screenshot of Ann's window in target/demo-e2e.png.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLIENT = join(ROOT, "ephaptic-ts", "client");
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
const DEMO_BIN = process.env.DEMO_BIN ?? join(TARGET, "debug", "demo");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOT = join(TARGET, "demo-e2e.png");
// How long a page may take to show what it should; events arrive in milliseconds.
const SEE_MS = 5_000;

/** Starts the demo binary on a free port; resolves once it printed its URL. */
async function startDemo() {
  assert.ok(existsSync(DEMO_BIN), `${DEMO_BIN} is missing: cargo build -p demo (or set DEMO_BIN)`);
  const child = spawn(DEMO_BIN, ["--addr", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, EPHAPTIC_LOG: "warn" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => child.once("exit", r));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo printed no URL within 10 s\n${stderr}`)), 10_000);
    child.once("exit", (code) => reject(new Error(`the demo exited (${code}) before printing its URL\n${stderr}`)));
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      const m = /^demo on (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line);
      if (m) resolveUrl(m[1]);
      else reject(new Error(`unexpected first line: ${JSON.stringify(line)}`));
    });
  });
  return {
    url,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill();
      await exited;
    },
  };
}

/** Waits until an element matching `selector` that contains `text` is visible on the page. */
async function see(user, selector, text) {
  try {
    await user.page.locator(selector, { hasText: text }).first().waitFor({ state: "visible", timeout: SEE_MS });
  } catch {
    const shown = await user.page.locator(selector).allInnerTexts().catch(() => []);
    assert.fail(`${user.name}'s page should show ${text} in ${selector}; it shows ${JSON.stringify(shown)}`);
  }
}

/** Opens the demo in a fresh browser profile and joins under `name` with the name form. */
async function openAs(browser, url, name) {
  const context = await browser.newContext({ viewport: { width: 760, height: 620 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  const user = { name, page, problems };
  await page.goto(url);
  await see(user, "label", "Your name");
  await page.fill("#name-input", name);
  await page.click("#join");
  await see(user, ".who", `Signed in as ${name}`);
  await see(user, "#state", "connected");
  return user;
}

test("two users see each other's todos live, with typed errors and presence", { timeout: 30_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y chromium; test/run.sh does it)`);
  const { chromium } = createRequire(join(CLIENT, "package.json"))("playwright-core");
  const demo = await startDemo();
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
    const ann = await openAs(browser, demo.url, "Ann");
    const bob = await openAs(browser, demo.url, "Bob");

    // The connect hook announced each arrival; the last Presence event counts both.
    await see(ann, "#presence", "2 online");
    await see(bob, "#presence", "2 online");
    await see(ann, "#summary", "Nothing to do yet");
    await see(ann, "#clock", /\d{1,2}:\d{2}:\d{2}/); // the clock stream is running

    // Ann adds a todo; Bob's page shows it without reloading (the todoCreated channel).
    await bob.page.evaluate(() => (window.__sameDocument = true));
    await ann.page.fill("#title-input", "Buy oat milk");
    await ann.page.click("#add");
    await see(ann, "#todos li", "Buy oat milk");
    await see(bob, "#todos li", "Buy oat milk");
    await see(bob, "#todos li", "by Ann");
    assert.equal(await bob.page.evaluate(() => window.__sameDocument), true, "Bob's page was not reloaded");
    assert.equal(await ann.page.inputValue("#title-input"), "", "the title field is cleared after adding");

    // Bob ticks it; Ann's page shows it done (the todoUpdated channel).
    await bob.page.locator("#todos li", { hasText: "Buy oat milk" }).getByRole("checkbox").check();
    await see(ann, "#summary", "1 of 1 done");
    await see(ann, "#todos li.done", "Buy oat milk");
    assert.equal(await ann.page.locator("#todos li", { hasText: "Buy oat milk" }).getByRole("checkbox").isChecked(), true);
    await see(bob, "#summary", "1 of 1 done");

    // Titles the server refuses come back as the typed INVALID_TITLE error, shown on the page.
    await ann.page.fill("#title-input", "x".repeat(101));
    await ann.page.click("#add");
    await see(ann, "#add-error", "A todo needs a title of 1 to 100 characters. Yours has 101.");
    await ann.page.fill("#title-input", "");
    await ann.page.click("#add");
    await see(ann, "#add-error", "A todo needs a title of 1 to 100 characters.");
    assert.equal(await ann.page.locator("#add-error").innerText(), "A todo needs a title of 1 to 100 characters.");
    assert.equal(await bob.page.locator("#todos li").count(), 1, "refused titles create nothing");

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await ann.page.screenshot({ path: SCREENSHOT });

    assert.deepEqual([...ann.problems, ...bob.problems], [], "no errors in the pages' consoles");

    // Bob leaves; the disconnect hook tells Ann.
    await bob.page.close();
    await see(ann, "#presence", "1 online");
  } catch (e) {
    e.message += `\n--- demo stderr ---\n${demo.stderr()}`;
    throw e;
  } finally {
    await browser.close();
    await demo.stop();
  }
});
