"""The reference implementation (PyPI `ephaptic==0.5.0`) on Redis, for the mixed-cluster test.

    python reference_redis_server.py --addr 127.0.0.1:0 --redis redis://127.0.0.1:PORT

prints `listening on ws://127.0.0.1:N/_ephaptic` first, like parity, and serves over the
package's standalone `listen()` with its Redis manager:

* `notify(user, message)` -> `to(user).emit(Notice {message, level: 1})` through Redis;
* `add(a, b)` -> `a + b` (a round trip that says `init` was handled).

The identity loader takes the token (a string, or `{token}`) as the identity, like parity's.
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
async def notify(user: str, message: str) -> int:
    await app.to(user).emit(Notice(message=message, level=1))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:0")
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)
    if port == 0:
        # listen() does not report the port it bound, so pick a free one first.
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    app.manager.init_redis(args.redis)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(f"listening on ws://{host}:{port}/_ephaptic", flush=True)
    asyncio.run(app.listen(host=host, port=port))


if __name__ == "__main__":
    main()
