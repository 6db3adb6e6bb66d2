import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_BACKOFF, WINDOW_MS, backoffDelay, nextAttemptDelay } from "../../dist/backoff.js";

const lowest = () => 0;
const highest = () => 0.999999;

test("backoff doubles from the base, stays within [nominal/2, nominal], and is capped", () => {
  const expected = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  expected.forEach((nominal, attempt) => {
    assert.equal(backoffDelay(attempt, DEFAULT_BACKOFF, lowest), nominal / 2, `attempt ${attempt} low`);
    const high = backoffDelay(attempt, DEFAULT_BACKOFF, highest);
    assert.ok(high <= nominal && high > nominal * 0.99, `attempt ${attempt} high ${high}`);
  });
  for (let attempt = 0; attempt < 2000; attempt += 37) {
    const d = backoffDelay(attempt, DEFAULT_BACKOFF, Math.random);
    assert.ok(d >= 250 && d <= 30_000 && Number.isFinite(d), `attempt ${attempt}: ${d}`);
  }
});

test("jitter spreads clients out", () => {
  const delays = new Set(Array.from({ length: 50 }, () => Math.round(backoffDelay(5, DEFAULT_BACKOFF))));
  assert.ok(delays.size > 10);
});

/** Simulates reconnecting for `minutes`; `flapping` = every attempt connects and drops at once. */
function simulate(flapping: boolean, random: () => number, minutes = 30): number[] {
  const times: number[] = [];
  let now = 0;
  let attempt = 0;
  times.push(now); // the first connection attempt
  while (now < minutes * 60_000) {
    const delay = nextAttemptDelay(attempt, times.slice(-DEFAULT_BACKOFF.maxPerMinute), now, DEFAULT_BACKOFF, random);
    assert.ok(delay > 0);
    now += delay;
    times.push(now);
    attempt = flapping ? 0 : attempt + 1;
  }
  return times;
}

function maxInAnyWindow(times: number[]): number {
  let max = 0;
  for (let i = 0; i < times.length; i++) {
    let j = i;
    while (j < times.length && (times[j] as number) < (times[i] as number) + WINDOW_MS) j++;
    max = Math.max(max, j - i);
  }
  return max;
}

test("a server that stays down gets no more than maxPerMinute attempts in any minute", () => {
  for (const random of [lowest, highest, Math.random]) {
    const times = simulate(false, random);
    assert.ok(maxInAnyWindow(times) <= DEFAULT_BACKOFF.maxPerMinute);
    // and the backoff settles at the cap: a few attempts a minute, not zero
    const lastMinute = times.filter((t) => t > (times.at(-1) as number) - WINDOW_MS).length;
    assert.ok(lastMinute >= 2 && lastMinute <= 4, `last minute: ${lastMinute}`);
  }
});

test("a server that accepts and drops at once cannot cause a reconnect storm", () => {
  for (const random of [lowest, highest, Math.random]) {
    const times = simulate(true, random);
    assert.equal(maxInAnyWindow(times), DEFAULT_BACKOFF.maxPerMinute);
    // 30 minutes at most 10 a minute
    assert.ok(times.length <= 30 * DEFAULT_BACKOFF.maxPerMinute + 1, `${times.length} attempts`);
  }
});

test("the rate bound follows the option", () => {
  const options = { ...DEFAULT_BACKOFF, maxPerMinute: 3 };
  const times = [0, 100, 200];
  // A 4th attempt must wait until 60 s after the first of the last three.
  assert.equal(nextAttemptDelay(0, times, 300, options, lowest), 60_000 - 300);
  assert.equal(nextAttemptDelay(0, [0, 100], 300, options, lowest), 250);
});
