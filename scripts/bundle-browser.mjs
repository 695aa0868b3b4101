/**
 * Bundles the browser entry (lib/browser.ts, `remotelog/browser`) into dist/browser/remotelog.js, one
 * ES module for a page to import, from the TypeScript sources: package.json "imports" (#hash,
 * #transport, #verify-pool, #directories) resolve to their browser implementations under esbuild's
 * "browser" condition. Fails when anything would pull in a Node built-in: esbuild cannot resolve one
 * for the browser, and a metafile check catches what a package might smuggle in another way.
 */
import { build } from "esbuild";
import { builtinModules } from "node:module";
import { mkdir } from "node:fs/promises";

// BUNDLE_OUTDIR: elsewhere, to compare builds without touching dist/. BUNDLE_ENTRY: another entry
// (test/browser/bundle.test.ts checks that one needing Node fails; scripts/bundle-explorer.mjs bundles
// the explorer's page), and BUNDLE_NAME its file's name (remotelog.js).
const outdir = process.env.BUNDLE_OUTDIR ?? "dist/browser";
const entry = process.env.BUNDLE_ENTRY ?? "lib/browser.ts";
await mkdir(outdir, { recursive: true });

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

let result;
try {
  result = await build({
    entryPoints: { [process.env.BUNDLE_NAME ?? "remotelog"]: entry },
    outdir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["remotelog-source"],
    metafile: true,
    minify: true,
    sourcemap: true,
    legalComments: "linked",
    logLevel: "silent",
  });
} catch (err) {
  // esbuild's own message already names the import and its importer ("Could not resolve "node:fs"").
  for (const error of err.errors ?? []) {
    const where = error.location ? `${error.location.file}:${error.location.line}: ` : "";
    console.error(`bundle-browser: ${where}${error.text}`);
  }
  console.error("bundle-browser: the browser bundle must not need Node; see core/hash-browser.ts and package.json \"imports\" for how a module gets a browser twin");
  process.exit(1);
}

const nodeOnly = [];
for (const [path, input] of Object.entries(result.metafile.inputs)) {
  for (const imported of input.imports) if (builtins.has(imported.path) && !imported.external) nodeOnly.push(`${path} imports ${imported.path}`);
}
if (nodeOnly.length > 0) {
  for (const line of nodeOnly) console.error(`bundle-browser: ${line}, a Node built-in`);
  process.exit(1);
}
