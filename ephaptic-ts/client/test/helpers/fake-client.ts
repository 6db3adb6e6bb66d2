// Clients of the in-memory socket (fake-ws.ts) for the unit tests, each with its own socket and
// recording logger, and every one disconnected after the file's tests.
import { after } from "node:test";
import { connect, type ConnectOptions } from "../../dist/index.js";
import { fakeWebSocket, recordingLogger } from "./fake-ws.js";

/**
 * Returns `fakeClient(options)`: a client of `ws://test/_ephaptic` over a fresh fake WebSocket,
 * with a recording logger and fast retries (the backoff numbers themselves are tested as pure
 * functions), then `defaults`, then `options` (the later ones win). `fakeClient.track(c)` adds a
 * client made otherwise to the ones disconnected after the file's tests.
 *
 * Call it once, at the top level of a test file: it registers that `after()` hook. A failing test
 * must not leave a reconnecting client behind: it would keep the process alive.
 */
export function fakeClients(defaults: ConnectOptions = {}) {
  const clients: Array<{ disconnect(): void }> = [];
  after(() => clients.forEach((c) => c.disconnect()));
  const fakeClient = (options: ConnectOptions = {}) => {
    const fake = fakeWebSocket();
    const log = recordingLogger();
    const client = connect({
      url: "ws://test/_ephaptic",
      WebSocket: fake.WebSocket,
      logger: log.logger,
      reconnect: { baseMs: 2, capMs: 4 },
      ...defaults,
      ...options,
    });
    clients.push(client);
    return { client, fake, log };
  };
  const track = <C extends { disconnect(): void }>(client: C): C => {
    clients.push(client);
    return client;
  };
  return Object.assign(fakeClient, { track });
}
