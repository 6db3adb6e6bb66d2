// Signing in, shared by both frontends: the name the user types is sent as `auth` on every
// connection; the server's identity loader gives the name a number (its identity), so the
// connection is that user for its whole life. Signing in as someone else is a new client.
import { connect, type Client } from "@ephaptic/client";
import { ephapticMutations, ephapticSchemaHash, type EphapticErrors, type EphapticService } from "../schema";

export type DemoClient = Client<EphapticService, EphapticErrors>;

const KEY = "ephaptic-demo-name";

/** The name this tab signed in with, if any (kept for reloads, per tab). */
export function savedName(): string | null {
  return typeof sessionStorage === "undefined" ? null : sessionStorage.getItem(KEY);
}

/** A client signed in as `name`. */
export function connectAs(name: string): DemoClient {
  sessionStorage.setItem(KEY, name);
  return connect<EphapticService, EphapticErrors>({
    url: "/_ephaptic",
    auth: name,
    mutations: ephapticMutations,
    // A page built before the server changed is told so (the demo logs it; an app would offer
    // a reload).
    schemaHash: ephapticSchemaHash,
    onSchemaMismatch: (m) => console.warn("this page is older than the server: reload it", m),
    // A demo server is restarted by hand: come back within about a second, not 30.
    reconnect: { baseMs: 200, capMs: 1500 },
  });
}

/** Forgets the name (the caller disconnects its client). */
export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

/** What the page shows for a failed call: the typed errors' own words, else the message. */
export function describeError(client: DemoClient, e: unknown): string {
  if (client.isError(e, "INVALID_TITLE")) {
    return e.data.length > e.data.max ? `${e.message} Yours has ${e.data.length}.` : e.message;
  }
  if (client.isError(e, "INVALID_TEXT")) {
    return e.data.length > e.data.max ? `${e.message} Yours has ${e.data.length}.` : e.message;
  }
  if (client.isError(e, "NO_SUCH_USER")) return `${e.message} (#${e.data.id})`;
  return e instanceof Error ? e.message : String(e);
}

/** `12:03:04` for Unix milliseconds, in the page's time zone. */
export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}
