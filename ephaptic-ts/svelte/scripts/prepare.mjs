// `prepare`: builds dist/ (JavaScript and .d.ts) whenever the package is installed from a path or
// packed, so a checkout needs no committed build. `npm install <path>/ephaptic-ts/client` runs it
// in a fresh clone that has no node_modules (npm links the folder without installing its
// devDependencies): then the compiler is installed first, from the lockfile.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: "inherit", shell: process.platform === "win32" });

if (!existsSync(join(root, "node_modules", "typescript", "bin", "tsc"))) {
  console.error("@ephaptic/svelte: installing its build dependencies (npm ci) to build dist/ ...");
  run(npm, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"]);
}
run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);
