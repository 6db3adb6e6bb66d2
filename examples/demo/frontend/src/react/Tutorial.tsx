// The Events tutorial: `SomethingHappened` to everyone, to user 1, to users 1, 2 and 3, and to a
// user picked from who is online.
import { useEffect, useState, type ReactNode } from "react";
import type { SomethingHappened, User } from "../schema";
import { describeError } from "../shared/session";
import { reachText, sentBy } from "../shared/tutorial";
import { useClient, useEventList } from "./ephaptic";

export function Tutorial(props: { online: readonly User[] }): ReactNode {
  const client = useClient();
  const [message, setMessage] = useState("John created an account!");
  const [target, setTarget] = useState<number | "">("");
  const [result, setResult] = useState("");
  const [last, setLast] = useState<string>("");
  // The hook: every SomethingHappened since this page opened (newest last).
  const events = useEventList("SomethingHappened", { max: 20 });

  // The tutorial's own words: listen in useEffect, and clean up when the component unmounts.
  useEffect(() => {
    const handleEvent = (data: SomethingHappened) => {
      setLast(data.message);
    };
    client.on("SomethingHappened", handleEvent);
    return () => {
      client.off("SomethingHappened", handleEvent);
    };
  }, [client]);

  const send = async (how: "all" | "one" | "three" | "user"): Promise<void> => {
    setResult("");
    const event = { message }; // code and isError take their defaults (1, false) on the server
    try {
      if (how === "all") {
        await client.broadcastEvent(event);
        setResult("sent to everyone");
      } else {
        const reach =
          how === "one"
            ? await client.notifyUserOne(event)
            : how === "three"
              ? await client.notifyFirstThree(event)
              : await client.notifyUser(Number(target), event);
        setResult(reachText(reach));
      }
    } catch (e) {
      setResult(describeError(client, e));
    }
  };

  return (
    <section className="card" id="tutorial">
      <h2>Events tutorial</h2>
      <div className="row">
        <input id="message-input" type="text" value={message} onChange={(e) => setMessage(e.target.value)} aria-label="Message" />
      </div>
      <div className="row">
        <button id="broadcast" onClick={() => void send("all")}>Broadcast</button>
        <button id="notify-one" onClick={() => void send("one")}>to(1)</button>
        <button id="notify-three" onClick={() => void send("three")}>to(1, 2, 3)</button>
      </div>
      <div className="row">
        <select id="notify-target" value={target} onChange={(e) => setTarget(e.target.value === "" ? "" : Number(e.target.value))} aria-label="User">
          <option value="">pick a user…</option>
          {props.online.map((u) => <option key={u.id} value={u.id}>{u.name} (#{u.id})</option>)}
        </select>
        <button id="notify-user" disabled={target === ""} onClick={() => void send("user")}>to(user)</button>
      </div>
      <p id="notify-result" className="muted">{result}</p>
      <p className="muted">Last: <span id="last-event">{last}</span></p>
      <ul id="events" className="events">
        {events.map((e, i) => (
          <li key={i} className={e.isError ? "error-event" : undefined}>
            <span className="via">{sentBy(e)}</span> · code {e.code} · {e.message}
          </li>
        ))}
      </ul>
    </section>
  );
}
