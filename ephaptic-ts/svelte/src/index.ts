// Svelte bindings for an ephaptic client: stores (svelte/store), which Svelte 4 and 5 components
// read with `$store` and Svelte 5 runes with `fromStore(store).current`.
//
// A store listens only while something subscribes to it: a component that reads `$store`
// subscribes when it mounts and unsubscribes when it is destroyed, so every listener these
// stores register on the client is removed with the last component that used it. On the server
// (SSR: no `window`) the stores keep their initial value and never touch the client, so a page
// can create them at import time.
//
// The stores use the client's public API only (`on`, `state`, `onStateChange`, `presence`,
// `sessionEnded`, `onSessionEnded`).
import { readable, type Readable } from "svelte/store";
import type { ConnectionState, Presence, PresenceMember, PresenceOptions, SessionEnded, StateChange } from "@ephaptic/client";

/** The members of a client these stores use; any `connect(...)` client has them. */
export interface ClientLike {
  readonly state: ConnectionState;
  on(event: never, callback: (data: never) => void): () => void;
  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void;
  presence(group: string, options?: PresenceOptions): unknown;
  readonly sessionEnded: SessionEnded | undefined;
  onSessionEnded(callback: (ended: SessionEnded) => void): () => void;
}

/** Loosely typed view of a client, for the calls below (the factory's types sit on top). */
interface ClientCore {
  readonly state: ConnectionState;
  on(event: string, callback: (data: unknown) => void): () => void;
  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void;
  presence<M>(group: string, options?: PresenceOptions): Presence<M>;
  readonly sessionEnded: SessionEnded | undefined;
  onSessionEnded(callback: (ended: SessionEnded) => void): () => void;
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

/** Whether this runs in a browser (not server-side rendering). */
export const inBrowser = (): boolean => typeof window !== "undefined" && typeof document !== "undefined";

/** Options of `eventList`. */
export interface EventListOptions<T> {
  /** Keep at most this many, dropping the oldest (default: keep all). */
  max?: number;
  /** The list before the first event (default empty). */
  initial?: readonly T[];
}

/** What a `live` store holds. */
export interface Live<T> {
  /** The latest data fetched; `undefined` until the first fetch succeeds (or `initial`). */
  data: T | undefined;
  /** The error of the latest fetch, if it failed (`data` keeps the last good value). */
  error: unknown;
  /** Whether a fetch is under way. */
  loading: boolean;
}

/** A `live` store, which can also be told to fetch again. */
export interface LiveStore<T> extends Readable<Live<T>> {
  /** Fetches again now (a no-op while nothing subscribes, or on the server). */
  refetch(): Promise<void>;
}

/** Options of `live`. */
export interface LiveOptions<T, K extends string> {
  /** The channels (or events) after which to fetch again: `["todoCreated", "todoDeleted"]`. */
  on?: readonly K[];
  /** The data before the first fetch (also what the server renders). */
  initial?: T;
}

/**
 * Makes the stores for one client, typed by the schema's `EphapticEvents`:
 *
 * ```ts
 * import { ephapticStores } from "@ephaptic/svelte";
 * import type { EphapticEvents } from "./schema";
 * export const stores = ephapticStores<EphapticEvents>(client);
 * ```
 */
export function ephapticStores<Events extends object>(client: ClientLike) {
  type Key = keyof Events & string;
  const core = client as unknown as ClientCore;

  /** The latest `name` event; `initial` (default `undefined`) until one arrives. */
  function event<K extends Key>(name: K): Readable<Events[K] | undefined>;
  function event<K extends Key>(name: K, initial: Events[K]): Readable<Events[K]>;
  function event<K extends Key>(name: K, initial?: Events[K]): Readable<Events[K] | undefined> {
    return readable<Events[K] | undefined>(initial, (set) => {
      if (!inBrowser()) return;
      return core.on(name, (data) => set(data as Events[K]));
    });
  }

  /**
   * Every `name` event since the store was first subscribed, oldest first (the newest `max` with
   * `max`). The list starts again from `initial` when the store is subscribed anew.
   */
  function eventList<K extends Key>(name: K, options: EventListOptions<Events[K]> = {}): Readable<readonly Events[K][]> {
    const initial = options.initial ?? [];
    return readable<readonly Events[K][]>(initial, (set, update) => {
      if (!inBrowser()) return;
      set(initial);
      return core.on(name, (data) => {
        update((old) => {
          const next = [...old, data as Events[K]];
          return options.max !== undefined && next.length > options.max ? next.slice(next.length - options.max) : next;
        });
      });
    });
  }

  /** The connection state (`connecting`, `connected`, `reconnecting`, `disconnected`, `closed`). */
  const connectionState: Readable<ConnectionState> = readable<ConnectionState>(core.state, (set) => {
    if (!inBrowser()) return;
    set(core.state);
    return core.onStateChange((state) => set(state));
  });

  /**
   * How the server ended the session (close code 4401: logged out everywhere, access revoked,
   * credentials expired or refused), `undefined` while it has not. The client is `closed` then
   * and does not reconnect: show the login, and make new stores for the new client made with the
   * new credentials. `undefined` on the server.
   *
   * ```svelte
   * {#if $sessionEnded}<Login reason={$sessionEnded.reason} />{/if}
   * ```
   */
  const sessionEnded: Readable<SessionEnded | undefined> = readable<SessionEnded | undefined>(undefined, (set) => {
    if (!inBrowser()) return;
    set(core.sessionEnded);
    return core.onSessionEnded((ended) => set(ended));
  });

  /**
   * Data that stays current: `fetch` runs when the store is first subscribed, again whenever one
   * of `options.on` arrives (the data-operation pattern: a list refetches on `todoCreated` /
   * `todoDeleted`), and after every reconnection (a new connection: without sessions the events
   * sent meanwhile are lost, and with them a fetch is still correct, if not always needed). A
   * reply that arrives after a newer fetch started is dropped, so the data never goes back in
   * time. On the server it holds `initial` and fetches nothing.
   */
  function live<T>(fetch: () => Promise<T>, options: LiveOptions<T, Key> = {}): LiveStore<T> {
    let run: (() => Promise<void>) | undefined;
    const store = readable<Live<T>>({ data: options.initial, error: undefined, loading: false }, (set, update) => {
      if (!inBrowser()) return;
      let latest = 0;
      let stopped = false;
      run = async () => {
        const mine = ++latest;
        update((s) => ({ ...s, loading: true }));
        try {
          const data = await fetch();
          if (!stopped && mine === latest) set({ data, error: undefined, loading: false });
        } catch (error) {
          if (!stopped && mine === latest) update((s) => ({ ...s, error, loading: false }));
        }
      };
      const again = (): void => void run?.();
      const stops = (options.on ?? []).map((name) => core.on(name, again));
      stops.push(
        core.onStateChange((state, change) => {
          if (state === "connected" && change.previous === "reconnecting") again();
        }),
      );
      again();
      return () => {
        stopped = true;
        run = undefined;
        for (const stop of stops) stop();
      };
    });
    return { subscribe: store.subscribe, refetch: () => run?.() ?? Promise.resolve() };
  }

  /**
   * A group's members, kept in sync with the server (`client.presence(group, options)`): a
   * snapshot, then the diffs, resynced after every reconnect. The list is opened when the store
   * is first subscribed and closed when its last subscriber leaves (the last component showing
   * it is destroyed); `options.enter` runs before each watch. The meta type is the schema's
   * (`presence_meta!`) unless given. Empty until the first snapshot, and on the server, where it
   * never opens.
   */
  function presence<M = PresenceMetaOf<Events>>(group: string, options: PresenceOptions = {}): Readable<readonly PresenceMember<M>[]> {
    return readable<readonly PresenceMember<M>[]>([], (set) => {
      if (!inBrowser()) return;
      const list = core.presence<M>(group, options);
      const stop = list.subscribe(set);
      return () => {
        stop();
        list.close();
      };
    });
  }

  return { event, eventList, connectionState, sessionEnded, live, presence };
}

/** What `ephapticStores` returns. */
export type EphapticStores<Events extends object> = ReturnType<typeof ephapticStores<Events>>;
