#!/usr/bin/env bash
# Builds and starts the demo, from any directory; then open http://127.0.0.1:8000/.
#
#   examples/demo/run.sh                       # http://127.0.0.1:8000/
#   examples/demo/run.sh --addr 127.0.0.1:0    # any free port; the first line says which
#
# Builds the pages (frontend/build.sh: npm ci + vite build), then `cargo run -p demo -- "$@"`,
# which serves them and the WebSocket on one port and prints `demo on http://HOST:PORT/`.
set -euo pipefail
demo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$demo/frontend/build.sh"
cd "$demo/../.."
exec cargo run -p demo -- "$@"
