// Presence: a group's member list kept in sync with the server (a snapshot, then diffs), for
// frameworks to bind to. Built on the reserved calls `__ephaptic.presence.watch|unwatch` and the
// event `__ephaptic.presence` (docs/PROTOCOL.md, section 5.10).

import type { ConnectionState, StateChange } from "./types.js";

/** One connection of a member (a tab, a device), with the meta it tracked itself with. */
export interface PresenceConn<M = unknown> {
  /** Unique across servers. */
  id: string;
  meta: M;
}

/** A member of a group: an identity (`s:alice`, `i:7`) or an anonymous connection (`c:...`). */
export interface PresenceMember<M = unknown> {
  key: string;
  /** At least one. */
  connections: PresenceConn<M>[];
}

/** A diff as the server sends it. */
interface Diff<M> {
  group: string;
  joins: PresenceMember<M>[];
  leaves: Array<{ key: string; connections: string[] }>;
}

/** A snapshot as `__ephaptic.presence.watch` answers it. */
interface Snapshot<M> {
  group: string;
  members: PresenceMember<M>[];
  truncated: boolean;
  users: number;
  connections: number;
}

/** Options of `client.presence(group, options)`. */
export interface PresenceOptions {
  /**
   * Runs before each watch (the first, and after every reconnect, when the server has forgotten
   * the connection's groups): a call that joins the group or tracks the caller in it, which the
   * server's default rule requires before it lets a connection watch, e.g.
   * `enter: () => client.enterRoom("1")`.
   */
  enter?: () => Promise<unknown>;
}

/** What a presence list needs of the client (so that it stays apart from the client's insides). */
export interface PresenceHost {
  call(name: string, ...args: unknown[]): Promise<unknown>;
  on(event: string, callback: (data: unknown) => void): () => void;
  onStateChange(callback: (state: ConnectionState, change: StateChange) => void): () => void;
  report(error: unknown): void;
}

const EVENT = "__ephaptic.presence";
const WATCH = "__ephaptic.presence.watch";
const UNWATCH = "__ephaptic.presence.unwatch";

type Members<M> = Map<string, Map<string, M>>;

/**
 * A group's members, kept in sync: `client.presence<Online>("room:1")`. Until the first snapshot
 * arrives `synced` is false and diffs are buffered; after a reconnect the list resyncs from a new
 * snapshot (reporting who joined and left meanwhile). `members` is a new array after each change
 * and the same one otherwise, so it can back React's `useSyncExternalStore`; `subscribe` follows
 * Svelte's store contract.
 */
export class Presence<M = unknown> {
  readonly group: string;
  private readonly host: PresenceHost;
  private state: Members<M> = new Map();
  private list: readonly PresenceMember<M>[] = [];
  private pending: Diff<M>[] | undefined = [];
  private attempt = 0;
  private users_ = 0;
  private truncated_ = false;
  private error_: unknown = undefined;
  private readonly syncListeners = new Set<(members: readonly PresenceMember<M>[]) => void>();
  private readonly joinListeners = new Set<(member: PresenceMember<M>) => void>();
  private readonly leaveListeners = new Set<(key: string) => void>();
  private readonly readyWaiters: Array<() => void> = [];
  private readonly stops: Array<() => void> = [];
  /** How many `client.presence(group)` handles share this list. */
  refs = 0;
  /** Called once the last handle is closed. */
  onClosed: (() => void) | undefined;
  private closed = false;

  private readonly options: PresenceOptions;

  constructor(host: PresenceHost, group: string, options: PresenceOptions = {}) {
    this.host = host;
    this.group = group;
    this.options = options;
    this.stops.push(
      host.on(EVENT, (data) => {
        const diff = data as Diff<M>;
        if (diff?.group !== this.group) return;
        if (this.pending) this.pending.push(diff);
        else this.apply([diff]);
      }),
      host.onStateChange((state, change) => {
        // The server forgot this watcher with the old connection: watch again.
        if (state === "connected" && change.previous === "reconnecting") this.watch();
      }),
    );
    this.watch();
  }

  /** The members now, sorted by key (empty until synced). */
  get members(): readonly PresenceMember<M>[] {
    return this.list;
  }

  /** Whether the list reflects a snapshot (false before the first and while resyncing). */
  get synced(): boolean {
    return this.pending === undefined;
  }

  /** Members in the group according to the server's last snapshot plus the diffs since. */
  get users(): number {
    return this.truncated_ ? Math.max(this.users_, this.list.length) : this.list.length;
  }

  /** Whether the server cut the snapshot at its list cap (members beyond it are missing). */
  get truncated(): boolean {
    return this.truncated_;
  }

  /** Why watching failed (e.g. an EphapticError `FORBIDDEN`); undefined otherwise. */
  get error(): unknown {
    return this.error_;
  }

  /** A member by key. */
  get(key: string): PresenceMember<M> | undefined {
    return this.list.find((m) => m.key === key);
  }

  /** Resolves once the list has been synced (at once if it is). */
  ready(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** Called with the members after every snapshot and diff; returns a function that stops it. */
  onSync(callback: (members: readonly PresenceMember<M>[]) => void): () => void {
    this.syncListeners.add(callback);
    return () => void this.syncListeners.delete(callback);
  }

  /** Called when a member arrives (its first connection); returns a function that stops it. */
  onJoin(callback: (member: PresenceMember<M>) => void): () => void {
    this.joinListeners.add(callback);
    return () => void this.joinListeners.delete(callback);
  }

  /** Called when a member's last connection leaves; returns a function that stops it. */
  onLeave(callback: (key: string) => void): () => void {
    this.leaveListeners.add(callback);
    return () => void this.leaveListeners.delete(callback);
  }

  /** Svelte's store contract: calls `run` now and after every change. */
  subscribe(run: (members: readonly PresenceMember<M>[]) => void): () => void {
    run(this.list);
    return this.onSync(run);
  }

  /** Stops this handle; the last one stops watching the group. */
  close(): void {
    if (--this.refs > 0 || this.closed) return;
    this.closed = true;
    for (const stop of this.stops) stop();
    this.syncListeners.clear();
    this.host.call(UNWATCH, this.group).catch(() => undefined);
    this.onClosed?.();
  }

  private watch(): void {
    if (this.closed) return;
    const attempt = ++this.attempt;
    this.pending = [];
    const enter = this.options.enter;
    const entered = enter ? Promise.resolve().then(enter) : Promise.resolve();
    entered.then(() => this.host.call(WATCH, this.group)).then(
      (snapshot) => {
        if (attempt !== this.attempt || this.closed) return;
        this.error_ = undefined;
        this.resync(snapshot as Snapshot<M>);
      },
      (error: unknown) => {
        if (attempt !== this.attempt || this.closed) return;
        // DISCONNECTED and the like are retried at the reconnect; a refusal is kept for the app.
        this.error_ = error;
        const code = (error as { code?: unknown })?.code;
        if (
          code !== "FORBIDDEN" &&
          code !== "DISCONNECTED" &&
          code !== "CONNECT_FAILED" &&
          code !== "TIMEOUT" &&
          code !== "SESSION_ENDED"
        ) {
          this.host.report(error);
        }
      },
    );
  }

  private resync(snapshot: Snapshot<M>): void {
    const before = this.state;
    const next: Members<M> = new Map();
    for (const m of snapshot.members) {
      next.set(m.key, new Map(m.connections.map((c) => [c.id, c.meta])));
    }
    this.users_ = snapshot.users;
    this.truncated_ = snapshot.truncated;
    this.state = next;
    const buffered = this.pending ?? [];
    this.pending = undefined;
    // Diffs that arrived while the snapshot was on its way: applying one the snapshot already
    // holds changes nothing (joins set, leaves delete, each connection's changes in order).
    for (const diff of buffered) this.merge(diff);
    this.publish(before);
    for (const resolve of this.readyWaiters.splice(0)) resolve();
  }

  private apply(diffs: Diff<M>[]): void {
    const before = new Map([...this.state].map(([k, v]) => [k, new Map(v)]));
    for (const diff of diffs) this.merge(diff);
    this.publish(before);
  }

  private merge(diff: Diff<M>): void {
    for (const m of diff.joins) {
      let conns = this.state.get(m.key);
      if (!conns) this.state.set(m.key, (conns = new Map()));
      for (const c of m.connections) conns.set(c.id, c.meta);
    }
    for (const m of diff.leaves) {
      const conns = this.state.get(m.key);
      if (!conns) continue;
      for (const id of m.connections) conns.delete(id);
      if (conns.size === 0) this.state.delete(m.key);
    }
  }

  /** Rebuilds `members` and tells the listeners what changed since `before`. */
  private publish(before: Members<M>): void {
    const keys = [...this.state.keys()].sort();
    this.list = keys.map((key) => ({
      key,
      connections: [...this.state.get(key)!].map(([id, meta]) => ({ id, meta })),
    }));
    const safely = (f: () => void) => {
      try {
        f();
      } catch (error) {
        this.host.report(error);
      }
    };
    for (const member of this.list) {
      if (!before.has(member.key)) for (const cb of this.joinListeners) safely(() => cb(member));
    }
    for (const key of before.keys()) {
      if (!this.state.has(key)) for (const cb of this.leaveListeners) safely(() => cb(key));
    }
    for (const cb of this.syncListeners) safely(() => cb(this.list));
  }
}

/** One client's presence lists, one per group, shared by every `client.presence(group)`. */
export class PresenceRegistry {
  private readonly lists = new Map<string, Presence<unknown>>();
  constructor(private readonly host: PresenceHost) {}

  get<M>(group: string, options?: PresenceOptions): Presence<M> {
    let list = this.lists.get(group);
    if (!list) {
      const made = new Presence<unknown>(this.host, group, options);
      made.onClosed = () => this.lists.delete(group);
      this.lists.set(group, (list = made));
    }
    list.refs++;
    return list as Presence<M>;
  }
}
