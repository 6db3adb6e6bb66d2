// The data-operation pattern: the list is a query; the mutations announce channels; every page
// refetches the list when a channel arrives, so all of them update without a reload.
import { useState, type FormEvent, type ReactNode } from "react";
import { describeError } from "../shared/session";
import { useClient, useEphapticMutation, useEphapticQuery, useInvalidateOn } from "./ephaptic";

export function Todos(): ReactNode {
  const client = useClient();
  const todos = useEphapticQuery((q) => q.listTodos());
  useInvalidateOn(["todoCreated", "todoUpdated", "todoDeleted"], [["listTodos"]]);
  const [title, setTitle] = useState("");
  const [error, setError] = useState("");
  const create = useEphapticMutation("createTodo", {
    onSuccess: () => setTitle(""),
    onError: (e) => setError(describeError(client, e)),
  });
  const toggle = useEphapticMutation("toggleTodo");
  const remove = useEphapticMutation("deleteTodo");

  const add = (e: FormEvent): void => {
    e.preventDefault();
    setError("");
    create.mutate(title);
  };
  const list = todos.data ?? [];
  const done = list.filter((t) => t.done).length;
  return (
    <section className="card" id="todo-card">
      <h2>Todos</h2>
      <form onSubmit={add}>
        <input id="title-input" type="text" value={title} onChange={(e) => setTitle(e.target.value)} placeholder="What needs doing?" aria-label="Title" />
        <button id="add">Add</button>
      </form>
      <p id="add-error" className="error" role="alert">{error}</p>
      <ul id="todos">
        {list.map((t) => (
          <li key={t.id} className={t.done ? "done" : undefined}>
            <label>
              <input type="checkbox" checked={t.done} onChange={() => toggle.mutate(t.id)} />
              <span className="title">{t.title}</span>
              <span className="muted">by {t.author}</span>
            </label>
            <button className="delete" aria-label={`Delete ${t.title}`} onClick={() => remove.mutate(t.id)}>✕</button>
          </li>
        ))}
      </ul>
      <p id="summary" className="muted">{list.length === 0 ? "Nothing to do yet" : `${done} of ${list.length} done`}</p>
    </section>
  );
}
