import "../shared/style.css";
import { useState, type FormEvent, type ReactNode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { connectAs, savedName, signOut, type DemoClient } from "../shared/session";
import { EphapticProvider } from "./ephaptic";
import { App } from "./App";

const queryClient = new QueryClient({
  defaultOptions: { queries: { refetchOnWindowFocus: false, retry: 1 } },
});

// Created outside React, so that no render or effect ever makes a second one.
const saved = savedName();
const initial = saved === null ? null : connectAs(saved);

function Login(props: { onJoin: (name: string) => void }): ReactNode {
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    const trimmed = name.trim();
    if (trimmed === "" || trimmed.length > 40) setError("A name has 1 to 40 characters.");
    else props.onJoin(trimmed);
  };
  return (
    <main>
      <h1>ephaptic demo <span className="muted">(React)</span></h1>
      <section className="card">
        <form id="name-form" onSubmit={submit}>
          <label htmlFor="name-input">Your name</label>
          <input id="name-input" type="text" autoComplete="nickname" placeholder="e.g. Ann" value={name} onChange={(e) => setName(e.target.value)} />
          <button id="join">Join</button>
        </form>
        <p id="name-error" className="error" role="alert">{error}</p>
      </section>
    </main>
  );
}

function Root(): ReactNode {
  const [client, setClient] = useState<DemoClient | null>(initial);
  if (client === null) return <Login onJoin={(name) => setClient(connectAs(name))} />;
  const leave = (): void => {
    client.disconnect();
    signOut();
    queryClient.clear();
    setClient(null);
  };
  return (
    <QueryClientProvider client={queryClient}>
      <EphapticProvider client={client}>
        <App onLeave={leave} />
      </EphapticProvider>
    </QueryClientProvider>
  );
}

const root = document.getElementById("root");
if (root === null) throw new Error("index.html has no #root");
createRoot(root).render(<Root />);
