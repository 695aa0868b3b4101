import { spawnSync } from "node:child_process";
import { appendFile, mkdir, readdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { Remote } from "../../actors/remote.js";
import { encodeMessage, newMessage } from "../../core/hash.js";
import { encodePage } from "../../core/page.js";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { cleanup, collect, lines, parseJsonl, runCli, spawnCli, startServer, stop, tempDir, bodyText, type Server } from "../helpers/processes.js";
import { recordOffset, snapshot } from "../helpers/files.js";

// Issue 10 §2-§5 through real processes: the local log is never cut silently, a data directory
// belongs to one name, nothing wedges, and seeking cannot skip.

afterEach(cleanup);

/** The snapshot's files only: a writer's lock file comes and goes, which changes its directory's mtime. */
function filesOf(entries: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(entries).filter(([path]) => !path.endsWith("/")));
}

async function serve(dir: string): Promise<Server> {
  return startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
}

async function sendOk(server: Server, data: string, stdin: string, extra: string[] = ["--unsigned", "--name", "n"]) {
  const result = await runCli(["send", ...extra, "--server", server.url, "--data", data, "--json"], { stdin });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as { taken: number; appended: number; published: number; logLength: number };
}

async function publishedMark(data: string): Promise<number> {
  const [file] = await readdir(join(data, "published"));
  return (JSON.parse(await readFile(join(data, "published", file), "utf8")) as { delivered: number }).delivered;
}

async function flipByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] ^= 0xff;
  await writeFile(path, bytes);
}

describe("the local log is never cut silently", () => {
  it("a flipped byte mid-log: send, inspect log and backup --from fail with DATA_LOSS naming file, offset and seq, and change nothing", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    expect((await sendOk(server, alice, lines(300), ["--unsigned", "--name", "n", "--page-size", "50"])).published).toBe(300);
    const logPath = join(alice, "log.bin");
    const offset = await recordOffset(logPath, 150);
    await flipByte(logPath, offset + 40 + 3); // a byte of seq 150's data
    const before = await snapshot(alice);

    const inspect = await runCli(["inspect", "log", "--data", alice]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toContain(`DATA_LOSS: ${logPath} is damaged at byte ${offset}, the record of seq 150`);
    const backup = await runCli(["backup", "--from", alice, "--to", join(dir, "backup")]);
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain("DATA_LOSS");
    // The read-only verbs changed nothing at all, not even an mtime.
    expect(await snapshot(alice)).toEqual(before);
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: lines(2, "more") });
    expect(send.code).toBe(1);
    expect(send.stderr).toContain(`byte ${offset}, the record of seq 150`);
    expect(send.stderr).not.toContain("torn append");
    // Nothing moved, truncated or rewritten, and the published mark still says 300.
    expect(filesOf(await snapshot(alice))).toEqual(filesOf(before));
    expect(await publishedMark(alice)).toBe(300);

    // repair sets the damaged record aside (a copy is kept) and keeps the rest.
    const damaged = await readFile(logPath);
    const repair = await runCli(["repair", "--data", alice]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toContain(`set aside 70 bytes at byte ${offset} (seq 150)`);
    const saved = (await readdir(alice)).filter((name) => name.startsWith("repair-"));
    expect(saved).toHaveLength(1);
    expect(await readFile(join(alice, saved[0], "log.bin"))).toEqual(damaged);
    expect((await readFile(join(alice, saved[0], `damaged-${offset}.bin`))).length).toBe(70);
    const inspected = JSON.parse((await runCli(["inspect", "log", "--data", alice, "--limit", "1000"])).stdout) as { length: number; messages: { body: string }[] };
    expect(inspected.length).toBe(299);
    expect(inspected.messages.map((m) => bodyText(m))).not.toContain("message 150");

    // --from-remote refills the lost message from the sender's own remote log, checked, in its place.
    const refill = await runCli(["repair", "--data", alice, "--server", server.url, "--from-remote"]);
    expect(refill.code, refill.stderr).toBe(0);
    expect(refill.stdout).toContain('refilled 1 message(s) from the remote log of "n"');
    const refilled = JSON.parse((await runCli(["inspect", "log", "--data", alice, "--limit", "1000"])).stdout) as { length: number; messages: { body: string }[] };
    expect(refilled.messages.map((m) => bodyText(m))).toEqual(lines(300).trimEnd().split("\n"));
    expect(await publishedMark(alice)).toBe(300);
    // Running it again on the healthy log changes nothing.
    const healthy = await snapshot(alice);
    const again = await runCli(["repair", "--data", alice, "--server", server.url, "--from-remote"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("nothing to repair");
    expect(filesOf(await snapshot(alice))).toEqual(filesOf(healthy));

    // send goes on, and a backup holds all 302.
    const after = await sendOk(server, alice, lines(2, "more"));
    expect([after.logLength, after.published]).toEqual([302, 302]);
    const backedUp = await runCli(["backup", "--from", alice, "--to", join(dir, "backup2"), "--json"]);
    expect(backedUp.code, backedUp.stderr).toBe(0);
    expect(JSON.parse(backedUp.stdout)).toMatchObject({ messages: 302 });
  });

  it("a damaged length field mid-log is DATA_LOSS too, not a torn append", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(20));
    const logPath = join(alice, "log.bin");
    const offset = await recordOffset(logPath, 10);
    await flipByte(logPath, offset + 3); // the length's top byte: the record now runs past the end
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(send.code).toBe(1);
    expect(send.stderr).toContain(`byte ${offset}, the record of seq 10: its length runs past the end, yet whole records follow`);
    expect((await stat(logPath)).size).toBe((await readFile(logPath)).length);
    expect(await publishedMark(alice)).toBe(20);
  });

  it("a last record whole but for a flipped bit of its length is DATA_LOSS, not a torn append to cut, and repair keeps its message (it was cut, and a message never published lived on only in a side file)", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    // Two more appended while the server cannot be reached: acknowledged, not published.
    const offline = await runCli(["send", "--unsigned", "--name", "n", "--server", "http://127.0.0.1:1", "--data", alice, "--retry-for", "1"], { stdin: lines(2, "offline") });
    expect(offline.code).toBe(1);
    expect(offline.stderr).toContain("appended 2");
    const logPath = join(alice, "log.bin");
    const offset = await recordOffset(logPath, 4);
    const bytes = await readFile(logPath);
    bytes[offset] ^= 0x40; // the record now says it is 64 bytes longer than the file holds
    await writeFile(logPath, bytes);

    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(send.code).toBe(1);
    expect(send.stderr).toContain(`is damaged at byte ${offset}, the record of seq 4: its length field is damaged`);
    expect(await readFile(logPath)).toEqual(bytes);
    expect((await readdir(alice)).filter((name) => name.includes("tail"))).toEqual([]);

    const repair = await runCli(["repair", "--data", alice]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toContain(`kept seq 4 at byte ${offset}, whose length field was damaged`);
    expect((await sendOk(server, alice, "")).published).toBe(5);
    const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url]);
    expect(parseJsonl<{ body: string }>(received.stdout).map((line) => bodyText(line))).toEqual([...lines(3).trim().split("\n"), ...lines(2, "offline").trim().split("\n")]);
  });

  it("repair --dry-run reports what repair would set aside, keep, mend, move and write, worked out as repair works it out, and writes nothing: every byte and mtime as it was, no new file", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(20));
    await stop(server.process);
    const logPath = join(alice, "log.bin");
    const [at5, at6, at19] = await Promise.all([5, 6, 19].map((seq) => recordOffset(logPath, seq)));
    await flipByte(logPath, at5 + 40 + 3); // a byte of seq 5's data: set aside
    const bytes = await readFile(logPath);
    bytes[at19] ^= 0x40; // the last record's length now runs past the end, its data whole: mended
    await writeFile(logPath, bytes);
    const before = await snapshot(alice);

    // The old repair took no --dry-run: "USAGE: unknown option '--dry-run'", exit 2.
    const dry = await runCli(["repair", "--data", alice, "--dry-run", "--json"]);
    expect(dry.code, dry.stderr).toBe(0);
    const text = await runCli(["repair", "--data", alice, "--dry-run"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`would set aside ${at6 - at5} bytes at byte ${at5} (seq 5): damaged (its checksum does not match); would be saved to ${alice}/repair-`);
    expect(text.stdout).toContain(`would keep seq 19 at byte ${at19}, whose length field was damaged`);
    expect(text.stdout).toContain('published mark of "n" would move from 20 to 19');
    expect(text.stdout).toContain(`would repair ${alice}: 18 whole messages before, 19 of them kept, 19 after; it would write:\n`);
    expect(text.stdout).toContain(`\n  ${logPath}\n`);
    expect(text.stdout).toContain("nothing was written (--dry-run)");
    // Not a byte, an mtime or a directory entry changed, no lock file or repair-<time>/ made.
    expect(await snapshot(alice)).toEqual(before);

    // The repair itself does what the dry run said, file for file; only the time in repair-<time> differs.
    const real = await runCli(["repair", "--data", alice, "--json"]);
    expect(real.code, real.stderr).toBe(0);
    type Report = { savedIn: string; dryRun?: boolean; writes: string[]; removes: string[] };
    const dryReport = JSON.parse(dry.stdout) as Report;
    const realReport = JSON.parse(real.stdout) as Report;
    const timeless = (report: Report) => JSON.parse(JSON.stringify(report).split(report.savedIn).join("SAVED")) as Report;
    expect(dryReport.dryRun).toBe(true);
    expect(timeless(dryReport)).toEqual({ ...timeless(realReport), dryRun: true });
    const after = await snapshot(alice, { filesOnly: true });
    const changed = Object.keys(after).filter((file) => after[file] !== before[file]);
    expect(changed.sort()).toEqual(realReport.writes.map((file) => file.slice(alice.length)).sort());
    expect(realReport.removes).toEqual([]);
  });

  it("only a writer cuts a torn append, and says so; a read-only verb leaves it", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(5));
    const logPath = join(alice, "log.bin");
    const whole = (await stat(logPath)).size;
    await appendFile(logPath, Buffer.from([60, 0, 0, 0, 1, 2, 3])); // the start of a record that never finished
    const before = await snapshot(alice);
    const inspect = await runCli(["inspect", "log", "--data", alice]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout).length).toBe(5);
    expect(inspect.stderr).toContain("7 bytes of an unfinished append");
    // status reads only too: it counts the whole records, says what follows them, and cuts nothing.
    const status = await runCli(["status", "--data", alice, "--name", "n", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ messages: 5, published: 5, pending: 0, tornBytes: 7 });
    expect(status.stderr).toContain("7 bytes of an unfinished append, not counted");
    expect(await snapshot(alice)).toEqual(before);

    const send = await sendOk(server, alice, lines(1, "next"));
    expect(send.logLength).toBe(6);
    const result = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(result.code).toBe(0);
    const tails = (await readdir(alice)).filter((name) => name.startsWith(`log.bin.tail-${whole}-`));
    expect(tails).toHaveLength(1);
    expect(await readFile(join(alice, tails[0]))).toEqual(Buffer.from([60, 0, 0, 0, 1, 2, 3]));
  });

  it("a published last record cut short is damage: send says DATA_LOSS with file, offset and seq, and cuts and appends nothing", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    const logPath = join(alice, "log.bin");
    const whole = await readFile(logPath);
    const lastRecord = await recordOffset(logPath, 2);
    // The last byte of a record that was published: not an unfinished append.
    await writeFile(logPath, whole.subarray(0, whole.length - 1));
    const before = filesOf(await snapshot(alice));
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "four\n" });
    expect(send.code).toBe(1);
    expect(send.stderr).toContain(`DATA_LOSS: local log ${logPath} ends at byte ${lastRecord} in ${whole.length - 1 - lastRecord} bytes that are not a whole record, where seq 2 is, yet its first 3 messages were published`);
    // The old send cut the record (saving it aside), appended "four" as seq 2, and only then failed.
    expect(filesOf(await snapshot(alice))).toEqual(before);
  });

  it("read-only verbs (inspect log, backup --from) leave every byte and mtime of a healthy data dir as it was", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(10));
    const before = await snapshot(alice);
    expect((await runCli(["inspect", "log", "--data", alice])).code).toBe(0);
    const backup = await runCli(["backup", "--from", alice, "--to", join(dir, "backup")]);
    expect(backup.code, backup.stderr).toBe(0);
    expect((await runCli(["verify", "--from", join(dir, "backup"), "--read-data"])).code).toBe(0);
    const status = await runCli(["status", "--data", alice, "--name", "n"]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain("messages:  10 in the local log");
    expect(await snapshot(alice)).toEqual(before);
  });

  it("status leaves a directory without a log as it was (NOT_FOUND), and runs beside a send that holds the log", async () => {
    const dir = await tempDir();
    const photos = join(dir, "photos");
    await mkdir(photos);
    await writeFile(join(photos, "a.jpg"), "jpeg");
    const before = await snapshot(photos);
    const status = await runCli(["status", "--data", photos]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain(`NOT_FOUND: ${photos} holds no local log (no log.bin)`);
    expect(await snapshot(photos)).toEqual(before);

    // A send waiting on its stdin holds the writer's lock: status takes none, so it still answers.
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    const sender = spawnCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice]);
    const sent = collect(sender, undefined, 30_000, { keepStdinOpen: true });
    sender.stdin!.write("one more\n");
    // Until the send has published the line (a bounded number of tries); the old status failed with CONFLICT at once.
    let beside = await runCli(["status", "--data", alice, "--name", "n", "--json"]);
    for (let tries = 0; tries < 100 && beside.code === 0 && JSON.parse(beside.stdout).published !== 4; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      beside = await runCli(["status", "--data", alice, "--name", "n", "--json"]);
    }
    expect(beside.code, beside.stderr).toBe(0);
    expect(JSON.parse(beside.stdout)).toMatchObject({ messages: 4, published: 4, pending: 0 });
    sender.stdin!.end();
    expect((await sent).code).toBe(0);
  });
});

describe("a data directory belongs to one name and key", () => {
  it("send --key other.key --data ./alice is refused with CONFLICT naming both, and publishes nothing", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    const aliceName = (await runCli(["key", "gen", "--out", join(dir, "alice.key")])).stdout.trim();
    const otherName = (await runCli(["key", "gen", "--out", join(dir, "other.key")])).stdout.trim();
    await sendOk(server, alice, lines(3), ["--key", join(dir, "alice.key")]);
    const before = await snapshot(alice);
    const refused = await runCli(["send", "--key", join(dir, "other.key"), "--server", server.url, "--data", alice], { stdin: lines(1, "x") });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("CONFLICT");
    expect(refused.stderr).toContain(aliceName);
    expect(refused.stderr).toContain(otherName);
    expect(filesOf(await snapshot(alice))).toEqual(filesOf(before));
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      expect(await remote.fetchName(otherName)).toBeUndefined();
    } finally {
      remote.close();
    }
    // An unsigned name is another owner too.
    const unsigned = await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice], { stdin: "" });
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toContain('not to name "chat" (unsigned)');
  });

  it("status --key other.key (or --name other) --data ./alice is refused with send's CONFLICT; without either it reads the owner from the directory, and writes nothing", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    const aliceName = (await runCli(["key", "gen", "--out", join(dir, "alice.key")])).stdout.trim();
    const otherName = (await runCli(["key", "gen", "--out", join(dir, "other.key")])).stdout.trim();
    await sendOk(server, alice, lines(2), ["--key", join(dir, "alice.key")]);
    // Before the snapshot: send takes the writer's lock, whose file comes and goes in the directory.
    const sendRefused = await runCli(["send", "--key", join(dir, "other.key"), "--server", server.url, "--data", alice], { stdin: "" });
    const before = await snapshot(alice);
    // The old status said "published: 0, pending: 2 (the next send publishes them)" for the other key's name.
    const wrongKey = await runCli(["status", "--data", alice, "--key", join(dir, "other.key"), "--server", server.url]);
    expect(wrongKey.code, wrongKey.stdout).toBe(1);
    expect(wrongKey.stdout).toBe("");
    expect(wrongKey.stderr).toContain("CONFLICT");
    expect(wrongKey.stderr).toContain(aliceName);
    expect(wrongKey.stderr).toContain(otherName);
    // The same words as send's refusal: one check, not two.
    const conflict = (stderr: string) => /CONFLICT: .*/.exec(stderr)![0];
    expect(conflict(wrongKey.stderr)).toBe(conflict(sendRefused.stderr));
    const wrongName = await runCli(["status", "--data", alice, "--name", "chat", "--json"]);
    expect(wrongName.code).toBe(1);
    expect(wrongName.stderr).toContain('not to name "chat" (unsigned)');
    // Without --key or --name, the owner recorded in the directory; its own key and name are taken as before.
    const owner = await runCli(["status", "--data", alice, "--server", server.url, "--json"]);
    expect(owner.code, owner.stderr).toBe(0);
    expect(JSON.parse(owner.stdout)).toMatchObject({ name: aliceName, messages: 2, published: 2, pending: 0, head: { version: 1, messages: 2 } });
    for (const own of [["--key", join(dir, "alice.key")], ["--name", aliceName]]) {
      const ok = await runCli(["status", "--data", alice, ...own, "--json"]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ name: aliceName, published: 2, pending: 0 });
    }
    expect(await snapshot(alice)).toEqual(before);
  });

  it("a data dir from before owners were recorded adopts the first name used, and says so", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    await unlink(join(alice, "owner.json"));
    const adopted = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: "" });
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(adopted.stderr).toContain('had no recorded owner; it now belongs to "n"');
    expect(JSON.parse(await readFile(join(alice, "owner.json"), "utf8"))).toEqual({ format: 1, name: "n" });
    const other = await runCli(["send", "--unsigned", "--name", "m", "--server", server.url, "--data", alice], { stdin: "" });
    expect(other.code).toBe(1);
  });
});

describe("nothing wedges", () => {
  it("a message over the CAS's block limit is refused before it is appended; later sends go on", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(2));
    const size = (await stat(join(alice, "log.bin"))).size;
    const big = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--format", "raw"], { stdin: Buffer.alloc(2_600_000, 0x61) });
    expect(big.code).toBe(1);
    expect(big.stderr).toContain("TOO_LARGE");
    expect(big.stderr).toContain("block limit of 1048576 bytes");
    expect((await stat(join(alice, "log.bin"))).size).toBe(size);
    const after = await sendOk(server, alice, lines(1, "after"));
    expect([after.logLength, after.published]).toEqual([3, 3]);
  });

  it("two messages each under the block limit but together over the NS's are published with the default embed, and a log an older send left so goes out", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    const big = (fill: string) => fill.repeat(600_000);
    const sent = await sendOk(server, alice, `${big("a")}\n${big("b")}\n`);
    expect([sent.logLength, sent.published]).toEqual([2, 2]);
    const read = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url]);
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl<{ body: string }>(read.stdout).map((line) => line.body)).toEqual([big("a"), big("b")]);

    // What the old layout left: both appended, the head that embedded them refused by the NS every time.
    const bob = join(dir, "bob");
    await sendOk(server, bob, lines(1), ["--unsigned", "--name", "b"]);
    const log = await FileLocalLog.open(bob);
    await log.append([big("c"), big("d")].map((body, i) => encodeMessage(newMessage(new TextEncoder().encode("remotelog"), BigInt(10 + i), new TextEncoder().encode(body)))));
    await log.close();
    const resumed = await sendOk(server, bob, "", ["--unsigned", "--name", "b"]);
    expect([resumed.logLength, resumed.published]).toEqual([3, 3]);
    const all = await runCli(["receive", "--unsigned", "--name", "b", "--server", server.url]);
    expect(parseJsonl<{ body: string }>(all.stdout).map((line) => line.body.slice(0, 3))).toEqual(["mes", "ccc", "ddd"]);
  });

  it("a log already wedged by a too-large message says what to do, and repair --server unwedges it", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(2));
    // What an older send left: the message appended, never publishable.
    const log = await FileLocalLog.open(alice);
    const huge = encodeMessage(newMessage(new TextEncoder().encode("remotelog"), 1n, new Uint8Array(2_600_000)));
    await log.append([huge]);
    await log.close();
    const wedged = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice], { stdin: lines(1, "later") });
    expect(wedged.code).toBe(1);
    expect(wedged.stderr).toContain("TOO_LARGE: local message seq 2");
    expect(wedged.stderr).toContain("remotelog repair");

    const repair = await runCli(["repair", "--data", alice, "--server", server.url]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toContain(`(seq 2): ${huge.length} bytes, over the CAS's block limit of 1048576`);
    const saved = (await readdir(alice)).find((name) => name.startsWith("repair-"))!;
    expect((await stat(join(alice, saved, "set-aside-2.bin"))).size).toBe(40 + huge.length);
    const after = await sendOk(server, alice, "");
    expect([after.logLength, after.published]).toEqual([3, 3]); // message 0, message 1, "later 0"
  });

  it("a line over a smaller --max-block, appended while the server was down: the next send publishes the lines before it, then names its seq and the repair command", async () => {
    const dir = await tempDir();
    const serverData = join(dir, "server");
    const first = await startServer(["--listen", "127.0.0.1:0", "--data", serverData, "--max-block", "65536"]);
    await stop(first.process);
    const alice = join(dir, "alice");
    // Appended while the CAS could not be asked, under the 1 MiB a send then assumes.
    const offline = await runCli(["send", "--unsigned", "--name", "n", "--server", first.url, "--data", alice, "--retry-for", "1"], { stdin: `a0\na1\n${"x".repeat(100_000)}\nb0\n` });
    expect(offline.code).toBe(1);
    expect(offline.stderr).toContain("UNAVAILABLE");
    await startServer(["--listen", `127.0.0.1:${first.port}`, "--data", serverData, "--max-block", "65536"]);
    // The old send (which asks the limit when it starts) refused at seq 2 with a0 and a1 never published,
    // and every send after it the same, saying only "remotelog repair --data DIR --server URL".
    const blocked = await runCli(["send", "--unsigned", "--name", "n", "--server", first.url, "--data", alice], { stdin: "" });
    expect(blocked.code).toBe(1);
    const read = await runCli(["receive", "--unsigned", "--name", "n", "--server", first.url]);
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl<{ body: string }>(read.stdout).map((line) => line.body)).toEqual(["a0", "a1"]);
    expect(blocked.stderr).toMatch(/TOO_LARGE: local message seq 2 is 1000\d\d bytes, over the CAS's block limit of 65536 bytes/);
    expect(blocked.stderr).toContain(`remotelog repair --data ${alice} --server ${first.url}`);
    expect(blocked.stderr).toContain("2 of the log's 4 published");
  });

  it("a page that can never fit the block limit (--page-size, --embed all) is refused before anything is uploaded, saying which flag, and promises no next send", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--max-block", "65536", "--log-level", "debug"]);
    // The RPCs the server took that store something, as its debug log names them.
    const stores = () =>
      server
        .stderr()
        .split("\n")
        .filter((line) => line.includes('"rpc"'))
        .map((line) => (JSON.parse(line) as { method: string }).method)
        .filter((method) => /Add|Update/.test(method));
    // Past what a page of pairs without data can ever fit in 1 MiB: a usage error (the old send took up to 1,000,000).
    const flag = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "flag"), "--page-size", "8193"], { stdin: "one\n" });
    expect(flag.code, flag.stderr).toBe(2);
    expect(flag.stderr).toContain("--page-size");

    // 1024 pairs of ~76 bytes are over this server's 64 KiB: refused before a line is appended or a block uploaded
    // (the old send uploaded the messages and failed TOO_LARGE naming "block N").
    const alice = join(dir, "alice");
    const paged = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--page-size", "1024"], { stdin: lines(2000) });
    expect(paged.code).toBe(1);
    expect(paged.stderr).toMatch(/TOO_LARGE: a page of 1024 pairs is at least \d+ bytes, over the CAS's block limit of 65536 bytes/);
    expect(paged.stderr).toContain("--page-size");
    expect(stores()).toEqual([]);
    const status = await runCli(["status", "--data", alice, "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ messages: 0 });

    // Ten 10 KB messages all embedded are a head over 64 KiB: one publish of them (the log as a send left it).
    const bob = join(dir, "bob");
    await sendOk(server, bob, "", ["--unsigned", "--name", "b"]);
    const log = await FileLocalLog.open(bob);
    await log.append(Array.from({ length: 10 }, (_, i) => encodeMessage(newMessage(new TextEncoder().encode("remotelog"), BigInt(i), new Uint8Array(10_000).fill(97 + i)))));
    await log.close();
    const embedded = await runCli(["send", "--unsigned", "--name", "b", "--server", server.url, "--data", bob, "--embed", "all"], { stdin: "" });
    expect(embedded.code).toBe(1);
    expect(embedded.stderr).toMatch(/TOO_LARGE: a head page of 10 pairs is \d+ bytes, over the CAS's block limit of 65536 bytes/);
    expect(embedded.stderr).toContain("--embed");
    expect(stores()).toEqual([]);
    // The same flags would fail the same way: the old send promised the next one published them.
    expect(embedded.stderr).toContain("the 10 unpublished message(s) are kept in");
    expect(embedded.stderr).not.toContain("will be published by the next");
    // Another embed publishes them.
    const resumed = await sendOk(server, bob, "", ["--unsigned", "--name", "b", "--embed", "none"]);
    expect([resumed.logLength, resumed.published]).toEqual([10, 10]);
  });

  it("send with an endless stdin reports a publish that fails for good and exits non-zero", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    // Another writer replaces the log: its head no longer holds what alice published.
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const head = await remote.fetchName("n");
      await remote.updateName("n", encodePage(create(RemoteLogSchema, {})), head!.version);
    } finally {
      remote.close();
    }
    const child = spawnCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--retry-for", "1"]);
    const done = collect(child, undefined, 20_000, { keepStdinOpen: true });
    child.stdin!.write("one more\n"); // and stdin stays open
    const result = await done;
    expect(result.signal).toBeNull();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("its log was replaced");
    expect(result.stderr).toContain("this send took 1 input line(s) (appended 1; 3 of the log's 4 published)");
  });

  it("send with an endless stdin reports PERMISSION_DENIED from the NS and exits non-zero", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--require-signed"]);
    const child = spawnCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", join(dir, "chat")]);
    const done = collect(child, undefined, 20_000, { keepStdinOpen: true });
    child.stdin!.write("hello\n");
    const result = await done;
    expect(result.signal).toBeNull();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("PERMISSION_DENIED");
    expect(result.stderr).toContain("this send took 1 input line(s)");
  });

  it("a send that fails part-way says how many input lines it took; --json closes with the counts", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    const stdin = '{"body":"a"}\n{"body":"b"}\nnot json\n{"body":"d"}\n';
    const result = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--format", "jsonl", "--json"], { stdin });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("stdin line 3 is not JSON");
    expect(result.stderr).toContain("this send took 2 input line(s)");
    const [closing] = parseJsonl(result.stdout);
    expect(closing).toMatchObject({ name: "n", taken: 2, appended: 2, published: 2, error: { code: "INVALID_ARGUMENT" } });
    // Retrying with the lines after the 2 taken duplicates nothing.
    const retry = await sendOk(server, alice, '{"body":"d"}\n');
    expect([retry.logLength, retry.published]).toEqual([3, 3]);
  });
});

describe("seeking cannot skip", () => {
  it("receive --from-seq past the end fails with OUT_OF_RANGE and stores no checkpoint; --follow waits for it", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(5));
    const bob = join(dir, "bob");
    const past = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", bob, "--from-seq", "9"]);
    expect(past.code).toBe(1);
    expect(past.stderr).toContain("OUT_OF_RANGE");
    const all = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", bob]);
    expect(all.code, all.stderr).toBe(0);
    expect(parseJsonl<{ seq: number }>(all.stdout).map((d) => d.seq)).toEqual([0, 1, 2, 3, 4]);

    const follower = spawnCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", join(dir, "carol"), "--from-seq", "7", "--follow"]);
    const seen: number[] = [];
    const arrived = new Promise<void>((resolve) => {
      createInterface({ input: follower.stdout! }).on("line", (line) => {
        seen.push((JSON.parse(line) as { seq: number }).seq);
        if (seen.length >= 3) resolve();
      });
    });
    await sendOk(server, alice, lines(5, "more"));
    await arrived;
    follower.kill("SIGTERM");
    expect(seen).toEqual([7, 8, 9]);
  });

  it("receive --out FILE --from-seq below what FILE holds is refused as INVALID_ARGUMENT, writing nothing; a fresh FILE may start anywhere and skip ahead", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    await sendOk(server, join(dir, "alice"), lines(20));
    const bob = join(dir, "bob");
    const file = join(dir, "out.jsonl");
    const receive = (...extra: string[]) => runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", bob, "--out", file, ...extra]);
    const seqs = async () => parseJsonl<{ seq: number }>(await readFile(file, "utf8")).map((d) => d.seq);

    const started = await receive("--from-seq", "5");
    expect(started.code, started.stderr).toBe(0);
    expect(await seqs()).toEqual(Array.from({ length: 15 }, (_, i) => 5 + i));
    const before = await readFile(file);

    const back = await receive("--from-seq", "15");
    expect(back.code, back.stderr).toBe(1);
    expect(back.stderr).toMatch(/^remotelog: INVALID_ARGUMENT: --out \S+out\.jsonl already holds name "n"'s lines up to seq 19, and --out writes each once: --from-seq 15 would append seqs 15\.\.19 again\. Leave out --from-seq to go on from seq 20, or give another --out FILE and --state DIR to read from seq 15$/m);
    expect(back.stderr).not.toMatch(/\n\s+at /);
    expect(await readFile(file)).toEqual(before);

    // Going on, and a seek ahead: FILE still holds each seq once.
    await sendOk(server, join(dir, "alice"), lines(10, "more"));
    const ahead = await receive("--from-seq", "25");
    expect(ahead.code, ahead.stderr).toBe(0);
    const all = await seqs();
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual([...Array.from({ length: 15 }, (_, i) => 5 + i), 25, 26, 27, 28, 29]);
  });
});

describe("small things with the same cause", () => {
  /** A protobuf field: tag varint, then a varint or a length-delimited value. */
  const field = (no: number, value: number | string): Buffer => {
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
      out.push(n);
      return Buffer.from(out);
    };
    if (typeof value === "number") return Buffer.concat([varint(no * 8), varint(value)]);
    const bytes = Buffer.from(value);
    return Buffer.concat([varint(no * 8 + 2), varint(bytes.length), bytes]);
  };

  it("a file given where a directory must be is INVALID_ARGUMENT, not INTERNAL: send --data, receive --state, inspect log, restore --from, backup --from-dir, repair --data", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const file = join(dir, "a-file");
    await writeFile(file, "not a directory");
    const runs = [
      ["send", "--unsigned", "--name", "n", "--server", server.url, "--data", file],
      ["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", file],
      ["inspect", "log", "--data", file],
      ["restore", "--from", file, "--to", join(dir, "restored")],
      // These two read the log's owner.json first, and said INTERNAL with Node's ENOTDIR.
      ["backup", "--from-dir", file, "--to", join(dir, "backup")],
      ["repair", "--data", file],
    ];
    for (const args of runs) {
      const run = await runCli(args, { stdin: "" });
      expect(run.code, args.join(" ")).toBe(1);
      // It was INTERNAL with Node's bare ENOTDIR or EEXIST, as if the machine had failed.
      expect(run.stderr, args.join(" ")).toMatch(/^remotelog: INVALID_ARGUMENT: .*a file is where a directory must be \((ENOTDIR|EEXIST)\)\n$/);
    }
    expect(await readFile(file, "utf8")).toBe("not a directory");
    // And a directory given where a file must be.
    const out = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", join(dir, "bob"), "--out", dir]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^remotelog: INVALID_ARGUMENT: cannot open --out .*: a directory is where a file must be \(EISDIR\)\n$/);
  });

  it.skipIf(process.platform === "win32")("a FIFO at log.bin is refused at once, naming it, by status, inspect log, backup --from-dir, repair and send; the read-only verbs write nothing", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const data = join(dir, "alice");
    await sendOk(server, data, "one\ntwo\n");
    await stop(server.process);
    const log = join(data, "log.bin");
    await unlink(log);
    expect(spawnSync("mkfifo", [log]).status).toBe(0);
    const before = await snapshot(data);
    const refusal = `remotelog: INVALID_ARGUMENT: local log ${log} is not a regular file: it is a FIFO\n`;
    // Each waited on the FIFO for a writer that never came (killed here after 20 s, its own bound).
    for (const args of [["status", "--data", data], ["inspect", "log", "--data", data], ["backup", "--from-dir", data, "--to", join(dir, "backup")], ["repair", "--data", data]]) {
      const run = await runCli(args, { timeoutMs: 20_000 });
      expect(run.stderr, args.join(" ")).toBe(refusal);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stdout, args.join(" ")).toBe("");
    }
    // Nothing written: every file, and every directory's entries and mtime, as they were; no backup made.
    expect(await snapshot(data)).toEqual(before);
    expect(await readdir(dir)).not.toContain("backup");
    // A writer refuses it too, before appending anything (its lock file comes and goes).
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", data], { stdin: "three\n", timeoutMs: 20_000 });
    expect(send.stderr).toContain(refusal.replace("remotelog: ", ""));
    expect(send.code).toBe(1);
    expect(filesOf(await snapshot(data))).toEqual(filesOf(before));
  });

  it.skipIf(process.platform === "win32")("a FIFO at a published mark or a receiver's checkpoint is refused at once, naming it, by status, send and receive", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const data = join(dir, "alice");
    await sendOk(server, data, "one\ntwo\n");
    const state = join(dir, "bob");
    const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", state]);
    expect(received.code, received.stderr).toBe(0);
    const fifoFor = async (where: string) => {
      const [file] = (await readdir(where)).filter((name) => name.endsWith(".json"));
      const path = join(where, file);
      await unlink(path);
      expect(spawnSync("mkfifo", [path]).status).toBe(0);
      return path;
    };
    const mark = await fifoFor(join(data, "published"));
    const checkpoint = await fifoFor(state);
    // Each waited on the FIFO for a writer that never came (killed here after 20 s, its own bound).
    const status = await runCli(["status", "--data", data], { timeoutMs: 20_000 });
    expect(status.stderr).toContain(`INVALID_ARGUMENT: checkpoint ${mark} is not a regular file: it is a FIFO`);
    expect(status.code).toBe(1);
    const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", data], { stdin: "three\n", timeoutMs: 20_000 });
    expect(send.stderr).toContain(`checkpoint ${mark} is not a regular file: it is a FIFO`);
    expect(send.code).toBe(1);
    const again = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", state], { timeoutMs: 20_000 });
    expect(again.stderr).toContain(`checkpoint ${checkpoint} is not a regular file: it is a FIFO`);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe("");
  });

  it("inspect of something that is neither a CID nor a file is NOT_FOUND; of a directory, INVALID_ARGUMENT", async () => {
    const dir = await tempDir();
    const missing = await runCli(["inspect", "page", join(dir, "notacid")]);
    expect(missing.code).toBe(1);
    // It was Node's bare "ENOENT: no such file or directory", with none of the codes the README lists.
    expect(missing.stderr.trim()).toBe(`remotelog: NOT_FOUND: ${join(dir, "notacid")} is neither a CID (bafk…) nor a file here`);
    const directory = await runCli(["inspect", "message", dir]);
    expect(directory.code).toBe(1);
    expect(directory.stderr).toContain(`INVALID_ARGUMENT: ${dir} is a directory`);
  });

  it("a file to be written in a directory that does not exist is NOT_FOUND naming it: export --car, receive --out", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(3));
    expect((await runCli(["backup", "--from-dir", alice, "--to", join(dir, "backup")])).code).toBe(0);
    const missing = join(dir, "no-such-dir");
    for (const from of [["--from", join(dir, "backup")], ["--name", "n", "--from", server.url]]) {
      const exported = await runCli(["export", "--car", join(missing, "n.car"), ...from]);
      expect(exported.code, exported.stderr).toBe(1);
      // One line, no stack trace (the export from a backup was an unhandled rejection).
      expect(exported.stderr.trim().split("\n")).toEqual([`remotelog: NOT_FOUND: cannot write CAR file ${join(missing, "n.car")}: its directory ${missing} does not exist`]);
    }
    const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", join(dir, "bob"), "--out", join(missing, "n.jsonl")]);
    expect(received.code).toBe(1);
    expect(received.stderr).toContain(`NOT_FOUND: cannot write --out file ${join(missing, "n.jsonl")}: its directory ${missing} does not exist`);
    await expect(stat(missing)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a legacy MVDS message (fields 6001-6003) is refused with INVALID_ARGUMENT, not given the empty message's id", async () => {
    const legacy = Buffer.concat([field(6001, "group"), field(6002, 1_700_000_000), field(6003, "hello")]).toString("hex");
    for (const args of [["mvds", "id", legacy], ["inspect", "message", legacy]]) {
      const result = await runCli(args);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("INVALID_ARGUMENT: message is a legacy MVDS message (field 6001");
    }
    // A legacy Payload (5001-5004) too.
    const payload = await runCli(["mvds", "id", field(5004, "x").toString("hex")]);
    expect(payload.code).toBe(1);
    expect(payload.stderr).toContain("field 5004");
  });

  it("restoring a corrupt backup prints the DATA_LOSS and no unhandled-rejection trace", async () => {
    const dir = await tempDir();
    const server = await serve(dir);
    const alice = join(dir, "alice");
    await sendOk(server, alice, lines(50));
    const backupDir = join(dir, "backup");
    expect((await runCli(["backup", "--from", alice, "--to", backupDir])).code).toBe(0);
    const pack = (await readdir(backupDir)).find((name) => name.startsWith("bafk"))!;
    const bytes = await readFile(join(backupDir, pack));
    bytes[Math.floor(bytes.length / 3)] ^= 0x55;
    await writeFile(join(backupDir, pack), bytes);
    const result = await runCli(["restore", "--from", backupDir, "--to", join(dir, "restored")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`DATA_LOSS: pack ${pack}`);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).not.toContain("    at ");
  });

  it("engines names the first Node releases with every API the code uses (zlib.crc32: 20.15 and 22.2)", async () => {
    const engines = (JSON.parse(await readFile("package.json", "utf8")) as { engines: { node: string } }).engines.node;
    expect(engines).toBe("^20.15.0 || >=22.2.0");
    // What sets the bound: stores/file/local-log.ts and backup/log-file.ts checksum with it.
    expect(typeof (await import("node:zlib")).crc32).toBe("function");
    expect(await readFile("stores/file/local-log.ts", "utf8")).toContain('import { crc32 } from "node:zlib"');
  });
});
