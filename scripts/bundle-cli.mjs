/**
 * Bundles the CLI (over tsc's output, which stays for the library and the benchmarks):
 *
 * - dist/cli/<group>.cjs: cli/main.ts with the verbs of one group of VERB_GROUPS in it (the others are
 *   stand-ins that are never run), as one script, and all.cjs with every verb (for --help,
 *   completion and the verbs of no group; the launcher says --version itself). A cold process then reads one file instead of ~400
 *   modules, which was a third of a `receive` process's profile, and not the code of other verbs.
 * - dist/cli/groups.json, the group of each verb, and dist/cli/main.js (cli/launcher.ts), the command:
 *   it runs the verb's script from a V8 code cache, <script>.cache, made here by running each script
 *   once. Scripts, not ES modules, because Node 20 caches the compiled code of scripts only.
 * - The verify and restore threads, one script each, started the same way.
 *
 * classic-level stays external: it loads a native addon from its own directory.
 */
import { build } from "esbuild";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";

// BUNDLE_OUTDIR: elsewhere, to compare builds without touching dist/ (node_modules must be above it).
const outdir = process.env.BUNDLE_OUTDIR ?? "dist/cli";
await mkdir(outdir, { recursive: true });
// Files of an earlier bundle (the ES module chunks of older builds, a group since removed, a cache
// whose writing was cut short) would otherwise pile up.
for (const file of await readdir(outdir)) if (file.startsWith("chunk-") || /\.cjs(\.cache|\.cache\.tmp|\.map)?$/.test(file)) await rm(`${outdir}/${file}`);

/** The verbs as cli/verbs.ts loads them: `name: () => import("./file.js")`, by name. */
const verbFiles = new Map([...readFileSync("cli/verbs.ts", "utf8").matchAll(/^ {2}(\w+): \(\) => import\("\.\/(\w+)\.js"\),$/gm)].map((match) => [match[1], match[2]]));
if (verbFiles.size < 10) throw new Error(`found only ${verbFiles.size} verbs in cli/verbs.ts`);

/**
 * Verbs that load much the same code share a script: a script a verb made the package 10.7 MB packed
 * (34 MB unpacked) against 3.9 MB (12.5 MB), for 0-3 ms of start-up (`restore --help`: 100 ms alone,
 * 103 in its group). serve starts once and runs for long; demo and completion run from all.cjs.
 */
const VERB_GROUPS = {
  client: ["send", "receive", "cat", "status", "mirror", "redact", "inspect", "repair", "mvds", "key"],
  backup: ["backup", "restore", "verify", "export", "import", "gc"],
  serve: ["serve"],
};
const groupOf = {};
for (const [group, verbs] of Object.entries(VERB_GROUPS)) {
  for (const verb of verbs) {
    if (!verbFiles.has(verb)) throw new Error(`VERB_GROUPS names ${verb}, which cli/verbs.ts has not`);
    groupOf[verb] = group;
  }
}

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
  // Less to read and hash at each start: `restore --help` took 100-103 ms minified, 108 not. Names
  // stay, so a stack still says which function; the maps lead tools to the sources (without copies
  // of them: each script would carry its own). Node maps no stack of a script it compiles this way.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcesContent: false,
};

/** The verbs of cli/verbs.ts outside a group as stand-ins that are never run: the launcher picks the script by verb. */
const onlyGroup = (group) => {
  const inGroup = new Set(VERB_GROUPS[group].map((verb) => verbFiles.get(verb)));
  const files = new Set(verbFiles.values());
  return {
    name: `only-${group}`,
    setup(b) {
      b.onResolve({ filter: /^\.\/\w+\.js$/ }, (args) => {
        const file = args.path.slice(2, -3);
        if (!args.importer.endsWith("cli/verbs.ts") || inGroup.has(file) || !files.has(file)) return undefined;
        return { path: file, namespace: "other-verb" };
      });
      b.onLoad({ filter: /.*/, namespace: "other-verb" }, (args) => ({
        contents: `export const summary = ""; export async function run() { throw new Error("verb ${args.path} is not in this bundle"); }`,
        loader: "js",
      }));
    },
  };
};

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
  ...Object.keys(VERB_GROUPS).map((group) => build({ ...script, outfile: `${outdir}/${group}.cjs`, entryPoints: ["cli/main.ts"], plugins: [noHashbang, onlyGroup(group)] })),
  writeFile(`${outdir}/groups.json`, JSON.stringify(groupOf, null, 2) + "\n"),
]);

/**
 * Runs a script once, which then writes its code cache: a verb script's `--help`, which loads every
 * verb in it (for their summaries), or a thread's script on the main thread, where it waits for no message.
 */
function writeCodeCache(script, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, REMOTELOG_WRITE_CODE_CACHE: script },
    });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${script}: ${args.join(" ")} exited with ${code}`))));
  });
}
const queue = [
  ...["all", ...Object.keys(VERB_GROUPS)].map((script) => [script, [`${outdir}/main.js`, "--help"]]),
  ...threads.map(([name]) => [name, [`${outdir}/${name}.js`]]),
];
await Promise.all([0, 1].map(async () => {
  while (queue.length > 0) await writeCodeCache(...queue.shift());
}));
