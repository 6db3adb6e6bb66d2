#!/usr/bin/env bash
# Builds what the end-to-end test needs and runs it, from any directory:
#   examples/demo/test/run.sh
#
# Installs Debian's chromium with apt when /usr/bin/chromium is missing, builds @ephaptic/client
# and the page (frontend/build.sh) and the server (cargo build -p demo), then
# `node --test test/e2e.test.mjs`. Env: DEMO_BIN to test another binary (skips the cargo build).
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

if [ -z "${DEMO_BIN:-}" ]; then
    echo "==> cargo build -p demo" >&2
    (cd "$root" && cargo build -p demo)
fi

echo "==> node --test examples/demo/test/e2e.test.mjs" >&2
node --test "$test_dir/e2e.test.mjs"
