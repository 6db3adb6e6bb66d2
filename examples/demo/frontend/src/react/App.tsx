import { useEffect, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { time } from "../shared/session";
import { useClient, useConnectionState, useEphapticQuery, useReconnected } from "./ephaptic";
import { useOnline } from "./online";
import { Tutorial } from "./Tutorial";
import { Todos } from "./Todos";
import { Chat } from "./Chat";

/** The server's time, from the `clock` stream; started again after a reconnection. */
function Clock(): ReactNode {
  const client = useClient();
  const [now, setNow] = useState<number | null>(null);
  const [run, setRun] = useState(0);
  useReconnected(() => setRun((n) => n + 1));
  useEffect(() => {
    let stream: AsyncIterableIterator<number> | undefined;
    let stopped = false;
    void (async () => {
      try {
        stream = await client.clock();
        if (stopped) return void stream.return?.();
        for await (const ms of stream) setNow(ms);
      } catch {
        // DISCONNECTED: the reconnection starts it again.
      }
    })();
    return () => {
      stopped = true;
      void stream?.return?.();
    };
  }, [client, run]);
  return <span>server time <span id="clock">{now === null ? "--:--:--" : time(now)}</span></span>;
}

export function App(props: { onLeave: () => void }): ReactNode {
  const state = useConnectionState();
  const me = useEphapticQuery((q) => q.whoAmI());
  const online = useOnline();
  const queryClient = useQueryClient();
  // A new connection has joined no room (joinRoom is one of the queries), and a restarted server
  // has none of the events sent meanwhile: fetch everything again. (With sessions a recovered
  // reconnect, `change.session?.recovered`, would need only the join; a refetch is still correct.)
  useReconnected(() => void queryClient.invalidateQueries());
  return (
    <main>
      <h1>ephaptic demo <span className="muted">(React)</span></h1>
      <div className="status">
        <span id="state" className={`badge ${state}`}>{state}</span>
        <span className="who">
          Signed in as <strong id="me" data-id={me.data?.id}>{me.data ? `${me.data.name} (#${me.data.id})` : "…"}</strong>
        </span>
        <button className="quiet" id="leave" onClick={props.onLeave}>Sign out</button>
        <Clock />
      </div>
      <div className="status">
        <span>Online:</span>
        <ul id="online" className="online">
          {online.map((u) => <li key={u.id} data-id={u.id}>{u.name}</li>)}
        </ul>
      </div>
      <div className="grid">
        <Tutorial online={online} />
        <Todos />
        <Chat online={online} me={me.data?.id} />
      </div>
    </main>
  );
}
