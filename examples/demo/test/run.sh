#!/usr/bin/env bash
# Builds what the end-to-end tests need and runs them, from any directory:
#   examples/demo/test/run.sh
#
# 1. installs Debian's chromium with apt when /usr/bin/chromium is missing;
# 2. builds the pages (frontend/build.sh: the three packages, npm ci, vite build);
# 3. type-checks both frontends: tsc --strict (React, shared code) and svelte-check (Svelte);
# 4. builds the server (cargo build -p demo);
# 5. `node --test test/e2e.test.mjs`: both frontends in chromium, two users each.
# Env: DEMO_BIN to test another binary (skips the cargo build); DEMO_FRAMEWORKS=react or svelte
# for one frontend. Screenshots of failures land in target/demo-e2e/.
set -euo pipefail
test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
demo="$(dirname "$test_dir")"
root="$(cd "$demo/../.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
    echo "==> install chromium" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

"$demo/frontend/build.sh"

echo "==> tsc --strict and svelte-check (examples/demo/frontend)" >&2
(cd "$demo/frontend" && npm run --silent check)

if [ -z "${DEMO_BIN:-}" ]; then
    echo "==> cargo build -p demo" >&2
    (cd "$root" && cargo build -p demo)
fi

echo "==> node --test examples/demo/test/e2e.test.mjs" >&2
node --test "$test_dir/e2e.test.mjs"
