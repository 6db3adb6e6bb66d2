// Sessions (docs/PROTOCOL.md 5.6): stream positions, duplicate dropping, the hello and what its
// result, `position` and `resync` frames mean. Pure bookkeeping: the connection (client.ts) owns
// the socket and calls into this.
import type { ErrorContext, Resync, ResyncReason, SchemaMismatch, Session, SessionLimits, StreamOutcome } from "./types.js";

/** The reserved name of the hello call. */
export const HELLO = "__ephaptic.hello";
/** The id the hello goes out with: user calls count from 1, so 0 is never theirs. */
export const HELLO_ID = 0;
/** The reserved name of the call that carries fresh credentials (PROTOCOL.md 5.11). */
export const REFRESH = "__ephaptic.refresh";
/** The most positions a server reads from `init.resume`. */
export const MAX_RESUME = 64;

interface Position {
  epoch: string;
  offset: number;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function offsetOf(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** A stream outcome read off a hello's `streams` entry or a `position` frame; undefined if malformed. */
export function readOutcome(stream: string, v: unknown): StreamOutcome | undefined {
  if (!isMap(v) || typeof v.epoch !== "string") return undefined;
  const offset = offsetOf(v.offset);
  if (offset === undefined) return undefined;
  const outcome: StreamOutcome = {
    stream,
    epoch: v.epoch,
    offset,
    recovered: v.recovered === true,
    wasRecovering: v.was_recovering === true,
    replayed: offsetOf(v.replayed) ?? 0,
  };
  if (typeof v.reason === "string") outcome.reason = v.reason as ResyncReason;
  return outcome;
}

/**
 * The last position handled on each stream, and what drops duplicates. Map order is the order of
 * last use (an update re-inserts), so the positions sent on a reconnect, and the ones kept when
 * there are too many, are the most recent ones.
 */
export class Positions {
  private readonly byStream = new Map<string, Position>();

  /**
   * Whether an event at `seq` of `stream`/`epoch` is new (deliver it) or a duplicate (drop it).
   * A new one becomes the stream's position; another epoch replaces the position.
   */
  accept(stream: string, epoch: string, seq: number): boolean {
    const last = this.byStream.get(stream);
    if (last && last.epoch === epoch && seq <= last.offset) return false;
    this.put(stream, { epoch, offset: seq });
    return true;
  }

  /**
   * Where a hello, a `position` or a `resync` frame says the stream goes on from: in the same
   * epoch the furthest of it and what was handled; another epoch replaces the position.
   */
  moveTo(stream: string, epoch: string, offset: number): void {
    const last = this.byStream.get(stream);
    if (last && last.epoch === epoch && last.offset >= offset) return;
    this.put(stream, { epoch, offset });
  }

  get(stream: string): Position | undefined {
    return this.byStream.get(stream);
  }

  delete(stream: string): void {
    this.byStream.delete(stream);
  }

  has(stream: string): boolean {
    return this.byStream.has(stream);
  }

  /** `init.resume`: at most 64 positions, `u` and `b` first, then the most recently moved groups. */
  resume(): Record<string, [string, number]> | undefined {
    if (this.byStream.size === 0) return undefined;
    const names = [...this.byStream.keys()];
    const ordered = [
      ...names.filter((n) => n === "u" || n === "b"),
      ...names.filter((n) => n !== "u" && n !== "b").reverse(),
    ].slice(0, MAX_RESUME);
    const out: Record<string, [string, number]> = {};
    for (const name of ordered) {
      const p = this.byStream.get(name) as Position;
      out[name] = [p.epoch, p.offset];
    }
    return out;
  }

  snapshot(): Record<string, { epoch: string; offset: number }> {
    const out: Record<string, { epoch: string; offset: number }> = {};
    for (const [name, p] of this.byStream) out[name] = { epoch: p.epoch, offset: p.offset };
    return out;
  }

  private put(stream: string, position: Position): void {
    this.byStream.delete(stream);
    this.byStream.set(stream, position);
    // Keep a bounded set: the oldest group goes first (u and b are re-inserted on every event).
    if (this.byStream.size > MAX_RESUME * 2) {
      for (const name of this.byStream.keys()) {
        if (name !== "u" && name !== "b") {
          this.byStream.delete(name);
          break;
        }
      }
    }
  }
}

interface Held {
  readonly stream: string;
  readonly epoch: string;
  /** Undefined for a `position` or `resync` frame, which keeps its place. */
  readonly seq: number | undefined;
  readonly deliver: () => void;
}

/**
 * Positioned events that arrive before the hello's answer (PROTOCOL.md 5.6): live events of `b`
 * can come before the replay, so they wait, and are handed over once the answer is in, each
 * stream's in `seq` order, without copies and without those at or below the position resumed
 * from. Across streams the arrival order is kept: each stream's events fill the places its own
 * events arrived in. `position` and `resync` frames wait too, in their place (a group joined by a
 * call sent before the answer: its position must not overtake its replayed events).
 */
export class EarlyEvents {
  private held: Held[] = [];

  get size(): number {
    return this.held.length;
  }

  hold(stream: string, epoch: string, seq: number, deliver: () => void): void {
    this.held.push({ stream, epoch, seq, deliver });
  }

  /** A frame that moves a position (`position`, `resync`): run in its place. */
  holdFrame(run: () => void): void {
    this.held.push({ stream: "", epoch: "", seq: undefined, deliver: run });
  }

  /** Delivers what was held, in order, each one `accept` lets through (it drops the copies). */
  release(accept: (stream: string, epoch: string, seq: number) => boolean): void {
    const held = this.held;
    this.held = [];
    const byStream = new Map<string, Held[]>();
    const key = (h: Held): string => `${h.stream}\u0000${h.epoch}`;
    for (const h of held) {
      if (h.seq === undefined) continue;
      const list = byStream.get(key(h));
      if (list) list.push(h);
      else byStream.set(key(h), [h]);
    }
    for (const list of byStream.values()) list.sort((a, b) => (a.seq as number) - (b.seq as number));
    const next = new Map<string, number>();
    for (const slot of held) {
      if (slot.seq === undefined) {
        slot.deliver();
        continue;
      }
      const k = key(slot);
      const i = next.get(k) ?? 0;
      next.set(k, i + 1);
      const h = (byStream.get(k) as Held[])[i] as Held;
      if (accept(h.stream, h.epoch, h.seq as number)) h.deliver();
    }
  }

  /**
   * Forgets what was held (the connection closed before the answer): delivering it could move a
   * position past events not replayed yet; the next resume brings them again.
   */
  drop(): void {
    this.held = [];
  }
}

/** The hello's result, as read: undefined when it is not a map with `streams`. */
export interface HelloResult {
  readonly server: string | null;
  readonly identity: unknown;
  readonly schema: string | null;
  readonly resume: boolean;
  readonly limits: SessionLimits;
  readonly streams: readonly StreamOutcome[];
}

export function readHello(result: unknown): HelloResult | undefined {
  if (!isMap(result)) return undefined;
  const streams: StreamOutcome[] = [];
  if (isMap(result.streams)) {
    for (const [name, v] of Object.entries(result.streams)) {
      const outcome = readOutcome(name, v);
      if (outcome) streams.push(outcome);
    }
  }
  const limits: SessionLimits = {};
  if (isMap(result.limits)) {
    for (const [k, v] of Object.entries(result.limits)) if (typeof v === "number") limits[k] = v;
  }
  return {
    server: typeof result.server === "string" ? result.server : null,
    identity: result.identity === undefined ? null : result.identity,
    schema: typeof result.schema === "string" ? result.schema : null,
    resume: result.resume === true,
    limits,
    streams,
  };
}

/**
 * The session state of one client across its connections: positions, what the last hello said,
 * and the outcome of each stream. `client.session` is a snapshot of it.
 */
export class SessionState {
  readonly positions = new Positions();
  /** Positioned events that came before the hello's answer. */
  readonly early = new EarlyEvents();
  /** The last outcome reported per stream (hello, `position` or `resync`). */
  private readonly outcomes = new Map<string, StreamOutcome>();
  /** Event names seen on each stream, for invalidating the queries a lost stream fed. */
  private readonly eventsByStream = new Map<string, Set<string>>();
  /** Event names seen with a position, on any stream. */
  private readonly positionedEvents = new Set<string>();
  private hello: HelloResult | undefined;
  private legacy = false;
  private mismatch = false;
  private reconnected = false;
  private recovered = true;
  /** Whether a session (a hello result, or legacy) was ever established. */
  established = false;
  private readonly expectedSchema: string | undefined;

  constructor(expectedSchema: string | undefined) {
    this.expectedSchema = expectedSchema;
  }

  /** The stream an event arrived on, remembered for `mayCarry`. */
  noteEvent(stream: string, name: string): void {
    let names = this.eventsByStream.get(stream);
    if (!names) {
      // Bounded: a stream not tracked counts as possibly carrying anything (see mayCarry).
      if (this.eventsByStream.size >= 256) return;
      this.eventsByStream.set(stream, (names = new Set()));
    }
    if (names.size < 1024) names.add(name);
    if (this.positionedEvents.size < 4096) this.positionedEvents.add(name);
  }

  /**
   * Whether events named `name` may have been lost with `stream`: they were seen on it, or the
   * client cannot rule it out (they were never seen with a position, or nothing was ever seen
   * on that stream). `*` is every stream.
   */
  mayCarry(stream: string, name: string): boolean {
    if (stream === "*") return true;
    const seen = this.eventsByStream.get(stream);
    if (!seen || !this.positionedEvents.has(name)) return true;
    return seen.has(name);
  }

  /**
   * Applies a hello result. Returns the streams not recovered (to report), given the positions
   * `sent` in `init.resume` and whether this is a reconnection.
   */
  applyHello(hello: HelloResult, sent: Record<string, [string, number]> | undefined, reconnect: boolean): Resync[] {
    const before = this.hello;
    const identityChanged = before !== undefined && !sameIdentity(before.identity, hello.identity);
    this.hello = hello;
    this.legacy = false;
    this.established = true;
    this.reconnected = reconnect;
    this.mismatch = this.expectedSchema !== undefined && hello.schema !== null && hello.schema !== this.expectedSchema;
    const lost: Resync[] = [];
    const listed = new Set<string>();
    for (const outcome of hello.streams) {
      listed.add(outcome.stream);
      let reported = outcome;
      if (outcome.stream === "u" && identityChanged) {
        reported = { ...outcome, recovered: false, reason: "identity" };
        this.positions.delete("u");
        this.eventsByStream.delete("u");
      }
      this.positions.moveTo(outcome.stream, outcome.epoch, outcome.offset);
      const asked = sent !== undefined && Object.prototype.hasOwnProperty.call(sent, outcome.stream);
      reported = judged(reported, asked);
      this.outcomes.set(outcome.stream, reported);
      if (!reported.recovered && (reported.wasRecovering || asked || reported.reason === "identity")) {
        lost.push(resyncOf(reported, "hello"));
      }
    }
    // A server that keeps no history (sessions off) lists no streams: after a reconnect,
    // everything may have been missed, as with a server without sessions.
    if (!hello.resume && reconnect) lost.push({ stream: "*", reason: "disabled", source: "hello" });
    // A `u` position the hello does not answer: the connection is anonymous now.
    if (hello.resume && sent?.u && !listed.has("u")) {
      this.positions.delete("u");
      this.outcomes.delete("u");
      lost.push({ stream: "u", reason: "identity", source: "hello" });
    }
    this.recovered = lost.length === 0;
    return lost;
  }

  /** A server without sessions (or `resume: false`). Returns what to report for a reconnection. */
  applyLegacy(reconnect: boolean, reason: ResyncReason = "legacy"): Resync[] {
    this.legacy = true;
    this.established = true;
    this.hello = undefined;
    this.mismatch = false;
    this.reconnected = reconnect;
    this.recovered = !reconnect;
    return reconnect ? [{ stream: "*", reason, source: "legacy" }] : [];
  }

  /** A `position` frame (a group joined): returns the resync to report, if the group was not recovered. */
  applyPosition(reported: StreamOutcome, asked: boolean): Resync | undefined {
    const outcome = judged(reported, asked);
    this.outcomes.set(outcome.stream, outcome);
    this.positions.moveTo(outcome.stream, outcome.epoch, outcome.offset);
    if (!outcome.recovered && (outcome.wasRecovering || asked)) {
      this.recovered = false;
      return resyncOf(outcome, "position");
    }
    return undefined;
  }

  /** A `resync` frame: events of `stream` were missed live. */
  applyResync(stream: string, epoch: string, offset: number, reason: ResyncReason): Resync {
    this.outcomes.set(stream, { stream, epoch, offset, recovered: false, wasRecovering: false, replayed: 0, reason });
    this.positions.moveTo(stream, epoch, offset);
    this.recovered = false;
    return { stream, reason, epoch, offset, source: "resync" };
  }

  get schemaMismatch(): boolean {
    return this.mismatch;
  }

  get identity(): unknown {
    return this.hello ? this.hello.identity : undefined;
  }

  snapshot(): Session | undefined {
    if (!this.established) return undefined;
    const positions = this.positions.snapshot();
    const streams: Record<string, StreamOutcome> = {};
    for (const [name, p] of Object.entries(positions)) {
      const outcome = this.outcomes.get(name);
      streams[name] = outcome
        ? { ...outcome, epoch: p.epoch, offset: p.offset }
        : { stream: name, epoch: p.epoch, offset: p.offset, recovered: true, wasRecovering: false, replayed: 0 };
    }
    const hello = this.hello;
    return {
      legacy: this.legacy,
      server: hello?.server ?? null,
      identity: hello ? hello.identity : undefined,
      schema: hello?.schema ?? null,
      expectedSchema: this.expectedSchema ?? null,
      schemaMismatch: this.mismatch,
      resume: hello?.resume ?? false,
      limits: hello?.limits ?? {},
      streams,
      reconnected: this.reconnected,
      recovered: this.recovered,
    };
  }
}

/**
 * A stream the client asked for is recovered only if the server says it recovered it from that
 * position: `recovered` without `was_recovering` means the server did not look at the position
 * (one past the 64 it reads, or a server that ignores it), so what was missed is lost.
 */
function judged(outcome: StreamOutcome, asked: boolean): StreamOutcome {
  if (!asked || outcome.wasRecovering || !outcome.recovered) return outcome;
  return { ...outcome, recovered: false, reason: outcome.reason ?? "ignored" };
}

/**
 * Who hears about lost streams and schema skew: `onResync` and `onSchemaMismatch` callbacks, and
 * the invalidation helper (one batch per connection or frame). A callback that throws goes to
 * `report` and does not stop the others.
 */
export class SessionListeners {
  private readonly resync = new Set<(resync: Resync) => void>();
  private readonly batches = new Set<(lost: readonly Resync[]) => void>();
  private readonly mismatch = new Set<(mismatch: SchemaMismatch) => void>();
  /** The server schema hash last reported, so a mismatch is told once per hash. */
  private reported: string | undefined;

  constructor(private readonly report: (error: unknown, context: ErrorContext) => void) {}

  onResync(callback: (resync: Resync) => void): () => void {
    if (typeof callback !== "function") throw new TypeError("onResync needs a function.");
    const wrapped = (r: Resync): void => callback(r);
    this.resync.add(wrapped);
    return () => void this.resync.delete(wrapped);
  }

  /** Every batch of lost streams at once (for invalidating once however many were lost). */
  onLost(callback: (lost: readonly Resync[]) => void): () => void {
    this.batches.add(callback);
    return () => void this.batches.delete(callback);
  }

  onSchemaMismatch(callback: (mismatch: SchemaMismatch) => void): () => void {
    if (typeof callback !== "function") throw new TypeError("onSchemaMismatch needs a function.");
    const wrapped = (m: SchemaMismatch): void => callback(m);
    this.mismatch.add(wrapped);
    return () => void this.mismatch.delete(wrapped);
  }

  lost(lost: readonly Resync[]): void {
    if (lost.length === 0) return;
    for (const resync of lost) {
      for (const listener of [...this.resync]) {
        try {
          listener(resync);
        } catch (error) {
          this.report(error, { kind: "resync-listener", stream: resync.stream });
        }
      }
    }
    for (const listener of [...this.batches]) listener(lost);
  }

  /** Tells the mismatch listeners if `session` has another schema than expected, once per hash. */
  schema(session: Session): void {
    if (!session.schemaMismatch || session.schema === null || session.schema === this.reported) return;
    this.reported = session.schema;
    const mismatch: SchemaMismatch = { expected: session.expectedSchema as string, actual: session.schema, session };
    for (const listener of [...this.mismatch]) {
      try {
        listener(mismatch);
      } catch (error) {
        this.report(error, { kind: "schema-listener" });
      }
    }
  }
}

function resyncOf(outcome: StreamOutcome, source: Resync["source"]): Resync {
  return {
    stream: outcome.stream,
    reason: outcome.reason ?? "unknown",
    epoch: outcome.epoch,
    offset: outcome.offset,
    source,
  };
}

function sameIdentity(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // Identities are usually strings or numbers; anything else is compared by its JSON form.
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}
