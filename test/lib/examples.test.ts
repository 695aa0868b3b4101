import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, expect, test } from "vitest";
import { cleanup, collect, parseJsonl, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

/**
 * The programs in examples/, built into dist/examples and importing "remotelog" by name (the package
 * refers to itself through its exports), run against real `remotelog serve` processes.
 */
const example = (file: string, args: string[]) => {
  const child = spawn(process.execPath, [resolve("dist/examples", file), ...args], { stdio: ["pipe", "pipe", "pipe"] });
  return child;
};

afterAll(cleanup);

test("examples - chat follower, backup job and mirror, against real servers", async () => {
  const dir = await tempDir();
  const a = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "a")]);
  const b = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "b"), "--require-signed"]);
  const keyFile = join(dir, "alice.key");
  const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
  const send = (text: string) => runCli(["send", "--key", keyFile, "--server", a.url, "--data", join(dir, "alice")], { stdin: text });
  expect((await send("hello\nworld\n")).code).toBe(0);

  // The chat follower prints the backlog, then a message sent while it runs, and exits 0 on SIGTERM.
  const follower = example("chat-follower.js", [a.url, name, join(dir, "follower")]);
  const printed: string[] = [];
  const lines = createInterface({ input: follower.stdout! });
  const waitFor = (count: number) =>
    new Promise<void>((resolveWait, reject) => {
      if (printed.length >= count) return resolveWait();
      const onLine = () => {
        if (printed.length < count) return;
        lines.off("line", onLine);
        resolveWait();
      };
      lines.on("line", onLine);
      follower.once("exit", (code) => reject(new Error(`the follower exited with ${code}`)));
    });
  lines.on("line", (line) => printed.push(line));
  let stderr = "";
  follower.stderr!.on("data", (chunk) => (stderr += chunk));
  await waitFor(2);
  expect((await send("third\n")).code).toBe(0);
  await waitFor(3);
  const exited = new Promise<number | null>((resolveExit) => follower.once("exit", (code) => resolveExit(code)));
  await stop(follower, "SIGTERM");
  expect(await exited).toBe(0);
  expect(printed).toEqual(["#0 hello", "#1 world", "#2 third"]);
  expect(stderr).toBe("");

  // The backup job saves everything once, verifies the log, and on its next run adds only what is new.
  const backup = join(dir, "backup");
  const firstRun = await collect(example("backup-job.js", [a.url, name, backup]));
  expect(firstRun.code).toBe(0);
  expect(JSON.parse(firstRun.stdout)).toEqual({ saved: 3, total: 3, verified: true, pages: 1, messages: 3 });
  expect((await send("fourth\n")).code).toBe(0);
  const secondRun = await collect(example("backup-job.js", [a.url, name, backup]));
  expect(JSON.parse(secondRun.stdout)).toEqual({ saved: 1, total: 4, verified: true, pages: 1, messages: 4 });
  const saved = parseJsonl<{ seq: number; body: string; id: string }>(await readFile(join(backup, "messages.jsonl"), "utf8"));
  expect(saved.map(({ seq, body }) => [seq, body])).toEqual([
    [0, "hello"],
    [1, "world"],
    [2, "third"],
    [3, "fourth"],
  ]);

  // The mirror copies the log to b, whose copy verifies; b serves what a receiver of a reads.
  const mirrored = await collect(example("mirror.js", [a.url, b.url, name]));
  expect(mirrored.code).toBe(0);
  expect(JSON.parse(mirrored.stdout)).toMatchObject({ name, updated: true, messages: 4, copyVerified: true });
  const again = await collect(example("mirror.js", [a.url, b.url, name]));
  expect(again).toMatchObject({ code: 0, stdout: "" });
  const fromB = await runCli(["receive", "--name", name, "--server", b.url, "--state", join(dir, "carol")]);
  expect(fromB.code).toBe(0);
  expect(parseJsonl<{ id: string }>(fromB.stdout).map(({ id }) => id)).toEqual(saved.map(({ id }) => id));
});
