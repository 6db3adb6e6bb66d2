// The hooks, typed by the schema generated from the Rust types (made once for the app).
import { createEphapticReact } from "@ephaptic/react";
import type { EphapticErrors, EphapticEvents, EphapticService } from "../schema";

export const {
  EphapticProvider,
  useClient,
  useEvent,
  useEventList,
  useConnectionState,
  useReconnected,
  usePresence,
  useInvalidateOn,
  useEphapticQuery,
  useEphapticMutation,
} = createEphapticReact<EphapticService, EphapticErrors, EphapticEvents>();
