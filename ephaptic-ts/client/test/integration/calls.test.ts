// Every parity function, called the way an application would, against the real Rust server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { EphapticError, type ConnectOptions } from "../../dist/index.js";
import { parityClient, parityFixture, sleep, type ParityClient } from "../helpers/parity.js";

const parity = parityFixture();

function client(options: ConnectOptions = {}): ParityClient {
  const c = parityClient(parity.server.url, options);
  parity.track(c);
  return c;
}

const code = (expected: string) => (e: unknown) => {
  assert.ok(e instanceof EphapticError, `expected an EphapticError, got ${String(e)}`);
  assert.equal(e.code, expected, e.message);
  return true;
};

describe("calls", () => {
  test("add, named, returns_null: positional arguments and results", async () => {
    const c = client();
    assert.equal(await c.add(2, 3), 5);
    assert.equal(await c.add(-7, 7), 0);
    assert.equal(await c.named("first", "second"), "first|second");
    assert.equal(await c.returns_null(), null);
    assert.equal(await c.call("add", 40, 2), 42);
  });

  test("echo round-trips every value shape, bytes as Uint8Array", async () => {
    const c = client();
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -1,
      255,
      -129,
      65536,
      Number.MAX_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER,
      1.5,
      -0.25,
      "",
      "héllo wörld ✓",
      [],
      [1, "two", null, [3]],
      {},
      { nested: { list: [1, { deep: true }], s: "x" } },
    ];
    for (const v of values) assert.deepEqual(await c.echo(v), v, `echo ${JSON.stringify(v)}`);
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255]);
    const back = await c.echo(bytes);
    assert.ok(back instanceof Uint8Array, "bytes come back as Uint8Array");
    assert.deepEqual([...back], [...bytes]);
    const mixed = (await c.echo({ data: new Uint8Array([9, 8]), n: 1 })) as { data: Uint8Array; n: number };
    assert.ok(mixed.data instanceof Uint8Array);
    assert.deepEqual([...mixed.data], [9, 8]);
    assert.equal(mixed.n, 1);
  });

  test("whoami: anonymous, a string token, a {token} map, and an async auth function", async () => {
    assert.equal(await client().whoami(), null);
    assert.equal(await client({ auth: "alice" }).whoami(), "alice");
    assert.equal(await client({ auth: { token: "bob" } }).whoami(), "bob");
    assert.equal(
      await client({
        auth: async () => {
          await sleep(10);
          return "carol";
        },
      }).whoami(),
      "carol",
    );
    assert.equal(await client({ auth: () => ({ token: "dave" }) }).whoami(), "dave");
    assert.equal(await client({ auth: "" }).whoami(), null, "an empty token is anonymous");
  });

  test("a typed error carries its code, message and data", async () => {
    const c = client();
    await assert.rejects(c.boom(), (e: unknown) => {
      assert.ok(c.isError(e, "INSUFFICIENT_FUNDS"));
      assert.equal(e.message, "Not enough funds.");
      assert.deepEqual(e.data, { available: 3 });
      return true;
    });
  });

  test("an undeclared failure is INTERNAL and never leaks its text; a panic too, and the connection lives on", async () => {
    const c = client();
    await assert.rejects(c.kaboom(), (e: unknown) => {
      code("INTERNAL")(e);
      const err = e as EphapticError;
      assert.equal(err.message, "Internal server error.");
      assert.equal(err.data, null);
      assert.doesNotMatch(JSON.stringify({ m: err.message, d: err.data }), /secret-detail/);
      return true;
    });
    const inFlight = c.sleepy(50);
    await assert.rejects(c.panics(), (e: unknown) => {
      code("INTERNAL")(e);
      assert.doesNotMatch((e as Error).message, /secret-detail/);
      return true;
    });
    assert.equal(await inFlight, 50, "a call in flight survives another call's panic");
    assert.equal(await c.add(1, 1), 2);
    assert.equal(c.state, "connected");
  });

  test("secret: UNAUTHORIZED when anonymous, the value when logged in", async () => {
    await assert.rejects(client().secret(), (e: unknown) => {
      code("UNAUTHORIZED")(e);
      assert.equal((e as EphapticError).message, "Unauthorized.");
      return true;
    });
    assert.equal(await client({ auth: "alice" }).secret(), "s3cret");
  });

  test("an unknown function is NOT_FOUND", async () => {
    await assert.rejects(client().no_such_function(1), (e: unknown) => {
      code("NOT_FOUND")(e);
      assert.equal((e as EphapticError).message, "Function 'no_such_function' not found.");
      return true;
    });
  });

  test("bad arguments are VALIDATION_ERROR with a list of issues pointing at the value", async () => {
    const c = client();
    await assert.rejects(c.add("x", 1), (e: unknown) => {
      assert.ok(c.isError(e, "VALIDATION_ERROR"));
      assert.ok(Array.isArray(e.data));
      assert.deepEqual(e.data[0]!.loc, ["a"]);
      assert.equal(e.data[0]!.type, "invalid_type");
      return true;
    });
    await assert.rejects(c.add(1), (e: unknown) => {
      assert.ok(c.isError(e, "VALIDATION_ERROR"));
      assert.deepEqual(
        e.data!.map((i) => [i.type, i.loc]),
        [["missing", ["b"]]],
      );
      return true;
    });
    await assert.rejects(c.make_item({ id: 1, tags: ["ok", 5] }), (e: unknown) => {
      assert.ok(c.isError(e, "VALIDATION_ERROR"));
      const locs = e.data!.map((i) => i.loc);
      assert.ok(
        locs.some((l) => JSON.stringify(l) === JSON.stringify(["item", "name"])) ||
          locs.some((l) => JSON.stringify(l) === JSON.stringify(["item", "tags", 1])),
        JSON.stringify(locs),
      );
      return true;
    });
  });

  test("make_item: optional fields may be left out (undefined too) and come back with defaults", async () => {
    const c = client();
    assert.deepEqual(await c.make_item({ id: 7, name: "seven" }), { id: 7, name: "seven", tags: [], when: null });
    assert.deepEqual(await c.make_item({ id: 8, name: "eight", tags: undefined, when: undefined }), {
      id: 8,
      name: "eight",
      tags: [],
      when: null,
    });
    assert.deepEqual(await c.make_item({ id: 9, name: "nine", tags: ["a", "b"], when: "2024-05-06T07:08:09Z" }), {
      id: 9,
      name: "nine",
      tags: ["a", "b"],
      when: "2024-05-06T07:08:09Z",
    });
  });

  test("limited: the third call in a minute is RATELIMIT with retry_after", async () => {
    const c = client({ auth: "rate-limited-user" });
    assert.equal(await c.limited(), "ok");
    assert.equal(await c.limited(), "ok");
    await assert.rejects(c.limited(), (e: unknown) => {
      assert.ok(c.isError(e, "RATELIMIT"));
      assert.ok(e.data.retry_after >= 1, JSON.stringify(e.data));
      assert.match(e.message, /Rate Limit exceeded/);
      return true;
    });
  });

  test("200 concurrent calls all get their own answer", async () => {
    const c = client();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => c.add(i, 1000)));
    assert.deepEqual(
      results,
      Array.from({ length: 200 }, (_, i) => i + 1000),
    );
  });

  test("calls run concurrently: a quick call is not held up by a slow one", async () => {
    const c = client();
    const order: string[] = [];
    const slow = c.sleepy(400).then(() => order.push("slow"));
    const quick = c.sleepy(1).then(() => order.push("quick"));
    await Promise.all([slow, quick]);
    assert.deepEqual(order, ["quick", "slow"]);
  });
});

describe("64-bit integers", () => {
  test("by default a result beyond Number.MAX_SAFE_INTEGER fails loudly; safe ones are numbers", async () => {
    const c = client();
    assert.equal(await c.add(Number.MAX_SAFE_INTEGER - 1, 1), Number.MAX_SAFE_INTEGER);
    await assert.rejects(c.add(Number.MAX_SAFE_INTEGER, 1), (e: unknown) => {
      code("PROTOCOL_ERROR")(e);
      assert.match((e as Error).message, /9007199254740992.*cannot be represented exactly.*bigint: true/s);
      return true;
    });
    assert.equal(await c.add(1, 1), 2, "the connection is fine afterwards");
  });

  test("with bigint: true such integers arrive as bigint, and bigint arguments are sent as 64-bit", async () => {
    const c = client({ bigint: true });
    assert.equal(await c.add(Number.MAX_SAFE_INTEGER, 1), 2n ** 53n);
    assert.equal(await c.add(2n ** 62n, 2n ** 62n - 1n), 2n ** 63n - 1n);
    assert.equal(await c.add(-(2n ** 62n), -(2n ** 62n)), -(2n ** 63n));
    assert.equal(await c.add(1, 2), 3, "safe integers stay numbers");
  });
});

describe("streams", () => {
  test("countdown streams n..1", async () => {
    const c = client();
    const got: number[] = [];
    for await (const n of (await c.countdown(5)) as AsyncIterable<number>) got.push(n);
    assert.deepEqual(got, [5, 4, 3, 2, 1]);
    const empty: unknown[] = [];
    for await (const n of (await c.countdown(0)) as AsyncIterable<number>) empty.push(n);
    assert.deepEqual(empty, []);
  });

  test("falsy chunks are delivered", async () => {
    const got: unknown[] = [];
    for await (const v of (await client().falsy_stream()) as AsyncIterable<unknown>) got.push(v);
    assert.deepEqual(got, [0, null, false, ""]);
  });

  test("badstream: the chunk before the failure arrives, then STREAM_FAILED with its data", async () => {
    const c = client();
    const got: unknown[] = [];
    await assert.rejects(
      async () => {
        for await (const v of (await c.badstream()) as AsyncIterable<unknown>) got.push(v);
      },
      (e: unknown) => {
        assert.ok(c.isError(e, "STREAM_FAILED"));
        assert.deepEqual(e.data, { after: 1 });
        return true;
      },
    );
    assert.deepEqual(got, [1]);
  });

  test("a stream's queryFn resolves to the collected array", async () => {
    const c = client();
    const q = c.queries.countdown(3);
    assert.deepEqual(q.queryKey, ["countdown", 3]);
    assert.deepEqual(await q.queryFn(), [3, 2, 1]);
    const add = c.queries.add(2, 2);
    assert.deepEqual(add.queryKey, ["add", 2, 2]);
    assert.equal(await add.queryFn(), 4);
  });

  test("breaking out of ticker cancels it: no more chunks arrive for it", async () => {
    const frames: Array<{ dir: string; frame: Record<string, unknown> }> = [];
    const c = client({ trace: (dir, frame) => void frames.push({ dir, frame }) });
    const stream = (await c.ticker(20)) as AsyncIterable<number>;
    const rpc = frames.find((f) => f.dir === "out" && f.frame.name === "ticker")!;
    const id = rpc.frame.id;
    const got: number[] = [];
    for await (const n of stream) {
      got.push(n);
      if (got.length === 3) break;
    }
    assert.deepEqual(got, [0, 1, 2]);
    assert.ok(
      frames.some((f) => f.dir === "out" && f.frame.type === "cancel" && f.frame.id === id),
      "a cancel frame was sent",
    );
    // Frames the server had queued before it read the cancel may still come; give them time.
    await sleep(150);
    const settled = frames.filter((f) => f.dir === "in" && f.frame.id === id).length;
    await sleep(500); // 25 more ticks if the server had not stopped
    const later = frames.filter((f) => f.dir === "in" && f.frame.id === id).length;
    assert.equal(later, settled, "the server stopped the ticker");
    assert.equal(await c.add(1, 2), 3, "the connection is still fine");
  });

  test("two streams at once stay apart; cancelling one leaves the other running", async () => {
    const c = client();
    const a = (await c.ticker(10)) as AsyncIterableIterator<number>;
    const b = (await c.countdown(3)) as AsyncIterableIterator<number>;
    assert.deepEqual(await a.next(), { value: 0, done: false });
    await a.return!();
    const rest: number[] = [];
    for await (const n of b) rest.push(n);
    assert.deepEqual(rest, [3, 2, 1]);
  });
});

describe("timeouts", () => {
  test("sleepy(2000) with a 100 ms timeout: TIMEOUT, a cancel frame, and no late result", async () => {
    const frames: Array<{ dir: string; frame: Record<string, unknown> }> = [];
    const c = client({ trace: (dir, frame) => void frames.push({ dir, frame }) });
    await c.ready();
    const started = Date.now();
    await assert.rejects(c.withOptions({ timeout: 100 }).sleepy(2000), code("TIMEOUT"));
    assert.ok(Date.now() - started < 1500, "rejected long before the server would have answered");
    const rpc = frames.find((f) => f.dir === "out" && f.frame.name === "sleepy")!;
    assert.ok(frames.some((f) => f.dir === "out" && f.frame.type === "cancel" && f.frame.id === rpc.frame.id));
    await sleep(2300 - (Date.now() - started));
    assert.deepEqual(
      frames.filter((f) => f.dir === "in" && f.frame.id === rpc.frame.id),
      [],
      "the server dropped the cancelled call",
    );
    assert.equal(await c.sleepy(5), 5);
  });

  test("a client-wide timeout applies to every call", async () => {
    const c = client({ timeout: 100 });
    await assert.rejects(c.sleepy(1000), code("TIMEOUT"));
    assert.equal(await c.sleepy(1), 1);
  });
});
