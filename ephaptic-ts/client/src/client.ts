import { DEFAULT_BACKOFF, nextAttemptDelay, type BackoffOptions } from "./backoff.js";
import { decodeFrame, encodeValue, fixIntegers, prepareForWire, rpcFrame, unsafeIntegerMessage } from "./codec.js";
import { EphapticError, isEphapticError } from "./errors.js";
import { EventRegistry, eventData, type Listener } from "./events.js";
import { EphapticStream } from "./stream.js";
import type {
  CallOptions,
  Client,
  ConnectOptions,
  ConnectionState,
  ErrorContext,
  Logger,
  QueryClientLike,
  QueryKey,
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
// setTimeout cannot wait longer than this; a longer timeout is no timeout.
const MAX_TIMER_MS = 2_147_483_647;
const OPEN = 1;

/** What a step of a connection attempt gives back when it threw (see `Connection.attemptStep`). */
const FAILED: unique symbol = Symbol("FAILED");

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
  timer?: ReturnType<typeof setTimeout>;
  id?: number;
  socket?: WebSocketLike;
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
          : `a listener of event '${context.event}'`;
    this.logger.error(`[ephaptic] ${where} threw:`, error);
  }

  ready(): Promise<void> {
    if (this.opened) return Promise.resolve();
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
      this.attempting = false;
      this.opened = true;
      this.nextId = 0;
      this.attempt = 0;
      this.setState("connected");
      this.attemptEnded();
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
    const code = typeof event.code === "number" ? event.code : 1006;
    const reason = typeof event.reason === "string" ? event.reason : "";
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
    const error = new EphapticError(
      "DISCONNECTED",
      `The connection closed (code ${code}${reason ? `: ${reason}` : ""}) before the reply arrived.`,
      null,
    );
    this.failInflight(error);
    this.afterDrop({ code, reason });
  }

  private attemptFailed(error: EphapticError, code?: number, reason?: string): void {
    clearTimeout(this.connectTimer);
    this.attempting = false;
    // Calls waiting for this attempt learn that it failed rather than waiting without end.
    for (const call of this.queue.splice(0)) this.settle(call, undefined, error);
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
    this.closedForGood = true;
    this.attempting = false;
    this.generation++;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.connectTimer);
    const ws = this.socket;
    this.socket = undefined;
    this.opened = false;
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, "client disconnect");
      } catch {
        // a socket still connecting may refuse a close code
      }
    }
    const error = this.closedError();
    for (const call of this.queue.splice(0)) this.settle(call, undefined, error);
    this.failInflight(error);
    this.attemptEnded(error);
    this.setState("closed");
  }

  private closedError(): EphapticError {
    return new EphapticError(
      "DISCONNECTED",
      "The client is disconnected: disconnect() was called. Create a new client with connect().",
      null,
    );
  }

  private failInflight(error: EphapticError): void {
    const calls = [...this.inflight.values()];
    this.inflight.clear();
    for (const call of calls) this.settle(call, undefined, error);
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

    return new Promise((resolve, reject) => {
      const call: PendingCall = { name, args, encodedArgs, resolve, reject, timeoutMs, settled: false };
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

  private send(call: PendingCall): void {
    const ws = this.socket;
    if (!ws) return;
    const id = ++this.nextId;
    call.id = id;
    call.socket = ws;
    this.inflight.set(id, call);
    try {
      ws.send(rpcFrame(id, call.name, call.encodedArgs));
    } catch (error) {
      this.inflight.delete(id);
      this.settle(
        call,
        undefined,
        new EphapticError("DISCONNECTED", `Could not send '${call.name}': ${describe(error)}`, null, { cause: error }),
      );
      return;
    }
    this.trace("out", { type: "rpc", id, name: call.name, args: call.args });
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
      this.reply(frame, unsafe);
    } else if (frame.type === "event") {
      this.event(frame, unsafe);
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

  private event(frame: Record<string, unknown>, unsafe: bigint | undefined): void {
    const name = frame.name;
    if (typeof name !== "string") return;
    if (unsafe !== undefined) {
      this.logger.warn(`[ephaptic] dropping event '${name}': ${unsafeIntegerMessage("it", unsafe)}`);
      return;
    }
    const data = eventData(frame.payload);
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
    call: (name: string, ...args: unknown[]) => invoke(name, args),
    withOptions: (callOptions: CallOptions) => {
      // Validate now rather than at the first call.
      if (callOptions.timeout !== undefined) normalizeTimeout(callOptions.timeout, undefined);
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
      const stopState = conn.onStateChange((state, change) => {
        if (state === "connected" && change.previous === "reconnecting") void invalidate();
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
