// @ephaptic/client installed from its tarball, against a generated schema (tarballs.sh copies
// ../../schema.ts in as src/schema.ts). Every `@ts-expect-error` line must fail to compile.
import { connect, isEphapticError } from "@ephaptic/client";
import { ephapticMutations, ephapticSchemaHash, type EphapticErrors, type EphapticService, type SomethingHappened } from "./schema.js";

export const client = connect<EphapticService, EphapticErrors>({
  url: "/_ephaptic",
  mutations: ephapticMutations,
  schemaHash: ephapticSchemaHash,
});

export async function calls(): Promise<number> {
  const sum: number = await client.add(1, 2);
  const stop: () => void = client.on("SomethingHappened", (e: SomethingHappened) => console.log(e.message, e.code + 1));
  stop();
  for await (const n of await client.countdown(3)) console.log(n.toFixed());
  // @ts-expect-error a misspelt event name
  client.on("SomethingHapened", () => {});
  // @ts-expect-error a wrong argument type
  await client.add("1", 2);
  try {
    await client.create_todo("");
  } catch (e) {
    if (client.isError(e, "NOT_ALLOWED")) return e.data.permission.length;
    if (isEphapticError(e)) return e.code.length;
  }
  return sum;
}
