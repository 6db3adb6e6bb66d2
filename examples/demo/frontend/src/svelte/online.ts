// Who is online: THE seam for ephaptic's presence. Today the demo's own mechanism (the server's
// `online` module: `onlineUsers()` once, then the `Online` event); once presence lands, this
// store becomes the presence client's member list and nothing else changes.
import { readable, type Readable } from "svelte/store";
import { inBrowser } from "@ephaptic/svelte";
import type { Online, User } from "../schema";
import type { DemoClient } from "../shared/session";

const NONE: Online = { version: -1, users: [] };

/** The signed-in users with an open connection, in the order they came online. */
export function online(client: DemoClient): Readable<readonly User[]> {
  return readable<readonly User[]>([], (set) => {
    if (!inBrowser()) return;
    let current = NONE;
    // Keep the newest list: a reply that raced an event must not take the list back in time.
    const keep = (next: Online): void => {
      if (next.version <= current.version) return;
      current = next;
      set(next.users);
    };
    const fetch = (): void => void client.onlineUsers().then(keep, () => undefined);
    const stopEvent = client.on("Online", keep);
    const stopState = client.onStateChange((state, change) => {
      // A restarted server counts versions from 0 again.
      if (state === "connected" && change.previous === "reconnecting") {
        current = NONE;
        fetch();
      }
    });
    fetch();
    return () => {
      stopEvent();
      stopState();
    };
  });
}
