// Who is online, for the Svelte page: the lobby's presence through `stores.presence` (see
// ../shared/online.ts). Watched while a component shows it, resynced after every reconnection.
import { derived, type Readable } from "svelte/store";
import type { User } from "../schema";
import { LOBBY, lobby, usersOf } from "../shared/online";
import type { DemoClient } from "../shared/session";
import type { Stores } from "./ephaptic";

/** The signed-in users with an open page, by number. */
export function online(client: DemoClient, stores: Stores): Readable<readonly User[]> {
  return derived(stores.presence(LOBBY, lobby(client)), usersOf);
}
