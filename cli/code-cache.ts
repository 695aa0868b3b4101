/*
 * Runs a bundled script of the CLI (scripts/bundle-cli.mjs) from a V8 code cache, so that a cold
 * process or thread does not compile the code it starts with again.
 *
 * Why: loading a verb's code was a large part of a short process. `restore --help` took 109-117 ms
 * as ES modules and 100-107 ms from the cache (a bare `node -e 0`: ~62 ms). Node 20 caches compiled
 * code for scripts only, not for ES modules, so the CLI's bundles are scripts, each with the cache
 * the build made by running it (<script>.cache). The cache is used only for the very bytes it was
 * made from: it starts with their SHA-256, as V8 itself checks no more than the source's length.
 * Without a cache, or with one V8 refuses (another Node), the script compiles as any would.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { hash } from "node:crypto";
import Module, { createRequire } from "node:module";
import { dirname } from "node:path";
import { Script, constants } from "node:vm";
import { WRITE_CODE_CACHE_VARIABLE } from "./environment.js";

/** Set by the build alone, to the script it runs once to write that script's cache (see the launcher). */
export const WRITE_CACHE = process.env[WRITE_CODE_CACHE_VARIABLE] || undefined;
const DIGEST_BYTES = 32;

/** The V8 cache written for source, or undefined when there is none or it was written for other bytes. */
function cacheFor(file: string, digest: Buffer): Buffer | undefined {
  let cache: Buffer;
  try {
    cache = readFileSync(`${file}.cache`);
  } catch {
    return undefined;
  }
  return cache.length > DIGEST_BYTES && cache.subarray(0, DIGEST_BYTES).equals(digest) ? cache.subarray(DIGEST_BYTES) : undefined;
}

/** The script file (read as source), compiled as Node compiles a CommonJS module, from its cache where it has one. */
export function compileScript(file: string, source: Buffer = readFileSync(file)): { script: Script; fromCache: boolean; digest: Buffer } {
  const digest = hash("sha256", source, "buffer") as unknown as Buffer;
  const cachedData = WRITE_CACHE ? undefined : cacheFor(file, digest);
  const script = new Script(Module.wrap(source.toString("utf8")), {
    filename: file,
    cachedData,
    importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  return { script, fromCache: cachedData !== undefined && !script.cachedDataRejected, digest };
}

/** Runs the CommonJS script file (read as source) as Node would run it as a main module, from its cache. */
export function runScript(file: string, source?: Buffer): void {
  const { script, digest } = compileScript(file, source);
  if (WRITE_CACHE) {
    // After the run, so that the cache holds the functions it compiled, not only the outermost one.
    process.once("exit", () => {
      const fd = openSync(`${file}.cache.tmp`, "w");
      try {
        writeFileSync(fd, Buffer.concat([digest, script.createCachedData()]));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(`${file}.cache.tmp`, `${file}.cache`);
    });
  }
  const module = { exports: {}, id: file, filename: file, loaded: false };
  (script.runInThisContext() as (...args: unknown[]) => void)(module.exports, createRequire(file), module, file, dirname(file));
}
