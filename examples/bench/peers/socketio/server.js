// socket.io 4.8 doing the work of examples/parity: `add` is an event with an acknowledgement
// (42<id>["add",a,b] -> 43<id>[a+b]), `shout` broadcasts one `notice` to every socket
// (42["notice",message]) and acknowledges.
//
//   node server.js --addr 127.0.0.1:0 [--redis redis://127.0.0.1:6379]
//
// prints `listening on ws://127.0.0.1:N/socket.io/` first. Set up as the socket.io docs'
// performance notes say: WebSocket transport only, one process, no per-message deflate (the
// default), ws's native add-ons (bufferutil, utf-8-validate) installed, the HTTP request
// object not kept per socket. With --redis, @socket.io/redis-adapter on node-redis.
import { createServer } from "node:http";
import { Server } from "socket.io";

function usage() {
  console.error("usage: node server.js [--addr HOST:PORT] [--redis URL]");
  process.exit(2);
}

let addr = "127.0.0.1:8000";
let redisUrl = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--addr" && argv[i + 1]) addr = argv[++i];
  else if (argv[i] === "--redis" && argv[i + 1]) redisUrl = argv[++i];
  else usage();
}
const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];

const httpServer = createServer();
const opts = { transports: ["websocket"], serveClient: false };
if (redisUrl) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  opts.adapter = createAdapter(pub, sub);
}
const io = new Server(httpServer, opts);

// The docs' memory tip: drop the reference to the first HTTP request of each session.
io.engine.on("connection", (rawSocket) => {
  rawSocket.request = null;
});

io.on("connection", (socket) => {
  socket.on("add", (a, b, ack) => {
    if (typeof ack === "function") ack(a + b);
  });
  socket.on("shout", (message, ack) => {
    io.emit("notice", message);
    if (typeof ack === "function") ack(null);
  });
});

httpServer.listen(port, host, () => {
  const a = httpServer.address();
  process.stdout.write(`listening on ws://${a.address}:${a.port}/socket.io/\n`);
});
