#!/usr/bin/env bash
# Packs @ephaptic/client, @ephaptic/react and @ephaptic/svelte from this checkout into npm
# tarballs, the way an app outside the checkout should install them until they are on npm:
#
#   ephaptic-ts/pack.sh OUTDIR     # prints the three tarballs' absolute paths, client first
#   npm install OUTDIR/ephaptic-client-0.1.0.tgz OUTDIR/ephaptic-react-0.1.0.tgz ...
#
# Each package is compiled (`npm ci --ignore-scripts` first when its node_modules is missing or
# stale) into a staging directory, and its tarball holds package.json, README.md, the two license
# texts and dist/
# (JavaScript and .d.ts): no sources, no tests, and no install script. The package.json in the
# tarball is the package's own without `scripts` (its `prepare` builds dist/ for installs from a
# path; a tarball already has dist/, and npm 11 would warn about the script on every install) and
# without `devDependencies` (the packages' test tools). React, Svelte and @ephaptic/client stay
# peer dependencies: the app's own copies are the ones used, so their types exist once.
# Non-interactive and offline once the packages' node_modules exist; progress goes to stderr,
# the paths to stdout. The checkout is not changed (its dist/ folders are left alone).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR   (packs @ephaptic/client, react and svelte into OUTDIR as .tgz files)" >&2
    exit 2
fi
ts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

if ! command -v npm >/dev/null; then
    echo "pack.sh needs Node.js 20+ and npm" >&2
    exit 1
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/ephaptic-pack.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# The client first: react and svelte compile against the client compiled here (`paths`), not
# against whatever the checkout's ephaptic-ts/client/dist holds.
for pkg in client react svelte; do
    dir="$ts/$pkg"
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "==> npm ci (ephaptic-ts/$pkg)" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline >&2)
    fi

    echo "==> tsc (ephaptic-ts/$pkg)" >&2
    copy="$stage/$pkg"
    mkdir -p "$copy"
    printf '{ "extends": "%s", "compilerOptions": { "outDir": "%s", "paths": { "@ephaptic/client": ["%s"] } } }\n' \
        "$dir/tsconfig.json" "$copy/dist" "$stage/client/dist/index.d.ts" >"$stage/tsconfig.$pkg.json"
    node "$dir/node_modules/typescript/bin/tsc" -p "$stage/tsconfig.$pkg.json" >&2
    cp "$dir/README.md" "$copy/"
    # The license texts the packages declare ("MIT OR Apache-2.0"), from the repository's root.
    cp "$ts/../LICENSE-MIT" "$ts/../LICENSE-APACHE" "$copy/"
    node -e '
        const fs = require("node:fs");
        const [from, to] = process.argv.slice(1);
        const pkg = JSON.parse(fs.readFileSync(from, "utf8"));
        delete pkg.scripts;
        delete pkg.devDependencies;
        pkg.files = [...(pkg.files ?? []), "LICENSE-MIT", "LICENSE-APACHE"];
        fs.writeFileSync(to, JSON.stringify(pkg, null, 2) + "\n");
    ' "$dir/package.json" "$copy/package.json"
    name="$(cd "$copy" && npm pack --ignore-scripts --json --pack-destination "$out" 2>/dev/null \
        | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s)[0].filename))')"
    echo "$out/$name"
done
