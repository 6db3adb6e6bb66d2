"""Mixed cluster: the reference Python server (PyPI ephaptic==0.5.0, standalone `listen()` with
its Redis manager: examples/bench/reference_server.py --redis URL) and the Rust parity server (`--redis URL --redis-compat`) on one real
redis-server, driven by the real Python client. `to(user)` crosses in both directions.

Run with tests/interop/python/run.sh (it builds parity and sets PARITY_BIN; redis-server must be
installed: ./test.sh installs it).
"""

import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import redis as redis_py
from ephaptic.client import connect

import launch

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
CALL_TIMEOUT = 10.0
EVENT_TIMEOUT = 5.0

_procs = []  # (name, Popen, stderr file)
_redis_port = None
_rust_url = None
_python_url = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parity_bin() -> str:
    path = pathlib.Path(os.environ.get("PARITY_BIN", "target/debug/parity"))
    return str(path if path.is_absolute() else REPO_ROOT / path)


def _start(name, argv):
    """Starts a server that prints `listening on <url>` first; returns the URL."""
    err = tempfile.NamedTemporaryFile(prefix=f"{name}-stderr-", suffix=".log", delete=False)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                            cwd=str(REPO_ROOT), env={**os.environ, "NO_COLOR": "1"})
    _procs.append((name, proc, err))
    line = launch.first_line(proc, timeout=20, name=name)
    if not line.startswith("listening on ws://127.0.0.1:"):
        raise RuntimeError(f"{name} did not start: {line!r}\n{_tail(err)}")
    return line[len("listening on "):]


def _tail(err, n=30) -> str:
    try:
        err.flush()
        with open(err.name, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


def _numsub(channel: str) -> int:
    r = redis_py.Redis(host="127.0.0.1", port=_redis_port)
    try:
        return dict(r.pubsub_numsub(channel)).get(channel.encode(), 0)
    finally:
        r.close()


def setUpModule():
    global _redis_port, _rust_url, _python_url
    try:
        _redis_port = _free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(_redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _procs.append(("redis-server", server, None))
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis_py.Redis(host="127.0.0.1", port=_redis_port).ping():
                    break
            except redis_py.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{_redis_port}"
        _rust_url = _start("parity", [_parity_bin(), "--addr", "127.0.0.1:0", "--redis", url, "--redis-compat"])
        _python_url = _start("reference", [sys.executable, str(REPO_ROOT / "examples/bench/reference_server.py"),
                                           "--addr", "127.0.0.1:0", "--redis", url])
        # Both servers listen on the reference's channel before anything is sent.
        deadline = time.monotonic() + 15
        while _numsub("ephaptic:broadcast") < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the servers never both subscribed to ephaptic:broadcast")
            time.sleep(0.05)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    for name, proc, err in reversed(_procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # Closed only once the process is gone (its reader thread then sees the end):
        # closing a pipe another thread is reading blocks.
        if proc.stdout is not None:
            proc.stdout.close()
        if err is not None:
            err.close()
            try:
                os.unlink(err.name)
            except OSError:
                pass
    _procs.clear()


class MixedCluster(unittest.IsolatedAsyncioTestCase):
    async def client(self, url, **kwargs):
        kwargs.setdefault("timeout", CALL_TIMEOUT)
        c = await connect(url, **kwargs)
        self.addAsyncCleanup(c.disconnect)
        return c

    def recorder(self, client, name):
        got, arrived = [], asyncio.Event()

        def handler(*args, **kwargs):
            got.append(kwargs)
            arrived.set()

        client.on(name, handler)
        return got, arrived

    async def wait_for(self, arrived, what):
        try:
            await asyncio.wait_for(arrived.wait(), EVENT_TIMEOUT)
        except asyncio.TimeoutError:
            tails = "\n".join(f"--- {n} ---\n{_tail(e)}" for n, _, e in _procs if e is not None)
            self.fail(f"{what} never arrived\n{tails}")

    async def test_a_python_servers_to_reaches_the_user_on_the_rust_server(self):
        alice = await self.client(_rust_url, auth="alice")
        got, arrived = self.recorder(alice, "Notice")
        self.assertEqual(await alice.whoami(), "alice")
        sender = await self.client(_python_url)
        await sender.notify("alice", "from python")
        await self.wait_for(arrived, "the Python server's Notice on the Rust server")
        await asyncio.sleep(0.3)
        self.assertEqual(got, [{"message": "from python", "level": 1}], "exactly once")

    async def test_a_rust_servers_to_reaches_the_user_on_the_python_server(self):
        bob = await self.client(_python_url, auth="bob")
        got, arrived = self.recorder(bob, "Notice")
        self.assertEqual(await bob.add(1, 2), 3)  # a round trip: init is handled
        sender = await self.client(_rust_url)
        self.assertEqual(await sender.notify("bob", "from rust"), 0, "no connection of bob on the Rust server")
        await self.wait_for(arrived, "the Rust server's Notice on the Python server")
        await asyncio.sleep(0.3)
        self.assertEqual(got, [{"message": "from rust", "level": 1}], "exactly once")

    async def test_the_rust_servers_own_users_get_its_events_once(self):
        carol = await self.client(_rust_url, auth="carol")
        got, arrived = self.recorder(carol, "Notice")
        self.assertEqual(await carol.whoami(), "carol")
        sender = await self.client(_rust_url)
        self.assertEqual(await sender.notify("carol", "local"), 1)
        await self.wait_for(arrived, "a local Notice")
        await asyncio.sleep(0.3)
        self.assertEqual(got, [{"message": "local", "level": 1}], "its own echo through Redis is skipped")


if __name__ == "__main__":
    unittest.main()
