#!/usr/bin/env bash
# Builds the demo's pages, from any directory, on a fresh machine too:
#   1. the three packages the pages import, from the checkout: @ephaptic/client, @ephaptic/react
#      and @ephaptic/svelte (`npm ci` when their node_modules is missing or stale, then
#      `npm run build` into their dist/). Every `npm ci` here runs with --ignore-scripts and the
#      packages are built explicitly, so the pages never depend on npm's policy for install
#      scripts (npm 11 warns about `prepare` of linked packages) and always see a fresh dist/;
#   2. the pages: `npm ci` in frontend/ when needed, then `vite build` into frontend/dist/, which
#      the Rust server serves.
# Used by ../run.sh and ../test/run.sh.
set -euo pipefail
frontend="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ts="$(cd "$frontend/../../../ephaptic-ts" && pwd)"

if ! command -v npm >/dev/null; then
    echo "the demo needs Node.js 20.19+ and npm to build its pages" >&2
    exit 1
fi

# npm ci in $1 when node_modules is missing or older than package.json / package-lock.json.
npm_ci() {
    if [ ! -f "$1/node_modules/.package-lock.json" ] \
        || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ] \
        || [ "$1/package.json" -nt "$1/node_modules/.package-lock.json" ]; then
        echo "==> npm ci (${1#"$ts/../"})" >&2
        (cd "$1" && npm ci --no-audit --no-fund --ignore-scripts)
    fi
}

for pkg in client react svelte; do
    npm_ci "$ts/$pkg"
    echo "==> npm run build (ephaptic-ts/$pkg)" >&2
    (cd "$ts/$pkg" && npm run build --silent)
done
npm_ci "$frontend"
echo "==> vite build (examples/demo/frontend)" >&2
(cd "$frontend" && npx vite build --logLevel warn)
