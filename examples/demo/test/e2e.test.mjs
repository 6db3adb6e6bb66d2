// End to end, as users see it, for both frontends: the demo server (the real binary), Debian's
// chromium driven by playwright-core (headless, a fresh profile per user, --no-sandbox), two
// users in two browser contexts, and assertions on the text of their pages. The React page and
// the Svelte page have the same markup contract (ids and classes), so one scenario runs on each.
//
//   examples/demo/test/run.sh                            # builds what is needed, then runs this
//   node --test examples/demo/test/e2e.test.mjs          # when everything is built
//
// Env: DEMO_BIN       the demo binary (default target/debug/demo, honouring CARGO_TARGET_DIR)
//      CHROMIUM_PATH  the browser (default /usr/bin/chromium)
//      DEMO_FRAMEWORKS  "react", "svelte" or "react,svelte" (the default)
// Screenshots: when a test fails, one per open page in target/demo-e2e/<framework>-<test>-<user>.png;
// after each framework's scenario, target/demo-e2e/<framework>.png (Ann's page).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLIENT = join(ROOT, "ephaptic-ts", "client");
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
const DEMO_BIN = process.env.DEMO_BIN ?? join(TARGET, "debug", "demo");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// Screenshots go to the repository's target/ (not CARGO_TARGET_DIR), where CI keeps artifacts.
const SHOTS = join(ROOT, "target", "demo-e2e");
// Screenshots of an earlier run would be mistaken for this one's.
rmSync(SHOTS, { recursive: true, force: true });
const FRAMEWORKS = (process.env.DEMO_FRAMEWORKS ?? "react,svelte").split(",").filter(Boolean);
// How long a page may take to show what it should; events arrive in milliseconds.
const SEE_MS = 5_000;
// How long pages may take to come back after the server restarts (the demo's client caps its
// reconnection backoff at 1.5 s).
const RECONNECT_MS = 15_000;
// How long to wait before concluding that an event did not arrive.
const QUIET_MS = 400;

/** Starts the demo binary on `port` (0: a free one); resolves once it printed its URL. */
async function startDemo(port = 0) {
  assert.ok(existsSync(DEMO_BIN), `${DEMO_BIN} is missing: cargo build -p demo (or set DEMO_BIN)`);
  const child = spawn(DEMO_BIN, ["--addr", `127.0.0.1:${port}`], {
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
      const m = /^demo on (http:\/\/127\.0\.0\.1:(\d+)\/)$/.exec(line);
      if (m) resolveUrl(m[1]);
      else reject(new Error(`unexpected first line: ${JSON.stringify(line)}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}

/** Waits until an element matching `selector` that contains `text` is visible on the page. */
async function see(user, selector, text, timeout = SEE_MS) {
  try {
    await user.page.locator(selector, { hasText: text }).first().waitFor({ state: "visible", timeout });
  } catch {
    const shown = await user.page.locator(selector).allInnerTexts().catch(() => []);
    assert.fail(`${user.name}'s page should show ${text} in ${selector}; it shows ${JSON.stringify(shown)}`);
  }
}

/** Checks, after a pause long enough for an event to arrive, that `selector` never showed `text`. */
async function neverSees(user, selector, text) {
  await user.page.waitForTimeout(QUIET_MS);
  const shown = await user.page.locator(selector).allInnerTexts();
  assert.ok(!shown.some((s) => s.includes(text)), `${user.name}'s page must not show ${text} in ${selector}; it shows ${JSON.stringify(shown)}`);
}

/** The number the server gave `user` (from "Ann (#1)"). */
async function idOf(user) {
  const id = await user.page.locator("#me").getAttribute("data-id");
  assert.ok(id, `${user.name}'s page shows no user number`);
  return id;
}

/** Opens `url` in a fresh browser context (its own profile) and signs in as `name`. */
async function openAs(browser, url, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    // While the server is down, chromium logs each failed reconnection attempt: expected.
    if (m.type() === "error" && !/WebSocket connection to .* failed/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  const user = { name, page, context, problems };
  await page.goto(url);
  await see(user, "label", "Your name");
  await page.fill("#name-input", name);
  await page.click("#join");
  await see(user, "#me", name);
  await see(user, "#state", "connected");
  return user;
}

const launchArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

for (const framework of FRAMEWORKS) {
  describe(`the ${framework} page`, { timeout: 120_000 }, () => {
    let demo;
    let browser;
    const users = [];
    let ann;
    let bob;

    /** A test that leaves a screenshot of every open page when it fails. */
    const scenario = (name, fn) =>
      test(name, { timeout: 40_000 }, async () => {
        try {
          await fn();
        } catch (e) {
          mkdirSync(SHOTS, { recursive: true });
          const slug = name.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase().slice(0, 60);
          for (const u of users) {
            await u.page.screenshot({ path: join(SHOTS, `${framework}-${slug}-${u.name}.png`), fullPage: true }).catch(() => undefined);
          }
          e.message += `\n(screenshots in ${SHOTS})\n--- demo stderr ---\n${demo?.stderr() ?? ""}`;
          throw e;
        }
      });

    before(async () => {
      assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y chromium; test/run.sh does it)`);
      const { chromium } = createRequire(join(CLIENT, "package.json"))("playwright-core");
      demo = await startDemo();
      browser = await chromium.launch({ executablePath: CHROMIUM, args: launchArgs, timeout: 30_000 });
    });

    after(async () => {
      await browser?.close();
      await demo?.stop();
    });

    scenario("two users sign in by name and see each other online", async () => {
      ann = await openAs(browser, `${demo.url}${framework}/`, "Ann");
      users.push(ann);
      bob = await openAs(browser, `${demo.url}${framework}/`, "Bob");
      users.push(bob);
      // The first name is user 1, the next user 2 (the identity is that integer).
      await see(ann, "#me", "Ann (#1)");
      await see(bob, "#me", "Bob (#2)");
      for (const u of [ann, bob]) {
        await see(u, "#online li", "Ann");
        await see(u, "#online li", "Bob");
      }
      await see(ann, "#clock", /\d{1,2}:\d{2}:\d{2}/); // the clock stream runs
      // Marks the documents: a reload would lose it.
      for (const u of [ann, bob]) await u.page.evaluate(() => (window.__sameDocument = true));
    });

    scenario("a user's second tab is the same one online, and closing it keeps the user online", async () => {
      const again = await openAs(browser, `${demo.url}${framework}/`, "Ann");
      users.push(again);
      await see(again, "#me", "Ann (#1)");
      // Its own snapshot lists it: it was tracked before it watched.
      await see(again, "#online li", "Ann");
      await see(again, "#online li", "Bob");
      await bob.page.waitForTimeout(QUIET_MS); // longer than a presence batch (200 ms)
      for (const u of [ann, bob, again]) {
        const shown = await u.page.locator("#online li").allInnerTexts();
        assert.deepEqual(shown, ["Ann", "Bob"], `${u.name}'s page lists each user once`);
      }
      await again.context.close();
      users.splice(users.indexOf(again), 1);
      await neverSees(bob, "#nothing", "");
      assert.deepEqual(await bob.page.locator("#online li").allInnerTexts(), ["Ann", "Bob"], "Ann's first tab is still open");
      assert.deepEqual(again.problems, [], "no errors in the second tab's console");
    });

    scenario("a broadcast reaches both, with the event's defaults", async () => {
      await ann.page.fill("#message-input", "John created an account!");
      await ann.page.click("#broadcast");
      for (const u of [ann, bob]) {
        await see(u, "#events li", "code 1 · John created an account!");
        await see(u, "#last-event", "John created an account!");
        // Labelled by the server with how it was sent and by whom.
        await see(u, "#events li", "broadcast from Ann · code 1 · John created an account!");
      }
    });

    scenario("to(user) reaches only its target; to(1) and to(1, 2, 3) as the tutorial says", async () => {
      await ann.page.selectOption("#notify-target", await idOf(bob));
      await ann.page.fill("#message-input", "for Bob only");
      await ann.page.click("#notify-user");
      await see(bob, "#events li", "for Bob only");
      await see(bob, "#events li", "to(user 2) from Ann · code 1 · for Bob only");
      // What the answer counts: this server's connections (the only server here).
      await see(ann, "#notify-result", "sent · 1 connection on this server");
      await neverSees(ann, "#events li", "for Bob only");

      // Ann is user 1.
      await bob.page.fill("#message-input", "for user 1");
      await bob.page.click("#notify-one");
      await see(ann, "#events li", "for user 1");
      await see(ann, "#events li", "to(1) from Bob · code 1 · for user 1");
      await see(bob, "#notify-result", "sent · 1 connection on this server");
      await neverSees(bob, "#events li", "for user 1");
      await neverSees(bob, "#events li", "to(1)");

      await bob.page.fill("#message-input", "for users 1, 2 and 3");
      await bob.page.click("#notify-three");
      await see(ann, "#events li", "for users 1, 2 and 3");
      await see(bob, "#events li", "for users 1, 2 and 3");
      for (const u of [ann, bob]) await see(u, "#events li", "to(1, 2, 3) from Bob · code 1 · for users 1, 2 and 3");
      await see(bob, "#notify-result", "sent · 2 connections on this server");

      // Each page shows exactly what reached its user, and how and from whom: to(1) only on
      // user 1's page, to(user 2) only on user 2's.
      assert.deepEqual(
        await ann.page.locator("#events li").allInnerTexts(),
        [
          "broadcast from Ann · code 1 · John created an account!",
          "to(1) from Bob · code 1 · for user 1",
          "to(1, 2, 3) from Bob · code 1 · for users 1, 2 and 3",
        ],
        "Ann's (user 1's) events",
      );
      assert.deepEqual(
        await bob.page.locator("#events li").allInnerTexts(),
        [
          "broadcast from Ann · code 1 · John created an account!",
          "to(user 2) from Ann · code 1 · for Bob only",
          "to(1, 2, 3) from Bob · code 1 · for users 1, 2 and 3",
        ],
        "Bob's (user 2's) events",
      );
    });

    scenario("a todo created in one page appears in the other without a reload", async () => {
      await see(ann, "#summary", "Nothing to do yet");
      await ann.page.fill("#title-input", "Buy oat milk");
      await ann.page.click("#add");
      await see(ann, "#todos li", "Buy oat milk");
      await see(bob, "#todos li", "Buy oat milk");
      await see(bob, "#todos li", "by Ann");
      assert.equal(await ann.page.inputValue("#title-input"), "", "the title field is cleared after adding");

      // Bob ticks it (todoUpdated); Ann's page shows it done.
      // (A click, not check(): the box shows the server's state, so it turns once the server answered.)
      const bobsBox = bob.page.locator("#todos li", { hasText: "Buy oat milk" }).getByRole("checkbox");
      await bobsBox.click();
      await see(ann, "#summary", "1 of 1 done");
      await see(ann, "#todos li.done", "Buy oat milk");
      await see(bob, "#todos li.done", "Buy oat milk");
      assert.equal(await bobsBox.isChecked(), true);

      // A title the server refuses comes back as the typed INVALID_TITLE error.
      await ann.page.fill("#title-input", "x".repeat(101));
      await ann.page.click("#add");
      await see(ann, "#add-error", "A todo needs a title of 1 to 100 characters. Yours has 101.");

      // Bob deletes it (todoDeleted); Ann's list is empty again.
      await bob.page.getByRole("button", { name: "Delete Buy oat milk" }).click();
      await see(ann, "#summary", "Nothing to do yet");
      assert.equal(await ann.page.locator("#todos li").count(), 0);
      for (const u of [ann, bob]) {
        assert.equal(await u.page.evaluate(() => window.__sameDocument), true, `${u.name}'s page was not reloaded`);
      }
    });

    scenario("chat: a room message reaches both, a direct message only its target", async () => {
      await ann.page.fill("#chat-input", "hello #general");
      await ann.page.click("#send");
      for (const u of [ann, bob]) await see(u, "#messages li", /Ann\s+hello #general/);

      await ann.page.selectOption("#dm-target", await idOf(bob));
      await ann.page.fill("#dm-input", "psst, Bob");
      await ann.page.click("#dm-send");
      await see(bob, "#dms li.in", "from Ann: psst, Bob");
      await see(ann, "#dms li.out", "to Bob: psst, Bob");
      await neverSees(ann, "#dms li.in", "psst, Bob");
    });

    scenario("after the server restarts, the pages reconnect and keep working", async () => {
      const port = demo.port;
      await demo.stop();
      for (const u of [ann, bob]) await see(u, "#state", "reconnecting");
      demo = await startDemo(port);
      for (const u of [ann, bob]) await see(u, "#state", "connected", RECONNECT_MS);
      // The new server knows nobody: each page signs in again by itself (auth on every connection).
      for (const u of [ann, bob]) {
        await see(u, "#me", u.name);
        await see(u, "#online li", "Ann");
        await see(u, "#online li", "Bob");
      }
      // Its state is empty, and the pages refetched it.
      await see(bob, "#summary", "Nothing to do yet");
      await ann.page.fill("#title-input", "after the restart");
      await ann.page.click("#add");
      await see(bob, "#todos li", "after the restart");
      // The pages joined their room again.
      await bob.page.fill("#chat-input", "back again");
      await bob.page.click("#send");
      await see(ann, "#messages li", /Bob\s+back again/);
      await ann.page.fill("#message-input", "still here");
      await ann.page.click("#broadcast");
      await see(bob, "#events li", "still here");
      await see(bob, "#events li", "broadcast from Ann · code 1 · still here");
      for (const u of [ann, bob]) {
        assert.equal(await u.page.evaluate(() => window.__sameDocument), true, `${u.name}'s page was not reloaded`);
      }
    });

    scenario("a page that closes leaves the online list; no errors on the pages", async () => {
      mkdirSync(SHOTS, { recursive: true });
      await ann.page.screenshot({ path: join(SHOTS, `${framework}.png`), fullPage: true });
      await bob.context.close();
      users.splice(users.indexOf(bob), 1);
      await neverSees(ann, "#nothing", "");
      await ann.page.locator("#online li", { hasText: "Bob" }).waitFor({ state: "detached", timeout: SEE_MS });
      await see(ann, "#online li", "Ann");
      assert.deepEqual([...ann.problems, ...bob.problems], [], "no errors in the pages' consoles");
    });

    scenario("signing out and in as someone else is a new client, and the page listens on it", async () => {
      await ann.page.click("#leave");
      await see(ann, "label", "Your name");
      assert.equal(await ann.page.locator("#online").count(), 0, "the signed-out page shows no online list");
      await ann.page.fill("#name-input", "Cy");
      await ann.page.click("#join");
      await see(ann, "#me", "Cy (#3)");
      await see(ann, "#state", "connected");
      await see(ann, "#online li", "Cy");
      await ann.page.fill("#message-input", "hello from Cy");
      await ann.page.click("#broadcast");
      await see(ann, "#events li", "hello from Cy");
      await see(ann, "#events li", "broadcast from Cy · code 1 · hello from Cy");
      assert.deepEqual(ann.problems, [], "no errors in the page's console");
    });
  });
}
