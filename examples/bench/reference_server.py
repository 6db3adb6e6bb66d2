"""The reference implementation (PyPI `ephaptic==0.5.0`) serving what the benchmark calls.

    python reference_server.py --addr 127.0.0.1:0 [--redis redis://127.0.0.1:6379]

prints `listening on ws://127.0.0.1:N/_ephaptic` as its first line, like the Rust servers, and
serves over the package's standalone WebSocket server (`Ephaptic.listen`, no web framework):

* `add(a, b)` -> `a + b`;
* `shout(message)` -> emits `Notice {message, level: 2}` to every connection of the identity
  `bench` (the reference delivers events by identity only: its `emit()` reaches the caller
  alone, and `to(...)` the connections of identities, so benchmark subscribers send
  `init` with auth `"bench"`), and returns 0 (the reference cannot count deliveries);
* `notify(user, message)` -> emits `Notice {message, level: 1}` to `user`'s connections.

With `--redis URL` it uses the package's Redis manager, as the mixed-cluster interop test
(`tests/interop/python/test_redis.py`) does: its `to(...)` events then go through Redis.
"""

import argparse
import asyncio
import logging
import socket
import sys

import pydantic
from ephaptic import Ephaptic

app = Ephaptic()


class Notice(pydantic.BaseModel):
    message: str
    level: int


@app.identity_loader
async def load(auth):
    if isinstance(auth, dict):
        auth = auth.get("token")
    return auth if isinstance(auth, str) and auth else None


@app.expose
async def add(a: int, b: int) -> int:
    return a + b


@app.expose
async def shout(message: str) -> int:
    await app.to("bench").emit(Notice(message=message, level=2))
    return 0


@app.expose
async def notify(user: str, message: str) -> int:
    await app.to(user).emit(Notice(message=message, level=1))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8002")
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)
    if port == 0:
        # listen() does not report the port it bound, so pick a free one first.
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    if args.redis:
        app.manager.init_redis(args.redis)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(f"listening on ws://{host}:{port}/_ephaptic", flush=True)
    asyncio.run(app.listen(host=host, port=port))


if __name__ == "__main__":
    main()
