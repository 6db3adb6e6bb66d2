// @ephaptic/react from its tarball, with the app's own React 19 and @tanstack/react-query 5.
import { useEffect, type ReactNode } from "react";
import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { createEphapticReact } from "@ephaptic/react";
import type { EphapticErrors, EphapticEvents, EphapticService, Todo } from "./schema.js";
import { client } from "./client.js";

const { EphapticProvider, useEvent, useEventList, useConnectionState, useEphapticQuery, useEphapticMutation, useInvalidateOn } =
  createEphapticReact<EphapticService, EphapticErrors, EphapticEvents>();

function Todos(): ReactNode {
  const page = useEphapticQuery((q) => q.list_todos());
  const first: Todo | undefined = page.data?.items[0];
  const direct = useQuery(client.queries.add(1, 2)); // react-query 5 with the client's options as they are
  const sum: number | undefined = direct.data;
  useInvalidateOn(["todoCreated"], [["list_todos"]]);
  // @ts-expect-error a query key that does not exist
  useInvalidateOn(["todoCreated"], [["list_todoz"]]);
  const create = useEphapticMutation("create_todo");
  useEvent("SomethingHappened", (e) => console.log(e.message));
  // @ts-expect-error a field the payload does not have
  useEvent("SomethingHappened", (e) => console.log(e.mesage));
  const all = useEventList("todoCreated", { max: 10 });
  const state = useConnectionState();
  useEffect(() => client.on("todoCreated", (t) => console.log(t.title)), []);
  return (
    <div>
      <p>{state} {sum} {first?.title}</p>
      <button onClick={() => create.mutate("Buy milk")}>Add</button>
      <ul>{all.map((t) => <li key={t.id}>{t.title}</li>)}</ul>
    </div>
  );
}

export function App(): ReactNode {
  return (
    <QueryClientProvider client={new QueryClient()}>
      <EphapticProvider client={client}><Todos /></EphapticProvider>
    </QueryClientProvider>
  );
}
