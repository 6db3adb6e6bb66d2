import assert from "node:assert/strict";
import { test } from "node:test";
import { EventRegistry, eventData } from "../../dist/events.js";

function collect() {
  const errors: unknown[] = [];
  return { errors, report: (e: unknown) => void errors.push(e) };
}

test("on delivers every occurrence; off stops it", () => {
  const reg = new EventRegistry();
  const got: unknown[] = [];
  const cb = (d: unknown) => void got.push(d);
  reg.on("Notice", cb);
  const { report } = collect();
  reg.emit("Notice", 1, report);
  reg.emit("Notice", 2, report);
  reg.emit("Other", 3, report);
  reg.off("Notice", cb);
  reg.emit("Notice", 4, report);
  assert.deepEqual(got, [1, 2]);
});

test("once delivers only the next occurrence", () => {
  const reg = new EventRegistry();
  const got: unknown[] = [];
  reg.once("Pong", (d) => void got.push(d));
  const { report } = collect();
  reg.emit("Pong", "a", report);
  reg.emit("Pong", "b", report);
  assert.deepEqual(got, ["a"]);
  assert.equal(reg.listenerCount("Pong"), 0);
});

test("off also removes a once registration of the same callback", () => {
  const reg = new EventRegistry();
  const got: unknown[] = [];
  const cb = (d: unknown) => void got.push(d);
  reg.once("Pong", cb);
  reg.on("Pong", cb);
  reg.off("Pong", cb);
  reg.emit("Pong", "x", collect().report);
  assert.deepEqual(got, []);
  assert.equal(reg.listenerCount("Pong"), 0);
});

test("the same callback added twice is called once per event", () => {
  const reg = new EventRegistry();
  let n = 0;
  const cb = () => void n++;
  reg.on("E", cb);
  reg.on("E", cb);
  reg.emit("E", null, collect().report);
  assert.equal(n, 1);
});

test("a callback that throws is reported and the others still run", async () => {
  const reg = new EventRegistry();
  const got: string[] = [];
  const boom = new Error("listener bug");
  reg.on("E", () => void got.push("first"));
  reg.on("E", () => {
    throw boom;
  });
  reg.on("E", async () => {
    throw new Error("async listener bug");
  });
  reg.on("E", () => void got.push("last"));
  const { errors, report } = collect();
  reg.emit("E", null, report);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(got, ["first", "last"]);
  assert.equal(errors.length, 2);
  assert.equal(errors[0], boom);
  assert.match(String(errors[1]), /async listener bug/);
});

test("a listener removed by an earlier listener during dispatch is not called", () => {
  const reg = new EventRegistry();
  const got: string[] = [];
  const second = () => void got.push("second");
  reg.on("E", () => {
    got.push("first");
    reg.off("E", second);
  });
  reg.on("E", second);
  reg.emit("E", null, collect().report);
  assert.deepEqual(got, ["first"]);
});

test("off without a callback removes every listener of the event", () => {
  const reg = new EventRegistry();
  let n = 0;
  reg.on("E", () => void n++);
  reg.once("E", () => void n++);
  reg.off("E");
  reg.emit("E", null, collect().report);
  assert.equal(n, 0);
});

test("event data: kwargs, else the single arg, else the arg list", () => {
  assert.deepEqual(eventData({ args: [], kwargs: { message: "hi", level: 1 } }), { message: "hi", level: 1 });
  assert.deepEqual(eventData({ args: [[1, 2]], kwargs: {} }), [1, 2]);
  assert.equal(eventData({ args: [0], kwargs: {} }), 0);
  assert.equal(eventData({ args: [null], kwargs: {} }), null);
  assert.deepEqual(eventData({ args: [1, 2], kwargs: {} }), [1, 2]);
  assert.deepEqual(eventData({ args: [], kwargs: {} }), {});
  assert.deepEqual(eventData(undefined), {});
});
