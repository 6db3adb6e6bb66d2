// An in-memory ephaptic server for the unit tests of @ephaptic/react and @ephaptic/svelte (one
// copy for both; each compiles it into its own .test-build/, see their tsconfig.test.json): a
// WebSocket class the real @ephaptic/client connects through, which answers `rpc` frames with the
// handlers given and pushes events on demand (`lobby` below plays a presence group). A call with
// an idempotency key (PROTOCOL.md 5.12) runs once per function and key: a repeat gets the first
// answer. The client under test is the real one; only the network is replaced.
import { decode, encode } from "@msgpack/msgpack";
import type { PresenceMember, User } from "./schema.js";

type Handler = (...args: unknown[]) => unknown;

export interface FakeServer {
  WebSocket: new (url: string) => FakeSocket;
  /** Every socket the client opened, oldest first. */
  sockets: FakeSocket[];
  /** How many times each function was called. */
  calls: Map<string, number>;
  /** Every call received, oldest first: its function and arguments, and its idempotency key if it had one. */
  log: Array<{ name: string; args: unknown[]; key?: string }>;
  /**
   * While on, calls still run (their answers are kept for a repeat with the same key) but the
   * answers are lost on the way: the client never gets them.
   */
  loseReplies(on: boolean): void;
  /** Sends an event (or a channel announcement) to every open socket. */
  emit(name: string, payload: unknown): void;
  /** Drops every open socket, as a server restart would. */
  dropAll(): void;
  /**
   * Ends every open socket's session, as `ephaptic::disconnect` (logging the user out) does:
   * close code 4401 with `reason`.
   */
  endSessions(reason: string): void;
}

export interface FakeSocket {
  binaryType: string;
  readyState: number;
  onopen: ((event: unknown) => unknown) | null;
  onmessage: ((event: { data: unknown }) => unknown) | null;
  onclose: ((event: { code: number; reason: string }) => unknown) | null;
  onerror: ((event: unknown) => unknown) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

const bytes = (frame: unknown): ArrayBuffer => {
  const b = encode(frame);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
};

export function fakeServer(handlers: Record<string, Handler> = {}): FakeServer {
  const sockets: FakeSocket[] = [];
  const calls = new Map<string, number>();
  const log: FakeServer["log"] = [];
  // The first answer of each keyed call, by function and key.
  const answers = new Map<string, Record<string, unknown>>();
  let losing = false;
  const answer = (name: string, args: unknown[], key: string | undefined): Record<string, unknown> => {
    const once = key === undefined ? undefined : `${name}\u0000${key}`;
    const kept = once === undefined ? undefined : answers.get(once);
    if (kept) return kept;
    const handler = handlers[name];
    const reply =
      handler === undefined
        ? { error: { code: "NOT_FOUND", message: `Function '${name}' not found.`, data: null } }
        : { result: handler(...args) ?? null };
    if (once !== undefined) answers.set(once, reply);
    return reply;
  };
  class Socket implements FakeSocket {
    binaryType = "blob";
    readyState = 0;
    onopen: FakeSocket["onopen"] = null;
    onmessage: FakeSocket["onmessage"] = null;
    onclose: FakeSocket["onclose"] = null;
    onerror: FakeSocket["onerror"] = null;
    constructor(readonly url: string) {
      sockets.push(this);
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.({});
      }, 0);
    }
    send(data: Uint8Array): void {
      const frame = decode(data) as { type?: string; id?: unknown; name?: string; args?: unknown[]; key?: unknown };
      if (frame.type !== "rpc" || typeof frame.name !== "string") return;
      const name = frame.name;
      const args = frame.args ?? [];
      const key = typeof frame.key === "string" ? frame.key : undefined;
      calls.set(name, (calls.get(name) ?? 0) + 1);
      log.push(key === undefined ? { name, args } : { name, args, key });
      const id = frame.id;
      setTimeout(() => {
        if (this.readyState !== 1) return;
        const reply = { id, ...answer(name, args, key) };
        if (!losing) this.onmessage?.({ data: bytes(reply) });
      }, 0);
    }
    close(code = 1000, reason = ""): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return {
    WebSocket: Socket,
    sockets,
    calls,
    log,
    loseReplies(on) {
      losing = on;
    },
    emit(name, payload) {
      const frame = bytes({ type: "event", name, payload: { args: [], kwargs: payload } });
      for (const s of sockets) if (s.readyState === 1) s.onmessage?.({ data: frame });
    },
    dropAll() {
      for (const s of sockets) {
        if (s.readyState === 3) continue;
        s.readyState = 3;
        s.onclose?.({ code: 1006, reason: "" });
      }
    },
    endSessions(reason) {
      for (const s of sockets) {
        if (s.readyState === 3) continue;
        s.readyState = 3;
        s.onclose?.({ code: 4401, reason });
      }
    },
  };
}

/** Resolves after `ms` (the fake socket answers on the next macrotask). */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until `check` is true, failing after `ms`. */
export async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * The presence group `lobby` as a server keeps it: `handlers` answer `enterLobby` and the reserved
 * `__ephaptic.presence.watch|unwatch` (a snapshot of the members now; other groups are empty),
 * and `join` / `leave` change the members and send the diff to every open socket (none with
 * `server` null: a change while the client is away, whose diff is lost).
 */
export function lobby(initial: Record<string, string>) {
  const members = new Map<string, PresenceMember<User>>();
  const member = (id: number, name: string): PresenceMember<User> => ({ key: `i:${id}`, connections: [{ id: `local:${id}`, meta: { id, name } }] });
  for (const [id, name] of Object.entries(initial)) members.set(`i:${id}`, member(Number(id), name));
  const snapshot = (group: unknown) => {
    const list = group === "lobby" ? [...members.values()].sort((a, b) => a.key.localeCompare(b.key)) : [];
    return { group, members: list, truncated: false, users: list.length, connections: list.length };
  };
  const handlers = {
    enterLobby: () => null,
    "__ephaptic.presence.watch": snapshot,
    "__ephaptic.presence.unwatch": () => true,
  };
  return {
    handlers,
    /** Changes the group now; `server` (when given) sends the diff to its open sockets. */
    join(server: FakeServer | null, id: number, name: string) {
      const m = member(id, name);
      members.set(m.key, m);
      server?.emit("__ephaptic.presence", { group: "lobby", joins: [m], leaves: [] });
    },
    leave(server: FakeServer | null, id: number) {
      const key = `i:${id}`;
      const conns = members.get(key)?.connections.map((c) => c.id) ?? [];
      members.delete(key);
      server?.emit("__ephaptic.presence", { group: "lobby", joins: [], leaves: [{ key, connections: conns }] });
    },
  };
}

/**
 * A hello handler for a server with sessions (PROTOCOL.md 5.6) that keeps history and recovers
 * the `b` stream on every reconnect (it sends no events with positions, so there is nothing to
 * replay): `fakeServer({ ...sessions(), ... })`. Without it the fake answers the hello
 * `NOT_FOUND`, as a server without sessions does.
 */
export function sessions(): Record<string, (...args: unknown[]) => unknown> {
  return {
    "__ephaptic.hello": () => ({
      v: 2,
      server: "fake/0",
      identity: null,
      schema: null,
      resume: true,
      limits: {},
      streams: { b: { epoch: "fake1", offset: 0, recovered: true, was_recovering: true, replayed: 0 } },
    }),
  };
}
