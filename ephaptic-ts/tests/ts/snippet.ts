// The frontend code the TypeScript export must support, type-checked with `tsc --strict`
// against the generated `schema.ts` beside it. Every `@ts-expect-error` line must fail to
// type-check (tsc reports an unused `@ts-expect-error` as an error).
import type { EphapticErrors, EphapticService, SomethingHappened } from "./schema";

declare const client: EphapticService;

export async function usage(): Promise<void> {
    await client.broadcastEvent({ message: "John created an account!" }); // defaulted fields optional
    client.on("SomethingHappened", (data: SomethingHappened) => data.message.toUpperCase());
    client.off("SomethingHappened", (data) => data.code + 1);
    // @ts-expect-error a misspelt field
    client.broadcastEvent({ mesage: "typo" });
    // @ts-expect-error a misspelt event name
    client.on("SomethingHapened", () => {});
    // @ts-expect-error a field the payload does not have
    client.on("SomethingHappened", (d) => d.nope);
    const n: number = await client.add(1, 2);
    for await (const x of await client.countdown(3)) {
        const y: number = x;
        void y;
    }
    client.on("todoCreated", (todo) => todo.title); // channel typed by create_todo's return
    void n;

    // Argument shapes: the full type is accepted too, the server fills nothing in then.
    await client.broadcastEvent({ message: "m", code: 2, isError: true });
    // @ts-expect-error a wrong field type
    await client.broadcastEvent({ message: 1 });
    // @ts-expect-error a missing required argument
    await client.add(1);
    // @ts-expect-error a function that does not exist
    await client.substract(1, 2);
    // Trailing Option parameters may be left out.
    const page = await client.list_todos();
    const first: string | undefined = page.items[0]?.title;
    void first;
    // @ts-expect-error skip_deserializing fields cannot be sent
    await client.save_profile({ userId: "u", displayName: "d", level: "LOW", big: 1, signed: -1, ratio: 0.5, shape: "Empty", history: [], computed: 3 });
    await client.save_profile({ userId: "u", displayName: "d", level: "LOW", big: 1, signed: -1, ratio: 0.5, shape: { Circle: { radius: 1 } }, history: [{ kind: "start", at: 1 }] });
    // Errors: code -> data type.
    const data: EphapticErrors["NOT_ALLOWED"] = { permission: "admin" };
    void data;
    // Queries for TanStack Query.
    const q = client.queries.add(1, 2);
    const key: readonly ["add", number, number] = q.queryKey;
    const result: number = await q.queryFn();
    void key;
    void result;
}
