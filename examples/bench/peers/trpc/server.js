// tRPC 11 with its WebSocket adapter (applyWSSHandler on ws) doing the work of
// examples/parity: `add` is a mutation ({"id":1,"method":"mutation","params":{"path":"add",
// "input":{"a":1,"b":2}}} -> {"id":1,"result":{"type":"data","data":3}}); `shout` is a
// mutation that sends one `notice` to every `onNotice` subscription (an async generator, as
// tRPC 11's docs write subscriptions).
//
//   node server.js --addr 127.0.0.1:0
//
// prints `listening on ws://127.0.0.1:N/` first. No transformer, no logging, no keep-alive
// pings, ws's native add-ons (bufferutil, utf-8-validate) installed, per-message deflate off
// (ws's default).
import { EventEmitter, on } from "node:events";
import { initTRPC, TRPCError } from "@trpc/server";
import { applyWSSHandler } from "@trpc/server/adapters/ws";
import { WebSocketServer } from "ws";

function usage() {
  console.error("usage: node server.js [--addr HOST:PORT]");
  process.exit(2);
}

let addr = "127.0.0.1:8000";
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--addr" && argv[i + 1]) addr = argv[++i];
  else usage();
}
const host = addr.slice(0, addr.lastIndexOf(":"));
const port = Number(addr.slice(addr.lastIndexOf(":") + 1));

const t = initTRPC.create();
const ee = new EventEmitter();
// One listener per subscription: 10,000 of them is expected, not a leak.
ee.setMaxListeners(0);

// The same checks parity's `add(a: i64, b: i64)` and `shout(message: String)` make, as plain
// parser functions (tRPC accepts any function as an input parser).
const addInput = (v) => {
  if (v && Number.isInteger(v.a) && Number.isInteger(v.b)) return v;
  throw new TRPCError({ code: "BAD_REQUEST", message: "a and b must be integers" });
};
const shoutInput = (v) => {
  if (v && typeof v.message === "string") return v;
  throw new TRPCError({ code: "BAD_REQUEST", message: "message must be a string" });
};

const appRouter = t.router({
  add: t.procedure.input(addInput).mutation(({ input }) => input.a + input.b),
  shout: t.procedure.input(shoutInput).mutation(({ input }) => {
    ee.emit("notice", input.message);
    return null;
  }),
  onNotice: t.procedure.subscription(async function* (opts) {
    for await (const [message] of on(ee, "notice", { signal: opts.signal })) {
      yield message;
    }
  }),
});

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });
applyWSSHandler({ wss, router: appRouter });
wss.on("listening", () => {
  const a = wss.address();
  process.stdout.write(`listening on ws://${a.address}:${a.port}/\n`);
});
