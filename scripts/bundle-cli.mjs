/**
 * Bundles the CLI into dist/cli/main.js (over tsc's output, which stays for the library and the
 * benchmarks): a cold process then reads a few files instead of ~400 modules, which was a third of a
 * `receive` process's profile. Each verb stays its own chunk, loaded only when run. The verify and
 * restore threads are entries of their own, next to the chunks that start them. classic-level stays
 * external: it loads a native addon from its own directory.
 *
 * The restore thread is one file of its own, sharing no chunk: a thread resolves and links each ESM
 * file it loads on its own, and the ~10 shared chunks it imported took it 67-98 ms to load against
 * 55-65 ms for the same code in one file (a bare thread: 34-50 ms), time in which it lays out no pack.
 */
import { build } from "esbuild";
import { mkdir, readdir, rm } from "node:fs/promises";

// BUNDLE_OUTDIR: elsewhere, to compare builds without touching dist/ (node_modules must be above it).
const outdir = process.env.BUNDLE_OUTDIR ?? "dist/cli";
await mkdir(outdir, { recursive: true });
// Chunks of an earlier bundle would otherwise pile up.
for (const file of await readdir(outdir)) if (file.startsWith("chunk-")) await rm(`${outdir}/${file}`);
const common = {
  outdir,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // package.json "imports" (#hash…) resolve to the TypeScript sources, as the entry is one.
  conditions: ["remotelog-source"],
  external: ["classic-level"],
  // Bundled CommonJS packages call require() for Node's own modules.
  banner: { js: 'import { createRequire as __bundleRequire } from "node:module"; const require = __bundleRequire(import.meta.url);' },
  sourcemap: true,
  logLevel: "warning",
};
await build({ ...common, entryPoints: { "restore-worker": "backup/restore-worker.ts" }, splitting: false });
await build({ ...common, entryPoints: { main: "cli/main.ts", "verify-worker": "actors/verify-worker.ts" }, splitting: true, chunkNames: "chunk-[hash]" });
