#!/usr/bin/env node
/*
 * The `remotelog` command as built (scripts/bundle-cli.mjs makes this dist/cli/main.js): it says the
 * version itself, and otherwise runs the script of the verb asked for, dist/cli/<group>.cjs by
 * groups.json, or all.cjs for anything else (--help, completion, an unknown verb), from its code cache
 * (code-cache.ts). A process then reads and sets up only the code of its verb's group.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runScript, WRITE_CACHE } from "./code-cache.js";
import { asksForVersion, versionLine } from "./version.js";

/** The script to run: the build names the one it writes a cache for; else the verb's group's. */
function scriptFor(verb: string | undefined): string {
  if (WRITE_CACHE && /^[a-z]+$/.test(WRITE_CACHE)) return WRITE_CACHE;
  try {
    const groups = JSON.parse(readFileSync(new URL("./groups.json", import.meta.url), "utf8")) as Record<string, unknown>;
    // Own keys only, so that an argument such as "constructor" cannot pick anything.
    const group = verb !== undefined && Object.hasOwn(groups, verb) ? groups[verb] : undefined;
    if (typeof group === "string" && /^[a-z]+$/.test(group)) return group;
  } catch {
    // no groups: every verb runs from all.cjs
  }
  return "all";
}

if (asksForVersion(process.argv[2])) {
  // A reader that went away (`remotelog --version | true`) is no failure, as for every verb (main.ts).
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") process.exitCode = 1;
  });
  process.stdout.write(versionLine());
} else {
  runScript(fileURLToPath(new URL(`./${scriptFor(process.argv[2])}.cjs`, import.meta.url)));
}
