#!/usr/bin/env bash
# The npm packages as an app outside the checkout gets them: ephaptic-ts/pack.sh packs
# @ephaptic/client, @ephaptic/react and @ephaptic/svelte, and a new app in a temporary directory
# (app/ here: its package.json and lockfile, a generated schema.ts, and code using all three)
# installs the tarballs. Then, as the user would notice:
#   - each tarball holds package.json, README.md, LICENSE-MIT, LICENSE-APACHE and dist/ (JavaScript and .d.ts) only, and its
#     package.json has no install script (npm 11 warns about those on every install);
#   - npm install prints no install-scripts warning for them;
#   - React and Svelte exist once in node_modules (no copy of the packages' test tools);
#   - tsc --strict with skipLibCheck off, under TypeScript 5 and 7, with bundler (Vite) and
#     NodeNext resolution, and svelte-check (TypeScript 5; it refuses 7) over a Svelte page.
# Offline once npm's cache has the app's packages (app/package-lock.json pins them).
#
#   ephaptic-ts/tests/ts/tarballs.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ephaptic-tarballs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() {
    echo "tarballs.sh: $*" >&2
    exit 1
}

echo "==> ephaptic-ts/pack.sh $work/tarballs" >&2
mapfile -t tarballs < <("$here/../../pack.sh" "$work/tarballs")
[ "${#tarballs[@]}" -eq 3 ] || fail "pack.sh printed ${#tarballs[@]} tarballs, not 3: ${tarballs[*]}"

for t in "${tarballs[@]}"; do
    [ -f "$t" ] || fail "pack.sh printed $t, which does not exist"
    files="$(tar tzf "$t" | sort)"
    extra="$(grep -v -E '^package/(package\.json|README\.md|LICENSE-(MIT|APACHE)|dist/[A-Za-z0-9_.-]+\.(js|d\.ts))$' <<<"$files" || true)"
    [ -z "$extra" ] || fail "$(basename "$t") ships more than package.json, README.md, the license texts and dist/: $extra"
    for f in package/dist/index.js package/dist/index.d.ts package/README.md package/LICENSE-MIT package/LICENSE-APACHE; do
        grep -qx "$f" <<<"$files" || fail "$(basename "$t") has no $f"
    done
    tar xzOf "$t" package/package.json | node -e '
        let s = "";
        process.stdin.on("data", (d) => (s += d)).on("end", () => {
          const p = JSON.parse(s);
          const scripts = Object.keys(p.scripts ?? {});
          if (scripts.length) throw new Error(`${p.name}: the tarball package.json has scripts (${scripts}): npm 11 warns about them on install`);
          if (p.exports?.["."]?.types !== "./dist/index.d.ts") throw new Error(`${p.name}: exports["."].types is not ./dist/index.d.ts`);
        });'
done

app="$work/app"
mkdir -p "$app"
cp -R "$here/app/package.json" "$here/app/package-lock.json" "$here/app/tsconfig.json" "$here/app/tsconfig.node.json" "$here/app/src" "$app/"
cp "$here/schema.ts" "$app/src/schema.ts"

echo "==> npm install (the three tarballs into $app)" >&2
install() {
    (cd "$app" && npm install "$@" --no-audit --no-fund "${tarballs[@]}" 2>&1)
}
# Offline when the cache has everything (after one run); else from the registry.
if ! log="$(install --offline)"; then
    log="$(install --prefer-offline)" || fail "npm install failed: $log"
fi
if grep -i "install-scripts" <<<"$log" | grep -q "@ephaptic"; then
    fail "npm install warned about install scripts of the packages: $log"
fi

for pkg in client react svelte; do
    [ -f "$app/node_modules/@ephaptic/$pkg/dist/index.d.ts" ] || fail "@ephaptic/$pkg was installed without dist/index.d.ts"
    [ ! -e "$app/node_modules/@ephaptic/$pkg/node_modules" ] || fail "@ephaptic/$pkg brought its own node_modules"
done
for framework in svelte react @tanstack/react-query @tanstack/svelte-query @ephaptic/client; do
    copies="$(cd "$app" && find . -path "*/node_modules/$framework/package.json" | wc -l)"
    [ "$copies" -eq 1 ] || fail "$framework is installed $copies times: its types would conflict"
done

cd "$app"
for compiler in typescript typescript7; do
    version="$(node "node_modules/$compiler/bin/tsc" --version)"
    for project in tsconfig.json tsconfig.node.json; do
        echo "==> $version: tsc --strict -p $project (skipLibCheck off)" >&2
        node "node_modules/$compiler/bin/tsc" -p "$project"
    done
done
echo "==> svelte-check (TypeScript $(node node_modules/typescript/bin/tsc --version | cut -d' ' -f2), skipLibCheck off)" >&2
node node_modules/svelte-check/bin/svelte-check --tsconfig ./tsconfig.json --fail-on-warnings --output machine >&2

echo "the npm tarballs install outside the checkout and type-check (TypeScript 5 and 7, svelte-check)" >&2
