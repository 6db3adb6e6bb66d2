// A schema of the shape ephaptic-ts generates (a subset of examples/demo's), for the tests of
// @ephaptic/react and @ephaptic/svelte (one copy for both, next to fake-server.ts).
export type SomethingHappened = { code: number; message: string; isError: boolean };
export type Todo = { id: number; title: string };
/** The meta of the demo's presence (`presence_meta!(User)`): how a connection shows in a list. */
export type User = { id: number; name: string };
export type PresenceConn<M> = { id: string; meta: M };
export type PresenceMember<M> = { key: string; connections: Array<PresenceConn<M>> };
export type PresenceLeave = { key: string; connections: Array<string> };
export type PresenceDiff<M> = { group: string; joins: Array<PresenceMember<M>>; leaves: Array<PresenceLeave> };

export interface EphapticEvents {
  SomethingHappened: SomethingHappened;
  todoCreated: Todo;
  "__ephaptic.presence": PresenceDiff<User>;
}

export interface EphapticErrors {
  INVALID_TITLE: { max: number; length: number };
}

export interface EphapticQueries {
  listTodos(): { queryKey: readonly ["listTodos"]; queryFn: () => Promise<Array<Todo>> };
  createTodo(title: string): { queryKey: readonly ["createTodo", string]; queryFn: () => Promise<Todo> };
}

export interface EphapticMutations {
  createTodo(): {
    mutationKey: readonly ["createTodo"];
    mutationFn: (variables: string) => Promise<Todo>;
    onSuccess: () => Promise<void>;
    channels: readonly ["todoCreated"];
  };
}

export const ephapticMutations = {
  createTodo: { params: 1, channels: ["todoCreated"] },
} as const;

/** The functions declared `#[expose(idempotent)]` (PROTOCOL.md 5.12). */
export const ephapticIdempotent = ["createTodo"] as const;

export interface EphapticService {
  listTodos(): Promise<Array<Todo>>;
  createTodo(title: string): Promise<Todo>;
  enterLobby(): Promise<null>;
  on<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): () => void;
  off<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): void;
  once<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): () => void;
  queries: EphapticQueries;
  mutations: EphapticMutations;
}
