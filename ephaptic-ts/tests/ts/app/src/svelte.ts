// @ephaptic/svelte from its tarball, with the app's own Svelte 5 (Todos.svelte is checked by
// svelte-check).
import { get } from "svelte/store";
import { ephapticStores } from "@ephaptic/svelte";
import type { EphapticEvents, SomethingHappened, Todo } from "./schema.js";
import { client } from "./client.js";

export const stores = ephapticStores<EphapticEvents>(client);

export function read(): string {
  const latest: SomethingHappened | undefined = get(stores.event("SomethingHappened"));
  const created: readonly Todo[] = get(stores.eventList("todoCreated", { max: 5 }));
  // @ts-expect-error a misspelt event name
  stores.event("SomethingHapened");
  const todos = stores.live(() => client.list_todos(), { on: ["todoCreated"] });
  return `${latest?.message ?? ""} ${created.length} ${get(todos).data?.items.length ?? 0} ${get(stores.connectionState)}`;
}
