#!/usr/bin/env bash
# Runs the Python interop suite: the PyPI client ephaptic==0.5.0 against the Rust parity server.
#
#   tests/interop/python/run.sh            # builds the parity binary with cargo first
#   PARITY_BIN=/path/to/parity run.sh      # uses that binary, skips the build
#
# Works from any directory. The venv lives at <repo>/target/interop-venv.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../../.." && pwd)"
VENV="$ROOT/target/interop-venv"
EPHAPTIC_VERSION="0.5.0"

# Create the venv (or repair it) unless it already holds the pinned client.
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('ephaptic') != '$EPHAPTIC_VERSION')" 2>/dev/null; then
    echo "setting up $VENV with ephaptic==$EPHAPTIC_VERSION" >&2
    if [ ! -x "$VENV/bin/python" ]; then
        mkdir -p "$ROOT/target"
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ephaptic==$EPHAPTIC_VERSION"
fi

if [ -z "${PARITY_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --quiet -p parity)
    export PARITY_BIN="$ROOT/target/debug/parity"
fi

cd "$HERE"
exec "$VENV/bin/python" -m unittest -v test_parity test_redis
