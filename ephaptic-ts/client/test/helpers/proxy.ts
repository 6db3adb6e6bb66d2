// A TCP proxy in front of a server, for tests that cut a connection without a clean close (as a
// network drop or a laptop lid would): `cut()` destroys both sockets of every proxied
// connection; `hold()` makes new connections fail at once until `release()`; `stall()` stops
// passing the server's bytes on to the client (a reply lost on the way, before a cut).
import { createServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from "node:net";

export interface Proxy {
  /** `ws://127.0.0.1:<proxy port>/_ephaptic`. */
  readonly url: string;
  /** Connections accepted and passed on so far. */
  readonly accepted: number;
  /** Destroys both sockets of every proxied connection (no WebSocket close, no TCP goodbye wait). */
  cut(): void;
  /**
   * Stops passing on what the server sends on the connections proxied now (the client's frames
   * still reach the server): what the server answers meanwhile never arrives. `cut()` then drops
   * it with them. Later connections are passed on both ways.
   */
  stall(): void;
  /** New connections are destroyed at once (the client sees its attempts fail) until `release()`. */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  let held = false;
  let accepted = 0;
  const server: Server = createServer((downstream) => {
    if (held) {
      downstream.destroy();
      return;
    }
    accepted++;
    const upstream = tcpConnect(targetPort, "127.0.0.1");
    const pair: [Socket, Socket] = [downstream, upstream];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const cut = (): void => {
    for (const [a, b] of [...pairs]) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    url: `ws://127.0.0.1:${port}/_ephaptic`,
    get accepted() {
      return accepted;
    },
    cut,
    stall() {
      for (const [downstream, upstream] of pairs) {
        upstream.unpipe(downstream);
        upstream.pause();
      }
    },
    hold() {
      held = true;
    },
    release() {
      held = false;
    },
    close() {
      cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
