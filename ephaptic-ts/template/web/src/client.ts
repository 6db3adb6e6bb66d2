import { connect } from "@ephaptic/client";
import { ephapticSchemaHash, type EphapticErrors, type EphapticService } from "./schema";

/**
 * The one connection of the page, typed by the generated schema.ts. It resumes by itself after
 * a reconnect; `schemaHash` makes it tell the page when the server runs other functions or
 * types than this bundle was built against (a deploy while the tab was open).
 */
export const client = connect<EphapticService, EphapticErrors>({
  url: "/_ephaptic",
  schemaHash: ephapticSchemaHash,
  onSchemaMismatch: () => console.warn("the server was updated: reload the page"),
});
