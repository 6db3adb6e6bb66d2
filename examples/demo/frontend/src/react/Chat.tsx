// The chat: a room (a server-side group, joined by the joinRoom query, which the app refetches
// after a reconnection), direct messages to one user, who is online.
import { useState, type FormEvent, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import type { ChatMessage, DirectMessage, User } from "../schema";
import { describeError, time } from "../shared/session";
import { useClient, useEphapticQuery, useEvent, useEventList } from "./ephaptic";

export function Chat(props: { online: readonly User[]; me: number | undefined }): ReactNode {
  const client = useClient();
  const queryClient = useQueryClient();
  const [room, setRoom] = useState("general");
  const rooms = useEphapticQuery((q) => q.rooms());
  const history = useEphapticQuery((q) => q.joinRoom(room));
  // A message to the room lands in the cached history of that room.
  useEvent("ChatMessage", (m) => {
    queryClient.setQueryData<ChatMessage[]>(["joinRoom", m.room], (old) => (old ? [...old, m] : old));
  });
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const send = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError("");
    try {
      await client.sendMessage(room, text);
      setText("");
    } catch (err) {
      setError(describeError(client, err));
    }
  };

  const incoming = useEventList("DirectMessage");
  const [sent, setSent] = useState<readonly DirectMessage[]>([]);
  const [to, setTo] = useState<number | "">("");
  const [dm, setDm] = useState("");
  const sendDirect = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError("");
    try {
      const message = await client.sendDirect(Number(to), dm);
      setSent((old) => [...old, message]);
      setDm("");
    } catch (err) {
      setError(describeError(client, err));
    }
  };
  const dms = [...incoming.map((m) => ({ m, out: false })), ...sent.map((m) => ({ m, out: true }))].sort((a, b) => a.m.at - b.m.at);

  return (
    <section className="card" id="chat">
      <h2>Chat</h2>
      <div className="row">
        <select id="room" value={room} onChange={(e) => setRoom(e.target.value)} aria-label="Room">
          {(rooms.data ?? ["general"]).map((r) => <option key={r} value={r}>#{r}</option>)}
        </select>
      </div>
      <ul id="messages">
        {(history.data ?? []).map((m, i) => (
          <li key={i}><span className="muted">{time(m.at)}</span> <strong className="from">{m.from.name}</strong> <span className="text">{m.text}</span></li>
        ))}
      </ul>
      <form onSubmit={(e) => void send(e)}>
        <input id="chat-input" type="text" value={text} onChange={(e) => setText(e.target.value)} placeholder={`Message #${room}`} aria-label="Message" />
        <button id="send">Send</button>
      </form>
      <h2>Direct messages</h2>
      <form onSubmit={(e) => void sendDirect(e)}>
        <select id="dm-target" value={to} onChange={(e) => setTo(e.target.value === "" ? "" : Number(e.target.value))} aria-label="To">
          <option value="">to…</option>
          {props.online.filter((u) => u.id !== props.me).map((u) => <option key={u.id} value={u.id}>{u.name}</option>)}
        </select>
        <input id="dm-input" type="text" value={dm} onChange={(e) => setDm(e.target.value)} aria-label="Direct message" />
        <button id="dm-send" disabled={to === ""}>Send</button>
      </form>
      <p id="chat-error" className="error" role="alert">{error}</p>
      <ul id="dms">
        {dms.map(({ m, out }, i) => (
          <li key={i} className={out ? "out" : "in"}>{out ? `to ${m.to.name}` : `from ${m.from.name}`}: {m.text}</li>
        ))}
      </ul>
    </section>
  );
}
