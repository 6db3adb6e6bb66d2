import { connect } from "@ephaptic/client";
import type { EphapticErrors, EphapticService } from "./schema";

/** The one connection of the page, typed by the generated schema.ts. */
export const client = connect<EphapticService, EphapticErrors>({ url: "/_ephaptic" });
