import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { chmod, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../cli/key.js";
import type { Io } from "../../cli/command.js";
import { isKeyName, keyName } from "../../core/names.js";
import { loadKeyFile } from "../../stores/file/key-file.js";
import { TempDirs } from "../stores/temp.js";
import { cleanup, runCli, tempDir } from "../helpers/processes.js";

const temp = new TempDirs();
afterEach(() => temp.removeAll());
afterAll(cleanup);

/** Runs `remotelog key ARGS` with in-memory streams and returns its exit code and output. */
async function key(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (chunk: Buffer) => out.push(chunk));
  stderr.on("data", (chunk: Buffer) => err.push(chunk));
  const io: Io = { stdin: new PassThrough(), stdout, stderr, env: {}, signal: new AbortController().signal };
  const code = await run(args, io);
  return { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

describe("cli - key", () => {
  it("gen writes a key only its owner can read, prints its name on stdout and the file on stderr", async () => {
    const dir = await temp.make();
    const path = join(dir, "alice.key");
    const result = await key("gen", "--out", path);
    expect(result.code).toBe(0);
    const name = result.stdout.trim();
    expect(result.stdout).toBe(`${name}\n`);
    expect(isKeyName(name)).toBe(true);
    expect(result.stderr).toContain(resolve(path));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(keyName(await loadKeyFile(path))).toBe(name);

    expect(await key("name", path)).toEqual({ code: 0, stdout: `${name}\n`, stderr: "" });
  });

  it("gen writes ./remotelog.key by default", async () => {
    const dir = await temp.make();
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const result = await key("gen");
      expect(result.code).toBe(0);
      expect(await readdir(dir)).toEqual(["remotelog.key"]);
      expect(keyName(await loadKeyFile(join(dir, "remotelog.key")))).toBe(result.stdout.trim());
    } finally {
      process.chdir(cwd);
    }
  });

  it("gen never overwrites a key file", async () => {
    const dir = await temp.make();
    const path = join(dir, "alice.key");
    expect((await key("gen", "--out", path)).code).toBe(0);
    const before = await readFile(path);
    const again = await key("gen", "--out", path);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe("");
    expect(again.stderr).toMatch(/CONFLICT: .*alice\.key exists/);
    expect(await readFile(path)).toEqual(before);
  });

  it("gen --out under a regular file is INVALID_ARGUMENT naming the path, and writes nothing (the remotelog process)", async () => {
    const dir = await tempDir();
    const file = join(dir, "notes.txt");
    await writeFile(file, "mine\n");
    const out = join(file, "k.key");
    const result = await runCli(["key", "gen", "--out", out], { timeoutMs: 20_000 });
    // It was INTERNAL, exit 1, with Node's ENOTDIR about a temporary file beside the key: "cannot write key
    // file …/notes.txt/k.key: ENOTDIR: not a directory, open '…/notes.txt/k.key.<pid>-<hex>.tmp'".
    expect(result.stderr).toBe(`remotelog: INVALID_ARGUMENT: cannot write key file ${out}: a file is where a directory must be (ENOTDIR)\n`);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(await readdir(dir)).toEqual(["notes.txt"]);
    expect(await readFile(file, "utf8")).toBe("mine\n");
  });

  it("name fails with the code of what is wrong with the file", async () => {
    const dir = await temp.make();
    const missing = await key("name", join(dir, "missing.key"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/NOT_FOUND/);

    const path = join(dir, "open.key");
    await key("gen", "--out", path);
    await chmod(path, 0o644);
    const open = await key("name", path);
    expect(open.code).toBe(1);
    expect(open.stderr).toMatch(/PERMISSION_DENIED: .*chmod 600/);
    expect(open.stdout).toBe("");
  });

  it("usage errors exit 2; --help exits 0 with examples", async () => {
    expect((await key("name")).code).toBe(2);
    expect((await key("name", "a", "b")).code).toBe(2);
    expect((await key("gen", "--bogus")).code).toBe(2);
    expect((await key("frobnicate")).code).toBe(2);
    for (const args of [["--help"], ["gen", "--help"], ["name", "--help"]]) {
      const help = await key(...args);
      expect(help.code, args.join(" ")).toBe(0);
      expect(help.stdout).toMatch(args.length === 1 ? /gen[\s\S]*name/ : /Examples:/);
    }
  });
});
