// The package as a user gets it: `npm pack` (which builds dist/ through `prepare`, also in a tree
// with no dist/), installed from the tarball into a fresh TypeScript project, then a typed call and
// an `on()` against a generated schema (examples/parity's) type-checked with `tsc --strict`.
// Needs no network when npm's cache has @msgpack/msgpack (it does after `npm ci`); TypeScript is
// the client's own.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const repoRoot = join(pkgDir, "..", "..");
const tsc = join(pkgDir, "node_modules", "typescript", "bin", "tsc");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const work = mkdtempSync(join(tmpdir(), "ephaptic-pack-"));
after(() => rmSync(work, { recursive: true, force: true }));

function npmRun(args: string[], cwd: string): string {
  return execFileSync(npm, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** `npm pack --json` in `dir`: the tarball's path and its file list. */
function pack(dir: string, dest: string): { tarball: string; files: string[] } {
  const out = npmRun(["pack", "--json", "--pack-destination", dest], dir);
  // npm prints the prepare script's output before the JSON.
  const info = JSON.parse(out.slice(out.indexOf("[")))[0] as { filename: string; files: Array<{ path: string }> };
  return { tarball: join(dest, info.filename), files: info.files.map((f) => f.path) };
}

let tarball = "";

test("npm pack of a tree without dist/ builds it: the tarball has the JavaScript and the types", () => {
  // The tracked files only, as in a fresh clone; node_modules borrowed so nothing is downloaded.
  const tree = join(work, "client");
  for (const entry of ["package.json", "package-lock.json", "tsconfig.json", "README.md", "scripts", "src"]) {
    cpSync(join(pkgDir, entry), join(tree, entry), { recursive: true });
  }
  symlinkSync(join(pkgDir, "node_modules"), join(tree, "node_modules"), "dir");
  assert.equal(existsSync(join(tree, "dist")), false);
  const { tarball: t, files } = pack(tree, work);
  tarball = t;
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/client.js", "dist/types.d.ts", "package.json", "README.md"]) {
    assert.ok(files.includes(f), `${f} is in the tarball: ${files.join(", ")}`);
  }
  assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/")), "only dist/ and the README ship");
});

test("installed from the tarball, a project type-checks a call and an on() against a generated schema", (t) => {
  assert.ok(tarball, "the pack test ran");
  const app = join(work, "app");
  cpSync(join(repoRoot, "examples", "parity", "schema.ts"), join(app, "src", "schema.ts"));
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "app", private: true, type: "module", dependencies: { "@ephaptic/client": `file:${tarball}` } }),
  );
  const install = (mode: string) =>
    spawnSync(npm, ["install", mode, "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: app, encoding: "utf8" });
  let r = install("--offline");
  if (r.status !== 0) r = install("--prefer-offline"); // a cache without @msgpack/msgpack
  assert.equal(r.status, 0, `npm install failed:\n${r.stdout}\n${r.stderr}`);
  assert.ok(readdirSync(join(app, "node_modules", "@ephaptic", "client", "dist")).includes("index.d.ts"));

  // As a Vite app: bundler resolution, the DOM, strict.
  const tsconfig = (files: string[]) => ({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: "ES2022",
      module: "ESNext",
      moduleResolution: "bundler",
      lib: ["ES2022", "DOM"],
      types: [],
      skipLibCheck: false,
    },
    files,
  });
  writeFileSync(
    join(app, "src", "app.ts"),
    `import { connect, isEphapticError } from "@ephaptic/client";
import { ephapticMutations, type EphapticErrors, type EphapticService, type Notice } from "./schema";

export const client = connect<EphapticService, EphapticErrors>({ url: "/_ephaptic", mutations: ephapticMutations });

export async function main(): Promise<number> {
  const sum: number = await client.add(1, 2);
  const stop: () => void = client.on("Notice", (n: Notice) => console.log(n.message.toUpperCase(), n.level + 1));
  stop();
  // @ts-expect-error the schema has no such event
  client.on("Notise", () => {});
  const create = client.mutations.create_todo();
  const todo = await create.mutationFn("milk");
  try {
    await client.boom();
  } catch (e) {
    if (client.isError(e, "INSUFFICIENT_FUNDS")) return e.data.available;
    if (isEphapticError(e)) return e.code.length;
  }
  return sum + todo.id;
}
`,
  );
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify(tsconfig(["src/app.ts"])));
  const check = (project: string) => spawnSync(process.execPath, [tsc, "-p", project], { cwd: app, encoding: "utf8" });
  const ok = check("tsconfig.json");
  assert.equal(ok.status, 0, `tsc --strict failed:\n${ok.stdout}${ok.stderr}`);

  // The check can fail: the same call with a wrong argument does not compile.
  writeFileSync(
    join(app, "src", "bad.ts"),
    `import { connect } from "@ephaptic/client";
import type { EphapticService } from "./schema";
const client = connect<EphapticService>({ url: "/_ephaptic" });
export const x: Promise<number> = client.add("1", 2);
`,
  );
  writeFileSync(join(app, "tsconfig.bad.json"), JSON.stringify(tsconfig(["src/bad.ts"])));
  const bad = check("tsconfig.bad.json");
  assert.notEqual(bad.status, 0, "a wrong argument type must fail to type-check");
  assert.match(bad.stdout, /bad\.ts.*TS2345/);
  t.diagnostic(`tarball ${tarball}`);
});
