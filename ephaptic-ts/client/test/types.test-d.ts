// Type tests: compiled with `tsc --noEmit --strict` (tsconfig.types.json), never run. Lines marked
// `@ts-expect-error` must fail to type-check; if one stops failing, tsc reports the unused directive.
import { connect, EphapticError, EphapticStream, isEphapticError } from "@ephaptic/client";
import type { Client, ConnectionState, QueryClientLike } from "@ephaptic/client";
import type { Resync, ResyncReason, SchemaMismatch, Session, StreamOutcome } from "@ephaptic/client";
import { SESSION_ENDED_CLOSE_CODE } from "@ephaptic/client";
import type { BuiltinErrors, ClientErrorCode, DisconnectedData, ErrorContext, SessionEnded } from "@ephaptic/client";
import type { CallOptions, ConnectOptions } from "@ephaptic/client";
import type {
  EphapticErrors,
  EphapticEvents,
  EphapticService,
  Item,
  Notice,
  Todo,
} from "../../../examples/parity/schema.js";
import { ephapticIdempotent, ephapticMutations, ephapticSchemaHash } from "../../../examples/parity/schema.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

declare const queryClient: QueryClientLike;
// Structurally what TanStack's useMutation takes.
declare function useMutation<TData, TVariables>(options: {
  mutationFn?: (variables: TVariables) => Promise<TData>;
  mutationKey?: readonly unknown[];
  onSuccess?: (data: TData, variables: TVariables, context: unknown) => Promise<unknown> | unknown;
  onError?: (error: Error) => unknown;
}): { mutate(variables: TVariables): void };
// TanStack's QueryClient, as far as the helper needs it, fits structurally.
declare const tanstackLike: { invalidateQueries(filters?: { queryKey?: readonly unknown[] }, options?: object): Promise<void> };

export async function typedClient(): Promise<void> {
  const client = await connect<EphapticService, EphapticErrors>({ url: "ws://127.0.0.1:1/_ephaptic" });

  // --- typed calls -------------------------------------------------------------------------
  const sum: number = await client.add(1, 2);
  assertType<Equal<typeof sum, number>>();
  const joined: string = await client.named("a", "b");
  const item: Item = await client.make_item({ id: 1, name: "x" }); // tags, when optional as input
  await client.make_item({ id: 1, name: "x", tags: ["a"], when: null });
  const who = await client.whoami();
  assertType<Equal<typeof who, string | number | boolean | null>>();
  const todo: Todo = await client.create_todo("t");
  void [joined, item, todo];

  // @ts-expect-error misspelt function
  await client.ad(1, 2);
  // @ts-expect-error wrong argument type
  await client.add("1", 2);
  // @ts-expect-error missing required argument
  await client.add(1);
  // @ts-expect-error too many arguments
  await client.add(1, 2, 3);
  // @ts-expect-error missing required field of a struct argument
  await client.make_item({ id: 1 });
  // @ts-expect-error wrong field type in a struct argument
  await client.make_item({ id: 1, name: 2 });

  // call(): typed return for a known name, anything for other names.
  const viaCall = await client.call("add", 1, 2);
  assertType<Equal<typeof viaCall, number>>();
  const unknownViaCall = await client.call("not_in_schema", 1);
  assertType<Equal<typeof unknownViaCall, unknown>>();

  // --- streams -----------------------------------------------------------------------------
  for await (const n of await client.countdown(3)) {
    assertType<Equal<typeof n, number>>();
  }
  const stream = await client.ticker(10);
  await stream.return?.();

  // --- typed events ------------------------------------------------------------------------
  client.on("Notice", (notice) => {
    const m: string = notice.message;
    const l: number = notice.level;
    void [m, l];
  });
  client.on("todoCreated", (t) => assertType<Equal<typeof t, Todo>>());
  // on() and once() return a function that stops listening: `useEffect(() => client.on(...), [])`.
  const stopNotice: () => void = client.on("Notice", (n) => void n.message);
  const stopOnce: () => void = client.once("Pong", (p) => void p.ok);
  stopNotice();
  stopOnce();
  const onPong = (p: EphapticEvents["Pong"]): void => void p.ok;
  client.on("Pong", onPong);
  client.once("Pong", onPong);
  client.off("Pong", onPong);
  // @ts-expect-error misspelt event name
  client.on("Pongg", () => {});
  // @ts-expect-error wrong payload field
  client.on("Pong", (p) => p.okk);
  // @ts-expect-error payload of another event
  client.on("Notice", (p: Todo) => void p);
  // @ts-expect-error misspelt event name in once
  client.once("Notise", (_: Notice) => {});

  // --- typed errors ------------------------------------------------------------------------
  try {
    await client.boom();
  } catch (e) {
    if (client.isError(e, "INSUFFICIENT_FUNDS")) {
      const available: number = e.data.available;
      assertType<Equal<typeof e.code, "INSUFFICIENT_FUNDS">>();
      void available;
      // @ts-expect-error wrong data field
      void e.data.balance;
    }
    if (client.isError(e, "STREAM_FAILED")) {
      const after: number = e.data.after;
      void after;
    }
    if (client.isError(e, "RATELIMIT")) {
      const retry: number = e.data.retry_after;
      void retry;
    }
    if (client.isError(e, "VALIDATION_ERROR") && e.data) {
      const loc: Array<string | number> = e.data[0]!.loc;
      void loc;
    }
    // @ts-expect-error misspelt error code
    client.isError(e, "INSUFICIENT_FUNDS");
    if (isEphapticError<EphapticErrors, "INSUFFICIENT_FUNDS">(e, "INSUFFICIENT_FUNDS")) {
      const available: number = e.data.available;
      void available;
    }
    if (isEphapticError(e)) {
      const code: string = e.code;
      const msg: string = e.message;
      void [code, msg];
    }
    if (e instanceof EphapticError) void e.data;
  }

  // --- queries -----------------------------------------------------------------------------
  const q = client.queries.add(1, 2);
  assertType<Equal<typeof q.queryKey, readonly ["add", number, number]>>();
  const qv: number = await q.queryFn();
  const countdownAll: number[] = await client.queries.countdown(3).queryFn();
  void [qv, countdownAll];
  // @ts-expect-error misspelt query
  client.queries.addd(1, 2);
  // @ts-expect-error wrong query argument type
  client.queries.add(1, "2");

  // Query keys are the schema's: the function name alone, a longer prefix, or the whole key.
  const stop: () => void = client.invalidateOn("todoCreated", queryClient, [["countdown"]]);
  client.invalidateOn("Notice", tanstackLike, [["add", 1], ["add", 1, 2], ["ping"], client.queries.named("a", "b").queryKey]);
  // @ts-expect-error misspelt channel in invalidateOn
  client.invalidateOn("todoCreatd", queryClient, [["countdown"]]);
  // @ts-expect-error misspelt query name in a key
  client.invalidateOn("todoCreated", queryClient, [["countdwn"]]);
  // @ts-expect-error wrong argument type in a key
  client.invalidateOn("todoCreated", queryClient, [["add", "1"]]);
  // @ts-expect-error a key longer than the function's
  client.invalidateOn("todoCreated", queryClient, [["ping", 1]]);
  // @ts-expect-error the empty key (everything) is not a key of the schema
  client.invalidateOn("todoCreated", queryClient, [[]]);
  stop();

  // --- mutations (functions that announce channels) ----------------------------------------
  const create = client.mutations.create_todo();
  assertType<Equal<typeof create.mutationKey, readonly ["create_todo"]>>();
  assertType<Equal<Parameters<typeof create.mutationFn>, [variables: string]>>();
  const created: Todo = await create.mutationFn("buy milk");
  await create.onSuccess();
  const channels: readonly ["todoCreated"] = create.channels;
  void [created, channels];
  // @ts-expect-error wrong variables type
  void create.mutationFn(1);
  // @ts-expect-error only functions that announce channels have mutation helpers
  client.mutations.add();
  const m = useMutation({ ...client.mutations.create_todo(), onError: () => {} });
  m.mutate("t");
  // @ts-expect-error the variables are the function's argument
  m.mutate(1);

  // --- the client's own members ------------------------------------------------------------
  const state: ConnectionState = client.state;
  const unsubscribe: () => void = client.onStateChange((s, change) => void [s, change.previous, change.code]);
  unsubscribe();
  await client.ready();
  const slow = client.withOptions({ timeout: 100 });
  const slept: number = await slow.sleepy(2000);
  // @ts-expect-error misspelt function on an options view
  await slow.sleepyy(2000);
  client.disconnect();
  void [state, slept];

  // `await connect()` and `connect() as EphapticService` both give the service.
  const asService = connect({ url: "ws://127.0.0.1:1" }) as EphapticService;
  const n2: number = await asService.add(1, 2);
  void n2;
  const typed: Client<EphapticService, EphapticErrors> = connect<EphapticService, EphapticErrors>({});
  void typed;
}

export async function untypedClient(): Promise<void> {
  const client = await connect({ url: "ws://127.0.0.1:1/_ephaptic", bigint: true, timeout: null });
  const anything = await client.add(1, 2); // no schema: any name is a call
  void anything;
  client.on("whatever", (data: unknown) => void data);
  client.off("whatever");
  client.once("x", (data) => assertType<Equal<typeof data, unknown>>());
  const stopAny: () => void = client.on("whatever", () => {});
  stopAny();
  client.invalidateOn("any", { invalidateQueries: () => undefined }, [["any", 1, { x: 2 }]]);
  const mut = client.mutations.anything();
  const mv: unknown = await mut.mutationFn(["a", 1]);
  void mv;
  const r: unknown = await client.call("add", 1, 2);
  const s: ConnectionState = client.state;
  const st = (await client.countdown(3)) as EphapticStream<number>;
  for await (const n of st) void n;
  if (client.isError(r, "ANY_CODE")) void r.data;
  const q = client.queries.anything(1);
  const key: readonly unknown[] = q.queryKey;
  void [s, key];
  client.disconnect();
  // @ts-expect-error the client is not a promise
  client.then(() => {});
}

export async function sessions(): Promise<void> {
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://127.0.0.1:1/_ephaptic",
    resume: true,
    schemaHash: ephapticSchemaHash,
    onSchemaMismatch: (m) => assertType<Equal<typeof m.actual, string>>(),
    onResync: (r: Resync) => void r.stream,
  });
  const session: Session | undefined = client.session;
  if (session) {
    const legacy: boolean = session.legacy;
    const u: StreamOutcome | undefined = session.streams.u;
    const mismatch: boolean = session.schemaMismatch;
    void [legacy, u?.epoch, u?.offset, mismatch];
  }
  const who: unknown = client.identity;
  const stop: () => void = client.onResync((r) => {
    const reason: ResyncReason = r.reason;
    const source: "hello" | "position" | "resync" | "legacy" = r.source;
    void [reason, source];
  });
  stop();
  client.onSchemaMismatch((m: SchemaMismatch) => void m.expected)();
  client.onStateChange((_s, change) => void change.session?.recovered);
  void who;
  // @ts-expect-error resume is a boolean
  connect({ resume: "yes" });
  // @ts-expect-error session is read-only
  client.session = undefined;
}

export async function sessionsTheServerEnds(): Promise<void> {
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://127.0.0.1:1/_ephaptic",
    // A function is asked again for every connection and every refresh the server asks for.
    auth: async () => "expiring:alice:2000",
    onSessionEnded: (ended) => {
      const code: number = ended.code;
      const reason: string = ended.reason;
      void [code, reason];
    },
  });
  const stop: () => void = client.onSessionEnded((ended: SessionEnded) => {
    assertType<Equal<typeof ended, SessionEnded>>();
  });
  stop();
  const ended: SessionEnded | undefined = client.sessionEnded;
  assertType<Equal<typeof client.sessionEnded, SessionEnded | undefined>>();
  void ended;
  const closeCode: number = SESSION_ENDED_CLOSE_CODE;
  void closeCode;
  client.onStateChange((state, change) => {
    if (state === "closed" && change.code === SESSION_ENDED_CLOSE_CODE) void change.reason;
  });
  const kicked: number = await client.kick("alice", "revoked");
  const connection: number = await client.connection_id();
  void [kicked, connection];

  // SESSION_ENDED is a client-side code; its data is the close code and reason.
  const clientCode: ClientErrorCode = "SESSION_ENDED";
  assertType<Equal<BuiltinErrors["SESSION_ENDED"], SessionEnded>>();
  void clientCode;
  try {
    await client.add(1, 2);
  } catch (e) {
    if (client.isError(e, "SESSION_ENDED")) {
      const reason: string = e.data.reason;
      assertType<Equal<typeof e.code, "SESSION_ENDED">>();
      void reason;
    }
    if (isEphapticError(e, "SESSION_ENDED")) void e.data.code;
  }
  const context: ErrorContext = { kind: "session-listener" };
  void context;

  // @ts-expect-error the callback gets a SessionEnded, not a string
  client.onSessionEnded((reason: string) => void reason);
  // @ts-expect-error onSessionEnded needs a callback
  client.onSessionEnded();
  // @ts-expect-error the option is a function
  connect({ onSessionEnded: "logout" });
  // @ts-expect-error sessionEnded is read-only
  client.sessionEnded = undefined;
  // @ts-expect-error misspelt code
  client.isError(new Error(), "SESSION_ENDDED");
}

export async function callsThatTakeEffectOnce(): Promise<void> {
  // The schema's list (a readonly tuple) is what the option takes; the outbox is a boolean.
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://127.0.0.1:1/_ephaptic",
    mutations: ephapticMutations,
    idempotent: ephapticIdempotent,
    outbox: true,
  });
  assertType<Equal<ConnectOptions["idempotent"], readonly string[] | undefined>>();
  assertType<Equal<ConnectOptions["outbox"], boolean | undefined>>();
  const list: readonly string[] = ephapticIdempotent;
  connect({ idempotent: ["create_todo"], outbox: false });
  void list;

  // A caller's own key for one operation: the view keeps the schema's types.
  const once = client.withOptions({ idempotencyKey: "6f1c0e6a-3b9e-4d8e-9a51-2f0d7c1b8e44", timeout: 60_000 });
  const todo: Todo = await once.create_todo("milk");
  const viaCall: Todo = await once.call("create_todo", "milk");
  assertType<Equal<CallOptions["idempotencyKey"], string | undefined>>();
  // Mutations go through the same calls (keys included): their types are unchanged.
  const created: Todo = await client.mutations.create_todo().mutationFn("eggs");
  void [todo, viaCall, created];

  // DISCONNECTED says whether the call may have run, and its key if it had one.
  assertType<Equal<BuiltinErrors["DISCONNECTED"], DisconnectedData>>();
  assertType<Equal<BuiltinErrors["ALREADY_DONE"], null>>();
  try {
    await client.add(1, 2);
  } catch (e) {
    if (client.isError(e, "DISCONNECTED")) {
      const mayHaveRun: boolean = e.data.mayHaveRun;
      const key: string | undefined = e.data.idempotencyKey;
      if (mayHaveRun && key !== undefined) await client.withOptions({ idempotencyKey: key }).create_todo("milk");
      // @ts-expect-error no such field
      void e.data.maybeRan;
    }
    if (isEphapticError(e, "DISCONNECTED")) assertType<Equal<typeof e.data, DisconnectedData>>();
    if (client.isError(e, "ALREADY_DONE")) assertType<Equal<typeof e.data, null>>();
  }

  // @ts-expect-error the list of function names, not one name
  connect({ idempotent: "create_todo" });
  // @ts-expect-error names are strings
  connect({ idempotent: [1] });
  // @ts-expect-error outbox is a boolean
  connect({ outbox: "memory" });
  // @ts-expect-error a key is a string
  client.withOptions({ idempotencyKey: 7 });
}

// Stand-ins for `@opentelemetry/api` (not a dependency): just the shapes the README's example uses.
declare const context: { active(): object };
declare const propagation: { inject(context: object, carrier: Record<string, string>): void };

export async function distributedTracing(): Promise<void> {
  assertType<Equal<ConnectOptions["traceparent"], (() => string | undefined) | undefined>>();
  // The README's OpenTelemetry example, as written there.
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://127.0.0.1:1/_ephaptic",
    idempotent: ephapticIdempotent,
    traceparent: () => {
      const carrier: Record<string, string> = {};
      propagation.inject(context.active(), carrier);
      return carrier.traceparent;
    },
  });
  // Calls keep their types.
  const sum: number = await client.add(1, 2);
  void sum;
  // A fixed string, or nothing.
  connect({ traceparent: () => "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
  connect({ traceparent: () => undefined });
  // The trace hook's outgoing frames are plain records: the key reads like the others.
  connect({ trace: (_direction, frame) => void (frame.traceparent as string | undefined) });

  // @ts-expect-error a function, not the string itself
  connect({ traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
  // @ts-expect-error asked synchronously, when the call is made: not a promise
  connect({ traceparent: async () => "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
  // @ts-expect-error a string, not a carrier
  connect({ traceparent: () => ({ traceparent: "x" }) });
  // @ts-expect-error not a per-call option
  client.withOptions({ traceparent: () => undefined });
}
