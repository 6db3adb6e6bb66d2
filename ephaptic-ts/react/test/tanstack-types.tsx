// Type tests for the client README's React + TanStack example, with @tanstack/react-query 5
// used directly (no @ephaptic/react hooks): `client.queries` and `client.mutations` are its
// `useQuery` / `useMutation` options as they are. Compiled by tsconfig.test.json and never run
// (hooks.test.tsx runs the same through the hooks). Every `@ts-expect-error` line must fail to
// compile.
import { useEffect, type ReactNode } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { Client } from "@ephaptic/client";
import type { EphapticErrors, EphapticService, Todo } from "../../client/test/helpers/bindings/schema.js";

export function Todos(props: { client: Client<EphapticService, EphapticErrors> }): ReactNode {
  const { client } = props;
  const queryClient = useQueryClient();
  const todos = useQuery(client.queries.listTodos());
  const data: Todo[] | undefined = todos.data;
  const create = useMutation(client.mutations.createTodo());
  useEffect(() => client.invalidateOn("todoCreated", queryClient, [["listTodos"]]), [client, queryClient]);
  // @ts-expect-error a channel the schema does not have
  useEffect(() => client.invalidateOn("todoCreatd", queryClient, [["listTodos"]]), [client, queryClient]);
  // @ts-expect-error a query key that does not exist
  useEffect(() => client.invalidateOn("todoCreated", queryClient, [["listTodoz"]]), [client, queryClient]);
  // @ts-expect-error createTodo takes a title
  const wrong = () => create.mutate(1);
  void wrong;
  return (
    <>
      <button onClick={() => create.mutate("Buy milk")}>Add</button>
      <ul>{data?.map((t) => <li key={t.id}>{t.title}</li>)}</ul>
    </>
  );
}
