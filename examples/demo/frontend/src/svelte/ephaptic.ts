// The stores of one signed-in client, typed by the schema generated from the Rust types.
import { ephapticStores, type EphapticStores } from "@ephaptic/svelte";
import type { EphapticEvents } from "../schema";
import type { DemoClient } from "../shared/session";

export type Stores = EphapticStores<EphapticEvents>;

export const storesFor = (client: DemoClient): Stores => ephapticStores<EphapticEvents>(client);
