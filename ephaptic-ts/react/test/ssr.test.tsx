// Server rendering: no window, no WebSocket. The package imports, the hooks render with the
// client's SSR state, and nothing tries to connect.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ReactNode } from "react";
import { renderToString } from "react-dom/server";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { connect } from "@ephaptic/client";
import { createEphapticReact } from "@ephaptic/react";
import { ephapticMutations, type EphapticErrors, type EphapticEvents, type EphapticService } from "../../client/test/helpers/bindings/schema.js";

test("renders on the server without a window", () => {
  assert.equal(typeof (globalThis as { window?: unknown }).window, "undefined");
  let constructed = 0;
  class NoSocket {
    constructor() {
      constructed++;
      throw new Error("no socket on the server");
    }
  }
  const client = connect<EphapticService, EphapticErrors>({
    url: "/_ephaptic",
    mutations: ephapticMutations,
    WebSocket: NoSocket as never,
  });
  const { EphapticProvider, useEvent, useLatestEvent, useConnectionState, useInvalidateOn, useEphapticQuery, usePresence, useSessionEnded } =
    createEphapticReact<EphapticService, EphapticErrors, EphapticEvents>();
  function Page(): ReactNode {
    useEvent("SomethingHappened", () => undefined);
    const last = useLatestEvent("SomethingHappened");
    const state = useConnectionState();
    useInvalidateOn("todoCreated", [["listTodos"]]);
    const todos = useEphapticQuery((q) => q.listTodos(), { enabled: false });
    const here = usePresence("lobby", { enter: () => client.enterLobby() });
    const ended = useSessionEnded(() => undefined);
    return <p>{state} {last?.message ?? "none"} {todos.data?.length ?? "no data"} {here.length} here{ended ? " ended" : ""}</p>;
  }
  const html = renderToString(
    <QueryClientProvider client={new QueryClient()}>
      <EphapticProvider client={client}><Page /></EphapticProvider>
    </QueryClientProvider>,
  );
  assert.equal(html, "<p>disconnected<!-- --> <!-- -->none<!-- --> <!-- -->no data<!-- --> <!-- -->0<!-- --> here</p>");
  assert.equal(constructed, 0, "no connection attempt during server rendering");
});
