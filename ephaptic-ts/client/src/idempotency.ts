// Idempotency keys (PROTOCOL.md 5.12): what a call of an `#[expose(idempotent)]` function carries
// in its rpc frame's `key`, so that the server runs it once however often it is sent.

/** The longest key the server takes, in bytes (UTF-8). */
export const MAX_KEY_BYTES = 128;

/** The part of Web Crypto a key needs (`globalThis.crypto` in browsers and Node 20). */
interface CryptoLike {
  randomUUID?: () => string;
  getRandomValues?: (array: Uint8Array) => Uint8Array;
}

/**
 * A fresh idempotency key: a random (version 4) UUID. Keys must be unguessable and never reused:
 * anonymous callers share one scope on the server, so a key is all that tells their calls apart.
 */
export function newIdempotencyKey(crypto: CryptoLike | undefined = (globalThis as { crypto?: CryptoLike }).crypto): string {
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  // randomUUID exists only in secure contexts (https, localhost); getRandomValues everywhere.
  if (typeof crypto?.getRandomValues === "function") {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
    b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  throw new Error(
    "Cannot make an idempotency key: this runtime has no crypto.getRandomValues (Web Crypto). " +
      "Pass your own random key with client.withOptions({ idempotencyKey }).",
  );
}

/** Throws a TypeError unless `key` is a string of 1 to 128 bytes, as the server requires. */
export function checkIdempotencyKey(key: unknown): asserts key is string {
  const bytes = typeof key === "string" ? new TextEncoder().encode(key).length : 0;
  if (typeof key !== "string" || bytes === 0 || bytes > MAX_KEY_BYTES) {
    throw new TypeError(
      `idempotencyKey must be a string of 1 to ${MAX_KEY_BYTES} bytes (UTF-8), e.g. crypto.randomUUID(); ` +
        `got ${typeof key === "string" ? `a string of ${bytes} bytes` : String(key)}.`,
    );
  }
}
