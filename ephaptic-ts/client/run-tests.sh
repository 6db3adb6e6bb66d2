#!/usr/bin/env bash
# Builds and tests @ephaptic/client from any directory: unit tests, integration tests against the
# Rust parity server (examples/parity), type tests (tsc --strict) and a browser smoke test
# (Debian's chromium via playwright-core).
#
#   ephaptic-ts/client/run-tests.sh
#
# Env: PARITY_BIN  use this parity binary instead of building it with `cargo build -p parity`.
#      CHROMIUM_PATH  the browser for the smoke test (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
pkg_dir="$(pwd)"
repo_root="$(cd ../.. && pwd)"

step() {
    printf '\n==> %s\n' "$1" >&2
}

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
    echo "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))." >&2
    exit 1
fi

# npm ci when node_modules is missing or older than package.json / package-lock.json.
if [ ! -f node_modules/.package-lock.json ] \
    || [ package-lock.json -nt node_modules/.package-lock.json ] \
    || [ package.json -nt node_modules/.package-lock.json ]; then
    step "npm ci"
    npm ci --no-audit --no-fund
fi

# The browser smoke test needs Debian's chromium (never a downloaded browser).
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    step "install chromium"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

if [ -z "${PARITY_BIN:-}" ]; then
    step "cargo build -p parity"
    (cd "$repo_root" && cargo build -p parity)
fi

step "npm run build"
npm run build

step "npm test (unit, integration, types, browser)"
npm test

printf '\n@ephaptic/client: all tests passed (%s)\n' "$pkg_dir" >&2
