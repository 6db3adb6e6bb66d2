import { client } from "./client";
import type { Message } from "./schema";

const status = document.querySelector<HTMLParagraphElement>("#status")!;
const form = document.querySelector<HTMLFormElement>("#send")!;
const input = document.querySelector<HTMLInputElement>("#text")!;
const list = document.querySelector<HTMLUListElement>("#messages")!;

function show(message: Message) {
  const item = document.createElement("li");
  item.textContent = `${message.author}: ${message.text}`;
  list.append(item);
}

// The `messageSent` channel: every client hears each message `sendMessage` returns.
client.on("messageSent", show);

// The `Joined` event: sent to everyone when someone connects.
client.on("Joined", ({ online }) => {
  status.textContent = `${online} online`;
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  // Typed: `sendMessage(text: string): Promise<Message>`.
  await client.sendMessage(text);
});
