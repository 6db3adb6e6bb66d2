// Who is online, for the React page: the lobby's presence through `usePresence` (see
// ../shared/online.ts). Watched while the page is mounted, resynced after every reconnection.
import { useMemo } from "react";
import type { User } from "../schema";
import { LOBBY, lobby, usersOf } from "../shared/online";
import { useClient, usePresence } from "./ephaptic";

/** The signed-in users with an open page, by number. */
export function useOnline(): readonly User[] {
  const client = useClient();
  const members = usePresence(LOBBY, lobby(client));
  return useMemo(() => usersOf(members), [members]);
}
