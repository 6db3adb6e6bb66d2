// React bindings for an ephaptic client. One factory, `createEphapticReact`, made once per app
// with the schema's types, gives the provider and hooks typed by that schema: React's context
// cannot carry a type, so the types come from the factory (as tRPC's `createTRPCReact` does).
//
// The hooks use the client's public API only (`on`, `state`, `onStateChange`, `queries`,
// `mutations`, `invalidateOn`, `presence`, `sessionEnded`, `onSessionEnded`), so they work with
// any `connect(...)` client.
import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useLayoutEffect,
  useMemo,
  useCallback,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import {
  useMutation,
  useQuery,
  useQueryClient,
  type UseMutationOptions,
  type UseMutationResult,
  type UseQueryOptions,
  type UseQueryResult,
} from "@tanstack/react-query";
import type {
  Client,
  ConnectionState,
  EphapticError,
  Presence,
  PresenceMember,
  PresenceOptions,
  QueryClientLike,
  QueryKey,
  QueryKeyOf,
  SessionEnded,
  StateChange,
} from "@ephaptic/client";

/** The members of a client these bindings use, typed loosely: the factory's types sit on top. */
interface ClientCore {
  readonly state: ConnectionState;
  on(event: string, callback: (data: unknown) => void): () => void;
  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void;
  readonly sessionEnded: SessionEnded | undefined;
  onSessionEnded(callback: (ended: SessionEnded) => void): () => void;
  invalidateOn(event: string, queryClient: QueryClientLike, queryKeys: readonly QueryKey[]): () => void;
  readonly queries: unknown;
  readonly mutations: unknown;
  presence<M>(group: string, options?: PresenceOptions): Presence<M>;
}

/**
 * The meta connections track themselves with, as the schema declares it
 * (`ephaptic::presence_meta!(Meta)` types the event `__ephaptic.presence` as
 * `PresenceDiff<Meta>`); `unknown` for a schema without it.
 */
export type PresenceMetaOf<Events> = Events extends {
  "__ephaptic.presence": { joins: ReadonlyArray<{ connections: ReadonlyArray<{ meta: infer M }> }> };
}
  ? M
  : unknown;

/** The members before a list is open (and during server rendering): one frozen empty array. */
const NO_MEMBERS: readonly PresenceMember<never>[] = Object.freeze([]);

/** The schema's `queries` (`EphapticQueries`), or never without a schema. */
export type QueriesOf<S> = S extends { queries: infer Q } ? Q : never;
/** The schema's `mutations` (`EphapticMutations`), or never without a schema. */
export type MutationsOf<S> = S extends { mutations: infer M } ? M : never;

/** What one of `client.mutations` gives: `useMutation` options for a function that announces channels. */
type MutationHelper = () => { mutationKey: readonly unknown[]; mutationFn: (variables: never) => Promise<unknown> };
type MutationData<F> = F extends () => { mutationFn: (variables: never) => Promise<infer T> } ? T : never;
type MutationVariables<F> = F extends () => { mutationFn: (variables: infer V) => Promise<unknown> } ? V : never;

/** What `client.queries.fn(...)` gives: `{ queryKey, queryFn }`. */
export interface QueryHelperResult<T, K extends QueryKey> {
  queryKey: K;
  queryFn: (...args: never[]) => Promise<T>;
}

/**
 * The error a query or mutation fails with. Its `data` depends on its code: narrow it with
 * `useClient().isError(error, "INVALID_TITLE")`, which types `data` by the schema.
 */
export type CallError = EphapticError;

/** Options of `useEventList`. */
export interface EventListOptions<T> {
  /** Keep at most this many, dropping the oldest (default: keep all). */
  max?: number;
  /** The list before the first event (default empty). */
  initial?: readonly T[];
}

/**
 * Keeps the newest `value` in a ref, written after each render, so a listener registered once
 * calls the handler of the latest render without being registered again.
 */
function useLatest<T>(value: T): { readonly current: T } {
  const ref = useRef(value);
  // A layout effect runs before any event the browser delivers after the commit, so no event can
  // reach a handler one render old. (React 19 no longer warns about it during SSR.)
  useLayoutEffect(() => {
    ref.current = value;
  });
  return ref;
}

/**
 * Makes the provider and hooks for one schema. Call it once, in the module that knows the schema:
 *
 * ```ts
 * import type { EphapticErrors, EphapticEvents, EphapticService } from "./schema";
 * export const { EphapticProvider, useEvent, useConnectionState, useInvalidateOn, useEphapticQuery,
 *   useEphapticMutation } = createEphapticReact<EphapticService, EphapticErrors, EphapticEvents>();
 * ```
 *
 * `Events` is the schema's `EphapticEvents` (the event and channel names with their payloads).
 */
export function createEphapticReact<S, Errs = {}, Events extends object = Record<string, unknown>>() {
  type C = Client<S, Errs>;
  type EventKey = keyof Events & string;
  type Err = CallError;

  const Context = createContext<C | null>(null);

  /** Gives `client` to every hook below it. Changing the client (a new login) re-subscribes them. */
  function EphapticProvider(props: { client: C; children?: ReactNode }): ReactNode {
    return createElement(Context.Provider, { value: props.client }, props.children);
  }

  /** The client of the nearest `EphapticProvider`. */
  function useClient(): C {
    const client = useContext(Context);
    if (client === null) {
      throw new Error("useClient() found no client: render this component inside <EphapticProvider client={client}>.");
    }
    return client;
  }

  const core = (client: C): ClientCore => client as unknown as ClientCore;

  /**
   * Calls `handler` for every `name` event while the component is mounted, and stops on unmount.
   * The handler may be a new function each render: the listener stays registered once and calls
   * the latest one (no re-subscription, no event lost in between).
   */
  function useEvent<K extends EventKey>(name: K, handler: (data: Events[K]) => void): void {
    const client = useClient();
    const latest = useLatest(handler);
    useEffect(() => core(client).on(name, (data) => latest.current(data as Events[K])), [client, name, latest]);
  }

  /** The latest `name` event (or `initial` until one arrives). */
  function useLatestEvent<K extends EventKey>(name: K): Events[K] | undefined;
  function useLatestEvent<K extends EventKey>(name: K, initial: Events[K]): Events[K];
  function useLatestEvent<K extends EventKey>(name: K, initial?: Events[K]): Events[K] | undefined {
    const [value, setValue] = useState<Events[K] | undefined>(initial);
    useEvent(name, setValue as (data: Events[K]) => void);
    return value;
  }

  /** Every `name` event since mount, oldest first (the newest `max` with `max`). */
  function useEventList<K extends EventKey>(name: K, options: EventListOptions<Events[K]> = {}): readonly Events[K][] {
    const [list, setList] = useState<readonly Events[K][]>(options.initial ?? []);
    const max = options.max;
    useEvent(name, (data) => {
      setList((old) => {
        const next = [...old, data];
        return max !== undefined && next.length > max ? next.slice(next.length - max) : next;
      });
    });
    return list;
  }

  /**
   * The connection state (`connecting`, `connected`, `reconnecting`, `disconnected`, `closed`);
   * re-renders on every change. During server rendering it is the client's state there.
   */
  function useConnectionState(): ConnectionState {
    const client = useClient();
    const subscribe = useMemo(() => (onChange: () => void) => core(client).onStateChange(onChange), [client]);
    const get = (): ConnectionState => core(client).state;
    return useSyncExternalStore(subscribe, get, get);
  }

  /**
   * Calls `handler` each time the connection comes back after a drop (`reconnecting` then
   * `connected`), with the state change. A new connection has joined no group and, against a
   * server without sessions, missed the events sent meanwhile: refetching everything there is
   * always correct. With sessions, `change.session?.recovered` is true when the server replayed
   * every missed event, so a handler that only refetches for missed events may skip it then.
   */
  function useReconnected(handler: (change: StateChange) => void): void {
    const client = useClient();
    const latest = useLatest(handler);
    useEffect(
      () =>
        core(client).onStateChange((state, change) => {
          if (state === "connected" && change.previous === "reconnecting") latest.current(change);
        }),
      [client, latest],
    );
  }

  /**
   * How the server ended the session (close code 4401: logged out everywhere, access revoked,
   * credentials expired or refused), or `undefined` while it has not; re-renders when it ends.
   * The client is `closed` then and does not reconnect: show the login, and give the provider a
   * new client made with the new credentials. `handler`, if given, is called once when the
   * session ends while the component is mounted (the latest render's handler; not for a session
   * that had ended before the mount, which the returned value shows). `undefined` during server
   * rendering.
   *
   * ```tsx
   * const ended = useSessionEnded((e) => analytics.track("signed-out", e.reason));
   * if (ended) return <Login reason={ended.reason} />;
   * ```
   */
  function useSessionEnded(handler?: (ended: SessionEnded) => void): SessionEnded | undefined {
    const client = useClient();
    const latest = useLatest(handler);
    useEffect(() => core(client).onSessionEnded((ended) => latest.current?.(ended)), [client, latest]);
    // The client sets `sessionEnded` before it moves to `closed`, so a state change is the signal.
    const subscribe = useMemo(() => (onChange: () => void) => core(client).onStateChange(onChange), [client]);
    const get = (): SessionEnded | undefined => core(client).sessionEnded;
    return useSyncExternalStore(subscribe, get, () => undefined);
  }

  /**
   * A group's members, kept in sync with the server (`client.presence(group, options)`): a
   * snapshot, then the diffs, resynced after every reconnect; re-renders on each change. Opened
   * when the component mounts and closed when it unmounts (the last component using the group
   * stops watching it); a new client or group moves it. `options.enter` runs before each watch
   * (the latest render's, so it may be a new closure each render); the first `usePresence` of a
   * group opens it. The meta type is the schema's (`presence_meta!`) unless given. Empty until
   * the first snapshot, and during server rendering.
   */
  function usePresence<M = PresenceMetaOf<Events>>(group: string, options: PresenceOptions = {}): readonly PresenceMember<M>[] {
    const client = useClient();
    const enter = useLatest(options.enter);
    const hasEnter = options.enter !== undefined;
    // The open list, with what it was opened for: while another group renders before the effects
    // moved it, the old group's members are not shown.
    const open = useRef<{ client: C; group: string; list: Presence<M> } | null>(null);
    const subscribe = useCallback(
      (onChange: () => void) => {
        const list = core(client).presence<M>(group, hasEnter ? { enter: () => enter.current?.() ?? Promise.resolve() } : {});
        open.current = { client, group, list };
        const stop = list.subscribe(onChange);
        return () => {
          stop();
          list.close();
          if (open.current?.list === list) open.current = null;
        };
      },
      [client, group, hasEnter, enter],
    );
    const get = (): readonly PresenceMember<M>[] => {
      const o = open.current;
      return o !== null && o.client === client && o.group === group ? o.list.members : NO_MEMBERS;
    };
    return useSyncExternalStore(subscribe, get, () => NO_MEMBERS);
  }

  /**
   * Invalidates `queryKeys` (TanStack Query) whenever one of `channels` arrives, and after every
   * reconnection; stops on unmount. The data-operation pattern: a list refetches when
   * `todoCreated` or `todoDeleted` is announced. The keys are the schema's query keys or their
   * prefixes (`[["listTodos"]]`); a new array each render does not re-subscribe.
   */
  function useInvalidateOn(channels: EventKey | readonly EventKey[], queryKeys: readonly QueryKeyOf<S>[]): void {
    const client = useClient();
    const queryClient = useQueryClient();
    const names = typeof channels === "string" ? [channels] : channels;
    // Compared by value, so `useInvalidateOn(["a"], [["listTodos"]])` subscribes once.
    const namesKey = JSON.stringify(names);
    const keysKey = JSON.stringify(queryKeys);
    useEffect(() => {
      const keys = JSON.parse(keysKey) as QueryKey[];
      const stops = (JSON.parse(namesKey) as string[]).map((name) => core(client).invalidateOn(name, queryClient, keys));
      return () => {
        for (const stop of stops) stop();
      };
    }, [client, queryClient, namesKey, keysKey]);
  }

  /**
   * `useQuery` over one of `client.queries`: `useEphapticQuery((q) => q.listTodos())`. The key and
   * the data type come from the schema. `options` are TanStack's (`enabled`, `staleTime`, ...).
   */
  function useEphapticQuery<T, K extends QueryKey>(
    select: (queries: QueriesOf<S>) => QueryHelperResult<T, K>,
    options: Omit<UseQueryOptions<T, Err, T, K>, "queryKey" | "queryFn"> = {},
  ): UseQueryResult<T, Err> {
    const client = useClient();
    const helper = select(core(client).queries as QueriesOf<S>);
    return useQuery<T, Err, T, K>({
      ...options,
      queryKey: helper.queryKey,
      queryFn: helper.queryFn as () => Promise<T>,
    });
  }

  /**
   * `useMutation` for a function that announces channels: `useEphapticMutation("createTodo")`.
   * On success it first invalidates what `useInvalidateOn` ties to those channels (so
   * `await mutateAsync(...)` returns with fresh queries), then runs your `onSuccess`.
   */
  function useEphapticMutation<
    M extends keyof MutationsOf<S> & string,
    F extends MutationHelper = MutationsOf<S>[M] extends MutationHelper ? MutationsOf<S>[M] : never,
  >(
    name: M,
    options: Omit<UseMutationOptions<MutationData<F>, Err, MutationVariables<F>>, "mutationFn" | "mutationKey"> = {},
  ): UseMutationResult<MutationData<F>, Err, MutationVariables<F>> {
    const client = useClient();
    const helpers = core(client).mutations as Record<string, () => {
      mutationKey: readonly unknown[];
      mutationFn: (variables: MutationVariables<F>) => Promise<MutationData<F>>;
      onSuccess: () => Promise<void>;
    }>;
    const helper = helpers[name];
    if (helper === undefined) throw new Error(`client.mutations has no ${JSON.stringify(name)}.`);
    const base = helper();
    const userOnSuccess = options.onSuccess;
    type OnSuccess = NonNullable<typeof userOnSuccess>;
    const onSuccess = async (...args: Parameters<OnSuccess>): Promise<void> => {
      await base.onSuccess();
      await userOnSuccess?.(...args);
    };
    return useMutation<MutationData<F>, Err, MutationVariables<F>>({
      ...options,
      mutationKey: base.mutationKey,
      mutationFn: base.mutationFn,
      onSuccess,
    });
  }

  return {
    EphapticProvider,
    useClient,
    useEvent,
    useLatestEvent,
    useEventList,
    useConnectionState,
    useReconnected,
    useSessionEnded,
    usePresence,
    useInvalidateOn,
    useEphapticQuery,
    useEphapticMutation,
  };
}

/** What `createEphapticReact` returns. */
export type EphapticReact<S, Errs = {}, Events extends object = Record<string, unknown>> = ReturnType<
  typeof createEphapticReact<S, Errs, Events>
>;
