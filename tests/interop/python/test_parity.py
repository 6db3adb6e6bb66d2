"""Interop suite: the real Python client from PyPI (ephaptic==0.5.0) against the Rust parity server.

See /shared/PROTOCOL.md and /shared/parity-fixture.md for the contract checked here.

Run with tests/interop/python/run.sh, or directly:
    PARITY_BIN=target/debug/parity python -m unittest -v test_parity
(from this directory, with `ephaptic==0.5.0` installed).
"""

import asyncio
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import unittest

from ephaptic.client import connect
from ephaptic.errors import EphapticError

import launch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CALL_TIMEOUT = 10.0  # client-side per-call timeout, so a silent server fails a test instead of hanging it
STREAM_TIMEOUT = 5.0

_server = None  # type: subprocess.Popen | None
_stderr_file = None
_url = None


def _parity_bin() -> str:
    path = pathlib.Path(os.environ.get("PARITY_BIN", "target/debug/parity"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return str(path)


def _stderr_tail(lines: int = 40) -> str:
    if _stderr_file is None:
        return ""
    try:
        _stderr_file.flush()
        with open(_stderr_file.name, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def setUpModule():
    try:
        _start_server()
    except BaseException:
        _stop_server()
        _discard_stderr_file()
        raise


def _start_server():
    global _server, _stderr_file, _url
    binary = _parity_bin()
    if not os.path.exists(binary):
        raise RuntimeError(f"parity binary not found at {binary}; run `cargo build -p parity` or set PARITY_BIN")
    _stderr_file = tempfile.NamedTemporaryFile(prefix="parity-stderr-", suffix=".log", delete=False)
    _server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=_stderr_file,
        cwd=str(REPO_ROOT),
        env={**os.environ, "NO_COLOR": "1"},
    )
    first_line = launch.first_line(_server, timeout=15, name="parity")
    prefix = "listening on "
    if not first_line.startswith(prefix) or not first_line[len(prefix):].startswith("ws://127.0.0.1:"):
        raise RuntimeError(f"unexpected first stdout line from parity: {first_line!r}\nstderr:\n{_stderr_tail()}")
    _url = first_line[len(prefix):]


def _stop_server():
    if _server is None or _server.poll() is not None:
        return
    _server.terminate()
    try:
        _server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait(timeout=5)


def _discard_stderr_file():
    if _stderr_file is None:
        return
    _stderr_file.close()
    try:
        os.unlink(_stderr_file.name)
    except OSError:
        pass


def tearDownModule():
    crashed = _server is not None and _server.poll() is not None
    code = _server.returncode if crashed else None
    _stop_server()
    tail = _stderr_tail()
    _discard_stderr_file()
    if crashed:
        raise RuntimeError(f"the parity server exited during the suite (exit code {code})\nstderr tail:\n{tail}")


def assert_same(test: unittest.TestCase, actual, expected, path="value"):
    """Deep equality that also checks types (so 0 != False, 1.0 != 1, b"x" != "x")."""
    test.assertIs(type(actual), type(expected), f"{path}: {actual!r} has type {type(actual).__name__}, expected {type(expected).__name__} ({expected!r})")
    if isinstance(expected, dict):
        test.assertEqual(list(sorted(actual.keys())), list(sorted(expected.keys())), f"{path}: keys differ")
        for k in expected:
            assert_same(test, actual[k], expected[k], f"{path}[{k!r}]")
    elif isinstance(expected, list):
        test.assertEqual(len(actual), len(expected), f"{path}: length differs: {actual!r} vs {expected!r}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(test, a, e, f"{path}[{i}]")
    else:
        test.assertEqual(actual, expected, f"{path}")


class ParityCase(unittest.IsolatedAsyncioTestCase):
    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            tail = _stderr_tail(20)
            if tail:
                sys.stderr.write(f"\n--- parity stderr (last lines) after {self.id()} ---\n{tail}\n--- end ---\n")
        return out

    async def client(self, **kwargs):
        kwargs.setdefault("timeout", CALL_TIMEOUT)
        c = await connect(_url, **kwargs)
        self.addAsyncCleanup(c.disconnect)
        return c

    async def expect_error(self, awaitable, code):
        with self.assertRaises(EphapticError) as ctx:
            await awaitable
        err = ctx.exception
        self.assertEqual(err.code, code, f"expected {code}, got [{err.code}] {err.message!r} data={err.data!r}")
        return err

    async def collect(self, stream):
        async def go():
            return [x async for x in stream]
        return await asyncio.wait_for(go(), STREAM_TIMEOUT)

    def validation_items(self, err):
        self.assertEqual(err.code, "VALIDATION_ERROR")
        self.assertIsInstance(err.message, str)
        self.assertTrue(err.message, "VALIDATION_ERROR should carry a readable message")
        self.assertIsInstance(err.data, list, f"data should be a list of items, got {err.data!r}")
        for item in err.data:
            self.assertIsInstance(item, dict, f"every item should be a map, got {item!r}")
            for key in ("type", "loc", "msg", "input"):
                self.assertIn(key, item, f"item {item!r} lacks {key!r}")
        return err.data


class TestCalls(ParityCase):
    async def test_positional_call(self):
        c = await self.client()
        assert_same(self, await c.add(2, 3), 5)

    async def test_keyword_call(self):
        c = await self.client()
        assert_same(self, await c.add(a=4, b=5), 9)

    async def test_mixed_positional_and_keyword(self):
        c = await self.client()
        assert_same(self, await c.named("x", second="y"), "x|y")

    async def test_echo_round_trips_nested_value(self):
        c = await self.client()
        value = {
            "str": "hello",
            "unicode": "héllo ✓ 日本",
            "empty_str": "",
            "int": 42,
            "neg": -7,
            "big": 2**40,
            "zero": 0,
            "float": 1.5,
            "float_inexact": 0.1,
            "neg_float": -2.25,
            "true": True,
            "false": False,
            "none": None,
            "bytes": b"\x00\x01\xffbin",
            "empty_bytes": b"",
            "list": [1, "two", None, False, 3.5, b"\x02", [[]], {"k": "v"}],
            "empty_list": [],
            "empty_map": {},
            "nested": {"a": {"b": {"c": [1, {"d": None}]}}},
        }
        assert_same(self, await c.echo(value), value)

    async def test_echo_scalars(self):
        c = await self.client()
        for v in (None, True, False, 0, -1, 3.25, "", "s", b"\xde\xad", [], {}):
            with self.subTest(value=v):
                assert_same(self, await c.echo(v), v)

    async def test_returns_null(self):
        c = await self.client()
        self.assertIsNone(await c.returns_null())


class TestIdentity(ParityCase):
    async def test_whoami_string_token(self):
        c = await self.client(auth="alice")
        assert_same(self, await c.whoami(), "alice")

    async def test_whoami_map_token(self):
        c = await self.client(auth={"token": "bob"})
        assert_same(self, await c.whoami(), "bob")

    async def test_whoami_anonymous_no_auth(self):
        c = await self.client()
        self.assertIsNone(await c.whoami())

    async def test_whoami_anonymous_empty_string(self):
        c = await self.client(auth="")
        self.assertIsNone(await c.whoami())

    async def test_secret_anonymous_is_unauthorized(self):
        c = await self.client()
        err = await self.expect_error(c.secret(), "UNAUTHORIZED")
        self.assertEqual(err.message, "Unauthorized.")
        self.assertIsNone(err.data)

    async def test_secret_logged_in(self):
        c = await self.client(auth="alice")
        assert_same(self, await c.secret(), "s3cret")


class TestErrors(ParityCase):
    async def test_typed_error(self):
        c = await self.client()
        err = await self.expect_error(c.boom(), "INSUFFICIENT_FUNDS")
        self.assertEqual(err.message, "Not enough funds.")
        assert_same(self, err.data, {"available": 3})

    async def test_undeclared_error_is_internal_without_details(self):
        c = await self.client()
        err = await self.expect_error(c.kaboom(), "INTERNAL")
        self.assertEqual(err.message, "Internal server error.")
        self.assertIsNone(err.data)
        for part in (err.code, err.message, repr(err.data), str(err)):
            self.assertNotIn("secret-detail", part)

    async def test_panic_is_internal_and_connection_lives_on(self):
        c = await self.client()
        in_flight = asyncio.ensure_future(c.sleepy(200))
        await asyncio.sleep(0.02)
        err = await self.expect_error(c.panics(), "INTERNAL")
        self.assertEqual(err.message, "Internal server error.")
        for part in (err.code, err.message, repr(err.data), str(err)):
            self.assertNotIn("secret-detail", part)
        # The call in flight on the same connection completes, and new calls are answered.
        assert_same(self, await in_flight, 200)
        assert_same(self, await c.add(2, 3), 5)
        self.assertEqual(c.state, "connected")

    async def test_unknown_function(self):
        c = await self.client()
        err = await self.expect_error(c.nope(), "NOT_FOUND")
        self.assertEqual(err.message, "Function 'nope' not found.")
        self.assertIsNone(err.data)


class TestValidation(ParityCase):
    async def test_wrong_type(self):
        c = await self.client()
        err = await self.expect_error(c.add(1, "x"), "VALIDATION_ERROR")
        items = self.validation_items(err)
        self.assertTrue(
            any(i["loc"] == ["b"] and i["input"] == "x" for i in items),
            f"no item with loc ['b'] and input 'x' in {items!r}",
        )

    async def test_nested_path(self):
        c = await self.client()
        err = await self.expect_error(c.make_item({"id": 1, "name": "n", "tags": ["a", 2]}), "VALIDATION_ERROR")
        items = self.validation_items(err)
        self.assertTrue(
            any(i["loc"] == ["item", "tags", 1] for i in items),
            f"no item with loc ['item', 'tags', 1] in {items!r}",
        )

    async def test_missing_argument(self):
        c = await self.client()
        err = await self.expect_error(c.add(1), "VALIDATION_ERROR")
        items = self.validation_items(err)
        self.assertTrue(
            any(i["type"] == "missing" and i["loc"] == ["b"] for i in items),
            f"no item of type 'missing' at loc ['b'] in {items!r}",
        )

    async def test_duplicate_argument(self):
        c = await self.client()
        err = await self.expect_error(c.add(1, a=2), "VALIDATION_ERROR")
        items = self.validation_items(err)
        self.assertTrue(
            any(i["type"] == "multiple_values" for i in items),
            f"no item of type 'multiple_values' in {items!r}",
        )

    async def test_struct_defaults(self):
        c = await self.client()
        assert_same(
            self,
            await c.make_item({"id": 1, "name": "n"}),
            {"id": 1, "name": "n", "tags": [], "when": None},
        )


class TestStreams(ParityCase):
    async def test_countdown(self):
        c = await self.client()
        stream = await c.countdown(3)
        assert_same(self, await self.collect(stream), [3, 2, 1])

    async def test_falsy_stream(self):
        c = await self.client()
        stream = await c.falsy_stream()
        assert_same(self, await self.collect(stream), [0, None, False, ""])

    async def test_badstream_fails_after_first_item(self):
        c = await self.client()
        stream = await c.badstream()
        got = []

        async def consume():
            async for x in stream:
                got.append(x)

        with self.assertRaises(EphapticError) as ctx:
            await asyncio.wait_for(consume(), STREAM_TIMEOUT)
        assert_same(self, got, [1])
        err = ctx.exception
        self.assertEqual(err.code, "STREAM_FAILED", f"got [{err.code}] {err.message!r} data={err.data!r}")
        assert_same(self, err.data, {"after": 1})
        # The connection is still usable after a failed stream.
        assert_same(self, await c.add(1, 1), 2)


class TestConcurrency(ParityCase):
    async def test_200_concurrent_calls_matched_out_of_order(self):
        c = await self.client()
        # Distinct durations (37 is coprime with 200), in scrambled order, so replies arrive out of order.
        durations = [(i * 37) % 200 for i in range(200)]
        started = time.monotonic()
        results = await asyncio.gather(*(c.sleepy(ms) for ms in durations))
        elapsed = time.monotonic() - started
        for ms, got in zip(durations, results):
            self.assertEqual(got, ms)
        self.assertEqual(list(results), durations)
        # Serially these would take ~20 s; concurrently about the longest one (0.2 s).
        self.assertLess(elapsed, 3.0, f"200 sleepy calls took {elapsed:.2f}s; calls do not run concurrently")

    async def test_disconnect_with_calls_in_flight(self):
        c = await connect(_url, timeout=CALL_TIMEOUT)
        pending = [asyncio.ensure_future(c.sleepy(2000)) for _ in range(5)]
        await asyncio.sleep(0.1)  # let the frames go out
        started = time.monotonic()
        await asyncio.wait_for(c.disconnect(), 5)
        disconnect_took = time.monotonic() - started
        outcomes = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
        failed_after = time.monotonic() - started
        for o in outcomes:
            self.assertIsInstance(o, EphapticError, f"a pending call resolved with {o!r} instead of failing")
            self.assertEqual(o.code, "DISCONNECTED")
        self.assertLess(failed_after, 1.5, f"pending calls took {failed_after:.2f}s to fail")
        # websockets waits for the server's close frame; a server that answers close promptly keeps this short.
        self.assertLess(disconnect_took, 1.5, f"disconnect() took {disconnect_took:.2f}s (server slow to answer the close frame?)")
        fresh = await self.client()
        assert_same(self, await fresh.add(20, 22), 42)

    async def test_second_client_unaffected_by_first_disconnecting(self):
        a = await connect(_url, auth="alice", timeout=CALL_TIMEOUT)
        b = await self.client(auth="bob")
        a_call = asyncio.ensure_future(a.sleepy(1000))
        b_call = asyncio.ensure_future(b.sleepy(300))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(a.disconnect(), 5)
        with self.assertRaises(EphapticError) as ctx:
            await a_call
        self.assertEqual(ctx.exception.code, "DISCONNECTED")
        assert_same(self, await b_call, 300)
        assert_same(self, await b.add(3, 4), 7)
        assert_same(self, await b.whoami(), "bob")
        stream = await b.countdown(2)
        assert_same(self, await self.collect(stream), [2, 1])



class TestSessionEnd(ParityCase):
    async def test_an_expiring_identity_is_closed_at_its_expiry_and_the_client_reconnects(self):
        # 0.5.0 does not say `refresh: true` in init: at the expiry the server closes it
        # normally (no refresh frame), and it reconnects, the loader granting it again.
        c = await self.client(auth="expiring:carol:1500")
        states = []
        reconnected = asyncio.Event()

        def on_state(state):
            states.append(state)
            if state == "connected" and "reconnecting" in states:
                reconnected.set()

        c.on_state_change(on_state)
        first = await c.connection_id()
        self.assertEqual(await c.whoami(), "carol")
        await asyncio.wait_for(reconnected.wait(), 8)
        self.assertNotEqual(await c.connection_id(), first, "a new connection")
        self.assertEqual(await c.whoami(), "carol")

    async def test_kick_closes_the_users_connections_and_spares_the_others(self):
        alice = await self.client(auth="alice-py")
        bob = await self.client(auth="bob-py")
        closed = asyncio.Event()
        alice.on_state_change(lambda s: closed.set() if s != "connected" else None)
        self.assertEqual(await alice.whoami(), "alice-py")
        self.assertEqual(await bob.kick("alice-py", "revoked"), 1)
        await asyncio.wait_for(closed.wait(), 2)
        self.assertEqual(await bob.whoami(), "bob-py")


if __name__ == "__main__":
    unittest.main(verbosity=2)


class TestRateLimit(ParityCase):
    async def test_third_call_in_a_minute_is_refused_with_retry_after(self):
        client = await self.client(auth="rate-limited-user")
        self.assertEqual(await client.limited(), "ok")
        self.assertEqual(await client.limited(), "ok")
        err = await self.expect_error(client.limited(), "RATELIMIT")
        self.assertIsInstance(err.data, dict)
        self.assertGreaterEqual(err.data["retry_after"], 1)
        self.assertEqual(err.message, f"Rate Limit exceeded. Try again in {err.data['retry_after']} seconds.")


class TestEvents(ParityCase):
    """Events pushed by the server reach the Python client's `on` handlers as keyword arguments."""

    def recorder(self, client, name):
        """Registers a handler for `name`; returns (list of received kwargs, asyncio.Event set on each)."""
        got, arrived = [], asyncio.Event()

        def handler(*args, **kwargs):
            got.append((list(args), kwargs))
            arrived.set()

        client.on(name, handler)
        return got, arrived

    async def wait_for(self, arrived, what):
        try:
            await asyncio.wait_for(arrived.wait(), 5)
        except asyncio.TimeoutError:
            self.fail(f"{what} never arrived")

    async def test_ping_emits_pong_to_the_caller_only(self):
        caller = await self.client()
        other = await self.client()
        got, arrived = self.recorder(caller, "Pong")
        other_got, _ = self.recorder(other, "Pong")
        self.assertEqual(await caller.ping(), "pong")
        await self.wait_for(arrived, "Pong")
        self.assertEqual(got, [([], {"ok": True})])
        await asyncio.sleep(0.2)
        self.assertEqual(other_got, [], "ping emits to the caller only")

    async def test_notify_reaches_every_connection_of_the_user(self):
        tabs = [await self.client(auth="carol"), await self.client(auth={"token": "carol"})]
        bystander = await self.client(auth="dave")
        recorders = [self.recorder(t, "Notice") for t in tabs]
        bystander_got, _ = self.recorder(bystander, "Notice")
        for t in tabs:  # a round trip after init: the identity is registered
            self.assertEqual(await t.whoami(), "carol")
        sender = await self.client()
        self.assertEqual(await sender.notify("carol", "lunch?"), 2)
        for got, arrived in recorders:
            await self.wait_for(arrived, "Notice for carol")
            self.assertEqual(got, [([], {"message": "lunch?", "level": 1})])
        await asyncio.sleep(0.2)
        self.assertEqual(bystander_got, [])

    async def test_shout_reaches_everyone(self):
        a, b = await self.client(), await self.client(auth="erin")
        ra, rb = self.recorder(a, "Notice"), self.recorder(b, "Notice")
        await b.whoami()
        reached = await a.shout("fire drill")
        self.assertGreaterEqual(reached, 2)
        for got, arrived in (ra, rb):
            await self.wait_for(arrived, "Notice from shout")
            self.assertEqual(got[0], ([], {"message": "fire drill", "level": 2}))

    async def test_create_todo_announces_on_its_channel(self):
        listener = await self.client()
        got, arrived = self.recorder(listener, "todoCreated")
        await listener.whoami()
        creator = await self.client()
        todo = await creator.create_todo("buy milk")
        self.assertEqual(set(todo), {"id", "title", "done"})
        self.assertEqual((todo["title"], todo["done"]), ("buy milk", False))
        await self.wait_for(arrived, "todoCreated")
        self.assertEqual(got, [([], todo)], "the channel carries the created todo as keyword arguments")


class TestSchemaJson(unittest.TestCase):
    """The JSON schema exported from the Rust types feeds the reference generator (`ephaptic generate`)."""

    def generate(self, out_name):
        cli = pathlib.Path(sys.executable).parent / "ephaptic"
        schema = REPO_ROOT / "examples" / "parity" / "schema.json"
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / out_name
            proc = subprocess.run(
                [str(cli), "generate", str(schema), "-o", str(out)],
                capture_output=True, text=True, timeout=60, cwd=tmp,
            )
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            return out.read_text()

    def test_typescript_bindings(self):
        ts = self.generate("ephaptic.d.ts")
        self.assertIn("add(a: number, b: number): Promise<number>;", ts)
        self.assertIn("countdown(n: number): Promise<AsyncIterableIterator<number>>;", ts)
        self.assertIn("todoCreated: Todo;", ts)
        self.assertIn("INSUFFICIENT_FUNDS: InsufficientFunds;", ts)

    def test_kotlin_bindings(self):
        kt = self.generate("Ephaptic.kt")
        self.assertIn("suspend fun add(a: Long, b: Long): Long", kt)
        self.assertIn("data class Todo(", kt)
