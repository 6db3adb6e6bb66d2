// The demo page: a live todo list on top of the Rust functions in `examples/demo/src/lib.rs`.
//
// Everything typed here comes from `schema.ts`, which the Rust crate generates: the calls
// (`client.createTodo(title)` returns a `Todo`), the events (`client.on("todoCreated", ...)`
// receives a `Todo`) and the error data (`INVALID_TITLE` carries `{ max, length }`).
import { connect } from "@ephaptic/client";
import type { ConnectionState } from "@ephaptic/client";
import type { EphapticErrors, EphapticService, Todo } from "./schema";

const NAME_KEY = "ephaptic-demo:name";
const MAX_NAME_CHARS = 40; // the server's identity loader accepts 1 to 40 characters

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

const ui = {
  state: byId<HTMLSpanElement>("state"),
  presence: byId<HTMLSpanElement>("presence"),
  clock: byId<HTMLSpanElement>("clock"),
  nameForm: byId<HTMLFormElement>("name-form"),
  nameInput: byId<HTMLInputElement>("name-input"),
  nameError: byId<HTMLParagraphElement>("name-error"),
  app: byId<HTMLElement>("app"),
  me: byId<HTMLElement>("me"),
  changeName: byId<HTMLButtonElement>("change-name"),
  addForm: byId<HTMLFormElement>("add-form"),
  titleInput: byId<HTMLInputElement>("title-input"),
  addError: byId<HTMLParagraphElement>("add-error"),
  list: byId<HTMLUListElement>("todos"),
  summary: byId<HTMLParagraphElement>("summary"),
};

function storedName(): string | null {
  const name = localStorage.getItem(NAME_KEY)?.trim();
  return name ? name : null;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Shows the name form; `start` runs once a valid name is stored. */
function askForName(message = ""): void {
  ui.app.hidden = true;
  ui.nameForm.hidden = false;
  ui.nameError.textContent = message;
  ui.nameInput.value = "";
  ui.nameInput.focus();
}

ui.nameForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.nameInput.value.trim();
  if (name.length === 0 || [...name].length > MAX_NAME_CHARS) {
    ui.nameError.textContent = `A name has 1 to ${MAX_NAME_CHARS} characters.`;
    return;
  }
  localStorage.setItem(NAME_KEY, name);
  start();
});

ui.changeName.addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  location.reload();
});

/** Connects under the stored name and keeps the page in step with the server. */
function start(): void {
  ui.nameForm.hidden = true;
  ui.app.hidden = false;

  // `auth` is a function, so every (re)connection sends the name stored at that moment; the
  // server's identity loader makes it this connection's identity.
  const client = connect<EphapticService, EphapticErrors>({ auth: () => storedName() ?? undefined });
  const todos = new Map<number, Todo>();

  function render(): void {
    const items = [...todos.values()].sort((a, b) => a.id - b.id);
    ui.list.replaceChildren(...items.map(todoItem));
    const done = items.filter((t) => t.done).length;
    ui.summary.textContent =
      items.length === 0 ? "Nothing to do yet: add the first todo." : `${done} of ${items.length} done`;
  }

  function todoItem(todo: Todo): HTMLLIElement {
    const li = document.createElement("li");
    li.dataset["id"] = String(todo.id);
    li.classList.toggle("done", todo.done);
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = todo.done;
    box.addEventListener("change", () => void toggle(todo.id, box));
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = todo.title;
    label.append(box, title);
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = `by ${todo.author}`;
    li.append(label, author);
    return li;
  }

  /** A todo from a reply or an event: the newest state wins, whichever arrives first. */
  function upsert(todo: Todo): void {
    todos.set(todo.id, todo);
    render();
  }

  async function toggle(id: number, box: HTMLInputElement): Promise<void> {
    ui.addError.textContent = "";
    try {
      upsert(await client.toggleTodo(id));
    } catch (e) {
      box.checked = !box.checked;
      ui.addError.textContent = client.isError(e, "TODO_NOT_FOUND") ? e.message : `Could not update: ${describe(e)}`;
    }
  }

  // A property, not addEventListener: if the server refuses the name, `start` runs again later
  // and replaces this handler instead of adding a second one.
  ui.addForm.onsubmit = async (event) => {
    event.preventDefault();
    ui.addError.textContent = "";
    try {
      upsert(await client.createTodo(ui.titleInput.value));
      ui.titleInput.value = "";
    } catch (e) {
      if (client.isError(e, "INVALID_TITLE")) {
        // e.data is typed from the Rust struct InvalidTitle: { max: number, length: number }.
        const yours = e.data.length > e.data.max ? ` Yours has ${e.data.length}.` : "";
        ui.addError.textContent = e.message + yours;
      } else if (client.isError(e, "UNAUTHORIZED")) {
        ui.addError.textContent = "The server does not know your name: change it and try again.";
      } else {
        ui.addError.textContent = `Could not add: ${describe(e)}`;
      }
    }
    ui.titleInput.focus();
  };

  // Pushed by the server: by `broadcast = [...]` after any page creates or toggles a todo, and
  // `Presence` whenever a page says hello.
  client.on("todoCreated", upsert);
  client.on("todoUpdated", upsert);
  client.on("Presence", ({ online }) => {
    ui.presence.textContent = `${online} online`;
  });

  let clockRunning = false;
  async function runClock(): Promise<void> {
    if (clockRunning) return;
    clockRunning = true;
    try {
      for await (const ms of await client.clock()) ui.clock.textContent = new Date(ms).toLocaleTimeString();
    } catch {
      ui.clock.textContent = "--:--:--"; // the connection dropped; restarted once it is back
    } finally {
      clockRunning = false;
    }
  }

  /** After every (re)connection: events sent while away are lost, so fetch everything again. */
  async function sync(): Promise<void> {
    try {
      const [me, list] = await Promise.all([client.hello(), client.listTodos()]);
      if (me === null) {
        client.disconnect();
        localStorage.removeItem(NAME_KEY);
        askForName("The server did not accept that name.");
        return;
      }
      todos.clear();
      for (const todo of list) todos.set(todo.id, todo);
      render();
      ui.me.textContent = me;
      void runClock();
    } catch (e) {
      ui.addError.textContent = `Could not load the list: ${describe(e)}`;
    }
  }

  function showState(state: ConnectionState): void {
    ui.state.textContent = state;
    ui.state.className = `badge ${state}`;
    if (state !== "connected") ui.presence.textContent = "";
  }

  client.onStateChange((state) => {
    showState(state);
    if (state === "connected") void sync();
  });
  showState(client.state);
  if (client.state === "connected") void sync();
}

if (storedName() === null) askForName();
else start();
