import assert from "node:assert/strict";
import { test } from "node:test";
import { EphapticError, EphapticStream } from "../../dist/index.js";

test("falsy chunks are delivered, in order, buffered before reading", async () => {
  const s = new EphapticStream<unknown>(() => {});
  for (const v of [0, null, false, "", undefined, Number.NaN]) s.push(v);
  s.end();
  const got: unknown[] = [];
  for await (const v of s) got.push(v);
  assert.deepEqual(got, [0, null, false, "", undefined, Number.NaN]);
});

test("chunks pushed while the reader waits are delivered", async () => {
  const s = new EphapticStream<number>(() => {});
  const reading = s.toArray();
  s.push(3);
  await Promise.resolve();
  s.push(0);
  s.end();
  assert.deepEqual(await reading, [3, 0]);
});

test("a failure rejects the iteration after the chunks that came before it", async () => {
  const s = new EphapticStream<number>(() => {});
  s.push(1);
  s.fail(new EphapticError("STREAM_FAILED", "The stream failed.", { after: 1 }));
  const got: number[] = [];
  await assert.rejects(
    async () => {
      for await (const v of s) got.push(v);
    },
    (e: EphapticError) => e.code === "STREAM_FAILED",
  );
  assert.deepEqual(got, [1]);
  // After the failure the stream is finished.
  assert.deepEqual(await s.next(), { value: undefined, done: true });
});

test("a failure while the reader waits rejects that read", async () => {
  const s = new EphapticStream<number>(() => {});
  const pending = s.next();
  s.fail(new Error("gone"));
  await assert.rejects(pending, /gone/);
});

test("break calls the cancel hook once; a finished stream is not cancelled", async () => {
  let cancels = 0;
  const s = new EphapticStream<number>(() => void cancels++);
  s.push(1);
  s.push(2);
  for await (const v of s) {
    assert.equal(v, 1);
    break;
  }
  assert.equal(cancels, 1);
  await s.return();
  assert.equal(cancels, 1);
  assert.deepEqual(await s.next(), { value: undefined, done: true });

  let cancels2 = 0;
  const done = new EphapticStream<number>(() => void cancels2++);
  done.push(1);
  done.end();
  for await (const _ of done) break;
  assert.equal(cancels2, 0);
});

test("return() ends a waiting read", async () => {
  const s = new EphapticStream<number>(() => {});
  const pending = s.next();
  await s.return();
  assert.deepEqual(await pending, { value: undefined, done: true });
});

test("a long stream read in step keeps its buffer bounded", async () => {
  const s = new EphapticStream<number>(() => {});
  let sum = 0;
  for (let i = 0; i < 5000; i++) {
    s.push(i);
    const r = await s.next();
    sum += r.value as number;
  }
  assert.equal(sum, (4999 * 5000) / 2);
  assert.equal((s as unknown as { items: unknown[] }).items.length, 0);
});
