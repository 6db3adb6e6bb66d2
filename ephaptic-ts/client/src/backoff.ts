/** How the client spaces reconnect attempts. */
export interface BackoffOptions {
  /** Delay scale of the first retry, in ms (the first retry waits `baseMs/2 .. baseMs`). Default 500. */
  baseMs: number;
  /** Largest delay before jitter, in ms (retries then wait `capMs/2 .. capMs`). Default 30 000. */
  capMs: number;
  /**
   * At most this many connection attempts in any 60 s window, whatever happens: this is what stops
   * a reconnect storm when a server accepts connections and drops them at once (which resets the
   * exponential backoff every time). Default 10.
   */
  maxPerMinute: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  baseMs: 500,
  capMs: 30_000,
  maxPerMinute: 10,
});

export const WINDOW_MS = 60_000;

/**
 * The delay before retry number `attempt` (0 for the first retry after a failure): exponential,
 * capped, with "equal jitter" (a random half on top of a fixed half), so clients that lost the same
 * server spread out while none retries sooner than half the nominal delay.
 */
export function backoffDelay(
  attempt: number,
  options: Pick<BackoffOptions, "baseMs" | "capMs"> = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const nominal = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(attempt, 0), 52));
  return nominal / 2 + random() * (nominal / 2);
}

/**
 * The delay before the next connection attempt: the backoff delay, stretched when needed so that
 * the attempt would not be more than `maxPerMinute` in any window of 60 s.
 * `recentAttempts` holds the start times (ms) of earlier attempts, in any order; only the last
 * `maxPerMinute` matter.
 */
export function nextAttemptDelay(
  attempt: number,
  recentAttempts: readonly number[],
  now: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const delay = backoffDelay(attempt, options, random);
  const max = Math.max(1, Math.floor(options.maxPerMinute));
  if (recentAttempts.length < max) return delay;
  const sorted = [...recentAttempts].sort((a, b) => a - b);
  // With n earlier attempts, the new one at time T keeps every 60 s window at `max` or fewer
  // exactly when T is at least 60 s after the max-th most recent attempt.
  const earliest = (sorted[sorted.length - max] as number) + WINDOW_MS;
  return Math.max(delay, earliest - now);
}
