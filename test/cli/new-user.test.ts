import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, collect, runCli, spawnCli, startServer, tempDir } from "../helpers/processes.js";

// What a user trying remotelog for the first time meets: the demo, and the messages of a flag got wrong.

afterEach(cleanup);

/**
 * The processes whose command line holds text. The demo's own processes name their directories, which
 * are under the TMPDIR the test gives it; once reparented they are no child of anything the test knows.
 */
async function processesNaming(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const commandLine = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (commandLine.includes(text)) pids.push(Number(entry));
  }
  return pids;
}

/** Processes the demo started and left: killed, so that a failing test leaves nothing running. */
async function killLeftOver(text: string): Promise<void> {
  for (const pid of await processesNaming(text)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** Resolves true once child prints a line that starts with prefix, false if it exits first. */
function untilLine(child: ChildProcess, prefix: string): Promise<boolean> {
  return new Promise((resolve) => {
    createInterface({ input: child.stdout! }).on("line", (line) => line.startsWith(prefix) && resolve(true));
    child.once("exit", () => resolve(false));
  });
}

describe("cli - demo", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} sent to the demo alone (kill PID, a supervisor) stops its server and receivers and removes its directory`, async () => {
      const tmp = await tempDir();
      const demo = spawnCli(["demo", "--rounds", "100"], { env: { TMPDIR: tmp } });
      const result = collect(demo, undefined, 30_000);
      try {
        // Bob has printed a message: the server and Bob's receive --follow are running.
        expect(await untilLine(demo, "  bob   <= seq")).toBe(true);
        expect((await processesNaming(tmp)).length).toBeGreaterThanOrEqual(2);
        demo.kill(signal);
        const { code, signal: killedBy, stderr } = await result;
        // The old demo heard nothing, was ended by main 5 s on (130 or 143), and left both running, and the directory.
        expect(killedBy, stderr).toBeNull();
        expect(code, stderr).toBe(0);
        expect(stderr).toContain(`remotelog demo: stopped by ${signal}; its processes are stopped and its data removed\n`);
        expect(await processesNaming(tmp)).toEqual([]);
        expect(await readdir(tmp)).toEqual([]);
      } finally {
        await killLeftOver(tmp);
      }
    });
  }

  it("a demo that runs out of --timeout says so, exits 1, and leaves no process or directory behind", async () => {
    const tmp = await tempDir();
    try {
      // A hundred rounds take 40 s at least (Alice is offline 0.4 s after each): 1 s never does.
      const { code, stderr } = await runCli(["demo", "--rounds", "100", "--timeout", "1"], { env: { TMPDIR: tmp }, timeoutMs: 30_000 });
      // The old demo killed its processes, then waited for an 'exit' that had come already: Node, with nothing left to run, ended it with 0.
      expect(code, stderr).toBe(1);
      expect(stderr).toContain("remotelog: UNAVAILABLE: demo gave up after 1 s: the messages had not all arrived (--timeout SECONDS waits longer)\n");
      expect(await processesNaming(tmp)).toEqual([]);
      expect(await readdir(tmp)).toEqual([]);
    } finally {
      await killLeftOver(tmp);
    }
  });
});

describe("cli - a new user's mistakes get one clear line", () => {
  it("send --embed with a bad value names it once, with its code once", async () => {
    const dir = await tempDir();
    const run = await runCli(["send", "--unsigned", "--name", "chat", "--data", join(dir, "chat"), "--embed", "foo"], { timeoutMs: 15_000 });
    expect(run.code, run.stderr).toBe(2);
    // It was "remotelog: INVALID_ARGUMENT: INVALID_ARGUMENT: --embed takes …".
    expect(run.stderr).toBe('remotelog: INVALID_ARGUMENT: --embed takes none, all or a count, not "foo"\n');
  });

  it("restore, verify and export of a service URL without --name or --pack say which of those to give, not backup's --head-name", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const to = join(dir, "restored");
    const runs = {
      restore: await runCli(["restore", "--to", to, "--from", server.url], { timeoutMs: 15_000 }),
      verify: await runCli(["verify", "--from", server.url], { timeoutMs: 15_000 }),
      export: await runCli(["export", "--car", join(dir, "x.car"), "--from", server.url], { timeoutMs: 15_000 }),
    };
    const picks = {
      restore: "say which backup to restore with --name NAME (the name backup --head-name gave it) or --pack CID (its head pack)",
      verify: "say what to check with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)",
      export: "say what to write with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)",
    };
    for (const [verb, run] of Object.entries(runs)) {
      // It was exit 1 and "a backup in a CAS service needs --head-name NAME (or --key FILE) to record its head", flags these verbs do not have.
      expect(run.code, `${verb}: ${run.stderr}`).toBe(2);
      expect(run.stderr, verb).toBe(`remotelog: INVALID_ARGUMENT: ${server.url} is a service, with no HEAD to start from: ${picks[verb as keyof typeof picks]}\n`);
    }
    expect(existsSync(to)).toBe(false);
  });
});
