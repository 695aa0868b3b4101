import { afterEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { ChildProcess } from "node:child_process";
import { cleanup, lines, parseJsonl, runCli, spawnCli, startServer, stop, tempDir, bodyText } from "../helpers/processes.js";
import { rpcRequests } from "../helpers/metrics.js";

afterEach(cleanup);

interface Delivered {
  name: string;
  seq: number;
  id: string;
  body: string;
}

const NAMES = ["n0", "n1", "n2", "n3", "n4"];

/** Sends count lines to name, from its own data directory, as a real `send` process. */
async function send(url: string, dir: string, name: string, count: number, from = 0): Promise<void> {
  const result = await runCli(["send", "--unsigned", "--name", name, "--server", url, "--data", join(dir, `alice-${name}`), "--page-size", "8"], { stdin: lines(count, name, from) });
  expect(result.code, result.stderr).toBe(0);
}

/** Every delivery of one name, in the order printed. */
function of(delivered: Delivered[], name: string): Delivered[] {
  return delivered.filter((d) => d.name === name);
}

function bodies(delivered: Delivered[]): string[] {
  return delivered.map((d) => bodyText(d));
}

/** A running `receive --follow`, with what it has printed so far. */
function follower(args: string[], interval: string[] = ["--interval", "50"]): { child: ChildProcess; seen: Delivered[]; stderr: () => string } {
  const child = spawnCli(["receive", "--unsigned", "--follow", ...interval, ...args]);
  const seen: Delivered[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => seen.push(JSON.parse(line)));
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  return { child, seen, stderr: () => stderr };
}

describe("receive many names - end to end through real processes", () => {
  it("reads five logs named by --name flags or by --names FILE: every message once, in order per name", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const sizes = NAMES.map((_, i) => 5 + 13 * i);
    await Promise.all(NAMES.map((name, i) => send(server.url, dir, name, sizes[i])));

    const flags = NAMES.flatMap((name) => ["--name", name]);
    const first = await runCli(["receive", "--unsigned", ...flags, "--server", server.url, "--state", join(dir, "bob"), "--concurrency", "2", "--batch", "4"]);
    expect(first.code, first.stderr).toBe(0);
    const delivered = parseJsonl<Delivered>(first.stdout);
    expect(delivered).toHaveLength(sizes.reduce((a, b) => a + b, 0));
    expect(first.stdout.split("\n").filter(Boolean).every((line) => line.startsWith('{"name":"n'))).toBe(true);
    NAMES.forEach((name, i) => {
      expect(of(delivered, name).map((d) => d.seq)).toEqual([...Array(sizes[i]).keys()]);
      expect(bodies(of(delivered, name))).toEqual(lines(sizes[i], name).trim().split("\n"));
    });

    // The same from a file, with comments, blank lines and CRLF line ends, into another state.
    const file = join(dir, "follows.txt");
    await writeFile(file, ["# whom Carol follows", "", ...NAMES.slice(0, 3), "  # the rest", `${NAMES[3]}\r`, ` ${NAMES[4]} `, ""].join("\n"));
    const fromFile = await runCli(["receive", "--unsigned", "--names", file, "--server", server.url, "--state", join(dir, "carol")]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const again = parseJsonl<Delivered>(fromFile.stdout);
    for (const name of NAMES) expect(of(again, name).map((d) => d.id)).toEqual(of(delivered, name).map((d) => d.id));
    expect(again).toHaveLength(delivered.length);

    // One checkpoint per name: the next run prints only what is new, and only on the names that have it.
    expect((await runCli(["receive", "--unsigned", ...flags, "--server", server.url, "--state", join(dir, "bob")])).stdout).toBe("");
    await send(server.url, dir, "n2", 3, sizes[2]);
    const third = parseJsonl<Delivered>((await runCli(["receive", "--unsigned", ...flags, "--server", server.url, "--state", join(dir, "bob")])).stdout);
    expect(third.map((d) => [d.name, d.seq])).toEqual([
      ["n2", sizes[2]],
      ["n2", sizes[2] + 1],
      ["n2", sizes[2] + 2],
    ]);
  });

  it("a list of one name still names its lines, and one --name prints lines as before", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    await send(server.url, dir, "solo", 3);
    const file = join(dir, "one.txt");
    await writeFile(file, "solo\n");
    const listed = await runCli(["receive", "--unsigned", "--names", file, "--server", server.url, "--state", join(dir, "a")]);
    expect(parseJsonl<Delivered>(listed.stdout).map((d) => Object.keys(d)[0])).toEqual(["name", "name", "name"]);
    const alone = await runCli(["receive", "--unsigned", "--name", "solo", "--server", server.url, "--state", join(dir, "b")]);
    expect(parseJsonl<Delivered>(alone.stdout).map((d) => Object.keys(d)[0])).toEqual(["seq", "seq", "seq"]);
  });

  it("follows several names and prints new messages on each as they arrive, in order per name", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    await Promise.all(NAMES.map((name) => send(server.url, dir, name, 10)));
    const file = join(dir, "follows.txt");
    await writeFile(file, [...NAMES, "late"].join("\n"));
    const f = follower(["--names", file, "--server", server.url, "--state", join(dir, "bob"), "--concurrency", "3"]);
    await expect.poll(() => f.seen.length, { timeout: 15_000 }).toBe(50);
    await expect.poll(f.stderr, { timeout: 10_000 }).toMatch(/name "late" has no remote log yet; waiting for it/);

    for (let round = 0; round < 3; round++) {
      await Promise.all(["n1", "n3", "late"].map((name) => send(server.url, dir, name, 4, name === "late" ? 4 * round : 10 + 4 * round)));
      await expect.poll(() => f.seen.length, { timeout: 10_000 }).toBe(50 + 12 * (round + 1));
    }
    for (const name of [...NAMES, "late"]) {
      const got = of(f.seen, name);
      const expected = name === "late" ? 12 : name === "n1" || name === "n3" ? 22 : 10;
      expect(got.map((d) => d.seq)).toEqual([...Array(expected).keys()]);
      expect(bodies(got)).toEqual(lines(expected, name).trim().split("\n"));
    }
    await stop(f.child, "SIGTERM");
    expect(f.child.exitCode).toBe(0);
  });

  // With the default interval (30 s behind WatchMany pushes) nothing but the broken stream tells the
  // idle names the server went away: they are synced when it is reopened.
  it.each([
    ["--interval 50", ["--interval", "50"]],
    ["the default interval", []],
  ])("keeps following through a server restart (%s): each name says it is unreachable, is retried, and reads again", async (_, interval) => {
    const dir = await tempDir();
    const first = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    await Promise.all(["a", "b", "c"].map((name) => send(first.url, dir, name, 5)));
    const f = follower(["--name", "a", "--name", "b", "--name", "c", "--name", "none-yet", "--server", first.url, "--state", join(dir, "bob")], interval);
    await expect.poll(() => f.seen.length, { timeout: 15_000 }).toBe(15);
    await stop(first.process);
    await expect.poll(f.stderr, { timeout: 10_000 }).toMatch(/name "b": UNAVAILABLE: .*retrying with backoff/);
    const second = await startServer(["--listen", `127.0.0.1:${first.port}`, "--data", join(dir, "server")]);
    await Promise.all(["a", "c"].map((name) => send(second.url, dir, name, 2, 5)));
    await expect.poll(() => f.seen.length, { timeout: 15_000 }).toBe(19);
    await expect.poll(f.stderr, { timeout: 10_000 }).toMatch(/name "b" reads again/);
    // A name with no log yet is still waited for: before, it too was said to read again.
    expect(f.stderr()).not.toMatch(/name "none-yet" reads again/);
    expect(bodies(of(f.seen, "a"))).toEqual(lines(7, "a").trim().split("\n"));
    expect(bodies(of(f.seen, "c"))).toEqual(lines(7, "c").trim().split("\n"));
    await stop(f.child, "SIGTERM");
    expect(f.child.exitCode).toBe(0);
  });

  it("an NS that refuses the watch (its per-address limit) is said once, and its names are polled, not all synced again at every retry", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--max-watches-per-address", "5"]);
    const names = Array.from({ length: 20 }, (_, i) => `w${i}`);
    for (const name of names) await send(server.url, dir, name, 1);
    const file = join(dir, "names");
    await writeFile(file, names.join("\n") + "\n");
    const f = follower(["--names", file, "--server", server.url, "--state", join(dir, "bob")], []);
    while (f.seen.length < names.length) await new Promise((resolve) => setTimeout(resolve, 50));
    const fetches = () => rpcRequests(server.url, "vac.cas.NS/Fetch");
    // Idle for 8 s, well inside the first 30 s poll: the old follower synced every name again at each
    // retry of the refused watch (0.1, 0.2, 0.4 ... 5 s apart), a Fetch each, and said nothing.
    const before = await fetches();
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    expect(await fetches()).toBe(before);
    expect(f.stderr()).toMatch(/remotelog receive: the NS refused to push updates of 20 names \(TOO_LARGE: .*\); they are polled instead/);
    expect(f.stderr().match(/refused to push/g)).toHaveLength(1);
    f.child.kill("SIGTERM");
  }, 60_000);

  it("a checkpoint that cannot be saved ends the run with the error, where each retry delivered the name's last batches again, for ever", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    await Promise.all(["k0", "k1"].map((name) => send(server.url, dir, name, 3)));
    const state = join(dir, "bob");
    const f = follower(["--name", "k0", "--name", "k1", "--server", server.url, "--state", state]);
    await expect.poll(() => f.seen.length, { timeout: 15_000 }).toBe(6);
    // k0's checkpoint file becomes a directory with something in it: its next save (a rename onto it) fails, as on a full or broken disk.
    const file = join(state, `${createHash("sha256").update("k0", "utf8").digest("hex")}.json`);
    // A batch is printed before its checkpoint is saved: wait for the save (its rename) to be done.
    await expect.poll(() => existsSync(file), { timeout: 15_000 }).toBe(true);
    await rm(file);
    await mkdir(join(file, "in-the-way"), { recursive: true });
    await send(server.url, dir, "k0", 2, 3);
    // It may have ended before send did.
    const code = f.child.exitCode ?? (await new Promise<number | null>((resolve) => f.child.once("exit", resolve)));
    expect(code).toBe(1);
    expect(f.stderr()).toMatch(/INTERNAL|EISDIR|directory/);
    // The two new messages of k0 came out once.
    expect(of(f.seen, "k0").map((d) => d.seq)).toEqual([0, 1, 2, 3, 4]);
  }, 60_000);

  it("a name that fails is reported by name, the others are all delivered, and the exit code is 1", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    await Promise.all(["n0", "n1"].map((name) => send(server.url, dir, name, 20)));
    const result = await runCli(["receive", "--unsigned", "--name", "n0", "--name", "ghost", "--name", "n1", "--server", server.url, "--state", join(dir, "bob")]);
    expect(result.code).toBe(1);
    const delivered = parseJsonl<Delivered>(result.stdout);
    for (const name of ["n0", "n1"]) expect(of(delivered, name).map((d) => d.seq)).toEqual([...Array(20).keys()]);
    expect(result.stderr).toMatch(/name "ghost": NOT_FOUND: name "ghost" has no remote log yet/);
    expect(result.stderr).toMatch(/NOT_FOUND: 1 of 3 names failed: "ghost"/);
  });

  it("refuses, as usage errors, a name given twice, a free-form name without --unsigned, and a names file that is missing or empty", async () => {
    const dir = await tempDir();
    const base = ["--server", "http://127.0.0.1:9", "--state", join(dir, "bob")];
    const twice = join(dir, "twice.txt");
    await writeFile(twice, "a\nb\n# c\na\n");
    const empty = join(dir, "empty.txt");
    await writeFile(empty, "# nobody yet\n\n");
    const cases: [string[], RegExp][] = [
      [["--unsigned", "--names", twice], /name "a" is given twice \(.*twice\.txt line 1, .*twice\.txt line 4\)/],
      [["--unsigned", "--name", "b", "--name", "b"], /name "b" is given twice \(--name, --name\)/],
      [["--unsigned", "--name", "a", "--names", twice], /name "a" is given twice \(--name, .*twice\.txt line 1\)/],
      [["--name", "chat", "--name", "news"], /"chat" is not a key name \(k51…\), so nothing vouches for its heads \(and 1 more: "news"\); pass --unsigned/],
      [["--unsigned", "--names", join(dir, "nope.txt")], /cannot read --names .*nope\.txt/],
      [["--unsigned", "--names", empty], /holds no name/],
      [["--unsigned"], /--name NAME \(repeatable\) or --names FILE/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(["receive", ...args, ...base]);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
