// Who is online, shared by both pages: the presence of the group `lobby`. Each signed-in page is
// tracked there with its user by `enterLobby()`, which the presence list calls before each watch
// (the first, and after every reconnection: a new connection is tracked again before it asks for
// the list, and the server lets a connection watch a group it tracks itself in). A closed page
// leaves by itself: its entry goes with its connection.
import type { PresenceOptions } from "@ephaptic/client";
import type { PresenceMember, User } from "../schema";
import type { DemoClient } from "./session";

/** The presence group of every signed-in page (`LOBBY` in `src/lib.rs`). */
export const LOBBY = "lobby";

/** The options of the lobby's presence list: enter it (be tracked) before each watch. */
export const lobby = (client: DemoClient): PresenceOptions => ({ enter: () => client.enterLobby() });

/** The users online, one per member (a user's tabs are one member), by number. */
export function usersOf(members: readonly PresenceMember<User>[]): User[] {
  return members.flatMap((m) => m.connections.slice(0, 1).map((c) => c.meta)).sort((a, b) => a.id - b.id);
}
