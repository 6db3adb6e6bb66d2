import { DEFAULT_BACKOFF, nextAttemptDelay, type BackoffOptions } from "./backoff.js";
import {
  decodeFrame,
  encodeValue,
  fixIntegers,
  isTraceparent,
  prepareForWire,
  rpcFrame,
  unsafeIntegerMessage,
} from "./codec.js";
import { EphapticError, isEphapticError, type DisconnectedData } from "./errors.js";
import { checkIdempotencyKey, newIdempotencyKey } from "./idempotency.js";
import { EventRegistry, eventData, type Listener } from "./events.js";
import { EphapticStream } from "./stream.js";
import { HELLO, HELLO_ID, readHello, readOutcome, REFRESH, SessionListeners, SessionState } from "./session.js";
import type {
  CallOptions,
  Client,
  ConnectOptions,
  ConnectionState,
  ErrorContext,
  Logger,
  QueryClientLike,
  QueryKey,
  Resync,
  SchemaMismatch,
  Session,
  SessionEnded,
  StateChange,
  Untyped,
  WebSocketConstructorLike,
  WebSocketLike,
} from "./types.js";
import { NOT_PROXIED } from "./names.js";
import { DEFAULT_PATH, needsPage, pageLocation, resolveUrl } from "./url.js";
import { PresenceRegistry, type PresenceOptions } from "./presence.js";

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * The close code of a session the server ended (PROTOCOL.md 5.11): logged out, access revoked,
 * credentials expired or refused. The client does not reconnect after it.
 */
export const SESSION_ENDED_CLOSE_CODE = 4401;
// setTimeout cannot wait longer than this; a longer timeout is no timeout.
const MAX_TIMER_MS = 2_147_483_647;
const OPEN = 1;

/** What a step of a connection attempt gives back when it threw (see `Connection.attemptStep`). */
const FAILED: unique symbol = Symbol("FAILED");

/** The hello's arguments, `[]`, encoded once. */
const EMPTY_ARGS = encodeValue([]);

/** `0`, `null`, `Infinity` (and anything past setTimeout's range) mean no timeout. */
export function normalizeTimeout(value: number | null | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  if (value === null || value === 0 || value === Infinity || value > MAX_TIMER_MS) return undefined;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new TypeError(`timeout must be a number of milliseconds >= 0, null or Infinity; got ${String(value)}.`);
  }
  return value;
}

interface PendingCall {
  readonly name: string;
  readonly args: readonly unknown[];
  readonly encodedArgs: Uint8Array;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly timeoutMs: number | undefined;
  /** The idempotency key (PROTOCOL.md 5.12): set for the functions of `connect({ idempotent })`. */
  readonly key: string | undefined;
  /** The W3C traceparent of `connect({ traceparent })`, taken when the call was made (PROTOCOL.md 5.13). */
  readonly traceparent: string | undefined;
  timer?: ReturnType<typeof setTimeout> | undefined;
  /** Its id and socket while it is in flight. */
  id?: number | undefined;
  socket?: WebSocketLike | undefined;
  /** Its frame was handed to a socket (this one or an earlier one): it may have run. */
  sent: boolean;
  settled: boolean;
  cleanup?: () => void;
}

interface OpenStream {
  readonly stream: EphapticStream<unknown>;
  readonly socket: WebSocketLike;
}

function globalWebSocket(): WebSocketConstructorLike | undefined {
  const WS = (globalThis as { WebSocket?: WebSocketConstructorLike }).WebSocket;
  return typeof WS === "function" ? WS : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

const has = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** The hello of the current socket, until it is answered (PROTOCOL.md 5.6). */
interface PendingHello {
  readonly socket: WebSocketLike;
  /** The positions sent in `init.resume`. */
  readonly sent: Record<string, [string, number]> | undefined;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
}

/** The connection and everything riding on it. The public client is a facade over this. */
class Connection {
  readonly events = new EventRegistry();
  private readonly options: ConnectOptions;
  /** The resolved URL; undefined while it waits for a page to resolve against (SSR, Node). */
  private resolvedUrl: string | undefined;
  private WS: WebSocketConstructorLike | undefined;
  private readonly timeoutMs: number | undefined;
  private readonly connectTimeoutMs: number;
  private readonly keepBigInt: boolean;
  private readonly backoff: BackoffOptions | undefined;
  private readonly logger: Logger;
  /** `connect({ idempotent })`: the functions whose calls carry a key and are sent again after a drop. */
  private readonly idempotent: ReadonlySet<string>;
  /** `connect({ outbox })`: calls not sent yet outlive failed connection attempts. */
  private readonly outbox: boolean;
  /** `connect({ traceparent })`: gives each call its W3C trace context. */
  private readonly traceparentOf: (() => unknown) | undefined;
  /** Whether an invalid traceparent was already reported (once per client). */
  private traceparentWarned = false;

  private _state: ConnectionState = "disconnected";
  private readonly stateListeners = new Set<(state: ConnectionState, change: StateChange) => void>();
  private readonly attemptWaiters = new Set<(error?: EphapticError) => void>();

  private socket: WebSocketLike | undefined;
  /** The socket is open and `init` was sent: calls go straight out. */
  private opened = false;
  /** A connection attempt is under way (possibly still waiting for the auth function). */
  private attempting = false;
  /** Whether an attempt was ever started: until then, `on()` may start one too. */
  private started = false;
  private closedForGood = false;
  /** Bumped by every attempt and by disconnect(), so a stale async step can tell it is stale. */
  private generation = 0;
  private nextId = 0;
  private readonly queue: PendingCall[] = [];
  private readonly inflight = new Map<number, PendingCall>();
  private readonly streams = new Map<number, OpenStream>();

  /** Sessions are on (`resume` not false): `v: 2`, the hello, positions, duplicates dropped. */
  private readonly resumeOn: boolean;
  readonly session: SessionState;
  private hello: PendingHello | undefined;
  /** The positions the current connection's `init.resume` carried (groups are answered later, at their join). */
  private lastResume: Record<string, [string, number]> | undefined;
  /** Whether a connection was ever established (its hello answered, or none asked). */
  private connectedBefore = false;
  /** onResync, onSchemaMismatch and the invalidation helper's listeners. */
  readonly listeners = new SessionListeners((error, context) => this.report(error, context));
  /** How the server ended the session (close code 4401); undefined while it has not. */
  private ended: SessionEnded | undefined;
  private readonly endedListeners = new Set<(ended: SessionEnded) => void>();
  /** The connection whose credentials are being refreshed, and whether another refresh was asked meanwhile. */
  private refreshing: WebSocketLike | undefined;
  private refreshAgain = false;

  private attempt = 0;
  private attemptTimes: number[] = [];
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ConnectOptions) {
    this.options = options;
    // Outside a browser (server-side rendering, a module imported in Node) a relative URL cannot
    // be resolved yet, and there may be no WebSocket: creating the client must still work, so
    // both wait for the first attempt (see `environment`). Any other bad URL is an error now.
    if (!(needsPage(options.url) && pageLocation() === undefined)) this.resolvedUrl = resolveUrl(options.url);
    this.WS = options.WebSocket ?? globalWebSocket();
    this.timeoutMs = normalizeTimeout(options.timeout, DEFAULT_TIMEOUT_MS);
    this.connectTimeoutMs = normalizeTimeout(options.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS) ?? MAX_TIMER_MS;
    this.keepBigInt = options.bigint === true;
    this.backoff =
      options.reconnect === false
        ? undefined
        : { ...DEFAULT_BACKOFF, ...(typeof options.reconnect === "object" ? options.reconnect : {}) };
    this.logger = options.logger ?? console;
    const idempotent: unknown = options.idempotent ?? [];
    if (!Array.isArray(idempotent) || idempotent.some((n) => typeof n !== "string")) {
      throw new TypeError("idempotent must be the schema's ephapticIdempotent, a list of function names.");
    }
    this.idempotent = new Set(idempotent as readonly string[]);
    this.outbox = options.outbox === true;
    const traceparent: unknown = options.traceparent;
    if (traceparent !== undefined && typeof traceparent !== "function") {
      throw new TypeError(
        "traceparent must be a function returning a W3C traceparent string (or undefined), called for each call.",
      );
    }
    this.traceparentOf = traceparent as (() => unknown) | undefined;
    this.resumeOn = options.resume !== false;
    if (options.schemaHash !== undefined && typeof options.schemaHash !== "string") {
      throw new TypeError("schemaHash must be the schema's ephapticSchemaHash, a string.");
    }
    this.session = new SessionState(options.schemaHash);
    if (options.onResync) this.listeners.onResync(options.onResync);
    if (options.onSchemaMismatch) this.listeners.onSchemaMismatch(options.onSchemaMismatch);
    if (options.onSessionEnded) this.onSessionEnded(options.onSessionEnded);
  }

  /** The resolved URL, or the URL as given while there is no page to resolve it against. */
  get url(): string {
    if (this.resolvedUrl !== undefined) return this.resolvedUrl;
    const raw = this.options.url;
    return raw === undefined ? DEFAULT_PATH : typeof raw === "string" ? raw : raw.href;
  }

  /**
   * What an attempt needs, the URL and a WebSocket, or why this runtime cannot connect (yet): a
   * relative URL and no page (server-side rendering), or no WebSocket implementation.
   */
  private environment(): { url: string; WS: WebSocketConstructorLike } | EphapticError {
    if (this.resolvedUrl === undefined) {
      if (pageLocation() === undefined) {
        return new EphapticError(
          "CONNECT_FAILED",
          `Cannot connect here: the ephaptic URL ${JSON.stringify(this.url)} is relative and there is no page ` +
            "location to resolve it against (server-side rendering, or Node). Creating the client at import " +
            "time is fine; make calls in the browser (onMount, useEffect, or behind a `browser` check), or " +
            'pass an absolute URL, e.g. connect({ url: "ws://127.0.0.1:8000/_ephaptic" }).',
          null,
        );
      }
      try {
        this.resolvedUrl = resolveUrl(this.options.url);
      } catch (error) {
        return new EphapticError("CONNECT_FAILED", describe(error), null, { cause: error });
      }
    }
    this.WS ??= globalWebSocket();
    if (typeof this.WS !== "function") {
      return new EphapticError(
        "CONNECT_FAILED",
        "No WebSocket implementation: this runtime has no global WebSocket (Node 20 has none). " +
          'Pass one: import { WebSocket } from "ws"; connect({ url, WebSocket }), or run Node with ' +
          "--experimental-websocket (Node 22 and newer have it built in).",
        null,
      );
    }
    return { url: this.resolvedUrl, WS: this.WS };
  }

  get state(): ConnectionState {
    return this._state;
  }

  // --- state ---------------------------------------------------------------------------------

  private setState(state: ConnectionState, extra: Omit<StateChange, "previous"> = {}): void {
    const previous = this._state;
    if (previous === state) return;
    this._state = state;
    const change: StateChange = { previous, ...extra };
    for (const listener of [...this.stateListeners]) {
      try {
        listener(state, change);
      } catch (error) {
        this.report(error, { kind: "state-listener", state });
      }
    }
  }

  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void {
    if (typeof callback !== "function") throw new TypeError("onStateChange needs a function.");
    const wrapped = (s: ConnectionState, c: StateChange): void => callback(s, c);
    this.stateListeners.add(wrapped);
    return () => {
      this.stateListeners.delete(wrapped);
    };
  }

  report(error: unknown, context: ErrorContext): void {
    if (this.options.onError) {
      try {
        this.options.onError(error, context);
        return;
      } catch (e) {
        this.logger.error("[ephaptic] the onError option threw:", e);
      }
    }
    const where =
      context.kind === "state-listener"
        ? `a state listener (state ${context.state})`
        : context.kind === "invalidation"
          ? `query invalidation for event '${context.event}'`
          : context.kind === "resync-listener"
            ? `a resync listener (stream ${context.stream})`
            : context.kind === "schema-listener"
              ? "a schema mismatch listener"
              : context.kind === "session-listener"
                ? "a session-ended listener"
                : `a listener of event '${context.event}'`;
    this.logger.error(`[ephaptic] ${where} threw:`, error);
  }

  ready(): Promise<void> {
    if (this._state === "connected") return Promise.resolve();
    if (this.closedForGood) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      // The waiter is in place before an attempt starts: one that fails at once (the WebSocket
      // constructor throws) reaches it, rather than ending before anyone listens.
      this.attemptWaiters.add((error) => (error ? reject(error) : resolve()));
      if (this._state === "disconnected") {
        const blocked = this.start("connecting");
        if (blocked) this.attemptEnded(blocked);
      }
    });
  }

  /** Tells `ready()` callers how the attempt they waited for ended. */
  private attemptEnded(error?: EphapticError): void {
    const waiters = [...this.attemptWaiters];
    this.attemptWaiters.clear();
    for (const w of waiters) w(error);
  }

  // --- connecting ----------------------------------------------------------------------------

  /**
   * Starts a connection attempt now, unless one is under way or the client is closed. Returns why
   * this runtime cannot connect, if it cannot (no attempt is made then, the state stays).
   */
  start(state: "connecting" | "reconnecting"): EphapticError | undefined {
    if (this.closedForGood || this.socket || this.attempting) return undefined;
    const env = this.environment();
    if (env instanceof EphapticError) return env;
    this.started = true;
    this.setState(state);
    void this.open(env.url, env.WS);
    return undefined;
  }

  /** Starts the first attempt if none was ever made (a client created where it could not connect). */
  wake(): void {
    if (!this.started) this.start("connecting");
  }

  private async open(url: string, WS: WebSocketConstructorLike): Promise<void> {
    this.attempting = true;
    const generation = ++this.generation;
    const now = Date.now();
    this.attemptTimes.push(now);
    if (this.attemptTimes.length > 64) this.attemptTimes.splice(0, this.attemptTimes.length - 64);

    // The whole attempt (auth function included) has connectTimeout to succeed.
    this.connectTimer = setTimeout(() => {
      if (generation !== this.generation || this.opened) return;
      this.generation++; // an auth function still running belongs to a dead attempt now
      this.dropSocket();
      this.attemptFailed(
        new EphapticError(
          "CONNECT_FAILED",
          `Could not connect to ${this.url}: not connected within ${this.connectTimeoutMs} ms.`,
          null,
        ),
      );
    }, this.connectTimeoutMs);

    let auth = this.options.auth;
    if (typeof auth === "function") {
      // Called from a promise so that even a synchronous throw fails the attempt asynchronously,
      // after connect() returned and its caller could call ready().
      const fn = auth as () => unknown;
      auth = await Promise.resolve()
        .then(fn)
        .catch((error: unknown) => this.stepFailed(generation, "The auth function failed", error));
      if (auth === FAILED || generation !== this.generation) return;
    }

    const init: Record<string, unknown> = { type: "init" };
    if (auth !== undefined) init.auth = auth;
    // No socket is open now, so no event can move a position before this is sent.
    const resume = this.resumeOn ? this.session.positions.resume() : undefined;
    if (this.resumeOn) {
      init.v = 2;
      if (resume) init.resume = resume;
      // This client answers `refresh` frames: credentials that expire are renewed in band.
      init.refresh = true;
    }
    const initBytes = this.attemptStep(generation, "Could not encode the auth value", () =>
      encodeValue(prepareForWire(init)),
    );
    if (initBytes === FAILED) return;

    const ws = this.attemptStep(generation, `Could not connect to ${this.url}`, () => {
      const socket = new WS(url);
      socket.binaryType = "arraybuffer";
      return socket;
    });
    if (ws === FAILED) return;
    this.socket = ws;

    ws.onopen = () => {
      if (this.socket !== ws) return;
      clearTimeout(this.connectTimer);
      const sent = this.attemptStep(generation, `Could not send init to ${this.url}`, () => ws.send(initBytes));
      if (sent === FAILED) return;
      this.trace("out", init);
      if (this.resumeOn) {
        // The hello goes right after init, before any call, without waiting (PROTOCOL.md 5.6).
        const helloSent = this.attemptStep(generation, `Could not send the hello to ${this.url}`, () =>
          ws.send(rpcFrame(HELLO_ID, HELLO, EMPTY_ARGS)),
        );
        if (helloSent === FAILED) return;
        this.trace("out", { type: "rpc", id: HELLO_ID, name: HELLO, args: [] });
        this.hello = { socket: ws, sent: resume, timer: this.helloTimer(ws) };
        this.lastResume = resume;
      }
      this.attempting = false;
      this.opened = true;
      this.nextId = 0;
      this.attempt = 0;
      // Without sessions the connection is up now; with them, once the hello is answered (after
      // the events it replays). Calls go out at once either way.
      if (!this.resumeOn) this.established(this.session.applyLegacy(this._state === "reconnecting"));
      // Queued calls go out in the order they were made; each takes the next id.
      for (const call of this.queue.splice(0)) {
        if (!call.settled) this.send(call);
      }
    };
    ws.onmessage = (event: { data: unknown }) => {
      if (this.socket === ws) this.receive(event.data);
    };
    ws.onclose = (event: { code?: number; reason?: string }) => this.socketClosed(ws, event);
    // An error is always followed by a close event, which is where it is handled.
    ws.onerror = () => {};
  }

  /**
   * Runs `step`, one step of connection attempt `generation`. If it throws, the attempt fails (see
   * `stepFailed`) and the result is FAILED: the caller stops there.
   */
  private attemptStep<T>(generation: number, failure: string, step: () => T): T | typeof FAILED {
    try {
      return step();
    } catch (error) {
      return this.stepFailed(generation, failure, error);
    }
  }

  /**
   * A step of connection attempt `generation` threw `error`. Unless that attempt is already over
   * (timed out, or `disconnect()` was called), its socket, if it has one, is closed and it fails
   * with CONNECT_FAILED, "`failure`: <the error's message>", with `error` as the cause.
   */
  private stepFailed(generation: number, failure: string, error: unknown): typeof FAILED {
    if (generation !== this.generation) return FAILED;
    this.dropSocket();
    this.attemptFailed(new EphapticError("CONNECT_FAILED", `${failure}: ${describe(error)}`, null, { cause: error }));
    return FAILED;
  }

  /** Lets go of the socket of an attempt that failed, closing it. */
  private dropSocket(): void {
    const ws = this.socket;
    this.socket = undefined;
    if (!ws) return;
    this.detach(ws);
    try {
      ws.close();
    } catch {
      // closing a socket that never opened (or is already closing) may throw in some implementations
    }
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = () => {};
  }

  private socketClosed(ws: WebSocketLike, event: { code?: number; reason?: string }): void {
    if (this.socket !== ws) return;
    this.detach(ws);
    clearTimeout(this.connectTimer);
    this.socket = undefined;
    const helloPending = this.clearHello();
    const code = typeof event.code === "number" ? event.code : 1006;
    const reason = typeof event.reason === "string" ? event.reason : "";
    if (code === SESSION_ENDED_CLOSE_CODE) {
      // Final, whenever it comes (during an attempt, before the hello's answer, or later): the
      // same credentials would be refused again, so there is no reconnect.
      this.endSession({ code, reason });
      return;
    }
    if (!this.opened) {
      this.attemptFailed(
        new EphapticError(
          "CONNECT_FAILED",
          `Could not connect to ${this.url} (close code ${code}${reason ? `: ${reason}` : ""}).`,
          null,
        ),
        code,
        reason,
      );
      return;
    }
    this.opened = false;
    if (code === 1008) {
      this.logger.warn(
        `[ephaptic] the server closed the connection with 1008 (${reason || "policy violation"}); ` +
          "reconnecting. Events sent meanwhile are lost: refetch what they would have updated.",
      );
    }
    this.dropInflight(`The connection closed (code ${code}${reason ? `: ${reason}` : ""}) before the reply arrived.`);
    // Closed before the hello was answered: the attempt `ready()` waited for failed.
    if (helloPending) {
      this.attemptEnded(
        new EphapticError(
          "CONNECT_FAILED",
          `Could not connect to ${this.url}: the connection closed (code ${code}${reason ? `: ${reason}` : ""}) before the session was established.`,
          null,
        ),
      );
    }
    this.afterDrop({ code, reason });
  }

  // --- sessions (PROTOCOL.md 5.6; the bookkeeping is in session.ts) ---------------------------

  /** Without an answer within connectTimeout, the connection goes on as one without sessions. */
  private helloTimer(ws: WebSocketLike): ReturnType<typeof setTimeout> | undefined {
    if (this.connectTimeoutMs >= MAX_TIMER_MS) return undefined;
    return setTimeout(() => {
      if (this.hello?.socket !== ws) return;
      this.hello = undefined;
      this.releaseEarly();
      if (this.socket !== ws) return;
      this.logger.warn(
        `[ephaptic] the server did not answer the session hello within ${this.connectTimeoutMs} ms; ` +
          "going on without sessions on this connection (what was missed counts as lost).",
      );
      this.established(this.session.applyLegacy(this._state === "reconnecting", "timeout"));
    }, this.connectTimeoutMs);
  }

  /** What came before the hello's answer, in order, from the positions the connection resumed from. */
  private releaseEarly(): void {
    const { positions, early } = this.session;
    early.release((stream, epoch, seq) => positions.accept(stream, epoch, seq));
  }

  /** Forgets the pending hello (and what waited for it); returns whether there was one. */
  private clearHello(): boolean {
    this.session.early.drop();
    const pending = this.hello;
    if (!pending) return false;
    clearTimeout(pending.timer);
    this.hello = undefined;
    return true;
  }

  private helloAnswered(frame: Record<string, unknown>): void {
    const pending = this.hello as PendingHello;
    this.releaseEarly();
    // A listener of what was released may have closed the client.
    if (this.socket !== pending.socket) return;
    this.clearHello();
    const result = has(frame, "result") ? readHello(frame.result) : undefined;
    if (!result) {
      // NOT_FOUND from a server without sessions (any other answer is treated the same).
      const code = isMap(frame.error) ? frame.error.code : frame.error;
      if (code !== "NOT_FOUND") {
        this.logger.warn(`[ephaptic] the session hello failed (${String(code ?? "no result")}); going on without sessions.`);
      }
      this.established(this.session.applyLegacy(this._state === "reconnecting"));
      return;
    }
    this.established(this.session.applyHello(result, pending.sent, this.connectedBefore));
  }

  /** The connection is up: state `connected` with the session, then what was lost is reported. */
  private established(lost: readonly Resync[]): void {
    this.connectedBefore = true;
    const session = this.session.snapshot();
    this.setState("connected", session ? { session } : {});
    this.attemptEnded();
    this.listeners.lost(lost);
    if (session) this.listeners.schema(session);
  }

  get sessionSnapshot(): Session | undefined {
    return this.session.snapshot();
  }

  /** A `position` frame (a group joined) or a `resync` frame (events missed live). */
  private streamFrame(frame: Record<string, unknown>): void {
    const stream = frame.stream;
    if (typeof stream !== "string") return;
    if (frame.type === "position") {
      const outcome = readOutcome(stream, frame);
      if (!outcome) return;
      const lost = this.session.applyPosition(outcome, this.askedFor(stream));
      if (lost) this.listeners.lost([lost]);
      return;
    }
    const outcome = readOutcome(stream, frame);
    if (!outcome) return;
    this.listeners.lost([this.session.applyResync(stream, outcome.epoch, outcome.offset, outcome.reason ?? "gap")]);
  }

  /** Whether the current connection's init asked to resume `stream`. */
  private askedFor(stream: string): boolean {
    return this.lastResume?.[stream] !== undefined;
  }

  private attemptFailed(error: EphapticError, code?: number, reason?: string): void {
    clearTimeout(this.connectTimer);
    this.attempting = false;
    // Calls waiting for this attempt learn that it failed rather than waiting without end, unless
    // they are kept for the next one (idempotent calls sent before, the outbox).
    for (const call of this.queue.splice(0)) {
      if (this.keeps(call)) this.queue.push(call);
      else this.settle(call, undefined, error);
    }
    this.attemptEnded(error);
    const extra: Omit<StateChange, "previous"> = { error };
    if (code !== undefined) extra.code = code;
    if (reason) extra.reason = reason;
    this.afterDrop(extra);
  }

  private afterDrop(extra: Omit<StateChange, "previous">): void {
    if (this.closedForGood) return;
    if (!this.backoff) {
      this.setState("disconnected", extra);
      return;
    }
    const delay = nextAttemptDelay(this.attempt, this.attemptTimes, Date.now(), this.backoff);
    this.attempt++;
    this.setState("reconnecting", extra);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.start("reconnecting");
    }, delay);
  }

  disconnect(): void {
    if (this.closedForGood) return;
    this.shutDown(this.closedError(), {});
  }

  /**
   * Closes for good: no attempt any more, the socket (if any) closed, everything waiting rejected
   * with `error`, state `closed` with `extra`.
   */
  private shutDown(error: EphapticError, extra: Omit<StateChange, "previous">): void {
    this.closedForGood = true;
    this.attempting = false;
    this.generation++;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.connectTimer);
    const ws = this.socket;
    this.socket = undefined;
    this.opened = false;
    this.clearHello();
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, "client disconnect");
      } catch {
        // a socket still connecting may refuse a close code
      }
    }
    const why = error.message;
    for (const call of this.queue.splice(0)) this.settle(call, undefined, this.ended ? error : this.disconnected(call, why));
    const calls = [...this.inflight.values()];
    this.inflight.clear();
    for (const call of calls) this.settle(call, undefined, this.ended ? error : this.disconnected(call, why));
    this.failStreams(this.ended ? error : this.disconnected(undefined, why, true));
    this.attemptEnded(error);
    this.setState("closed", extra);
  }

  /** The server ended the session (close code 4401): closed for good, then `onSessionEnded`. */
  private endSession(ended: SessionEnded): void {
    if (this.closedForGood) return;
    this.ended = Object.freeze({ code: ended.code, reason: ended.reason });
    this.shutDown(this.closedError(), { code: ended.code, reason: ended.reason });
    const listeners = [...this.endedListeners];
    this.endedListeners.clear();
    for (const listener of listeners) {
      try {
        listener(this.ended);
      } catch (error) {
        this.report(error, { kind: "session-listener" });
      }
    }
  }

  get sessionEnded(): SessionEnded | undefined {
    return this.ended;
  }

  onSessionEnded(callback: (ended: SessionEnded) => void): () => void {
    if (typeof callback !== "function") throw new TypeError("onSessionEnded needs a function.");
    const wrapped = (ended: SessionEnded): void => callback(ended);
    // Once the session ended there is nothing more to tell (read `client.sessionEnded`).
    if (!this.ended) this.endedListeners.add(wrapped);
    return () => {
      this.endedListeners.delete(wrapped);
    };
  }

  /** What calls, `ready()` and streams reject with once the client is closed for good. */
  private closedError(): EphapticError {
    const ended = this.ended;
    if (ended) {
      return new EphapticError(
        "SESSION_ENDED",
        `The session ended: the server closed it (close code ${ended.code}${ended.reason ? `: ${ended.reason}` : ""}) ` +
          "and this client does not reconnect with the same credentials. Log in again: create a new client with " +
          "connect() and new credentials.",
        ended,
      );
    }
    return this.disconnected(
      undefined,
      "The client is disconnected: disconnect() was called. Create a new client with connect().",
    );
  }

  /**
   * A `DISCONNECTED` error, `why` followed by whether `call` may have run (its frame was sent) and
   * its idempotency key; `mayHaveRun` without a call (a stream that was open: it ran).
   */
  private disconnected(
    call: PendingCall | undefined,
    why: string,
    mayHaveRun = call?.sent ?? false,
    cause?: unknown,
  ): EphapticError<"DISCONNECTED", DisconnectedData> {
    const data: DisconnectedData = { mayHaveRun };
    let message = why;
    if (call) {
      message += mayHaveRun
        ? ` '${call.name}' was sent: it may or may not have run on the server; check before retrying it.`
        : ` '${call.name}' was never sent: it did not run.`;
    }
    if (call?.key !== undefined) {
      data.idempotencyKey = call.key;
      if (mayHaveRun) {
        message +=
          ` It carried idempotency key ${JSON.stringify(call.key)}: a retry with ` +
          "client.withOptions({ idempotencyKey: error.data.idempotencyKey }) gets its answer instead of running it again.";
      }
    }
    return new EphapticError("DISCONNECTED", message, data, cause === undefined ? undefined : { cause });
  }

  /**
   * Whether `call`, waiting for a connection, outlives a failed attempt or a drop: only while the
   * client reconnects by itself, an idempotent call that was sent (it may have run: the next
   * connection gets its answer) and, with the outbox, any call.
   */
  private keeps(call: PendingCall): boolean {
    return this.backoff !== undefined && !this.closedForGood && (this.outbox || (call.key !== undefined && call.sent));
  }

  /**
   * The connection dropped (`why`): idempotent calls in flight wait for the next connection, to
   * be sent again with their key; the others reject with `DISCONNECTED` (they may have run), and
   * so do open streams.
   */
  private dropInflight(why: string): void {
    const calls = [...this.inflight.values()];
    this.inflight.clear();
    const kept: PendingCall[] = [];
    for (const call of calls) {
      call.id = undefined;
      call.socket = undefined;
      if (call.key !== undefined && this.keeps(call)) kept.push(call);
      else this.settle(call, undefined, this.disconnected(call, why));
    }
    // Ahead of anything queued since (in the order they were made): they were made first.
    this.queue.unshift(...kept);
    this.failStreams(this.disconnected(undefined, why.replace(/before the reply arrived\.$/, "while a stream was open."), true));
  }

  private failStreams(error: EphapticError): void {
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const { stream } of streams) stream.fail(error);
  }

  // --- calls ---------------------------------------------------------------------------------

  invoke(name: string, args: readonly unknown[], options: CallOptions = {}): Promise<unknown> {
    if (typeof name !== "string" || name === "") {
      return Promise.reject(new TypeError("The function name must be a non-empty string."));
    }
    if (this.closedForGood) return Promise.reject(this.closedError());
    let timeoutMs: number | undefined;
    try {
      timeoutMs = options.timeout === undefined ? this.timeoutMs : normalizeTimeout(options.timeout, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
    let encodedArgs: Uint8Array;
    try {
      encodedArgs = encodeValue(prepareForWire(args));
    } catch (error) {
      return Promise.reject(
        new EphapticError("ENCODE_ERROR", `Could not encode the arguments of '${name}': ${describe(error)}`, null, {
          cause: error,
        }),
      );
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error("The call was aborted."));
    let key: string | undefined;
    try {
      key = this.keyFor(name, options.idempotencyKey);
    } catch (error) {
      return Promise.reject(error);
    }

    const traceparent = this.traceparentFor(name);

    return new Promise((resolve, reject) => {
      const call: PendingCall = {
        name,
        args,
        encodedArgs,
        resolve,
        reject,
        timeoutMs,
        key,
        traceparent,
        sent: false,
        settled: false,
      };
      if (timeoutMs !== undefined) {
        call.timer = setTimeout(() => {
          this.abandon(
            call,
            new EphapticError(
              "TIMEOUT",
              `'${name}' got no reply within ${timeoutMs} ms; it was cancelled. ` +
                "Raise the timeout with connect({ timeout }) or client.withOptions({ timeout }).",
              null,
            ),
          );
        }, timeoutMs);
      }
      if (signal) {
        const onAbort = (): void => this.abandon(call, signal.reason ?? new Error("The call was aborted."));
        signal.addEventListener("abort", onAbort, { once: true });
        call.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      if (this.opened) {
        this.send(call);
        return;
      }
      this.queue.push(call);
      if (this._state === "disconnected") {
        const blocked = this.start("connecting");
        if (blocked) {
          this.queue.splice(this.queue.indexOf(call), 1);
          this.settle(call, undefined, blocked);
        }
      }
    });
  }

  /** The idempotency key of a call of `name`: `given` or a fresh one for an idempotent function, else none. */
  private keyFor(name: string, given: string | undefined): string | undefined {
    if (given !== undefined) {
      checkIdempotencyKey(given);
      if (!this.idempotent.has(name)) {
        throw new TypeError(
          `withOptions({ idempotencyKey }): '${name}' is not an idempotent function (not in connect({ idempotent })). ` +
            'Only functions declared #[expose(idempotent)] run once per key: pass the schema\'s list, import { ephapticIdempotent } from "./schema"; connect({ url, idempotent: ephapticIdempotent }).',
        );
      }
      return given;
    }
    return this.idempotent.has(name) ? newIdempotencyKey() : undefined;
  }

  /**
   * The traceparent of a call of `name` (`connect({ traceparent })`), or none.
   *
   * It is taken once, here, when the call is made, not when its frame is sent: the function reads
   * the caller's current trace context (OpenTelemetry's `context.active()`), which exists only
   * while the caller runs. A call made before the connection is up is sent later, from the
   * socket's `open` handler, and a kept idempotent call is re-sent from a later connection's:
   * there the current context is not the caller's (none, or an unrelated one), and asking then
   * would drop the trace or parent the call on the wrong span. A re-send is the same operation
   * (same key, same arguments), so it belongs to the original call's trace.
   */
  private traceparentFor(name: string): string | undefined {
    const fn = this.traceparentOf;
    // The client's own reserved calls (refresh, presence) are not the application's operations.
    if (fn === undefined || name.startsWith("__ephaptic.")) return undefined;
    let value: unknown;
    try {
      value = fn();
    } catch (error) {
      this.logger.warn(`[ephaptic] the traceparent function threw; '${name}' goes out without a traceparent:`, error);
      return undefined;
    }
    if (value === undefined || value === null) return undefined;
    if (isTraceparent(value)) return value;
    if (!this.traceparentWarned) {
      this.traceparentWarned = true;
      const shown =
        typeof value === "string" ? JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value) : `a ${typeof value}`;
      this.logger.warn(
        `[ephaptic] the traceparent function returned ${shown}, which is not a W3C traceparent ` +
          "(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase, ids not all zeros): calls go out " +
          "without it. This is reported once; later invalid values are dropped silently.",
      );
    }
    return undefined;
  }

  private send(call: PendingCall): void {
    const ws = this.socket;
    if (!ws) return;
    const id = ++this.nextId;
    call.id = id;
    call.socket = ws;
    this.inflight.set(id, call);
    try {
      ws.send(rpcFrame(id, call.name, call.encodedArgs, call.key, call.traceparent));
    } catch (error) {
      this.inflight.delete(id);
      call.id = undefined;
      call.socket = undefined;
      // The socket is going: the close that follows brings the next connection.
      if (this.keeps(call)) this.queue.push(call);
      else this.settle(call, undefined, this.disconnected(call, `The socket refused the frame (${describe(error)}).`, call.sent, error));
      return;
    }
    call.sent = true;
    const frame: Record<string, unknown> = { type: "rpc", id, name: call.name, args: call.args };
    if (call.key !== undefined) frame.key = call.key;
    if (call.traceparent !== undefined) frame.traceparent = call.traceparent;
    this.trace("out", frame);
  }

  /** Gives up on a call (timeout, abort): rejects it and, if the server has it, cancels it there. */
  private abandon(call: PendingCall, error: unknown): void {
    if (call.settled) return;
    this.settle(call, undefined, error);
    const queued = this.queue.indexOf(call);
    if (queued >= 0) this.queue.splice(queued, 1);
    if (call.id !== undefined && this.inflight.get(call.id) === call) {
      this.inflight.delete(call.id);
      this.sendCancel(call.id, call.socket);
    }
  }

  private settle(call: PendingCall, value: unknown, error?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    clearTimeout(call.timer);
    call.cleanup?.();
    if (error !== undefined) call.reject(error);
    else call.resolve(value);
  }

  private sendCancel(id: number, socket: WebSocketLike | undefined): void {
    // A call sent on an earlier socket died with it; the server already cancelled it.
    if (!socket || socket !== this.socket || socket.readyState !== OPEN) return;
    const frame = { type: "cancel", id };
    try {
      socket.send(encodeValue(frame));
      this.trace("out", frame);
    } catch {
      // the socket is closing; the server cancels everything of a closed connection
    }
  }

  // --- receiving -----------------------------------------------------------------------------

  private receive(data: unknown): void {
    if (typeof data === "string") {
      this.logger.warn("[ephaptic] skipping a text frame: this protocol uses binary frames only.");
      return;
    }
    let frame: unknown;
    try {
      if (data instanceof ArrayBuffer || data instanceof Uint8Array) frame = decodeFrame(data);
      else if (ArrayBuffer.isView(data)) frame = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      else throw new TypeError(`unexpected message data of type ${typeof data}`);
    } catch (error) {
      this.logger.warn(`[ephaptic] skipping an undecodable frame: ${describe(error)}`);
      return;
    }
    if (!isMap(frame)) {
      this.logger.warn("[ephaptic] skipping a frame that is not a map.");
      return;
    }
    const { unsafe } = fixIntegers(frame, this.keepBigInt);
    this.trace("in", frame);
    if (has(frame, "id") && ["result", "error", "stream", "chunk", "done"].some((k) => has(frame, k))) {
      if (frame.id === HELLO_ID && this.hello) this.helloAnswered(frame);
      else this.reply(frame, unsafe);
    } else if (frame.type === "event") {
      this.event(frame, unsafe);
    } else if (this.resumeOn && (frame.type === "position" || frame.type === "resync")) {
      if (this.hello) this.session.early.holdFrame(() => this.streamFrame(frame));
      else this.streamFrame(frame);
    } else if (this.resumeOn && frame.type === "refresh" && this.socket) {
      this.refreshSoon(this.socket);
    }
    // Anything else is a frame type this client does not know (PROTOCOL.md section 5): ignored.
  }

  private reply(frame: Record<string, unknown>, unsafe: bigint | undefined): void {
    const id = frame.id;
    if (typeof id !== "number") return; // not an id this client sends
    const open = this.streams.get(id);
    if (open) {
      const { stream } = open;
      if (has(frame, "chunk")) {
        if (unsafe !== undefined) {
          this.streams.delete(id);
          stream.fail(new EphapticError("PROTOCOL_ERROR", unsafeIntegerMessage("A chunk of the stream", unsafe), null));
          this.sendCancel(id, open.socket);
        } else {
          stream.push(frame.chunk);
        }
      } else if (has(frame, "error")) {
        this.streams.delete(id);
        stream.fail(EphapticError.fromWire(frame.error));
      } else if (frame.done === true) {
        this.streams.delete(id);
        stream.end();
      } else if (has(frame, "result")) {
        this.streams.delete(id);
        stream.fail(new EphapticError("PROTOCOL_ERROR", "The server sent a result for an open stream.", null));
      }
      return;
    }
    const call = this.inflight.get(id);
    // No call: a late frame for one that timed out or was cancelled ("frames already queued may
    // still arrive", PROTOCOL.md 5.1).
    if (!call) return;
    if (frame.stream === true) {
      this.inflight.delete(id);
      const socket = call.socket as WebSocketLike;
      const stream: EphapticStream<unknown> = new EphapticStream(() => {
        if (this.streams.get(id)?.stream === stream) {
          this.streams.delete(id);
          this.sendCancel(id, socket);
        }
      });
      this.streams.set(id, { stream, socket });
      this.settle(call, stream);
      return;
    }
    if (has(frame, "chunk") || has(frame, "done")) return; // stream frames for a stream never opened
    this.inflight.delete(id);
    if (unsafe !== undefined) {
      this.settle(
        call,
        undefined,
        new EphapticError("PROTOCOL_ERROR", unsafeIntegerMessage(`The reply to '${call.name}'`, unsafe), null),
      );
    } else if (has(frame, "error")) {
      this.settle(call, undefined, EphapticError.fromWire(frame.error));
    } else {
      this.settle(call, frame.result);
    }
  }

  /**
   * Refreshes the credentials of connection `ws`, one refresh at a time (the server refuses a
   * second while one runs): a request that comes meanwhile runs once the current one ended.
   */
  private refreshSoon(ws: WebSocketLike): void {
    if (this.refreshing === ws) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = ws;
    this.refreshAgain = false;
    void this.refresh(ws).finally(() => {
      if (this.refreshing !== ws) return;
      this.refreshing = undefined;
      if (this.refreshAgain && this.socket === ws) this.refreshSoon(ws);
    });
  }

  /**
   * A `refresh` frame (PROTOCOL.md 5.11): the connection's credentials expire soon. Fresh ones
   * (the `auth` option, called again when it is a function) go to the server in the reserved
   * call `__ephaptic.refresh` on this connection, which stays open. If that fails the server
   * ends the session itself (close code 4401) at the expiry, or at once when it refuses them.
   */
  private async refresh(ws: WebSocketLike): Promise<void> {
    let auth = this.options.auth;
    if (typeof auth === "function") {
      const fn = auth as () => unknown;
      try {
        auth = await Promise.resolve().then(fn);
      } catch (error) {
        this.logger.warn(
          `[ephaptic] the auth function failed when the server asked for fresh credentials: ${describe(error)}. ` +
            "The session ends when the current ones expire.",
        );
        return;
      }
    }
    // A connection that closed meanwhile is gone: the next one sends the credentials in its init.
    if (this.socket !== ws || !this.opened) return;
    try {
      // The socket is open, so the call goes out now, ahead of nothing (no queue to wait in).
      await this.invoke(REFRESH, auth === undefined ? [] : [auth]);
    } catch (error) {
      if (isEphapticError(error, "DISCONNECTED") || isEphapticError(error, "SESSION_ENDED")) return;
      const code = isEphapticError(error) ? `${error.code}: ` : "";
      this.logger.warn(
        `[ephaptic] the server did not take the fresh credentials (${code}${describe(error)}); ` +
          "the session ends (close code 4401).",
      );
    }
  }

  private event(frame: Record<string, unknown>, unsafe: bigint | undefined): void {
    const name = frame.name;
    if (typeof name !== "string") return;
    // A positioned event (PROTOCOL.md 5.6): one already handled (replayed and also sent live) is
    // dropped; before the hello's answer they wait for it, to be put in order. Events without a
    // position are always delivered at once.
    const { stream, epoch, seq } = frame;
    if (this.resumeOn && typeof stream === "string" && typeof epoch === "string" && typeof seq === "number") {
      this.session.noteEvent(stream, name);
      if (this.hello) {
        this.session.early.hold(stream, epoch, seq, () => this.deliver(name, frame.payload, unsafe));
        return;
      }
      if (!this.session.positions.accept(stream, epoch, seq)) return;
    }
    this.deliver(name, frame.payload, unsafe);
  }

  private deliver(name: string, payload: unknown, unsafe: bigint | undefined): void {
    if (unsafe !== undefined) {
      this.logger.warn(`[ephaptic] dropping event '${name}': ${unsafeIntegerMessage("it", unsafe)}`);
      return;
    }
    const data = eventData(payload);
    this.events.emit(name, data, (error) => this.report(error, { kind: "event-listener", event: name }));
  }

  private trace(direction: "in" | "out", frame: Record<string, unknown>): void {
    const hook = this.options.trace;
    if (!hook) return;
    try {
      hook(direction, frame);
    } catch (error) {
      this.logger.warn("[ephaptic] the trace hook threw:", error);
    }
  }
}

// --- the public facade ---------------------------------------------------------------------

function callProxy<T extends object>(base: T, makeCall: (name: string) => (...args: unknown[]) => unknown): T {
  const cache = new Map<string, (...args: unknown[]) => unknown>();
  return new Proxy(base, {
    get(target, prop, receiver) {
      if (typeof prop === "symbol" || prop in target) return Reflect.get(target, prop, receiver);
      if (NOT_PROXIED.has(prop)) return undefined;
      let fn = cache.get(prop);
      if (!fn) {
        fn = makeCall(prop);
        cache.set(prop, fn);
      }
      return fn;
    },
  });
}

async function runQuery(conn: Connection, name: string, args: unknown[], signal: CallOptions["signal"]) {
  const result = await conn.invoke(name, args, signal ? { signal } : {});
  return result instanceof EphapticStream ? result.toArray() : result;
}

/**
 * Creates a client and starts connecting. It returns at once: calls made before the connection is
 * up wait for it. `await connect(...)` works too (the client is not a promise: `then` is never
 * a remote call).
 *
 * ```ts
 * import { connect } from "@ephaptic/client";
 * import type { EphapticService, EphapticErrors } from "./schema";
 * const client = connect<EphapticService, EphapticErrors>({ url: "/_ephaptic", auth: () => getToken() });
 * const sum = await client.add(1, 2);
 * ```
 */
export function connect<S = Untyped, Errs = {}>(options: ConnectOptions = {}): Client<S, Errs> {
  const conn = new Connection(options);
  const invoke = (name: string, args: unknown[], opts?: CallOptions) => conn.invoke(name, args, opts);

  const queries = callProxy({}, (name) => (...args: unknown[]) => ({
    queryKey: [name, ...args],
    queryFn: (context?: { signal?: CallOptions["signal"] }) => runQuery(conn, name, args, context?.signal),
  }));

  const on = (event: string, callback: Listener): (() => void) => {
    const stop = conn.events.on(event, callback);
    conn.wake();
    return stop;
  };
  const off = (event: string, callback?: Listener): void => conn.events.off(event, callback);

  // What invalidateOn tied to each event, for the mutation helpers' onSuccess.
  const invalidations = new Map<string, Set<() => Promise<void>>>();
  const invalidateFor = (events: readonly string[]): Promise<void> => {
    const runs: Array<Promise<void>> = [];
    for (const event of events) for (const run of invalidations.get(event) ?? []) runs.push(run());
    return Promise.all(runs).then(() => undefined);
  };

  const mutations = callProxy({}, (name) => () => {
    const entry = options.mutations?.[name];
    if (entry === undefined || !has(options.mutations ?? {}, name)) {
      throw new TypeError(
        `client.mutations.${name}: the client does not know this function's channels. Pass the schema's ` +
          'map: import { ephapticMutations } from "./schema"; connect({ url, mutations: ephapticMutations }). ' +
          "(Only functions that announce channels, #[expose(broadcast = [...])], have mutation helpers.)",
      );
    }
    const channels = [...entry.channels];
    return {
      mutationKey: [name],
      mutationFn: (variables?: unknown) =>
        invoke(name, entry.params === 0 ? [] : entry.params === 1 ? [variables] : [...(variables as readonly unknown[])]),
      onSuccess: () => invalidateFor(channels),
      channels,
    };
  });

  const presences = new PresenceRegistry({
    call: (name, ...args) => invoke(name, args),
    on,
    onStateChange: (callback) => conn.onStateChange(callback),
    report: (error) => conn.report(error, { kind: "event-listener", event: "__ephaptic.presence" }),
  });

  const base = {
    get state() {
      return conn.state;
    },
    get url() {
      return conn.url;
    },
    get session() {
      return conn.sessionSnapshot;
    },
    get identity() {
      return conn.session.identity;
    },
    get sessionEnded() {
      return conn.sessionEnded;
    },
    onSessionEnded: (callback: (ended: SessionEnded) => void) => conn.onSessionEnded(callback),
    onResync: (callback: (resync: Resync) => void) => conn.listeners.onResync(callback),
    onSchemaMismatch: (callback: (mismatch: SchemaMismatch) => void) => conn.listeners.onSchemaMismatch(callback),
    call: (name: string, ...args: unknown[]) => invoke(name, args),
    withOptions: (callOptions: CallOptions) => {
      // Validate now rather than at the first call.
      if (callOptions.timeout !== undefined) normalizeTimeout(callOptions.timeout, undefined);
      if (callOptions.idempotencyKey !== undefined) checkIdempotencyKey(callOptions.idempotencyKey);
      return callProxy(
        { call: (name: string, ...args: unknown[]) => invoke(name, args, callOptions) },
        (name) =>
          (...args: unknown[]) =>
            invoke(name, args, callOptions),
      );
    },
    on,
    off,
    once: (event: string, callback: Listener): (() => void) => {
      const stop = conn.events.once(event, callback);
      conn.wake();
      return stop;
    },
    onStateChange: (callback: (state: ConnectionState, change: StateChange) => void) => conn.onStateChange(callback),
    ready: () => conn.ready(),
    disconnect: () => conn.disconnect(),
    isError: (e: unknown, code: string) => isEphapticError(e, code),
    queries,
    mutations,
    presence: (group: string, options?: PresenceOptions) => presences.get(group, options),
    invalidateOn: (event: string, queryClient: QueryClientLike, queryKeys: readonly QueryKey[]) => {
      const report = (e: unknown): void => conn.report(e, { kind: "invalidation", event });
      const invalidate = (): Promise<void> => {
        const runs: Array<Promise<unknown>> = [];
        for (const queryKey of queryKeys) {
          try {
            const r = queryClient.invalidateQueries({ queryKey });
            if (r !== null && typeof r === "object" && typeof (r as Promise<unknown>).then === "function") {
              runs.push((r as Promise<unknown>).then(undefined, report));
            }
          } catch (e) {
            report(e);
          }
        }
        return Promise.all(runs).then(() => undefined);
      };
      const onEvent = (): void => void invalidate();
      const stopEvent = on(event, onEvent);
      let registered = invalidations.get(event);
      if (!registered) invalidations.set(event, (registered = new Set()));
      registered.add(invalidate);
      // Events of it may have been lost: a stream it travels on was not recovered (with
      // sessions), or any reconnection (without: the "*" of a legacy reconnect). One
      // invalidation per batch, however many of its streams were lost.
      const stopState = conn.listeners.onLost((lost) => {
        if (lost.some((r) => conn.session.mayCarry(r.stream, event))) void invalidate();
      });
      return () => {
        stopEvent();
        stopState();
        const set = invalidations.get(event);
        set?.delete(invalidate);
        if (set?.size === 0) invalidations.delete(event);
      };
    },
  };

  const client = callProxy(base, (name) => (...args: unknown[]) => invoke(name, args));
  // Where the client cannot connect yet (no page for a relative URL, no WebSocket), it waits for
  // the first call, `on()` or `ready()`, which say why if it still cannot.
  conn.start("connecting");
  return client as unknown as Client<S, Errs>;
}
