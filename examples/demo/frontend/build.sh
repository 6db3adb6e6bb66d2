#!/usr/bin/env bash
# Builds what the demo page loads, from any directory:
#   1. @ephaptic/client (ephaptic-ts/client): `npm ci` when node_modules is missing, `npm run build`
#      into its dist/ (served at /vendor/client/, with @msgpack/msgpack at /vendor/msgpack/);
#   2. frontend/app.ts with the client's TypeScript into frontend/dist/app.js (served at /app.js).
# Used by ../run.sh and ../test/run.sh.
set -euo pipefail
frontend="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client="$(cd "$frontend/../../../ephaptic-ts/client" && pwd)"

if ! command -v npm >/dev/null; then
    echo "the demo needs Node.js 20+ and npm to build its page" >&2
    exit 1
fi
if [ ! -d "$client/node_modules" ]; then
    echo "==> npm ci (ephaptic-ts/client)" >&2
    (cd "$client" && npm ci --no-audit --no-fund)
fi
echo "==> npm run build (ephaptic-ts/client)" >&2
(cd "$client" && npm run build --silent)
echo "==> tsc (examples/demo/frontend)" >&2
"$client/node_modules/.bin/tsc" -p "$frontend/tsconfig.json"
