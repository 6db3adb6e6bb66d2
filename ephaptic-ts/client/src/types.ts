import type { BackoffOptions } from "./backoff.js";
import type { EphapticError, ErrorData, BuiltinErrors } from "./errors.js";
import type { EphapticStream } from "./stream.js";
import type { Presence, PresenceOptions } from "./presence.js";

export type ConnectionState = "disconnected" | "connecting" | "connected" | "reconnecting" | "closed";

/** What a state listener learns besides the new state. */
export interface StateChange {
  /** The state before this change. */
  previous: ConnectionState;
  /**
   * For a change caused by the socket closing: its close code (1008: the server found this
   * client too slow; 4401: the server ended the session, see `onSessionEnded`).
   */
  code?: number;
  /** The close reason, when the server gave one. */
  reason?: string;
  /** For a failed connection attempt: why. */
  error?: EphapticError;
  /**
   * For a change to `connected`: the session as the connection starts it (what the hello said,
   * whether everything missed was recovered). See `client.session`.
   */
  session?: Session;
}

/**
 * Why a stream was not recovered. From the server (PROTOCOL.md 5.6): `epoch` (its history started
 * again), `trimmed` (no longer reaches back far enough), `expired`, `unavailable` (could not be
 * read), `membership` (a group position from before this identity's latest join after a leave:
 * a group replays only what was sent while the reader was a member), `disabled` (the server
 * keeps none), `gap` (a `resync` frame: events missed live). From
 * the client: `legacy` (a reconnect to a server without sessions, or with `resume: false`: every
 * stream counts as lost), `identity` (the connection has another identity than before, so its
 * `u` stream is another one), `timeout` (the hello got no answer in time), `ignored` (the server
 * answered a position the client sent as if it had not been sent: past the 64 it reads).
 */
export type ResyncReason =
  | "epoch"
  | "trimmed"
  | "expired"
  | "unavailable"
  | "membership"
  | "disabled"
  | "gap"
  | "legacy"
  | "identity"
  | "timeout"
  | "ignored"
  | "unknown"
  | (string & {});

/** Where a stream stands, and how its last recovery went. */
export interface StreamOutcome {
  /** `u` (this identity's events), `b` (events to everyone) or `g:<group>`. */
  stream: string;
  epoch: string;
  /** The last offset handled (or, right after a hello, the server's offset). */
  offset: number;
  /** Whether every event after the client's position was replayed. */
  recovered: boolean;
  /** Whether the client asked to recover this stream. */
  wasRecovering: boolean;
  /** How many events were replayed. */
  replayed: number;
  reason?: ResyncReason;
}

/** A stream whose missed events were not recovered: refetch what it feeds. */
export interface Resync {
  /**
   * `u`, `b`, `g:<group>`; `*` for every stream: a reconnect to a server without sessions
   * (reason `legacy`) or with them off (`disabled`: it keeps no history).
   */
  stream: string;
  reason: ResyncReason;
  /** Where the stream goes on from (absent for `*`). */
  epoch?: string;
  offset?: number;
  /**
   * What told: the hello of a reconnection, a group's `position` frame (a re-join), a `resync`
   * frame (missed live), or a reconnection to a server without sessions.
   */
  source: "hello" | "position" | "resync" | "legacy";
}

export type SessionLimits = { [name: string]: number };

/** What the client knows of its session (PROTOCOL.md 5.6). */
export interface Session {
  /** The server has no sessions (it answered the hello `NOT_FOUND`), or `resume: false`. */
  legacy: boolean;
  /** The server's name and version (`ephaptic-rs/0.1.0`); null in legacy mode. */
  server: string | null;
  /** Who the server says this connection is: null when anonymous, undefined when unknown (legacy). */
  identity: unknown;
  /** The hash of the server's schema; null when unknown. */
  schema: string | null;
  /** `connect({ schemaHash })`, null when not given. */
  expectedSchema: string | null;
  /** The server's schema differs from `schemaHash`: the app runs a stale bundle. */
  schemaMismatch: boolean;
  /** Whether the server keeps history (false: reconnects recover nothing). */
  resume: boolean;
  limits: SessionLimits;
  /** Every stream the client has a position for, with its last outcome. */
  streams: { [stream: string]: StreamOutcome };
  /** Whether the connection this session is on is a reconnection. */
  reconnected: boolean;
  /** False once a stream of this connection was not recovered (hello, position or resync). */
  recovered: boolean;
}

/** What `onSchemaMismatch` callbacks get. */
export interface SchemaMismatch {
  /** `connect({ schemaHash })`. */
  expected: string;
  /** The server's. */
  actual: string;
  session: Session;
}

/**
 * The server ended the session (close code 4401, `SESSION_ENDED_CLOSE_CODE`): logged out
 * everywhere, access revoked, or credentials that expired or were refused at a refresh. The
 * client does not reconnect with the same credentials: it stays `closed`, and its calls reject
 * with `SESSION_ENDED`. Log in again with a new client (`connect()` with new credentials).
 */
export interface SessionEnded {
  /** The close code: 4401. */
  code: number;
  /** Why, as the server said (`"logged out"`, `"credentials expired"`, ...); may be empty. */
  reason: string;
}

/**
 * The part of a WebSocket the client uses: the browser's `WebSocket` and the `ws` package's both
 * fit. Event parameters are `any` so either's event types are accepted.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: any) => unknown) | null;
  onmessage: ((event: any) => unknown) | null;
  onclose: ((event: any) => unknown) | null;
  onerror: ((event: any) => unknown) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructorLike = new (url: string) => WebSocketLike;

/** Where the client reports what it skips (undecodable frames, dropped events). */
export interface Logger {
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Where a failure inside application code (a listener) happened. */
export type ErrorContext =
  | { kind: "event-listener"; event: string }
  | { kind: "state-listener"; state: ConnectionState }
  | { kind: "invalidation"; event: string }
  | { kind: "resync-listener"; stream: string }
  | { kind: "schema-listener" }
  | { kind: "session-listener" };

export interface ConnectOptions {
  /**
   * The server's WebSocket URL: absolute (`ws:`/`wss:`, or `http:`/`https:` rewritten to them),
   * relative (resolved against the page's location), or absent (the page's host at `/_ephaptic`).
   */
  url?: string | { readonly href: string };
  /**
   * Sent as `init.auth`, the identity loader's input. A function (sync or async) is called before
   * every connection and reconnection, so a refreshed token is used, and, with sessions on, each
   * time the server asks for fresh credentials before the current ones expire (the connection
   * stays open). `undefined` sends no `auth`.
   */
  auth?: unknown;
  /**
   * Per-call timeout in ms, counted from the call (time spent waiting for a connection included)
   * until its reply or, for a stream, until the stream opens. Default 30 000. `0`, `null` or
   * `Infinity` disable it. A call that times out rejects with `TIMEOUT` and the server is sent
   * `cancel` for it.
   */
  timeout?: number | null;
  /** The WebSocket implementation; default `globalThis.WebSocket`. In Node 20: `import { WebSocket } from "ws"`. */
  WebSocket?: WebSocketConstructorLike;
  /**
   * How integers outside `Number.MIN_SAFE_INTEGER..MAX_SAFE_INTEGER` are received. `false`
   * (default): a reply containing one fails with `PROTOCOL_ERROR` and an event containing one is
   * dropped with a warning, never rounded. `true`: they arrive as `bigint` (safe ones are always
   * numbers).
   */
  bigint?: boolean;
  /** Reconnect after a drop (default `true`), optionally with other backoff numbers. */
  reconnect?: boolean | Partial<BackoffOptions>;
  /** How long a connection attempt may take before it counts as failed, in ms. Default 10 000. */
  connectTimeout?: number;
  /** Called when a listener throws; default `console.error`. */
  onError?: (error: unknown, context: ErrorContext) => void;
  /** Receives warnings about skipped frames and dropped events; default `console`. */
  logger?: Logger;
  /**
   * The schema's `ephapticMutations` (`import { ephapticMutations } from "./schema"`): what
   * `client.mutations` needs at run time, each announcing function's parameter count and channels.
   */
  mutations?: MutationsMap;
  /**
   * The schema's `ephapticIdempotent` (`import { ephapticIdempotent } from "./schema"`): the
   * functions declared `#[expose(idempotent)]`. Their calls carry an idempotency key (a fresh
   * random UUID per call, or `withOptions({ idempotencyKey })`), and a call in flight when the
   * connection drops is not failed: it is sent again, with the same key, on the next connection,
   * until it is answered or its timeout passes. The server runs it at most once per key and
   * identity within its window (PROTOCOL.md 5.12), so it takes effect once and resolves once.
   * Calls of other functions that were in flight at a drop reject with `DISCONNECTED` and
   * `data.mayHaveRun: true`. With `reconnect: false` nothing is sent again (the error's
   * `data.idempotencyKey` lets you retry it).
   */
  idempotent?: readonly string[];
  /**
   * Keep calls made while the client is not connected (connecting, reconnecting) queued, in
   * memory, across failed connection attempts, until they are sent on a connection or their
   * timeout passes. Default `false`: a failed attempt rejects the calls waiting for it with
   * `CONNECT_FAILED`. Only while the client reconnects by itself (not with `reconnect: false`);
   * the queue is lost with the page.
   */
  outbox?: boolean;
  /**
   * Sessions (default `true`): send `v: 2` and the hello, resume every stream on reconnect and
   * drop duplicates. `false`: exactly the frames of a client without sessions.
   */
  resume?: boolean;
  /**
   * The schema's `ephapticSchemaHash` (`import { ephapticSchemaHash } from "./schema"`): when the
   * server's differs, `onSchemaMismatch` is called and `session.schemaMismatch` is true.
   */
  schemaHash?: string;
  /** Called when the server's schema hash differs from `schemaHash` (see `client.onSchemaMismatch`). */
  onSchemaMismatch?: (mismatch: SchemaMismatch) => void;
  /** Called for each stream not recovered (see `client.onResync`). */
  onResync?: (resync: Resync) => void;
  /** Called once when the server ends the session (close code 4401; see `client.onSessionEnded`). */
  onSessionEnded?: (ended: SessionEnded) => void;
  /**
   * Distributed tracing (W3C Trace Context, PROTOCOL.md 5.13): called once for each call, when the
   * call is made (synchronously, in the caller's context), and its result travels in the `rpc`
   * frame's `traceparent`, on which the server parents the call's span. The same value goes with
   * every send of the call (an idempotent call re-sent after a reconnect keeps it). `undefined`
   * sends none; anything that is not a `00-<32 hex>-<16 hex>-<2 hex>` string (lowercase, ids not
   * all zeros) is dropped, with one warning per client; a function that throws is reported to
   * `logger` and the call goes out without it. The client's own reserved calls
   * (`__ephaptic.*`: hello, refresh, presence) carry none. With OpenTelemetry:
   * `traceparent: () => { const c: Record<string, string> = {}; propagation.inject(context.active(), c); return c.traceparent; }`.
   */
  traceparent?: () => string | undefined;
  /** Debug hook: every decoded incoming frame (`"in"`) and every frame sent (`"out"`). */
  trace?: (direction: "in" | "out", frame: Record<string, unknown>) => void;
}

/** Options of one call, for `client.withOptions(...)`. */
export interface CallOptions {
  /** Overrides the client's `timeout` for these calls (same meaning). */
  timeout?: number | null;
  /** Aborting it rejects the call with the signal's reason and cancels it on the server. */
  signal?: AbortSignalLike;
  /**
   * The idempotency key of these calls (a string of 1 to 128 bytes), instead of a fresh one per
   * call: for a function in `connect({ idempotent })` only (others reject with a TypeError). Every
   * call through the view carries this key, so the server runs the first and answers the others
   * with its answer: make one view per operation. For retrying an operation yourself (after a
   * `DISCONNECTED` with `data.idempotencyKey`, or a reload with a key you stored), from the same
   * identity and within the server's window.
   */
  idempotencyKey?: string;
}

export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** The part of TanStack Query's `QueryClient` the invalidation helper uses. */
export interface QueryClientLike {
  invalidateQueries(filters: { queryKey: readonly unknown[] }): unknown;
}

export type QueryKey = readonly unknown[];

/** The generated `ephapticMutations`: for each function that announces channels, its parameter count and channels. */
export type MutationsMap = { readonly [name: string]: { readonly params: number; readonly channels: readonly string[] } };

/** What `client.mutations.fn()` returns: options for `useMutation` / `createMutation`. */
export interface MutationOptions<T = unknown, V = unknown> {
  mutationKey: readonly [string];
  mutationFn: (variables: V) => Promise<T>;
  /** Invalidates the queries `invalidateOn` ties to the function's channels; resolves when they are. */
  onSuccess: () => Promise<void>;
  /** The channels the function announces. */
  channels: readonly string[];
}

/** The prefixes of a query key, from the function name alone to the whole key: what `invalidateOn` accepts. */
export type KeyPrefix<K extends QueryKey> = K extends readonly [infer Name, ...infer Args] ? PrefixesFrom<readonly [Name], Args> : K;

type PrefixesFrom<Head extends QueryKey, Rest extends unknown[]> = Rest extends []
  ? Head
  : number extends Rest["length"]
    ? Head | readonly [...Head, ...Rest]
    : Rest extends [infer A, ...infer More]
      ? Head | PrefixesFrom<readonly [...Head, A], More>
      : Rest extends [(infer A)?, ...infer More]
        ? // An optional argument (a trailing `Option`): the key may end before it or hold it.
          Head | PrefixesFrom<readonly [...Head, A | undefined], More>
        : Head;

/** Every query key of a schema's `queries`, with its prefixes; any key without a schema. */
export type QueryKeyOf<S> = S extends { queries: infer Q }
  ? { [K in keyof Q]: Q[K] extends (...args: any[]) => { queryKey: infer QK extends QueryKey } ? KeyPrefix<QK> : never }[keyof Q]
  : QueryKey;

/** What `client.queries.fn(...args)` returns: options for `useQuery` / `createQuery`. */
export interface QueryOptions<T = unknown, K extends QueryKey = QueryKey> {
  queryKey: K;
  queryFn: (context?: { signal?: AbortSignalLike }) => Promise<T>;
}

/** The type a client has when no schema is given. */
export interface Untyped {
  readonly __ephapticUntyped: unique symbol;
}

/** Without a schema, any name is a call returning `Promise<any>`. */
export type UntypedCalls = { readonly [name: string]: (...args: any[]) => Promise<any> };
export type UntypedQueries = { readonly [name: string]: (...args: any[]) => QueryOptions<any> };
export type UntypedMutations = { readonly [name: string]: () => MutationOptions<any, any> };

type EventMethods = "on" | "off" | "once" | "queries" | "mutations";

/** The names of a schema's functions. */
export type MethodName<S> = {
  [K in keyof S]: K extends EventMethods ? never : S[K] extends (...args: any[]) => Promise<any> ? K : never;
}[keyof S] &
  string;

/** The event names a schema's typed `on` accepts; `string` without one. */
export type EventName<S> = S extends { on: (...args: any[]) => any } ? Parameters<S["on"]>[0] : string;

/** Error codes `isError` accepts: any string without a schema, else the schema's and the built-in ones. */
export type ErrorCode<Errs> = [keyof Errs] extends [never] ? string : (keyof Errs | keyof BuiltinErrors) & string;

export type CallView<S> = [S] extends [Untyped]
  ? UntypedCalls & { call(name: string, ...args: unknown[]): Promise<unknown> }
  : { [K in MethodName<S>]: S[K] } & {
      call<K extends MethodName<S>>(
        name: K,
        ...args: S[K] extends (...a: infer A) => any ? A : never
      ): S[K] extends (...a: any[]) => infer R ? R : never;
      call(name: string, ...args: unknown[]): Promise<unknown>;
    };

/** The client's own members, beside the schema's functions. */
export interface ClientBase<S = Untyped, Errs = {}> {
  /** The current connection state. */
  readonly state: ConnectionState;
  /** The resolved WebSocket URL; the URL as given while there is no page to resolve it against (SSR). */
  readonly url: string;
  /**
   * Calls `name` with positional arguments; for functions whose names clash with the client's own
   * members (`on`, `call`, `then`, ...).
   */
  call<K extends MethodName<S>>(
    name: K,
    ...args: S[K] extends (...a: infer A) => any ? A : never
  ): S[K] extends (...a: any[]) => infer R ? R : never;
  call(name: string, ...args: unknown[]): Promise<unknown>;
  /** A view of the client whose calls use these options: `client.withOptions({ timeout: 100 }).sleepy(2000)`. */
  withOptions(options: CallOptions): CallView<S>;
  /** Listens for `event`; returns a function that stops listening: `useEffect(() => client.on(...), [])`. */
  on(event: string, callback: (data: unknown) => void): () => void;
  /** Removes `callback` (added by `on` or `once`), or every listener of `event` when none is given. */
  off(event: string, callback?: (data: unknown) => void): void;
  /** Listens for the next `event` only; returns a function that stops listening. */
  once(event: string, callback: (data: unknown) => void): () => void;
  /**
   * The session (PROTOCOL.md 5.6): identity, server, schema, positions per stream, `legacy`.
   * Undefined until the first connection is established. A snapshot: read it again for news.
   */
  readonly session: Session | undefined;
  /** Who the server says this connection is (null: anonymous); undefined while unknown (legacy server, not connected yet). */
  readonly identity: unknown;
  /**
   * Called for each stream whose missed events were not recovered (a reconnect the server's
   * history could not bridge, a `resync` frame, a re-joined group), and once with stream `*`
   * after a reconnect to a server without sessions: refetch what that stream feeds. Returns a
   * function that stops it.
   */
  onResync(callback: (resync: Resync) => void): () => void;
  /** Called when the server's schema differs from `connect({ schemaHash })`: tell the app to reload. */
  onSchemaMismatch(callback: (mismatch: SchemaMismatch) => void): () => void;
  /** Observes connection state changes; returns a function that stops observing. */
  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void;
  /**
   * Called once when the server ends the session (close code 4401: logged out everywhere, access
   * revoked, credentials expired or refused at a refresh). The client is `closed` by then and
   * does not reconnect; its calls reject with `SESSION_ENDED`. Send the user to log in and make a
   * new client with new credentials. A callback added after the session ended is not called (read
   * `client.sessionEnded`). Returns a function that stops it.
   */
  onSessionEnded(callback: (ended: SessionEnded) => void): () => void;
  /** How the server ended the session (see `onSessionEnded`); undefined while it has not. */
  readonly sessionEnded: SessionEnded | undefined;
  /**
   * Resolves once connected. Rejects with `CONNECT_FAILED` if the attempt under way fails, with
   * `DISCONNECTED` once `disconnect()` was called, with `SESSION_ENDED` once the server ended the
   * session.
   */
  ready(): Promise<void>;
  /** Closes the connection for good: state `closed`, pending calls reject with `DISCONNECTED`. */
  disconnect(): void;
  /** Whether `e` is an EphapticError with `code`; narrows `data` to the schema's type for it. */
  isError<C extends ErrorCode<Errs>>(e: unknown, code: C): e is EphapticError<C, ErrorData<Errs, C>>;
  /** TanStack Query options: `useQuery(client.queries.add(1, 2))`. A stream's queryFn collects it into an array. */
  readonly queries: S extends { queries: infer Q } ? Q : UntypedQueries;
  /**
   * TanStack mutation options for the functions that announce channels:
   * `useMutation(client.mutations.createTodo())`. Needs `connect({ mutations: ephapticMutations })`.
   */
  readonly mutations: S extends { mutations: infer M } ? M : UntypedMutations;
  /**
   * Invalidates `queryKeys` whenever `event` arrives, and when events of it may have been lost:
   * with sessions, when a stream it arrives on (or any, until it was seen) was not recovered;
   * without, after every reconnection. `client.mutations`' `onSuccess` runs it too for the
   * channels its function announces. The keys are the schema's query keys or prefixes of them, down to the
   * function name alone (`[["getAllTodos"]]`). Returns a function that stops it.
   */
  invalidateOn(event: EventName<S>, queryClient: QueryClientLike, queryKeys: readonly QueryKeyOf<S>[]): () => void;
  /**
   * A group's members, kept in sync (a snapshot, then diffs; resynced after a reconnect):
   * `client.presence<Online>("room:1").subscribe(members => ...)`. The same object for the same
   * group until every handle is `close()`d (the first call's options apply). Watching needs the
   * server's permission (by default: the connection joined the group, which `options.enter` can
   * do before each watch); a refusal is in `error`.
   */
  presence<M = unknown>(group: string, options?: PresenceOptions): Presence<M>;
  /** Never a remote call: keeps `await client` from treating the client as a promise. */
  readonly then?: undefined;
}

/**
 * The client: the schema's typed functions, events and queries, plus the client's own members.
 * Where the schema and the client both name a member (`on`, `off`, `once`, `queries`), the
 * schema's typed one wins.
 */
export type Client<S = Untyped, Errs = {}> = [S] extends [Untyped]
  ? ClientBase<S, Errs> & UntypedCalls
  : S & Omit<ClientBase<S, Errs>, keyof S>;

export type { EphapticStream };
