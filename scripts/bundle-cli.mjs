/**
 * Bundles the CLI (over tsc's output, which stays for the library and the benchmarks):
 *
 * - dist/cli/<verb>.cjs: cli/main.ts with that verb alone in it, as one script, and all.cjs with every
 *   verb (for --help, --version and completion). A cold process then reads one file instead of ~400
 *   modules, which was a third of a `receive` process's profile, and only the code of its verb.
 * - dist/cli/main.js (cli/launcher.ts), the command: it runs the verb's bundle from a V8 code cache,
 *   <bundle>.cache, made here by running each bundle's --help once. Scripts, not ES modules, because
 *   Node 20 caches the compiled code of scripts only.
 * - The verify and restore threads, one ES module file each: a thread resolves and links each file
 *   it loads on its own, and the ~10 shared chunks the restore thread imported took it 67-98 ms to load
 *   against 55-65 ms for the same code in one file (a bare thread: 34-50 ms).
 *
 * classic-level stays external: it loads a native addon from its own directory.
 */
import { build } from "esbuild";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";

// BUNDLE_OUTDIR: elsewhere, to compare builds without touching dist/ (node_modules must be above it).
const outdir = process.env.BUNDLE_OUTDIR ?? "dist/cli";
await mkdir(outdir, { recursive: true });
// Files of an earlier bundle (the ES module chunks of older builds, a verb since removed) would otherwise pile up.
for (const file of await readdir(outdir)) if (file.startsWith("chunk-") || /\.cjs(\.cache|\.map)?$/.test(file)) await rm(`${outdir}/${file}`);

/** The verbs as cli/verbs.ts loads them: `name: () => import("./file.js")`. */
const verbs = [...readFileSync("cli/verbs.ts", "utf8").matchAll(/^ {2}(\w+): \(\) => import\("\.\/(\w+)\.js"\),$/gm)].map((match) => match[2]);
if (verbs.length < 10) throw new Error(`found only ${verbs.length} verbs in cli/verbs.ts`);
// completion lists every verb's flags, so it needs them all.
const ownBundle = verbs.filter((verb) => verb !== "completion");

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  // package.json "imports" (#hash…) resolve to the TypeScript sources, as the entry is one.
  conditions: ["remotelog-source"],
  external: ["classic-level"],
  sourcemap: true,
  logLevel: "warning",
};
const esm = {
  ...common,
  format: "esm",
  // Bundled CommonJS packages call require() for Node's own modules.
  banner: { js: 'import { createRequire as __bundleRequire } from "node:module"; const require = __bundleRequire(import.meta.url);' },
};
const script = {
  ...common,
  format: "cjs",
  // The sources find the worker scripts and package.json from import.meta.url.
  define: { "import.meta.url": "__bundleUrl" },
  // "use strict" first, where it is a directive (esbuild's own comes after the banner): the sources are ES modules, strict.
  banner: { js: '"use strict"; const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
  // Less to read and hash at each start; names stay, for stacks, and the maps lead to the sources
  // (without copies of them: each bundle would carry its own).
  minifyWhitespace: true,
  minifySyntax: true,
  sourcesContent: false,
};

/** Every other verb of cli/verbs.ts as a stand-in that is never run: the launcher picks the bundle by verb. */
const onlyVerb = (verb) => ({
  name: `only-${verb}`,
  setup(b) {
    b.onResolve({ filter: /^\.\/\w+\.js$/ }, (args) => {
      const name = args.path.slice(2, -3);
      if (!args.importer.endsWith("cli/verbs.ts") || name === verb || !verbs.includes(name)) return undefined;
      return { path: name, namespace: "other-verb" };
    });
    b.onLoad({ filter: /.*/, namespace: "other-verb" }, (args) => ({
      contents: `export const summary = ""; export async function run() { throw new Error("verb ${args.path} is not in this bundle"); }`,
      loader: "js",
    }));
  },
});

/** The threads' scripts, as the pools name them, and their sources. */
const threads = [
  ["restore-worker", "backup/restore-worker.ts"],
  ["verify-worker", "actors/verify-worker.ts"],
];

/** cli/main.ts without its #! line, which a script compiled inside a function cannot have (blank, so that lines still map). */
const noHashbang = {
  name: "no-hashbang",
  setup(b) {
    b.onLoad({ filter: /cli\/main\.ts$/ }, (args) => ({ contents: readFileSync(args.path, "utf8").replace(/^#!.*/, ""), loader: "ts" }));
  },
};

await Promise.all([
  build({ ...esm, outfile: `${outdir}/main.js`, entryPoints: ["cli/launcher.ts"], banner: {} }),
  ...threads.flatMap(([name, entry]) => [
    build({ ...script, outfile: `${outdir}/${name}.cjs`, entryPoints: [entry] }),
    // The file the pools start (new URL("./<name>.js", import.meta.url)): it runs the script from its cache.
    build({
      ...esm,
      outfile: `${outdir}/${name}.js`,
      stdin: {
        contents: `import { fileURLToPath } from "node:url"; import { runScript } from "./cli/code-cache.ts"; runScript(fileURLToPath(new URL("./${name}.cjs", import.meta.url)));`,
        resolveDir: ".",
        loader: "ts",
      },
      banner: {},
    }),
  ]),
  build({ ...script, outfile: `${outdir}/all.cjs`, entryPoints: ["cli/main.ts"], plugins: [noHashbang] }),
  ...ownBundle.map((verb) => build({ ...script, outfile: `${outdir}/${verb}.cjs`, entryPoints: ["cli/main.ts"], plugins: [noHashbang, onlyVerb(verb)] })),
]);

/**
 * Runs a bundle's --help through the launcher (or a thread's script, on the main thread, where it
 * waits for no message), which then writes the bundle's code cache.
 */
function writeCodeCache(run) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, run, {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, REMOTELOG_WRITE_CODE_CACHE: "1" },
    });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${run.join(" ")} exited with ${code}`))));
  });
}
const queue = [
  [`${outdir}/main.js`, "--help"],
  ...ownBundle.map((verb) => [`${outdir}/main.js`, verb, "--help"]),
  ...threads.map(([name]) => [`${outdir}/${name}.js`]),
];
await Promise.all([0, 1].map(async () => {
  while (queue.length > 0) await writeCodeCache(queue.shift());
}));
