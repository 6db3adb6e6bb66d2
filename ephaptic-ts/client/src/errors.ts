import type { SessionEnded } from "./types.js";

/** One issue of a `VALIDATION_ERROR`: `loc` is the path to the bad value, e.g. `["item", "tags", 0]`. */
export interface ValidationIssue {
  type: string;
  loc: Array<string | number>;
  msg: string;
  input: unknown;
}

/**
 * The `data` of a `DISCONNECTED` error: whether the call may have run on the server.
 */
export interface DisconnectedData {
  /**
   * `true` when the call's frame was sent before the connection dropped (or `disconnect()` was
   * called): it may or may not have run on the server, so check before retrying it. `false` when
   * it was never sent: it did not run, and retrying it is safe. Always `false` for `ready()`.
   */
  mayHaveRun: boolean;
  /**
   * The idempotency key the call carried (its function is in `connect({ idempotent })`). Retrying
   * with it, `client.withOptions({ idempotencyKey }).fn(...)`, from the same identity and within
   * the server's window (5 minutes by default), gets the first call's answer instead of running it
   * again.
   */
  idempotencyKey?: string;
}

/**
 * The `data` of the error codes every ephaptic server or this client may produce. An application's
 * own codes come from the generated schema's `EphapticErrors` interface.
 */
export interface BuiltinErrors {
  NOT_FOUND: null;
  /** A list of issues; `null` for a malformed rpc frame. */
  VALIDATION_ERROR: ValidationIssue[] | null;
  UNAUTHORIZED: null;
  RATELIMIT: { retry_after: number };
  INTERNAL: null;
  BAD_FRAME: null;
  FRAME_TOO_LARGE: { size: number; limit: number };
  /** An old server's bare-string error. */
  ERROR: null;
  /**
   * A repeat of an idempotent call (same key) that ran already, whose answer was larger than the
   * server keeps to answer repeats (PROTOCOL.md 5.12).
   */
  ALREADY_DONE: null;
  CONNECT_FAILED: null;
  /** Whether the call may have run (it was sent before the drop), and its idempotency key if it had one. */
  DISCONNECTED: DisconnectedData;
  TIMEOUT: null;
  ENCODE_ERROR: null;
  PROTOCOL_ERROR: null;
  /** The server ended the session (close code 4401): its close code and reason. */
  SESSION_ENDED: SessionEnded;
}

/** The codes this client produces itself; no server sends them. */
export type ClientErrorCode =
  | "CONNECT_FAILED"
  | "DISCONNECTED"
  | "TIMEOUT"
  | "ENCODE_ERROR"
  | "PROTOCOL_ERROR"
  | "SESSION_ENDED";

/** Every failure this client reports: a server error reply or one of the client-side codes. */
export class EphapticError<C extends string = string, D = unknown> extends Error {
  readonly code: C;
  readonly data: D;

  constructor(code: C, message: string, data: D, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EphapticError";
    this.code = code;
    this.data = data;
  }

  /**
   * Maps the `error` value of a reply frame. A map gives `{code, message, data}`; a bare string
   * (old servers) gives code `ERROR` with that string as the message.
   */
  static fromWire(error: unknown): EphapticError {
    if (typeof error === "string") return new EphapticError("ERROR", error, null);
    if (error !== null && typeof error === "object" && !Array.isArray(error)) {
      const e = error as Record<string, unknown>;
      const code = typeof e.code === "string" && e.code !== "" ? e.code : "ERROR";
      const message = typeof e.message === "string" ? e.message : `The server failed with ${code}.`;
      return new EphapticError(code, message, e.data === undefined ? null : e.data);
    }
    return new EphapticError("ERROR", "The server sent an error without a code.", error ?? null);
  }
}

/** The data type of `code`: the application's own (`Errs`) first, then the built-in codes. */
export type ErrorData<Errs, C> = C extends keyof Errs
  ? Errs[C]
  : C extends keyof BuiltinErrors
    ? BuiltinErrors[C]
    : unknown;

/**
 * Whether `e` is an {@link EphapticError}, and with a `code`, whether it has that code. Built-in
 * codes narrow `data` (`RATELIMIT` to `{retry_after}`, ...). For an application's codes use
 * `client.isError(e, "CODE")`, which knows the schema's `EphapticErrors`, or name them here:
 * `isEphapticError<EphapticErrors, "INSUFFICIENT_FUNDS">(e, "INSUFFICIENT_FUNDS")`.
 */
export function isEphapticError(e: unknown): e is EphapticError;
export function isEphapticError<Errs = BuiltinErrors, C extends keyof Errs | keyof BuiltinErrors = keyof Errs>(
  e: unknown,
  code: C,
): e is EphapticError<C & string, ErrorData<Errs, C>>;
export function isEphapticError(e: unknown, code: string): e is EphapticError;
export function isEphapticError(e: unknown, code?: string): boolean {
  // Duck-typed as well, so an error from a second copy of this package is still recognised.
  const isOne =
    e instanceof EphapticError ||
    (e instanceof Error && e.name === "EphapticError" && typeof (e as { code?: unknown }).code === "string");
  return isOne && (code === undefined || (e as EphapticError).code === code);
}
