import { Decoder, Encoder } from "@msgpack/msgpack";

// Integers are always decoded as bigint when they travel as 64-bit (msgpack int64/uint64), so no
// precision is ever lost inside the decoder; `fixIntegers` then turns every safe one back into a
// number and decides what to do with the rest.
const decoder = new Decoder({
  useBigInt64: true,
  // Map keys travel as strings in this protocol; a 64-bit integer key is kept readable rather than
  // failing the whole frame.
  mapKeyConverter: (key: unknown): string | number => {
    if (typeof key === "string" || typeof key === "number") return key;
    if (typeof key === "bigint") return isSafe(key) ? Number(key) : key.toString();
    throw new TypeError(`a map key of type ${typeof key} cannot be decoded`);
  },
});

// `ignoreUndefined`: an optional field left `undefined` is left out, as JSON would, so the server
// applies its default instead of receiving nil.
const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true });

export function decodeFrame(bytes: Uint8Array | ArrayBuffer): unknown {
  return decoder.decode(bytes);
}

export function encodeValue(value: unknown): Uint8Array {
  return encoder.encode(value);
}

const MIN = BigInt(Number.MIN_SAFE_INTEGER);
const MAX = BigInt(Number.MAX_SAFE_INTEGER);

function isSafe(n: bigint): boolean {
  return n >= MIN && n <= MAX;
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Rewrites the 64-bit integers of a freshly decoded value in place: one within
 * `Number.MIN_SAFE_INTEGER..MAX_SAFE_INTEGER` becomes a number; one outside stays a bigint when
 * `keepBigInt`, and otherwise is reported as `unsafe` (the first one found) so the caller can fail
 * loudly instead of rounding it.
 */
export function fixIntegers(value: unknown, keepBigInt: boolean): { value: unknown; unsafe: bigint | undefined } {
  let unsafe: bigint | undefined;
  const fix = (v: unknown): unknown => {
    if (typeof v === "bigint") {
      if (isSafe(v)) return Number(v);
      if (!keepBigInt && unsafe === undefined) unsafe = v;
      return v;
    }
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = fix(v[i]);
    } else if (isPlainObject(v)) {
      for (const k of Object.keys(v)) v[k] = fix(v[k]);
    }
    return v;
  };
  const fixed = fix(value);
  return { value: fixed, unsafe };
}

/**
 * Readies a value for the encoder:
 * - Dates travel as ISO-8601 strings (PROTOCOL.md section 1), not as msgpack timestamps;
 * - integers beyond 32 bits become bigint, because the encoder (with `useBigInt64`) would
 *   otherwise write them as float64, which a server expecting an i64 rejects.
 */
export function prepareForWire(value: unknown): unknown {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && (value >= 0x1_0000_0000 || value < -0x8000_0000) ? BigInt(value) : value;
  }
  if (value instanceof Date) return value.toISOString();
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const p = prepareForWire(value[i]);
      if (p !== value[i]) (out ??= value.slice())[i] = p;
    }
    return out ?? value;
  }
  if (isPlainObject(value)) {
    let out: Record<string, unknown> | undefined;
    for (const k of Object.keys(value)) {
      const p = prepareForWire(value[k]);
      if (p !== value[k]) (out ??= { ...value })[k] = p;
    }
    return out ?? value;
  }
  return value;
}

const ARGS_KEY = encodeValue("args");
const TRACEPARENT_KEY = encodeValue("traceparent");

/**
 * Builds `{"type":"rpc","id":id,"name":name,"args":<args>}` from arguments encoded beforehand, with
 * `"key":key` (an idempotency key, PROTOCOL.md 5.12) before `args` when one is given, and
 * `"traceparent":traceparent` (W3C Trace Context, PROTOCOL.md 5.13) last when one is given.
 * The arguments are encoded once, when the call is made (so an unencodable argument fails the call
 * at once with ENCODE_ERROR), while the id is only known when the frame is sent.
 */
export function rpcFrame(id: number, name: string, encodedArgs: Uint8Array, key?: string, traceparent?: string): Uint8Array {
  const head = encodeValue(key === undefined ? { type: "rpc", id, name } : { type: "rpc", id, name, key });
  // A map of three or four entries is a fixmap (0x83, 0x84); with the args pair (and the
  // traceparent pair) appended it has one (two) more, still a fixmap.
  const fixmap = key === undefined ? 0x83 : 0x84;
  if (head[0] !== fixmap) throw new Error("unexpected rpc frame header");
  const tail = traceparent === undefined ? undefined : encodeValue(traceparent);
  const tailLength = tail === undefined ? 0 : TRACEPARENT_KEY.length + tail.length;
  const out = new Uint8Array(head.length + ARGS_KEY.length + encodedArgs.length + tailLength);
  out.set(head, 0);
  out[0] = fixmap + (tail === undefined ? 1 : 2);
  let at = head.length;
  out.set(ARGS_KEY, at);
  at += ARGS_KEY.length;
  out.set(encodedArgs, at);
  at += encodedArgs.length;
  if (tail !== undefined) {
    out.set(TRACEPARENT_KEY, at);
    out.set(tail, at + TRACEPARENT_KEY.length);
  }
  return out;
}

/**
 * Whether `value` is a W3C Trace Context `traceparent` of version 00: `00-<trace id>-<parent id>-<flags>`,
 * 32, 16 and 2 lowercase hex digits, neither id all zeros (both are invalid by the spec).
 */
export function isTraceparent(value: unknown): value is string {
  return typeof value === "string" && TRACEPARENT.test(value);
}

const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Message for an integer that would lose precision as a number. */
export function unsafeIntegerMessage(what: string, n: bigint): string {
  return (
    `${what} contains the integer ${n.toString()}, which cannot be represented exactly as a JavaScript number ` +
    `(outside Number.MIN_SAFE_INTEGER..Number.MAX_SAFE_INTEGER). Pass connect({ bigint: true }) to receive such integers as bigint.`
  );
}
