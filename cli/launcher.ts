#!/usr/bin/env node
/*
 * The `remotelog` command as built (scripts/bundle-cli.mjs makes this dist/cli/main.js): it runs the
 * bundle of the verb asked for, dist/cli/<verb>.cjs, or all.cjs for anything else (--help, --version,
 * completion, an unknown verb), each cli/main.ts with that verb alone in it, from its code cache
 * (code-cache.ts). A process then reads and sets up only its verb's code.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runScript } from "./code-cache.js";

function bundleFor(verb: string | undefined): { file: string; source: Buffer } {
  // A verb is a plain word, so that an argument cannot name another file.
  if (verb !== undefined && /^[a-z]+$/.test(verb)) {
    try {
      const file = fileURLToPath(new URL(`./${verb}.cjs`, import.meta.url));
      return { file, source: readFileSync(file) };
    } catch {
      // not a verb with a bundle of its own
    }
  }
  const file = fileURLToPath(new URL("./all.cjs", import.meta.url));
  return { file, source: readFileSync(file) };
}

const { file, source } = bundleFor(process.argv[2]);
runScript(file, source);
