import { readFileSync } from "node:fs";

/*
 * `remotelog --version`, which the launcher (launcher.ts) answers itself, before it loads any verb's
 * script (68-72 ms, where all.cjs took 98-125 and the ES modules before it 74-86), and main.ts when
 * run otherwise.
 */

/** Whether a command line's first argument asks for the version. */
export function asksForVersion(arg: string | undefined): boolean {
  return arg === "--version" || arg === "-V" || arg === "version";
}

/** The line `remotelog --version` prints. */
export function versionLine(): string {
  return `remotelog ${version()}\n`;
}

export function version(): string {
  // Built, this file is bundled into dist/cli/ (main.js, <group>.cjs) or is dist/cli/version.js; run
  // from source (tests), cli/version.ts.
  for (const path of ["../../package.json", "../package.json"]) {
    try {
      return (JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      // try the next place
    }
  }
  return "unknown";
}
