// Type tests for ephaptic's TanStack helpers with @tanstack/svelte-query 6 (the version the
// client's README shows; Todos.svelte is the same in a component). Compiled by tsconfig.test.json
// and never run: svelte-query's runes only work inside a component. Every `@ts-expect-error`
// line must fail to compile.
import { createMutation, createQuery, QueryClient } from "@tanstack/svelte-query";
import type { Client } from "@ephaptic/client";
import type { EphapticErrors, EphapticService, Todo } from "../../../client/test/helpers/bindings/schema.js";

export function svelteQuery6(client: Client<EphapticService, EphapticErrors>, queryClient: QueryClient): void {
  const todos = createQuery(() => client.queries.listTodos(), () => queryClient);
  const data: Todo[] | undefined = todos.data;
  const create = createMutation(() => client.mutations.createTodo(), () => queryClient);
  create.mutate("Buy milk");
  // @ts-expect-error createTodo takes a title
  create.mutate(1);
  // @ts-expect-error svelte-query 5's form: version 6 takes the options as a function
  createQuery(client.queries.listTodos(), () => queryClient);
  // @ts-expect-error svelte-query 6's result is not a store: read `todos.data`, not `$todos`
  todos.subscribe;
  void data;
}
