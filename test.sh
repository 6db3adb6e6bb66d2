#!/usr/bin/env bash
# Runs every ephaptic test, installing what the tests need on a fresh machine first.
#
#   ./test.sh            everything: format, lints, Rust tests, doc tests, the TypeScript client
#                        (unit, integration, types, browser), generated-schema type checks, the
#                        React and Svelte bindings, the demo's two frontends (types, browser), and
#                        the Python interop suite
#   ./test.sh --quick    Rust tests only (no lints, no TypeScript, no interop)
#
# Needs: the Rust toolchain pinned in rust-toolchain.toml (with cargo-nextest if present,
# plain `cargo test` otherwise), Node.js 20+ with npm, and python3. Installs what is missing:
# Debian's chromium (browser tests), redis-server and redis-sentinel (scale-out and failover
# tests), the npm packages of the client and of tests/browser (npm ci), and a Python venv with the
# PyPI client ephaptic==0.5.0 (target/interop-venv).
set -euo pipefail
cd "$(dirname "$0")"

quick=false
[ "${1:-}" = "--quick" ] && quick=true

step() {
    local name="$1"
    shift
    printf '\n==> %s\n' "$name" >&2
    local start=$SECONDS
    "$@"
    printf '<== %s (%ss)\n' "$name" "$((SECONDS - start))" >&2
}

# System packages, installed only when missing (apt needs root; CI machines are root).
need_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    step "install python3-venv" need_apt python3-venv
fi
# The scale-out tests start their own redis-server on free loopback ports.
if ! command -v redis-server >/dev/null 2>&1; then
    step "install redis-server" need_apt redis-server
fi

# The failover test (tests/tests/failover.rs) starts its own redis-sentinel beside them.
if ! command -v redis-sentinel >/dev/null 2>&1; then
    step "install redis-sentinel" need_apt redis-sentinel
fi

# The Redis tests skip themselves on a machine without redis-server (a plain `cargo test`);
# here it was installed above, so a missing one is a failure.
export EPHAPTIC_REQUIRE_REDIS=1

# The inspector's browser test (tests/tests/inspector.rs) drives Debian's chromium with
# playwright-core from tests/browser; like the Redis tests, it runs here rather than skipping.
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
    step "install chromium" need_apt chromium
fi
if [ ! -f tests/browser/node_modules/.package-lock.json ] \
    || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ] \
    || [ tests/browser/package.json -nt tests/browser/node_modules/.package-lock.json ]; then
    browser_packages() { (cd tests/browser && npm ci --no-audit --no-fund); }
    step "npm ci (tests/browser: playwright-core)" browser_packages
fi
export EPHAPTIC_REQUIRE_BROWSER=1

rust_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
}

if ! $quick; then
    step "format" cargo fmt --all --check
    step "lint" cargo clippy --workspace --all-targets -- -D warnings
    # The workspace turns on `redis`; the runtime must build and lint without it too.
    step "lint without optional features" cargo clippy -p ephaptic --all-targets -- -D warnings
fi
# tests/tests/attacks.rs and soak.rs run the parity fixture as a child process (they build it
# themselves when missing; building it here keeps that out of their time).
step "build the parity fixture" cargo build -p parity
step "Rust tests" rust_tests
# The cross-server suites again, against a Redis Cluster of three masters that each test creates
# (redis-cli --cluster create): sharded pub/sub, tagged keys, presence and rate limits per shard.
cluster_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        EPHAPTIC_TEST_REDIS=cluster cargo nextest run -p ephaptic-tests --test redis --test presence --no-fail-fast
    else
        EPHAPTIC_TEST_REDIS=cluster cargo test -p ephaptic-tests --test redis --test presence --no-fail-fast
    fi
}
step "Rust tests on a Redis Cluster (tests/tests/redis.rs and presence.rs)" cluster_tests
if ! $quick; then
    step "doc tests" cargo test --workspace --doc
    step "TypeScript client (@ephaptic/client)" ephaptic-ts/client/run-tests.sh
    step "generated schemas type-check (tsc --strict)" ephaptic-ts/client/node_modules/.bin/tsc -p ephaptic-ts/tests/ts
    # The template's page against its generated schema.ts, with @ephaptic/client from the checkout.
    step "template frontend type-checks (tsc --strict)" ephaptic-ts/client/node_modules/.bin/tsc -p examples/template/tsconfig.web.json
    step "@ephaptic/react (tsc --strict, unit tests)" ephaptic-ts/react/run-tests.sh
    step "@ephaptic/svelte (tsc --strict, unit tests)" ephaptic-ts/svelte/run-tests.sh
    # The supported TypeScript majors, 5 and 7, over the client's type tests and generated schemas;
    # then the three packages as an app outside the checkout installs them (pack.sh's tarballs).
    step "TypeScript 5 and 7 (tsc --strict: generated schemas, client type tests)" ephaptic-ts/tests/ts/typescript-versions.sh
    step "npm tarballs (ephaptic-ts/pack.sh) installed outside the checkout, type-checked" ephaptic-ts/tests/ts/tarballs.sh
    # cargo package of the three crates (no warnings), then a new app from `cargo ephaptic new`
    # outside the checkout, on the packed crates and the client tarball: its tests, its page's
    # build, and a typed call and event from Node against its server (docs/PUBLISHING.md).
    step "packages: a new app from the packed crates and npm tarballs" tests/packaging/run.sh
    # Builds both frontends (npm ci, vite build), type-checks them (tsc --strict, svelte-check),
    # then drives the React and the Svelte page in chromium against the demo server.
    step "demo: both frontends type-checked and in a browser (chromium)" examples/demo/test/run.sh
    step "Python interop (PyPI ephaptic 0.5.0 vs examples/parity)" tests/interop/python/run.sh
fi
printf '\nall tests passed\n' >&2
