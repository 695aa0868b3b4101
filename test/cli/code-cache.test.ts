import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { verbs } from "../../cli/verbs.js";

/*
 * The built command (scripts/bundle-cli.mjs, cli/launcher.ts, cli/code-cache.ts): each verb runs from
 * its group's script, started from the code V8 compiled for it at build time, and never from code
 * compiled for other bytes.
 */

const exec = promisify(execFile);
const DIST = resolve("dist/cli");
// Inside the project, so that a copied bundle still finds node_modules.
const scratchRoot = resolve(".tmp");
const scratch: string[] = [];

afterAll(async () => {
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Whether `file` compiles from its cache, asked of a fresh node (the flags a user's has) through the launcher's own code. */
async function compilesFromCache(file: string): Promise<boolean> {
  const code = `import { compileScript } from ${JSON.stringify(join(DIST, "code-cache.js"))}; console.log(compileScript(${JSON.stringify(file)}).fromCache)`;
  const { stdout } = await exec(process.execPath, ["--input-type=module", "-e", code], { timeout: 30_000 });
  return stdout.trim() === "true";
}

async function run(main: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return exec(process.execPath, [main, ...args], { env: { ...process.env, COLUMNS: "2000" }, timeout: 30_000 });
}

describe("cli - code cache", () => {
  it("runs each verb from its group's script or all.cjs, and every script from its cache", async () => {
    const groups = JSON.parse(await readFile(join(DIST, "groups.json"), "utf8")) as Record<string, string>;
    for (const verb of Object.keys(groups)) expect(Object.keys(verbs), verb).toContain(verb);
    const scripts = [...new Set(Object.values(groups)), "all", "restore-worker", "verify-worker"];
    for (const name of scripts) {
      expect(await compilesFromCache(join(DIST, `${name}.cjs`)), name).toBe(true);
      // Strict, as the ES modules they are made of: the directive must come first to count.
      expect((await readFile(join(DIST, `${name}.cjs`), "utf8")).startsWith('"use strict";'), name).toBe(true);
    }
    // A group's script holds its verbs and not the others (a stand-in would run instead: every verb's
    // --help runs in help-and-exits.test.ts).
    expect(groups.restore).toBe("backup");
    expect(await readFile(join(DIST, "backup.cjs"), "utf8")).toContain("Read a backup's pack chain");
    expect(await readFile(join(DIST, "client.cjs"), "utf8")).not.toContain("Read a backup's pack chain");
    expect((await run(join(DIST, "main.js"), ["restore", "--help"])).stdout).toMatch(/^Usage: remotelog restore /);
    // completion runs from all.cjs, with every verb in it.
    const completion = await run(join(DIST, "main.js"), ["completion", "bash"]);
    for (const verb of Object.keys(verbs)) expect(completion.stdout).toContain(verb);
  });

  it("compiles a script afresh when its cache was made for other bytes, even of the same length", async () => {
    await mkdir(scratchRoot, { recursive: true });
    const dir = await mkdtemp(join(scratchRoot, "code-cache-"));
    scratch.push(dir);
    for (const file of ["main.js", "groups.json", "backup.cjs", "backup.cjs.cache"]) await copyFile(join(DIST, file), join(dir, file));
    const before = "Read a backup's pack chain";
    const after = "READ A BACKUP'S PACK CHAIN";
    const script = await readFile(join(dir, "backup.cjs"), "utf8");
    expect(script).toContain(before);
    await writeFile(join(dir, "backup.cjs"), script.replace(before, after));

    // V8 would take the old cache (it checks the length only) and print the old text.
    expect(await compilesFromCache(join(dir, "backup.cjs"))).toBe(false);
    const help = await run(join(dir, "main.js"), ["restore", "--help"]);
    expect(help.stdout).toContain(after);
    expect(help.stdout).not.toContain(before);

    // A script without a cache runs all the same.
    await rm(join(dir, "backup.cjs.cache"));
    expect((await run(join(dir, "main.js"), ["restore", "--help"])).stdout).toContain(after);
  });
});
