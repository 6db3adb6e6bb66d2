// Distributed tracing (W3C Trace Context, PROTOCOL.md 5.13) against the real server: calls whose
// `rpc` frames carry a `traceparent` (with or without an idempotency key, a stream's too) are
// answered as always.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parityClient, parityFixture } from "../helpers/parity.js";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const parity = parityFixture();

test("calls with a traceparent get their normal answers: add, an idempotent create_todo, a stream", async () => {
  const sent: Array<Record<string, unknown>> = [];
  const c = parityClient(parity.server.url, {
    traceparent: () => TP,
    idempotent: ["create_todo"],
    trace: (direction, frame) => void (direction === "out" && frame.type === "rpc" && sent.push(frame)),
  });
  parity.track(c);
  assert.equal(await c.add(2, 3), 5);
  const todo = (await c.create_todo("traced")) as { title: string };
  assert.equal(todo.title, "traced");
  const got: number[] = [];
  for await (const n of (await c.countdown(3)) as AsyncIterable<number>) got.push(n);
  assert.deepEqual(got, [3, 2, 1]);
  const calls = sent.filter((f) => typeof f.name === "string" && !f.name.startsWith("__ephaptic."));
  assert.deepEqual(
    calls.map((f) => [f.name, f.traceparent]),
    [
      ["add", TP],
      ["create_todo", TP],
      ["countdown", TP],
    ],
    "the frames did carry it",
  );
  assert.equal(typeof calls[1]!.key, "string", "with its idempotency key");
});

test("a traceparent function that gives nothing, or something invalid, leaves calls as they were", async () => {
  const warnings: string[] = [];
  const values = [undefined, "not-a-traceparent"];
  let i = 0;
  const c = parityClient(parity.server.url, {
    traceparent: () => values[i++ % values.length],
    logger: { warn: (...args: unknown[]) => void warnings.push(args.map(String).join(" ")), error: () => {} },
  });
  parity.track(c);
  assert.equal(await c.add(2, 3), 5);
  assert.equal(await c.add(4, 5), 9);
  assert.equal(warnings.filter((w) => w.includes("traceparent")).length, 1);
});
