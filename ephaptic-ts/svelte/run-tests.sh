#!/usr/bin/env bash
# Builds and tests @ephaptic/svelte from any directory: `npm ci` when needed, the build and the
# test files under `tsc --strict` (the type tests in test/stores.test.ts must fail to compile where
# marked) and svelte-check over the test components (test/tanstack/Todos.svelte: the client README's
# TanStack example with @tanstack/svelte-query 6), then the unit tests (node --test): listeners
# removed with the last subscriber and with a destroyed component, lists, the connection state,
# a session the server ended (sessionEnded),
# channel-driven refetch, stale replies dropped, presence, a reconnect with and without sessions,
# SSR (stores and a component) without a window.
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
    echo "==> npm ci (ephaptic-ts/svelte)" >&2
    npm ci --no-audit --no-fund
fi
npm test
