#!/usr/bin/env bash
# Builds and tests @ephaptic/react from any directory: `npm ci` when needed, the build and the
# test files under `tsc --strict` (the type tests in test/hooks.test.tsx must fail to compile where
# marked), then the unit tests (node --test): cleanup on unmount, handler identity, a new client,
# the connection state, a session the server ended (useSessionEnded), TanStack queries / mutations / channel invalidation, presence (usePresence),
# a reconnect with and without sessions, server rendering.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The client, linked from ../client: its dist/ (types, and the code the tests run) and its one
# dependency, which Node resolves from the client's own folder.
if [ ! -f ../client/dist/index.d.ts ] || [ ! -d ../client/node_modules/@msgpack/msgpack ]; then
    echo "==> build @ephaptic/client (ephaptic-ts/client)" >&2
    (cd ../client && npm ci --no-audit --no-fund --ignore-scripts && npm run build)
fi
if [ ! -f node_modules/.package-lock.json ] \
    || [ package-lock.json -nt node_modules/.package-lock.json ] \
    || [ package.json -nt node_modules/.package-lock.json ]; then
    echo "==> npm ci (ephaptic-ts/react)" >&2
    npm ci --no-audit --no-fund
fi
npm test
