#!/usr/bin/env bash
# A new app built from the packages as a user gets them, out of the repository (issue 31):
#
#   1. `cargo package` of ephaptic-macros, ephaptic and ephaptic-ts: must succeed without a
#      warning (complete metadata, license texts, nothing missing from the packages);
#   2. the three .crate files unpacked, and the npm tarballs of @ephaptic/client, react and
#      svelte packed (ephaptic-ts/pack.sh);
#   3. `cargo ephaptic new` writes an app in a temporary directory outside the checkout,
#      depending on `ephaptic = "0.1"` and `ephaptic-ts = "0.1"` with the packed crates patched in
#      for crates.io (what the registry will serve), and on the client tarball;
#   4. the app's `cargo test` (its schema.ts is current) and `cargo build`, its page's
#      `npm install` and `npm run build` (tsc --strict, vite), and then, against its server on a
#      free port, one typed call and one event from Node, compiled by the app's own tsc.
#
# Nothing of the checkout is used but the packed artifacts and the built `cargo ephaptic` (the
# same sources as the packed ephaptic-ts). The app gets the workspace's Cargo.lock, so its
# dependencies are the versions the rest of the suite tested, and builds into the workspace's
# target directory: the dependencies whose features match are built once, for both (and the
# disk holds one copy of them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
target="$root/target"

# 1. The crates, packed. `--no-verify`: step 4 builds them, as an app's dependencies, which is
#    the stricter check; a warning (a missing field or file) fails here.
cargo package --no-verify --allow-dirty -p ephaptic-macros -p ephaptic -p ephaptic-ts \
    --target-dir "$target" 2>"$work/package.log" || {
    cat "$work/package.log" >&2
    exit 1
}
if grep -i "^warning" "$work/package.log" >&2; then
    echo "cargo package warned (above); the packages must be ready to publish" >&2
    exit 1
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
mkdir -p "$work/crates"
for krate in ephaptic-macros ephaptic ephaptic-ts; do
    file="$target/package/$krate-$version.crate"
    [ -f "$file" ] || { echo "no $file" >&2; exit 1; }
    tar -xzf "$file" -C "$work/crates"
    for f in LICENSE-MIT LICENSE-APACHE README.md; do
        [ -s "$work/crates/$krate-$version/$f" ] || { echo "$krate's package has no $f" >&2; exit 1; }
    done
done
# The packages hold what an app needs and not the repository's tests.
[ ! -e "$work/crates/ephaptic-$version/tests" ] || { echo "ephaptic's package holds tests/" >&2; exit 1; }
[ -f "$work/crates/ephaptic-ts-$version/template/src/lib.rs" ] || { echo "ephaptic-ts lacks its template" >&2; exit 1; }

# 2. The npm packages, packed.
"$root/ephaptic-ts/pack.sh" "$work/npm" >"$work/tarballs"
client="$(head -1 "$work/tarballs")"
case "$client" in *ephaptic-client-*.tgz) ;; *) echo "no client tarball: $client" >&2; exit 1 ;; esac

# 3. The app, outside the checkout.
cargo build -q -p ephaptic-ts --bin cargo-ephaptic --target-dir "$target"
"$target/debug/cargo-ephaptic" ephaptic new hello-app --dir "$work/hello-app" \
    --crates "$work/crates" --client "$client"
app="$work/hello-app"
grep -q '^ephaptic = "0\.1"$' "$app/Cargo.toml" || { cat "$app/Cargo.toml" >&2; exit 1; }
if grep -rq "$root" "$app" --include=*.rs --include=*.ts --include=*.json; then
    echo "the app names the checkout:" >&2
    grep -rn "$root" "$app" --include=*.rs --include=*.ts --include=*.json >&2
    exit 1
fi
cp Cargo.lock "$app/Cargo.lock"

# From the checkout (the default of a command installed from it): path dependencies that
# resolve, its own workspace, and the client packed into the checkout's target/npm.
"$target/debug/cargo-ephaptic" ephaptic new from-checkout --dir "$work/from-checkout" 2>/dev/null
(cd "$work/from-checkout" && cargo metadata -q --format-version 1 >/dev/null)
tarball="$(sed -n 's#.*"@ephaptic/client": "file:\(.*\.tgz\)".*#\1#p' "$work/from-checkout/web/package.json")"
[ -f "$tarball" ] || { echo "the checkout's app names no packed client" >&2; cat "$work/from-checkout/web/package.json" >&2; exit 1; }

# 4. Its tests, its server, its page.
export CARGO_TARGET_DIR="$target"
(cd "$app" && cargo test -q 2>&1 | tail -3)
(cd "$app" && cargo build -q)
(cd "$app/web" && npm install --no-audit --no-fund --loglevel=error && npm run build --silent >/dev/null)
ADDR=127.0.0.1:0 "$target/debug/hello-app" >"$work/server.log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 200); do
    url="$(sed -n 's#.* on \(ws://[^ ,]*/_ephaptic\).*#\1#p' "$work/server.log" | head -1)"
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
done
[ -n "$url" ] || { echo "the app's server never said where it listens" >&2; cat "$work/server.log" >&2; exit 1; }

# A typed call and event, checked by the app's tsc against its schema.ts, then run in Node
# (Node 20 has no global WebSocket: `ws`, as the client's README says).
(cd "$app/web" && npm install --no-audit --no-fund --loglevel=error --no-save ws@8 @types/ws@8 @types/node@20)
cat >"$app/web/e2e.ts" <<'TS'
import { connect } from "@ephaptic/client";
import { WebSocket } from "ws";
import type { EphapticErrors, EphapticService, Message } from "./src/schema.js";

const url = process.argv[2]!;
const client = connect<EphapticService, EphapticErrors>({ url, WebSocket });
const heard = new Promise<Message>((resolve) => client.on("messageSent", resolve));
const joined = new Promise<number>((resolve) => client.on("Joined", ({ online }) => resolve(online)));
const sent: Message = await client.sendMessage("hello from a packed app");
const message = await heard;
if (sent.text !== "hello from a packed app" || message.text !== sent.text) {
  throw new Error(`unexpected ${JSON.stringify({ sent, message })}`);
}
const online = await joined;
console.log(`call ok: ${sent.author}: ${sent.text}; event ok: messageSent and Joined (${online} online)`);
client.disconnect();
TS
(cd "$app/web" && npx tsc --strict --module nodenext --moduleResolution nodenext --target es2022 \
    --skipLibCheck false --types node --outDir .e2e e2e.ts)
timeout 30 node "$app/web/.e2e/e2e.js" "$url"
echo "packaging: the packed crates and npm packages build a new app that serves a typed call and event" >&2
