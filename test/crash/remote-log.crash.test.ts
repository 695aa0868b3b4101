import { afterEach, describe, expect, it } from "vitest";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { cleanup, collect, lines, parseJsonl, runCli, seededRandom, spawnCli, startServer, stop, tempDir, type Server } from "../helpers/processes.js";

// Fault tests: real processes, killed with SIGKILL at seeded random moments. A failure prints its seed.
afterEach(cleanup);

const SEED = Number(process.env.REMOTELOG_CRASH_SEED ?? Date.now() % 100_000);

async function localIds(dataDir: string): Promise<string[]> {
  const result = await runCli(["inspect", "log", "--data", dataDir, "--limit", "10000000"]);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { messages: { id: string }[] }).messages.map((m) => m.id);
}

/** Receives to the end and returns the delivered ids in order; every seq must follow the last. */
async function receiveAll(server: Server, stateDir: string, name: string): Promise<string[]> {
  const result = await runCli(["receive", "--unsigned", "--name", name, "--server", server.url, "--state", stateDir], { timeoutMs: 60_000 });
  expect(result.code, result.stderr).toBe(0);
  return parseJsonl<{ id: string }>(result.stdout).map((d) => d.id);
}

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once check() is true, so a kill lands while the process is at work rather than still starting. */
async function until(check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

async function fileSize(path: string): Promise<number> {
  return stat(path).then((s) => s.size, () => 0);
}

describe(`crash - SIGKILL mid-run (seed ${SEED})`, () => {
  it("sender killed mid-publish: a flush publishes the rest with no gap and no duplicate", async () => {
    const random = seededRandom(SEED);
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    for (let round = 0; round < 4; round++) {
      const before = await fileSize(join(alice, "log.bin"));
      const child = spawnCli(["send", "--unsigned", "--name", "a", "--server", server.url, "--data", alice, "--page-size", "32"]);
      const done = collect(child, lines(20_000, `round${round}`), 60_000);
      // Kill somewhere between the first durable append and the end of the publish.
      await until(async () => (await fileSize(join(alice, "log.bin"))) > before || child.exitCode !== null);
      await sleep(random() * 150);
      child.kill("SIGKILL");
      await done;
    }
    const flush = await runCli(["send", "--unsigned", "--name", "a", "--server", server.url, "--data", alice, "--page-size", "32", "--json"]);
    expect(flush.code, flush.stderr).toBe(0);
    const ids = await localIds(alice);
    expect(ids.length).toBeGreaterThan(0);
    expect(JSON.parse(flush.stdout)).toMatchObject({ published: ids.length });
    const delivered = await receiveAll(server, join(dir, "bob"), "a");
    expect(delivered).toEqual(ids);
    expect(new Set(delivered).size).toBe(delivered.length);
  });

  it("receiver killed mid-catch-up: restarts go on from the checkpoint, repeating at most the last two batches", async () => {
    const random = seededRandom(SEED + 1);
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    expect((await runCli(["send", "--unsigned", "--name", "r", "--server", server.url, "--data", alice, "--page-size", "64"], { stdin: lines(20_000) })).code).toBe(0);
    const ids = await localIds(alice);
    const batch = 100;
    const outputs: { seq: number; id: string }[] = [];
    let kills = 0;
    // Six runs are killed at random moments once they print; the seventh is left to finish.
    for (let attempt = 0; attempt < 7; attempt++) {
      const child = spawnCli(["receive", "--unsigned", "--name", "r", "--server", server.url, "--state", join(dir, "bob"), "--batch", String(batch)]);
      const done = collect(child, "", 60_000);
      let printing = false;
      child.stdout!.once("data", () => (printing = true));
      let killer: NodeJS.Timeout | undefined;
      if (attempt < 6) {
        void until(() => printing || child.exitCode !== null).then(() => {
          killer = setTimeout(() => child.kill("SIGKILL"), random() * 150);
        }, () => {});
      }
      const result = await done;
      clearTimeout(killer);
      // Whole lines only: a consumer reading a pipe sees the bytes written before the kill.
      const complete = result.stdout.slice(0, result.stdout.lastIndexOf("\n") + 1);
      outputs.push(...parseJsonl<{ seq: number; id: string }>(complete));
      if (result.signal === "SIGKILL") kills++;
      if (attempt === 6) expect(result.code, result.stderr).toBe(0);
    }
    expect(kills).toBeGreaterThan(0);
    // Every seq carries the same id each time it is printed, and dropping repeats by seq gives the log.
    const bySeq = new Map<number, string>();
    for (const d of outputs) {
      if (bySeq.has(d.seq)) expect(bySeq.get(d.seq)).toBe(d.id);
      bySeq.set(d.seq, d.id);
    }
    expect([...bySeq.keys()].sort((a, b) => a - b)).toEqual([...Array(ids.length).keys()]);
    expect([...Array(ids.length).keys()].map((seq) => bySeq.get(seq))).toEqual(ids);
    // A batch's checkpoint is saved while the next batch is printed: a kill can repeat both.
    expect(outputs.length - ids.length).toBeLessThanOrEqual(kills * 2 * batch);
  });

  it("server killed mid-send and restarted on the same data: nothing acknowledged is lost", async () => {
    const random = seededRandom(SEED + 2);
    const dir = await tempDir();
    const serverArgs = (port: number) => ["--listen", `127.0.0.1:${port}`, "--data", join(dir, "server")];
    let server = await startServer(serverArgs(0));
    const port = server.port;
    const alice = join(dir, "alice");
    for (let round = 0; round < 3; round++) {
      const sender = spawnCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", alice, "--page-size", "50", "--retry-for", "30"]);
      const done = collect(sender, lines(15_000, `round${round}`), 90_000);
      await sleep(30 + random() * 300);
      server.process.kill("SIGKILL");
      await stop(server.process);
      await sleep(random() * 300);
      server = await startServer(serverArgs(port));
      const result = await done;
      expect(result.code, result.stderr).toBe(0);
    }
    const ids = await localIds(alice);
    expect(ids).toHaveLength(45_000);
    const delivered = await receiveAll(server, join(dir, "bob"), "s");
    expect(delivered).toEqual(ids);
  });
});
