import { afterEach, describe, expect, it } from "vitest";
import { mkdir, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanup, lines, runCli, startServer, stop, tempDir } from "../helpers/processes.js";
import { recordOffset, snapshot } from "../helpers/files.js";

// The user's own files, through real processes: a verb that refuses, or only reads, leaves every file
// as it was, and says what it found.
afterEach(cleanup);

describe("send on a data directory whose log.bin is gone", () => {
  it("is NOT_FOUND naming the missing file, and creates nothing, when its published mark says messages went out; a fresh directory is still made", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const send = (data: string, stdin: string) => runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", data], { stdin });
    expect((await send(alice, lines(30))).code).toBe(0);
    const backup = await runCli(["backup", "--from-dir", alice, "--to", join(dir, "backup")]);
    expect(backup.code, backup.stderr).toBe(0);
    const logPath = join(alice, "log.bin");
    await unlink(logPath);
    const before = await snapshot(alice, { filesOnly: true });

    const refused = await send(alice, "one more\n");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`NOT_FOUND: local log ${logPath} is missing, yet 30 messages were published from it`);
    expect(refused.stderr).toContain("nothing was created or written");
    // The old send made an empty log.bin, then called it damaged ("ends after 0 whole records"), and
    // status counted it from then on as a log of 0 messages, exit 0.
    expect(refused.stderr).not.toContain("DATA_LOSS");
    expect(await snapshot(alice, { filesOnly: true })).toEqual(before);
    const status = await runCli(["status", "--data", alice, "--json"]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain(`NOT_FOUND: ${alice} holds no local log (no log.bin)`);

    // What the error offers works: the log rebuilt from a backup goes on from where it was.
    const restored = await runCli(["restore", "--from", join(dir, "backup"), "--to", alice, "--force"]);
    expect(restored.code, restored.stderr).toBe(0);
    const resumed = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--json"], { stdin: "one more\n" });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ appended: 1, published: 31, logLength: 31 });

    // A directory with no published mark and no log is a new sender's: made as before.
    const fresh = join(dir, "fresh");
    expect((await send(fresh, lines(2))).code).toBe(0);
    expect((await stat(join(fresh, "log.bin"))).size).toBeGreaterThan(0);
  });
});

/** Offset of the record of seq in log.bin (records: u32 length, 32-byte id, u32 crc, data). */
describe("status and inspect log on a local log that lost published messages", () => {
  it("print what the log holds, then fail with send's DATA_LOSS naming file, offset and seq, writing nothing; the repair it names makes them whole", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const sent = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--page-size", "50"], { stdin: lines(300) });
    expect(sent.code, sent.stderr).toBe(0);
    const logPath = join(alice, "log.bin");
    const cut = await recordOffset(logPath, 150);
    // Cut inside seq 150, 300 published: what is left after the whole records is no unfinished append.
    await writeFile(logPath, (await readFile(logPath)).subarray(0, cut + 50));
    const before = await snapshot(alice, { filesOnly: true });
    const damage = `DATA_LOSS: local log ${logPath} ends at byte ${cut} in 50 bytes that are not a whole record, where seq 150 is, yet its first 300 messages were published`;

    const status = await runCli(["status", "--data", alice, "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ name: "n", messages: 150, published: 300, pending: 0, tornBytes: 50 });
    expect(status.stderr).toContain(damage);
    expect(status.code).toBe(1);
    // The old status exited 0, promising that the next send would save those bytes and cut them.
    expect(status.stderr).not.toContain("the next `remotelog send` saves them");
    const inspect = await runCli(["inspect", "log", "--data", alice, "--limit", "1"]);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ length: 150, messages: [{ seq: 0 }] });
    expect(inspect.stderr).toContain(damage);
    expect(inspect.code).toBe(1);
    // Send says the same, and so refuses.
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(send.code).toBe(1);
    expect(send.stderr).toContain(damage);
    expect(await snapshot(alice, { filesOnly: true })).toEqual(before);

    // What the three advise does what it says.
    expect(status.stderr).toContain(`remotelog repair --data ${alice} --server URL --from-remote`);
    const repair = await runCli(["repair", "--data", alice, "--server", server.url, "--from-remote"]);
    expect(repair.code, repair.stderr).toBe(0);
    const repaired = await runCli(["status", "--data", alice, "--json"]);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ messages: 300, published: 300, pending: 0, tornBytes: 0 });
    expect((await runCli(["inspect", "log", "--data", alice, "--limit", "0"])).code).toBe(0);
  });

  it("a published/ that is not a directory is send's INVALID_ARGUMENT, not 0 published and everything pending", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const sent = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: lines(5) });
    expect(sent.code, sent.stderr).toBe(0);
    await rm(join(alice, "published"), { recursive: true });
    await writeFile(join(alice, "published"), "not a directory\n");
    const before = await snapshot(alice, { filesOnly: true });

    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(send.code).toBe(1);
    const refusal = /INVALID_ARGUMENT: cannot read checkpoint \S+: a file is where a directory must be \(ENOTDIR\)/.exec(send.stderr)?.[0];
    expect(refusal, send.stderr).toBeDefined();
    for (const args of [["status", "--data", alice, "--json"], ["inspect", "log", "--data", alice]]) {
      const result = await runCli(args);
      // The old status printed published 0, pending 5 (the next send publishes them), exit 0.
      expect(result.stderr, args.join(" ")).toContain(refusal);
      expect(result.stdout, args.join(" ")).toBe("");
      expect(result.code, args.join(" ")).toBe(1);
    }
    expect(await snapshot(alice, { filesOnly: true })).toEqual(before);
  });
});

describe("gc --data DIR --dry-run", () => {
  it("writes nothing under DIR, not even LevelDB's own files, and counts what the run then removes; a server holding DIR is still CONFLICT", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const args = ["--listen", "127.0.0.1:0", "--data", data];
    let server = await startServer(args);
    for (const name of ["alice", "retired"]) {
      const sent = await runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", join(dir, name), "--embed", "none", "--page-size", "20"], { stdin: lines(100, name) });
      expect(sent.code, sent.stderr).toBe(0);
    }
    await stop(server.process);
    const ns = join(data, "ns");
    const nsBefore = await readdir(ns);
    const before = await snapshot(data);
    // The copy a dry run reads the names from goes here, so that what it leaves behind is seen.
    const tmp = join(dir, "tmp");
    await mkdir(tmp);
    const gc = (extra: string[]) => runCli(["gc", "--data", data, "--grace", "0s", "--drop-name", "retired", "--json", ...extra], { env: { TMPDIR: tmp } });

    const dry = await gc(["--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    // The old dry run opened the name store read-write: LevelDB wrote a new MANIFEST, CURRENT, .log and LOG.
    expect(await readdir(ns)).toEqual(nsBefore);
    expect(await snapshot(data)).toEqual(before);
    expect(await readdir(tmp)).toEqual([]);
    const wouldRemove = JSON.parse(dry.stdout);
    expect(wouldRemove).toMatchObject({ dryRun: true, droppedNames: ["retired"], roots: 1 });
    expect(wouldRemove.removedBlocks).toBeGreaterThan(100);

    server = await startServer(args);
    const held = await gc(["--dry-run"]);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(/CONFLICT: .* is in use.*gc --server URL/);
    await stop(server.process);
    expect(await readdir(tmp)).toEqual([]);

    const run = await gc([]);
    expect(run.code, run.stderr).toBe(0);
    const removed = JSON.parse(run.stdout);
    expect(removed).toMatchObject({ dryRun: false, droppedNames: ["retired"], roots: 1, marked: wouldRemove.marked, removedBlocks: wouldRemove.removedBlocks, freedBytes: wouldRemove.freedBytes });
    server = await startServer(args);
    const read = await runCli(["cat", "alice", "--unsigned", "--server", server.url]);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trimEnd().split("\n")).toHaveLength(100);
  });
});
