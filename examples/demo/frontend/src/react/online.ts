// Who is online: THE seam for ephaptic's presence. Today the demo's own mechanism (the server's
// `online` module: `onlineUsers()` once, then the `Online` event); once presence lands, this hook
// becomes the presence client's member list and nothing else changes.
import { useEffect, useState } from "react";
import type { Online, User } from "../schema";
import { useEphapticQuery, useEvent, useReconnected } from "./ephaptic";

const NONE: Online = { version: -1, users: [] };

/** The signed-in users with an open connection, in the order they came online. */
export function useOnline(): readonly User[] {
  const [online, setOnline] = useState<Online>(NONE);
  // Keep the newest list: a reply that raced an event must not take the list back in time.
  const keep = (next: Online): void => setOnline((old) => (next.version > old.version ? next : old));
  useEvent("Online", keep);
  const fetched = useEphapticQuery((q) => q.onlineUsers());
  useEffect(() => {
    if (fetched.data) keep(fetched.data);
  }, [fetched.data]);
  // A restarted server counts versions from 0 again (the app refetches everything after a reconnection).
  useReconnected(() => setOnline(NONE));
  return online.users;
}
