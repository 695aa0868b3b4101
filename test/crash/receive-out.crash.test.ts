import { afterEach, describe, expect, it } from "vitest";
import { appendFile, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanup, collect, lines, parseJsonl, runCli, seededRandom, spawnCli, startServer, tempDir } from "../helpers/processes.js";

// receive --out FILE, killed with SIGKILL at seeded random moments: the file must end up holding every
// message exactly once, in order. A failure prints its seed.
afterEach(cleanup);

const SEED = Number(process.env.REMOTELOG_CRASH_SEED ?? Date.now() % 100_000);

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then((s) => s.size, () => 0);
}

describe(`receive --out - exactly once across SIGKILLs (seed ${SEED})`, () => {
  it("after any number of kills, FILE holds every message once, in order", async () => {
    const random = seededRandom(SEED);
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const sent = await runCli(["send", "--unsigned", "--name", "o", "--server", server.url, "--data", alice, "--page-size", "64"], { stdin: lines(20_000) });
    expect(sent.code, sent.stderr).toBe(0);
    const out = join(dir, "lines.jsonl");
    // Something the user had in the file before stays as it is.
    await appendFile(out, '{"before":true}\n');
    const args = ["receive", "--unsigned", "--name", "o", "--server", server.url, "--state", join(dir, "bob"), "--batch", "50", "--out", out];
    let kills = 0;
    for (let attempt = 0; attempt < 12; attempt++) {
      const child = spawnCli(args);
      const done = collect(child, "", 60_000);
      const before = await sizeOf(out);
      // Kill once the run has written something, at a random moment after.
      while ((await sizeOf(out)) === before && child.exitCode === null) await sleep(2);
      await sleep(random() * 60);
      child.kill("SIGKILL");
      const result = await done;
      if (result.signal === "SIGKILL") kills++;
    }
    expect(kills).toBeGreaterThan(5);
    const last = await runCli(args, { timeoutMs: 60_000 });
    expect(last.code, last.stderr).toBe(0);
    expect(last.stdout).toBe("");
    const delivered = parseJsonl<{ seq: number; body: string; before?: boolean }>(await readFile(out, "utf8"));
    expect(delivered[0]).toEqual({ before: true });
    const bodies = delivered.slice(1).map((d) => d.body);
    expect(delivered.slice(1).map((d) => d.seq)).toEqual([...Array(20_000).keys()]);
    expect(bodies).toEqual(lines(20_000).trimEnd().split("\n"));
  });

  it("starts its lines on a line of their own in a FILE whose last line has no newline, and keeps what it held", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    expect((await runCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(3) })).code).toBe(0);
    const out = join(dir, "lines.jsonl");
    await writeFile(out, "a note of the user's, with no newline");
    const received = await runCli(["receive", "--unsigned", "--name", "s", "--server", server.url, "--state", join(dir, "bob"), "--out", out]);
    expect(received.code, received.stderr).toBe(0);
    // The first delivery was glued onto the note: neither line then parsed.
    const [note, ...delivered] = (await readFile(out, "utf8")).trimEnd().split("\n");
    expect(note).toBe("a note of the user's, with no newline");
    expect(delivered.map((line) => (JSON.parse(line) as { seq: number }).seq)).toEqual([0, 1, 2]);
  });

  it("refuses a FILE shorter than the checkpoint recorded (DataLoss) and a FILE other than the one recorded", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    expect((await runCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(10) })).code).toBe(0);
    const out = join(dir, "lines.jsonl");
    const args = (file: string) => ["receive", "--unsigned", "--name", "s", "--server", server.url, "--state", join(dir, "bob"), "--out", file];
    expect((await runCli(args(out))).code).toBe(0);
    // A second receiver writing the same FILE meanwhile is refused.
    const follower = spawnCli(["receive", "--unsigned", "--name", "s", "--server", server.url, "--state", join(dir, "carol"), "--out", out, "--follow"]);
    while ((await sizeOf(`${out}.lock`)) === 0) await sleep(5);
    const second = await runCli(["receive", "--unsigned", "--name", "s", "--server", server.url, "--state", join(dir, "dave"), "--out", out]);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain("CONFLICT");
    follower.kill("SIGKILL");
    const other = await runCli(args(join(dir, "other.jsonl")));
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain("was kept with --out");
    await truncate(out, 100);
    const short = await runCli(args(out));
    expect(short.code).not.toBe(0);
    expect(short.stderr).toMatch(/DATA_LOSS.*shorter than/);
    expect(await sizeOf(out)).toBe(100);
  });
});
