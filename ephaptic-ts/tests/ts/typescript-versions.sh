#!/usr/bin/env bash
# The TypeScript versions the READMEs say are supported, 5 and 7 (the exact ones are pinned in
# package.json here), each running `tsc --strict` (no emit) over:
#   - the generated schemas and the frontend snippet that must (and must not) compile against
#     them (tsconfig.json here), and the template's page against its generated schema.ts;
#   - the client's type tests (ephaptic-ts/client/test/types.test-d.ts, against its dist/ types);
#   - the sources of @ephaptic/client, @ephaptic/react and @ephaptic/svelte.
# Installs what it needs (npm ci here, and in the packages when their node_modules is missing).
#
#   ephaptic-ts/tests/ts/typescript-versions.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
here="$(pwd)"
pkgs="$(cd ../.. && pwd)"
repo="$(cd ../../.. && pwd)"

# npm ci in $1 when node_modules is missing or older than package.json / package-lock.json.
npm_ci() {
    if [ ! -f "$1/node_modules/.package-lock.json" ] \
        || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ] \
        || [ "$1/package.json" -nt "$1/node_modules/.package-lock.json" ]; then
        echo "==> npm ci (${1#"$repo/"})" >&2
        (cd "$1" && npm ci --no-audit --no-fund --ignore-scripts)
    fi
}
npm_ci "$here"
for pkg in client react svelte; do npm_ci "$pkgs/$pkg"; done
# The client's type tests and the bindings import @ephaptic/client through its dist/ types.
if [ ! -f "$pkgs/client/dist/index.d.ts" ]; then
    echo "==> npm run build (ephaptic-ts/client)" >&2
    (cd "$pkgs/client" && npm run build --silent)
fi

for compiler in typescript typescript7; do
    tsc="$here/node_modules/$compiler/bin/tsc"
    version="$(node "$tsc" --version)"
    case "$compiler:$version" in
        typescript:"Version 5."* | typescript7:"Version 7."*) ;;
        *) echo "$compiler is $version, not the TypeScript major this script tests" >&2; exit 1 ;;
    esac
    for project in \
        "$here/tsconfig.json" \
        "$repo/examples/template/tsconfig.web.json" \
        "$pkgs/client/tsconfig.types.json" \
        "$pkgs/client/tsconfig.json" \
        "$pkgs/react/tsconfig.json" \
        "$pkgs/svelte/tsconfig.json"; do
        echo "==> $version: tsc --strict -p ${project#"$repo/"}" >&2
        node "$tsc" -p "$project" --noEmit
    done
done
echo "TypeScript 5 and 7: the generated schemas, the client's type tests and the packages' sources compile" >&2
