// The hooks against the real @ephaptic/client over an in-memory server (fake-server.ts), rendered
// by react-dom into happy-dom.
import "./dom.js";
import assert from "node:assert/strict";
import { test } from "node:test";
import { act, useState, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { connect, type Client, type SessionEnded } from "@ephaptic/client";
import { createEphapticReact } from "@ephaptic/react";
import { fakeServer, lobby, sessions, until, type FakeServer } from "../../client/test/helpers/bindings/fake-server.js";
import {
  ephapticIdempotent,
  ephapticMutations,
  type EphapticErrors,
  type EphapticEvents,
  type EphapticService,
  type PresenceMember,
  type SomethingHappened,
  type Todo,
  type User,
} from "../../client/test/helpers/bindings/schema.js";

const {
  EphapticProvider,
  useEvent,
  useLatestEvent,
  useEventList,
  useConnectionState,
  useInvalidateOn,
  useEphapticQuery,
  useEphapticMutation,
  useReconnected,
  useSessionEnded,
  usePresence,
} = createEphapticReact<EphapticService, EphapticErrors, EphapticEvents>();

type C = Client<EphapticService, EphapticErrors>;

/** A real client on `server`, with `on` counted: `active()` is how many listeners are registered. */
function counted(server: FakeServer): { client: C; active: () => number; registrations: () => number } {
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://test/_ephaptic",
    WebSocket: server.WebSocket,
    mutations: ephapticMutations,
    reconnect: { baseMs: 5, capMs: 10 },
  });
  let active = 0;
  let registrations = 0;
  const on = client.on.bind(client) as (name: string, cb: (data: unknown) => void) => () => void;
  const wrapped = new Proxy(client, {
    get(target, key, receiver) {
      if (key === "on") {
        return (name: string, cb: (data: unknown) => void) => {
          active++;
          registrations++;
          const stop = on(name, cb);
          let stopped = false;
          return () => {
            if (!stopped) active--;
            stopped = true;
            stop();
          };
        };
      }
      return Reflect.get(target, key, receiver);
    },
  });
  return { client: wrapped, active: () => active, registrations: () => registrations };
}

function mount(node: ReactNode): { root: Root; container: HTMLElement; render(node: ReactNode): void } {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  act(() => root.render(node));
  return { root, container, render: (n) => act(() => root.render(n)) };
}

const happened = (message: string): SomethingHappened => ({ code: 1, message, isError: false });

test("useEvent listens while mounted and stops on unmount", async () => {
  const server = fakeServer();
  const { client, active } = counted(server);
  await client.ready();
  const seen: string[] = [];
  function Listener(): ReactNode {
    useEvent("SomethingHappened", (data) => seen.push(data.message));
    return null;
  }
  const view = mount(<EphapticProvider client={client}><Listener /></EphapticProvider>);
  assert.equal(active(), 1);
  await act(async () => server.emit("SomethingHappened", happened("one")));
  assert.deepEqual(seen, ["one"]);
  act(() => view.root.unmount());
  assert.equal(active(), 0, "unmounting removed the listener");
  await act(async () => server.emit("SomethingHappened", happened("two")));
  assert.deepEqual(seen, ["one"], "no event after unmount");
  client.disconnect();
});

test("useEvent calls the latest handler without subscribing again", async () => {
  const server = fakeServer();
  const { client, registrations, active } = counted(server);
  await client.ready();
  const seen: string[] = [];
  function Listener(props: { tag: string }): ReactNode {
    // A new closure every render, as handlers usually are.
    useEvent("SomethingHappened", (data) => seen.push(`${props.tag}:${data.message}`));
    return null;
  }
  const view = mount(<EphapticProvider client={client}><Listener tag="a" /></EphapticProvider>);
  for (const tag of ["b", "c", "d"]) view.render(<EphapticProvider client={client}><Listener tag={tag} /></EphapticProvider>);
  assert.equal(registrations(), 1, "re-rendering with new handlers registered nothing more");
  await act(async () => server.emit("SomethingHappened", happened("x")));
  assert.deepEqual(seen, ["d:x"], "only the latest render's handler ran");
  act(() => view.root.unmount());
  assert.equal(active(), 0);
  client.disconnect();
});

test("a new client (a new login) moves the listeners to it", async () => {
  const server = fakeServer();
  const first = counted(server);
  const second = counted(server);
  await Promise.all([first.client.ready(), second.client.ready()]);
  function Listener(): ReactNode {
    useEvent("SomethingHappened", () => undefined);
    return null;
  }
  const view = mount(<EphapticProvider client={first.client}><Listener /></EphapticProvider>);
  view.render(<EphapticProvider client={second.client}><Listener /></EphapticProvider>);
  assert.equal(first.active(), 0);
  assert.equal(second.active(), 1);
  act(() => view.root.unmount());
  first.client.disconnect();
  second.client.disconnect();
});

test("useLatestEvent and useEventList keep what arrived", async () => {
  const server = fakeServer();
  const { client } = counted(server);
  await client.ready();
  const seen: { latest?: SomethingHappened; list: readonly SomethingHappened[] } = { list: [] };
  function View(): ReactNode {
    seen.latest = useLatestEvent("SomethingHappened");
    seen.list = useEventList("SomethingHappened", { max: 2 });
    return null;
  }
  const view = mount(<EphapticProvider client={client}><View /></EphapticProvider>);
  const before = seen.latest;
  assert.equal(before, undefined, "nothing before the first event");
  for (const m of ["a", "b", "c"]) await act(async () => server.emit("SomethingHappened", happened(m)));
  assert.equal(seen.latest?.message, "c");
  assert.deepEqual(seen.list.map((e) => e.message), ["b", "c"], "max keeps the newest");
  act(() => view.root.unmount());
  client.disconnect();
});

test("useConnectionState follows the connection, and useReconnected fires after a drop", async () => {
  const server = fakeServer();
  const { client } = counted(server);
  const states: string[] = [];
  let reconnected = 0;
  const changes: string[] = [];
  function View(): ReactNode {
    const state = useConnectionState();
    if (states.at(-1) !== state) states.push(state);
    useReconnected((change) => {
      reconnected++;
      changes.push(change.previous);
    });
    return <p>{state}</p>;
  }
  const view = mount(<EphapticProvider client={client}><View /></EphapticProvider>);
  await act(async () => {
    await client.ready();
  });
  assert.equal(view.container.textContent, "connected");
  await act(async () => server.dropAll());
  assert.equal(view.container.textContent, "reconnecting");
  await act(async () => until(() => client.state === "connected", "the reconnection"));
  assert.equal(view.container.textContent, "connected");
  assert.equal(reconnected, 1);
  assert.deepEqual(changes, ["reconnecting"], "the handler gets the state change");
  assert.deepEqual(states.slice(-3), ["connected", "reconnecting", "connected"]);
  act(() => view.root.unmount());
  client.disconnect();
});

test("useSessionEnded: the reason once the server ends the session, the handler once, no reconnect; a new client works", async () => {
  const server = fakeServer();
  const { client } = counted(server);
  const handled: Array<[string, SessionEnded]> = [];
  function View(props: { tag: string }): ReactNode {
    // A new closure every render: the latest one is called.
    const ended = useSessionEnded((e) => handled.push([props.tag, e]));
    const state = useConnectionState();
    return <p>{ended ? `signed out: ${ended.reason} (${ended.code})` : state}</p>;
  }
  function Gone(): ReactNode {
    useSessionEnded((e) => handled.push(["unmounted", e]));
    return null;
  }
  const gone = mount(<EphapticProvider client={client}><Gone /></EphapticProvider>);
  act(() => gone.root.unmount());
  const view = mount(<EphapticProvider client={client}><View tag="a" /></EphapticProvider>);
  await act(async () => {
    await client.ready();
  });
  view.render(<EphapticProvider client={client}><View tag="b" /></EphapticProvider>);
  assert.equal(view.container.textContent, "connected");
  await act(async () => server.endSessions("revoked"));
  assert.equal(view.container.textContent, "signed out: revoked (4401)");
  assert.deepEqual(handled, [["b", { code: 4401, reason: "revoked" }]], "the latest handler, once; none after unmount");
  assert.equal(client.state, "closed");

  // A component mounted after the end shows it, without calling its handler.
  const late = mount(<EphapticProvider client={client}><View tag="late" /></EphapticProvider>);
  assert.equal(late.container.textContent, "signed out: revoked (4401)");
  assert.equal(handled.length, 1);
  assert.equal(server.sockets.length, 1, "no reconnect after 4401");

  // Logging in again: the provider gets a new client, and the hooks follow it.
  const again = counted(server).client;
  view.render(<EphapticProvider client={again}><View tag="c" /></EphapticProvider>);
  await act(async () => {
    await again.ready();
  });
  assert.equal(view.container.textContent, "connected");
  act(() => view.root.unmount());
  act(() => late.root.unmount());
  again.disconnect();
});

test("queries refetch when their channel arrives; a mutation invalidates them; unmount stops it", async () => {
  const todos: Todo[] = [];
  const server = fakeServer({
    listTodos: () => [...todos],
    createTodo: (title) => {
      const todo = { id: todos.length + 1, title: String(title) };
      todos.push(todo);
      return todo;
    },
  });
  const { client, active } = counted(server);
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  let titles: string[] = [];
  let create: ((title: string) => Promise<Todo>) | undefined;
  let userOnSuccess = 0;
  function Todos(): ReactNode {
    const list = useEphapticQuery((q) => q.listTodos());
    const mutation = useEphapticMutation("createTodo", { onSuccess: () => void userOnSuccess++ });
    // A new array every render: must not re-subscribe.
    useInvalidateOn(["todoCreated"], [["listTodos"]]);
    titles = (list.data ?? []).map((t) => t.title);
    create = mutation.mutateAsync;
    return null;
  }
  const view = mount(
    <QueryClientProvider client={queryClient}>
      <EphapticProvider client={client}><Todos /></EphapticProvider>
    </QueryClientProvider>,
  );
  await act(async () => until(() => server.calls.get("listTodos") === 1, "the first fetch"));
  assert.deepEqual(titles, []);

  // Another client created a todo: the channel arrives and the list refetches.
  todos.push({ id: 1, title: "from elsewhere" });
  await act(async () => server.emit("todoCreated", todos[0]));
  await act(async () => until(() => titles.length === 1, "the refetch after todoCreated"));
  assert.deepEqual(titles, ["from elsewhere"]);

  // This client's mutation: awaiting it returns with the list already refetched.
  await act(async () => {
    await create?.("milk");
  });
  const cached = queryClient.getQueryData<Todo[]>(["listTodos"]) ?? [];
  assert.deepEqual(cached.map((t) => t.title), ["from elsewhere", "milk"], "refetched before mutateAsync resolved");
  await act(async () => until(() => titles.length === 2, "the render of the refetched list"));
  assert.deepEqual(titles, ["from elsewhere", "milk"]);
  assert.equal(userOnSuccess, 1, "the caller's onSuccess ran too");

  const fetches = server.calls.get("listTodos") ?? 0;
  act(() => view.root.unmount());
  assert.equal(active(), 0, "unmounting stopped the invalidation listeners");
  await act(async () => server.emit("todoCreated", { id: 9, title: "late" }));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(server.calls.get("listTodos"), fetches, "no refetch after unmount");
  queryClient.clear();
  client.disconnect();
});

test("useEphapticMutation of an idempotent function: a key per mutation; a drop before the answer re-sends it with that key, run once, resolved once", async () => {
  const todos: Todo[] = [];
  const server = fakeServer({
    createTodo: (title) => {
      const todo = { id: todos.length + 1, title: String(title) };
      todos.push(todo);
      return todo;
    },
  });
  const client = connect<EphapticService, EphapticErrors>({
    url: "ws://test/_ephaptic",
    WebSocket: server.WebSocket,
    mutations: ephapticMutations,
    idempotent: ephapticIdempotent,
    reconnect: { baseMs: 5, capMs: 10 },
  });
  const queryClient = new QueryClient();
  let create: ((title: string) => Promise<Todo>) | undefined;
  let status = "";
  function Create(): ReactNode {
    const mutation = useEphapticMutation("createTodo");
    create = mutation.mutateAsync;
    status = mutation.status;
    return null;
  }
  const view = mount(
    <QueryClientProvider client={queryClient}>
      <EphapticProvider client={client}><Create /></EphapticProvider>
    </QueryClientProvider>,
  );
  await client.ready();

  // The server runs it, but its answer is lost; then the connection drops.
  server.loseReplies(true);
  const results: Todo[] = [];
  await act(async () => {
    void create?.("milk").then((t) => void results.push(t));
  });
  await until(() => todos.length === 1, "the run on the server");
  server.loseReplies(false);
  await act(async () => server.dropAll());
  await act(async () => until(() => results.length === 1 && status === "success", "the answer after the reconnect"));
  assert.deepEqual(results, [{ id: 1, title: "milk" }]);
  assert.equal(todos.length, 1, "it ran once");
  const sent = server.log.filter((c) => c.name === "createTodo");
  assert.equal(sent.length, 2, "sent before the drop and after the reconnect");
  assert.match(String(sent[0]?.key), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(sent[1]?.key, sent[0]?.key, "with the same key");

  // Another mutation is another operation: a new key, a new todo.
  await act(async () => {
    results.push(await (create as (title: string) => Promise<Todo>)("milk"));
  });
  assert.deepEqual(results[1], { id: 2, title: "milk" });
  const third = server.log.filter((c) => c.name === "createTodo")[2];
  assert.notEqual(third?.key, sent[0]?.key);
  act(() => view.root.unmount());
  queryClient.clear();
  client.disconnect();
});

const names = (members: readonly PresenceMember<User>[]): string => members.map((m) => m.connections[0]?.meta.name).join(" ");

test("usePresence shows the members and their changes; the last unmount stops watching", async () => {
  const group = lobby({ 1: "Ann" });
  const server = fakeServer(group.handlers);
  const { client } = counted(server);
  await client.ready();
  let renders = 0;
  function Online(props: { tag: string }): ReactNode {
    renders++;
    // A new `enter` closure every render, as an inline one is.
    const members = usePresence("lobby", { enter: () => (void props.tag, client.enterLobby()) });
    return <p className={props.tag}>{names(members)}</p>;
  }
  const page = (both: boolean, tag = "a"): ReactNode => (
    <EphapticProvider client={client}>
      <Online tag={tag} />
      {both ? <Online tag="second" /> : null}
    </EphapticProvider>
  );
  const view = mount(page(true));
  const text = (): string => view.container.querySelector("p")?.textContent ?? "";
  await act(async () => until(() => text() === "Ann", "the snapshot"));
  assert.deepEqual(server.log.map((c) => c.name), ["__ephaptic.hello", "enterLobby", "__ephaptic.presence.watch"], "entered, then one watch for both components");
  assert.deepEqual(server.log.at(-1)?.args, ["lobby"]);

  await act(async () => group.join(server, 2, "Bob"));
  await act(async () => until(() => text() === "Ann Bob", "Bob's join"));
  assert.equal(view.container.querySelector("p.second")?.textContent, "Ann Bob", "both components follow the list");
  await act(async () => group.leave(server, 1));
  await act(async () => until(() => text() === "Bob", "Ann's leave"));

  // New props (and a new enter) re-render without watching again.
  view.render(page(true, "b"));
  view.render(page(true, "c"));
  assert.equal(server.calls.get("__ephaptic.presence.watch"), 1);

  view.render(page(false, "c"));
  await act(async () => undefined);
  assert.equal(server.calls.get("__ephaptic.presence.unwatch"), undefined, "another component still shows the group");
  act(() => view.root.unmount());
  await act(async () => until(() => server.calls.get("__ephaptic.presence.unwatch") === 1, "the unwatch"));
  assert.deepEqual(server.log.at(-1), { name: "__ephaptic.presence.unwatch", args: ["lobby"] });
  const after = renders;
  await act(async () => group.join(server, 3, "Cy"));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(renders, after, "no render after unmount");
  client.disconnect();
});

test("usePresence enters and resyncs after a reconnect, with the latest render's enter", async () => {
  const group = lobby({ 1: "Ann" });
  const server = fakeServer(group.handlers);
  const { client } = counted(server);
  await client.ready();
  const entered: string[] = [];
  function Online(props: { tag: string }): ReactNode {
    const members = usePresence("lobby", { enter: () => (entered.push(props.tag), client.enterLobby()) });
    return <p>{names(members)}</p>;
  }
  const view = mount(<EphapticProvider client={client}><Online tag="first" /></EphapticProvider>);
  await act(async () => until(() => view.container.textContent === "Ann", "the snapshot"));
  view.render(<EphapticProvider client={client}><Online tag="latest" /></EphapticProvider>);

  // Away: Bob arrives and Ann leaves, and the diffs are lost with the connection.
  await act(async () => server.dropAll());
  group.join(null, 2, "Bob");
  group.leave(null, 1);
  await act(async () => until(() => view.container.textContent === "Bob", "the resync from a new snapshot"));
  assert.deepEqual(entered, ["first", "latest"], "entered again before watching again, with the latest enter");
  const names_ = server.log.map((c) => c.name).filter((n) => n !== "__ephaptic.hello");
  assert.deepEqual(names_, ["enterLobby", "__ephaptic.presence.watch", "enterLobby", "__ephaptic.presence.watch"]);
  act(() => view.root.unmount());
  client.disconnect();
});

test("with sessions, a recovered reconnect still calls useReconnected (saying so) and resyncs usePresence", async () => {
  const group = lobby({ 1: "Ann" });
  const server = fakeServer({ ...sessions(), ...group.handlers });
  const { client } = counted(server);
  await client.ready();
  assert.equal(client.session?.legacy, false, "the fake speaks sessions");
  const recovered: Array<boolean | undefined> = [];
  function View(): ReactNode {
    useReconnected((change) => recovered.push(change.session?.recovered));
    return <p>{names(usePresence("lobby", { enter: () => client.enterLobby() }))}</p>;
  }
  const view = mount(<EphapticProvider client={client}><View /></EphapticProvider>);
  await act(async () => until(() => view.container.textContent === "Ann", "the snapshot"));
  await act(async () => server.dropAll());
  // Presence diffs are never replayed: the list must come from a new snapshot.
  group.join(null, 2, "Bob");
  await act(async () => until(() => view.container.textContent === "Ann Bob", "the resync"));
  assert.deepEqual(recovered, [true], "called once, with the session saying every stream was recovered");
  assert.equal(server.calls.get("enterLobby"), 2);
  act(() => view.root.unmount());
  client.disconnect();
});

test("usePresence moves to a new group without showing the old group's members", async () => {
  const group = lobby({ 1: "Ann", 2: "Bob" });
  const server = fakeServer(group.handlers);
  const { client } = counted(server);
  await client.ready();
  const shown: string[] = [];
  function Online(props: { group: string }): ReactNode {
    const members = usePresence(props.group);
    shown.push(`${props.group}: ${names(members)}`);
    return <p>{names(members)}</p>;
  }
  const view = mount(<EphapticProvider client={client}><Online group="lobby" /></EphapticProvider>);
  await act(async () => until(() => view.container.textContent === "Ann Bob", "the lobby"));
  view.render(<EphapticProvider client={client}><Online group="room:2" /></EphapticProvider>);
  await act(async () => until(() => server.calls.get("__ephaptic.presence.watch") === 2, "the second watch"));
  assert.deepEqual(server.log.filter((c) => c.name.startsWith("__ephaptic.presence")).map((c) => `${c.name} ${String(c.args[0])}`), [
    "__ephaptic.presence.watch lobby",
    "__ephaptic.presence.unwatch lobby",
    "__ephaptic.presence.watch room:2",
  ]);
  assert.ok(!shown.some((s) => s.startsWith("room:2: A")), `room:2 never shows the lobby's members: ${JSON.stringify(shown)}`);
  assert.equal(view.container.textContent, "");
  act(() => view.root.unmount());
  client.disconnect();
});

test("useClient outside a provider says what to do", () => {
  function Orphan(): ReactNode {
    useEvent("SomethingHappened", () => undefined);
    return null;
  }
  const container = document.createElement("div");
  const root = createRoot(container);
  assert.throws(() => act(() => root.render(<Orphan />)), /render this component inside <EphapticProvider client=\{client\}>/);
  act(() => root.unmount());
});

// Not a test: the types. `tsc --strict` (npm run build:test) must reject each line marked.
export function typeChecks(client: C): ReactNode {
  function Typed(): ReactNode {
    // @ts-expect-error: a misspelt event name
    useEvent("SomethingHapened", () => undefined);
    // @ts-expect-error: the payload is typed
    useEvent("SomethingHappened", (data) => data.mesage);
    useEvent("todoCreated", (todo) => todo.title.toUpperCase());
    // @ts-expect-error: a misspelt query key
    useInvalidateOn("todoCreated", [["listTodoz"]]);
    // @ts-expect-error: not a channel
    useInvalidateOn("todoDeleted", [["listTodos"]]);
    // @ts-expect-error: not a function that announces channels
    useEphapticMutation("listTodos");
    const m = useEphapticMutation("createTodo");
    // @ts-expect-error: the variables are the title
    m.mutate(3);
    const q = useEphapticQuery((queries) => queries.listTodos());
    const first: Todo | undefined = q.data?.[0];
    const [s] = useState(first);
    // The meta is the schema's (presence_meta!), unless given.
    const here: string | undefined = usePresence("lobby")[0]?.connections[0]?.meta.name;
    // @ts-expect-error: the meta is typed
    void usePresence("lobby")[0]?.connections[0]?.meta.nam;
    const own: number | undefined = usePresence<{ x: number }>("room:1")[0]?.connections[0]?.meta.x;
    // @ts-expect-error: enter returns a promise
    usePresence("lobby", { enter: () => 1 });
    const ended: SessionEnded | undefined = useSessionEnded((e) => void e.reason.toUpperCase());
    const code: number | undefined = useSessionEnded()?.code;
    // @ts-expect-error: the handler gets { code, reason }, not a string
    useSessionEnded((reason: string) => reason);
    void [ended, code];
    void here;
    void own;
    return s?.title;
  }
  return <EphapticProvider client={client}><Typed /></EphapticProvider>;
}
