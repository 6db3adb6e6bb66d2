// Compiles the test components (test/components/*.svelte) for the browser and for the server,
// into .test-build/svelte/test/components/<Name>.client.js and <Name>.server.js (next to the
// compiled tests, which tsconfig.test.json puts under .test-build/svelte/test/), for the
// component tests.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile, preprocess } from "svelte/compiler";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const from = join(root, "test", "components");
const to = join(root, ".test-build", "svelte", "test", "components");
mkdirSync(to, { recursive: true });

// Strips `lang="ts"` types: the test components use type annotations only.
const { transform } = await import("typescript").then((m) => m.default ?? m).then((ts) => ({
  transform: (code) => ts.transpileModule(code, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, verbatimModuleSyntax: true } }).outputText,
}));

for (const file of readdirSync(from).filter((f) => f.endsWith(".svelte"))) {
  const filename = join(from, file);
  const source = readFileSync(filename, "utf8");
  const { code } = await preprocess(source, {
    script: ({ content, attributes }) => (attributes.lang === "ts" ? { code: transform(content) } : undefined),
  }, { filename });
  const name = file.replace(/\.svelte$/, "");
  for (const generate of ["client", "server"]) {
    const out = compile(code, { filename, generate, dev: false });
    writeFileSync(join(to, `${name}.${generate}.js`), out.js.code);
  }
}
