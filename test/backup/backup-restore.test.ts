import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CarReader } from "@ipld/car/reader";
import { cleanup, collect, runCli, spawnCli, startServer, stop, tempDir, lines } from "../helpers/processes.js";
import { startDelayProxy } from "../../bench/delay-proxy.js";
import { randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { deflateBody, encodePack, splitIntoPacks } from "../../backup/pack-format.js";
import { runBackup } from "../../backup/backup.js";
import { runRestore } from "../../backup/restore.js";
import { LocalLogSource } from "../../backup/local-source.js";
import { DirPackStore } from "../../backup/pack-store.js";
import { addressOf, addressText, decodeMessage, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { Remote } from "../../actors/remote.js";
import { readLog, writeLog } from "./helpers.js";
import { rpcRequests } from "../helpers/metrics.js";
import { damageStoredBlock } from "../helpers/damage.js";

afterEach(cleanup);

const json = (text: string) => JSON.parse(text.trim().split("\n").pop()!) as Record<string, unknown>;

/** A log of 3,000 small messages backed up into a chain of 16 KiB packs: the backup's args, summary and pack files (sorted). */
async function smallPacks() {
  const dir = await tempDir();
  const log = join(dir, "alice");
  const packs = join(dir, "packs");
  await writeLog(log, 3000, { bodySize: 20 });
  const args = ["backup", "--from", log, "--to", packs, "--pack-size", "16KiB", "--no-compress", "--json"];
  const first = json((await runCli(args)).stdout);
  const chain = (await readdir(packs)).filter((name) => name.startsWith("b")).sort();
  return { log, packs, args, first, chain };
}

describe("backup - local log to a directory", () => {
  it("backs up everything, then only what is new, and restores a log a sender can go on from", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    const packs = join(dir, "packs");
    const first = await writeLog(log, 3000, { bodySize: 100 });

    const full = await runCli(["backup", "--from", log, "--to", packs, "--pack-size", "64KiB", "--json"]);
    expect(full.code, full.stderr).toBe(0);
    const one = json(full.stdout);
    expect(one).toMatchObject({ messages: 3000, added: 3000, logName: "alice" });
    expect(one.packs as number).toBeGreaterThan(3);
    expect((await readFile(join(packs, "HEAD"), "utf8")).trim()).toBe(one.head);

    // Nothing new: the head stays, nothing is written.
    const same = json((await runCli(["backup", "--from", log, "--to", packs, "--json"])).stdout);
    expect(same).toMatchObject({ head: one.head, added: 0, packs: 0 });

    const later = await writeLog(log, 250, { from: 5000 });
    const before = new Set(await readdir(packs));
    const incremental = json((await runCli(["backup", "--from", log, "--to", packs, "--pack-size", "64KiB", "--json"])).stdout);
    expect(incremental).toMatchObject({ previous: one.head, messages: 3250, added: 250, packs: 1 });
    const added = (await readdir(packs)).filter((name) => !before.has(name));
    expect(added).toEqual([incremental.head]);

    const verify = await runCli(["verify", "--from", packs, "--read-data"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^ok: \d+ packs, 3250 messages/m);

    const restored = join(dir, "restored");
    const restore = await runCli(["restore", "--from", packs, "--to", restored, "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(json(restore.stdout)).toMatchObject({ messages: 3250, logName: "alice" });
    const back = await readLog(restored);
    expect(back.map((m) => Buffer.from(m).toString("hex"))).toEqual([...first, ...later].map((m) => Buffer.from(m).toString("hex")));

    // A sender goes on from the restored log: its publish carries every message.
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const send = await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", restored, "--json"], { stdin: lines(2) });
    expect(send.code, send.stderr).toBe(0);
    expect(json(send.stdout)).toMatchObject({ appended: 2, published: 3252 });
  });

  it("packs a long log as it reads it, a chunk at a time, and cuts the packs as reading it whole would", async () => {
    const dir = await tempDir();
    const log = join(dir, "long");
    const written = await writeLog(log, 40_000, { bodySize: 60 });
    const source = await LocalLogSource.open(log);
    // The chunks the backup has taken from the source when each pack is stored.
    let taken = 0;
    const takenAtPut: number[] = [];
    const readSince = source.readSince.bind(source);
    source.readSince = async (after) => {
      const read = await readSince(after);
      const chunks = read.chunks;
      return {
        ...read,
        chunks: (async function* () {
          for await (const chunk of chunks) {
            taken++;
            yield chunk;
          }
        })(),
      };
    };
    const target = new DirPackStore(join(dir, "packs"));
    const put = target.put.bind(target);
    target.put = async (packs) => (takenAtPut.push(taken), put(packs));
    const summary = await runBackup({ source, target, packSize: 64 << 10 });
    await source.close();
    expect(summary).toMatchObject({ messages: 40_000, added: 40_000 });
    // Three chunks of at most 16,384 messages; the first packs went out before the second was read.
    expect(taken).toBe(3);
    expect(takenAtPut[0]).toBe(1);
    expect(takenAtPut.filter((n) => n === 1).length).toBeGreaterThan(1);
    // The same cut as splitIntoPacks over the whole log, and the log restores as it was.
    expect(summary.packs).toBe(splitIntoPacks(written, 64 << 10, "long").length);
    const restored = join(dir, "restored");
    const restore = await runCli(["restore", "--from", join(dir, "packs"), "--to", restored]);
    expect(restore.code, restore.stderr).toBe(0);
    expect((await readLog(restored)).map((m) => toHex(m))).toEqual(written.map((m) => toHex(m)));
  });

  it("cuts a log into packs of at most 2 MiB by default, so that a restore shares them out between its threads", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    const packs = join(dir, "packs");
    const messages = await writeLog(log, 3000, { bodySize: 1000 }); // ~3 MB of random bodies, which stay as they are
    const backup = await runCli(["backup", "--from", log, "--to", packs, "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(json(backup.stdout)).toMatchObject({ messages: 3000, packs: 2 });
    const files = (await readdir(packs)).filter((name) => name !== "HEAD");
    expect(files).toHaveLength(2);
    for (const name of files) expect((await readFile(join(packs, name))).length).toBeLessThanOrEqual(2 << 20);
    const restore = await runCli(["restore", "--from", packs, "--to", join(dir, "restored"), "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(json(restore.stdout)).toMatchObject({ messages: 3000, packs: 2 });
    expect((await readLog(join(dir, "restored"))).map((m) => toHex(m))).toEqual(messages.map((m) => toHex(m)));
  });

  it("removes what a killed restore into the same target left beside it, and not what a live one is building", async () => {
    const dir = await tempDir();
    await writeLog(join(dir, "alice"), 50);
    expect((await runCli(["backup", "--from", join(dir, "alice"), "--to", join(dir, "packs")])).code).toBe(0);
    const target = join(dir, "target");
    // A SIGKILL skips a restore's own clean-up: its building directory, as big as the log, stayed for good.
    const exited = spawnSync(process.execPath, ["-e", "0"]);
    const killed = `${target}.restoring-${exited.pid}-0badc0de`;
    const live = `${target}.restoring-${process.pid}-00c0ffee`;
    for (const leftover of [killed, live]) {
      await mkdir(leftover);
      await writeFile(join(leftover, "log.bin"), randomBytes(1000));
    }
    const restore = await runCli(["restore", "--from", join(dir, "packs"), "--to", target]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await readLog(target)).toHaveLength(50);
    expect((await readdir(dir)).filter((name) => name.startsWith("target.")).map((name) => join(dir, name))).toEqual([live]);
  });

  it("refuses a log whose published records are no longer whole, with DATA_LOSS naming file, offset and seq, and writes no backup", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const alice = join(dir, "alice");
    const sent = await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", alice], { stdin: lines(300) });
    expect(sent.code, sent.stderr).toBe(0);
    // The last ~15 published records, and part of one more, are gone.
    const log = join(alice, "log.bin");
    const bytes = await readFile(log);
    await writeFile(log, bytes.subarray(0, bytes.length - 1000));
    const packs = join(dir, "packs");
    // The old backup read the 284 whole records, as if the rest were an append in progress, and exited 0.
    const backup = await runCli(["backup", "--from", alice, "--to", packs]);
    expect(backup.code, backup.stdout).toBe(1);
    expect(backup.stderr).toMatch(new RegExp(`DATA_LOSS: local log ${log.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} ends at byte \\d+ in \\d+ bytes that are not a whole record, where seq 28\\d is, yet its first 300 messages were published`));
    await expect(readdir(packs)).rejects.toThrow();
    expect(await readFile(log)).toEqual(bytes.subarray(0, bytes.length - 1000));
  });

  it("a log restored into another directory is told how to go on backing up into its old target (--log-name)", async () => {
    const dir = await tempDir();
    const log = join(dir, "log");
    await writeLog(log, 50);
    const packs = join(dir, "packs");
    expect((await runCli(["backup", "--from-dir", log, "--to", packs])).code).toBe(0);
    const restored = join(dir, "log-restored");
    expect((await runCli(["restore", "--from", packs, "--to", restored])).code).toBe(0);
    const refused = await runCli(["backup", "--from-dir", restored, "--to", packs]);
    expect(refused.code).toBe(1);
    // The old message stopped at the two names.
    expect(refused.stderr).toContain(`holds a backup of log "log", not of "log-restored"; if this is that log in another directory (restored or moved), give --log-name "log"`);
    const named = await runCli(["backup", "--from-dir", restored, "--to", packs, "--log-name", "log", "--json"]);
    expect(named.code, named.stderr).toBe(0);
    expect(json(named.stdout)).toMatchObject({ messages: 50, added: 0 });
  });

  it("refuses a non-empty target unless --force", async () => {
    const dir = await tempDir();
    await writeLog(join(dir, "alice"), 50);
    expect((await runCli(["backup", "--from", join(dir, "alice"), "--to", join(dir, "packs")])).code).toBe(0);
    const target = join(dir, "target");
    await writeLog(target, 5);
    const refused = await runCli(["restore", "--from", join(dir, "packs"), "--to", target]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFLICT: .*not empty/);
    expect(await readLog(target)).toHaveLength(5);
    const forced = await runCli(["restore", "--from", join(dir, "packs"), "--to", target, "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(await readLog(target)).toHaveLength(50);
  });

  it("restore --force moves a sender's directory aside whole (log, published marks, owner) and restores into a fresh one that send goes on from", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const bob = join(dir, "bob");
    const key = join(dir, "bob.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const send = (count: number, from: number) => runCli(["send", "--key", key, "--server", server.url, "--data", bob], { stdin: lines(count, "b", from) });
    expect((await send(100, 0)).code).toBe(0);
    expect((await runCli(["backup", "--from", bob, "--to", join(dir, "packs")])).code).toBe(0);
    expect((await send(100, 100)).code).toBe(0);
    const before = await readFile(join(bob, "log.bin"));
    const [published, owner] = [await readdir(join(bob, "published")), await readFile(join(bob, "owner.json"))];

    const restore = await runCli(["restore", "--from", join(dir, "packs"), "--to", bob, "--force", "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    // The old code deleted log.bin (200 messages, no copy anywhere) and kept the marks of 200 published.
    const aside = (await readdir(dir)).filter((name) => name.startsWith("bob.replaced-"));
    expect(aside).toHaveLength(1);
    const replaced = join(dir, aside[0]);
    expect(json(restore.stdout)).toMatchObject({ messages: 100, replaced });
    expect(restore.stderr).toContain(`what was in ${bob} is now in ${replaced}`);
    expect(await readFile(join(replaced, "log.bin"))).toEqual(before);
    expect(await readdir(join(replaced, "published"))).toEqual(published);
    expect(await readFile(join(replaced, "owner.json"))).toEqual(owner);
    expect((await readdir(replaced)).sort()).toEqual(["log.bin", "owner.json", "published"]);

    // The target is the restored log alone: nothing of the log it replaced is mixed into it.
    expect(await readdir(bob)).toEqual(["log.bin"]);
    expect(await readLog(bob)).toHaveLength(100);
    const status = await runCli(["status", "--data", bob, "--key", key, "--server", server.url]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stderr).not.toContain("lost messages");
    const next = await send(1, 500);
    expect(next.code, next.stderr).toBe(0);
    expect(await readLog(bob)).toHaveLength(101);
  });

  it("running the backup again rewrites a pack file damaged in place (same name and size), and leaves whole ones as they are", async () => {
    const { packs, args, first, chain } = await smallPacks();
    expect(chain.length).toBeGreaterThan(2);
    const [victim, whole] = chain.filter((name) => name !== first.head);
    const good = await readFile(join(packs, victim));
    const damaged = Buffer.from(good);
    damaged[200] ^= 0xff;
    await writeFile(join(packs, victim), damaged);
    const wholeInode = (await stat(join(packs, whole))).ino;
    expect((await runCli(["verify", "--from", packs])).stdout).toContain(`FAULT ${victim}: DATA_LOSS: pack ${victim} does not hash to its address`);

    // Start over into the same directory: the same deterministic packs are put again.
    await rm(join(packs, "HEAD"));
    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(0);
    expect(json(again.stdout)).toMatchObject({ head: first.head, packs: first.packs });
    // The old code took any file of the right name and size for the pack, and verify still failed.
    expect(await readFile(join(packs, victim))).toEqual(good);
    const verify = await runCli(["verify", "--from", packs, "--read-data"]);
    expect(verify.code, verify.stdout).toBe(0);
    expect((await stat(join(packs, whole))).ino).toBe(wholeInode);
    expect((await readdir(packs)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("refuses to add to a chain an older pack of which is missing, naming it, and writes nothing (the old code added a pack no restore could reach, and exited 0)", async () => {
    const { log, packs, args, first, chain } = await smallPacks();
    const missing = chain.find((name) => name !== first.head)!;
    await rm(join(packs, missing));
    await writeLog(log, 10, { from: 9000 });
    const listed = (await readdir(packs)).sort();
    const head = await readFile(join(packs, "HEAD"));

    for (const more of [args, [...args.slice(0, -1)]]) {
      const refused = await runCli(more);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`NOT_FOUND: the backup in ${packs} is broken, so nothing was added to it: pack ${missing}`);
      expect(refused.stderr).toContain(`remotelog verify --from ${packs}`);
      expect((await readdir(packs)).sort()).toEqual(listed);
      expect(await readFile(join(packs, "HEAD"))).toEqual(head);
    }
  });

  it("restore --to a file (or a path under one) is INVALID_ARGUMENT saying so, and the file is left as it was", async () => {
    const dir = await tempDir();
    await writeLog(join(dir, "alice"), 10);
    expect((await runCli(["backup", "--from", join(dir, "alice"), "--to", join(dir, "packs")])).code).toBe(0);
    const file = join(dir, "alice", "log.bin");
    const before = await readFile(file);
    for (const to of [file, join(file, "sub")]) {
      for (const force of [[], ["--force"]]) {
        const restore = await runCli(["restore", "--from", join(dir, "packs"), "--to", to, ...force]);
        expect(restore.code, to).toBe(1);
        // It was INTERNAL with Node's bare ENOTDIR, as if the machine had failed.
        expect(restore.stderr).toBe(`remotelog: INVALID_ARGUMENT: cannot read ${to}: a file is where a directory must be (ENOTDIR)\n`);
      }
    }
    expect(await readFile(file)).toEqual(before);
    expect((await readdir(join(dir, "alice"))).sort()).toEqual(["log.bin"]);
  });

  it("names a corrupt or a missing pack, exits 1, and restore refuses it", async () => {
    const dir = await tempDir();
    await writeLog(join(dir, "alice"), 2000, { bodySize: 100 });
    const packs = join(dir, "packs");
    const backup = json((await runCli(["backup", "--from", join(dir, "alice"), "--to", packs, "--pack-size", "64KiB", "--json"])).stdout);
    const chain = (await readdir(packs)).filter((name) => name.startsWith("b")).sort();
    const victim = chain.find((name) => name !== backup.head)!;

    const bytes = await readFile(join(packs, victim));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await writeFile(join(packs, victim), bytes);
    const corrupt = await runCli(["verify", "--from", packs]);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stdout).toContain(`FAULT ${victim}: DATA_LOSS: pack ${victim} does not hash to its address`);
    const refused = await runCli(["restore", "--from", packs, "--to", join(dir, "r1")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(victim);
    await expect(readdir(join(dir, "r1"))).rejects.toThrow();

    await rm(join(packs, victim));
    const missing = await runCli(["verify", "--from", packs, "--json"]);
    expect(missing.code).toBe(1);
    const report = json(missing.stdout);
    expect(report.faults).toEqual([expect.objectContaining({ object: victim, code: "NOT_FOUND" })]);
    expect((await runCli(["restore", "--from", packs, "--to", join(dir, "r2")])).stderr).toMatch(new RegExp(`NOT_FOUND: pack ${victim}.* is missing`));
  });

  it("names a pack its CAS found damaged, with DATA_LOSS said once", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    await writeLog(join(dir, "alice"), 200, { bodySize: 100 });
    const backedUp = await runCli(["backup", "--from", join(dir, "alice"), "--to", server.url, "--head-name", "alice-backup", "--json"]);
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const head = json(backedUp.stdout).head as string;
    // The same log into a directory makes the same pack: its bytes, to find where the server keeps them.
    expect((await runCli(["backup", "--from", join(dir, "alice"), "--to", join(dir, "packs")])).code).toBe(0);
    const pack = await readFile(join(dir, "packs", head));
    await stop(server.process);
    expect(await damageStoredBlock(data, pack)).toBeGreaterThan(0);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const refused = await runCli(["restore", "--from", server.url, "--name", "alice-backup", "--to", join(dir, "restored")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`DATA_LOSS: pack ${head} is corrupt: `);
    // It said "… is corrupt: DATA_LOSS: CAS …", the code again inside.
    expect(refused.stderr.match(/DATA_LOSS/g)).toHaveLength(1);
  });
});

describe("restore - a long chain", () => {
  it("reads each pack whole only a few packs ahead of the one it writes, where it read every pack of the chain before writing any", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    const messages = await writeLog(log, 4000, { bodySize: 200 });
    const backup = await runCli(["backup", "--from", log, "--to", join(dir, "packs"), "--pack-size", "32KiB", "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    const packs = json(backup.stdout).packs as number;
    expect(packs).toBeGreaterThan(20);

    // The directory's packs as they are, with the whole reads counted against the packs written so far.
    let wholeReads = 0;
    let packsWritten = 0;
    let mostAhead = 0;
    let phase = "";
    class CountingStore extends DirPackStore {
      override async get(address: Uint8Array): Promise<Uint8Array | undefined> {
        wholeReads++;
        mostAhead = Math.max(mostAhead, wholeReads - packsWritten);
        return super.get(address);
      }
    }
    const progress = {
      start: (label: string) => (phase = label),
      advance: () => void (phase === "messages" && packsWritten++),
      stop: () => {},
    };
    const store = new CountingStore(join(dir, "packs"));
    const summary = await runRestore({ store, head: (await store.readHead())!.pack, to: join(dir, "restored"), progress });
    expect(summary).toMatchObject({ messages: 4000, packs });
    expect(await readLog(join(dir, "restored"))).toEqual(messages);
    // Each pack is read whole once, as its turn nears (the walk reads the packs' first bytes). This
    // process lays the packs out alone (no compiled thread script under the tests): the window is 3.
    expect(wholeReads).toBe(packs);
    expect(mostAhead).toBeLessThanOrEqual(3);
  });

  it("takes the header a pack ends with when a field comes again after its body, and refuses a pack whose link does so (DATA_LOSS)", async () => {
    const dir = await tempDir();
    const group = new TextEncoder().encode("restore-test");
    const messages = Array.from({ length: 100 }, (_, seq) => encodeMessage(newMessage(group, BigInt(seq), randomBytes(64))));
    const lastIdOf = (run: Uint8Array[]) => messageId(decodeMessage(run[run.length - 1]));
    // Two packs; the second with bytes appended after its body: a field again (protobuf keeps the last).
    const chain = async (name: string, header: { lastId: Uint8Array; previous?: Uint8Array }, after: (older: Uint8Array) => Uint8Array) => {
      const store = new DirPackStore(join(dir, name));
      const older = encodePack({ logName: "log", firstSeq: 0, lastSeq: 49, count: 50, previous: new Uint8Array(0), lastId: lastIdOf(messages.slice(0, 50)) }, messages.slice(0, 50));
      const plain = encodePack({ logName: "log", firstSeq: 50, lastSeq: 99, count: 50, previous: header.previous ?? older.address, lastId: header.lastId }, messages.slice(50));
      const bytes = Buffer.concat([plain.bytes, after(older.address)]);
      const newer = { address: addressOf(bytes), bytes: new Uint8Array(bytes) };
      await store.put([older, newer]);
      await store.writeHead({ pack: newer.address }, undefined);
      return { from: store.dir, newer: addressText(newer.address) };
    };
    const field = (tag: number, value: Uint8Array) => Uint8Array.of(tag, value.length, ...value);

    // last_id (field 9) wrong before the body and right after it: the pack's last_id is the right one.
    const lastIdAfter = await chain("last-id-after", { lastId: new Uint8Array(32).fill(7) }, () => field(0x4a, lastIdOf(messages.slice(50))));
    const restored = await runCli(["restore", "--from", lastIdAfter.from, "--to", join(dir, "restored")]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await readLog(join(dir, "restored"))).toEqual(messages);
    expect((await runCli(["verify", "--from", lastIdAfter.from])).code).toBe(0);

    // previous (field 7) again after the body, naming another pack: the chain its first bytes gave is not the pack's.
    const elsewhere = addressOf(randomBytes(10));
    const linkAfter = await chain("link-after", { lastId: lastIdOf(messages.slice(50)) }, () => field(0x3a, elsewhere));
    const refused = await runCli(["restore", "--from", linkAfter.from, "--to", join(dir, "refused")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`DATA_LOSS: pack ${linkAfter.newer} read whole does not say what its first bytes said of its place in the chain`);
    await expect(readdir(join(dir, "refused"))).rejects.toThrow();
  });
});

describe("restore - packs that hash right but hold bad messages", () => {
  it("refuses each, naming the pack and the seq, whichever thread laid the pack out, and leaves no log", async () => {
    const dir = await tempDir();
    const group = new TextEncoder().encode("restore-test");
    const good = (seq: number) => encodeMessage(newMessage(group, BigInt(seq), new TextEncoder().encode(randomBytes(96).toString("base64"))));
    // Four packs of 50 (seqs 0-199), each altered by damage before it is laid out, then chained and hashed as a writer would.
    const chain = async (damage: (packs: Uint8Array[][]) => void, lastIdOf = (messages: Uint8Array[]) => messageId(decodeMessage(messages[messages.length - 1]))) => {
      const packs = Array.from({ length: 4 }, (_, p) => Array.from({ length: 50 }, (_, i) => good(50 * p + i)));
      damage(packs);
      const store = new DirPackStore(join(dir, `packs-${randomBytes(4).toString("hex")}`));
      let previous: Uint8Array = new Uint8Array(0);
      const addresses: string[] = [];
      for (const [p, messages] of packs.entries()) {
        const header = { logName: "log", firstSeq: 50 * p, lastSeq: 50 * p + 49, count: 50, previous, lastId: lastIdOf(messages) };
        const pack = encodePack(header, messages, await deflateBody(messages));
        await store.put([pack]);
        previous = pack.address;
        addresses.push(addressText(pack.address));
      }
      await store.writeHead({ pack: previous }, undefined);
      return { from: store.dir, addresses };
    };
    const refuse = async (from: string, expected: string) => {
      const to = join(dir, `restored-${randomBytes(4).toString("hex")}`);
      const result = await runCli(["restore", "--from", from, "--to", to]);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(expected);
      await expect(readdir(to)).rejects.toThrow();
      expect((await readdir(dir)).filter((name) => name.includes(".restoring-"))).toEqual([]);
    };
    // Not a vac.mvds.Message, in the first pack and in the second (on two cores, a thread's and this thread's).
    for (const [p, seq] of [[0, 17], [1, 60]]) {
      const { from, addresses } = await chain((packs) => (packs[p][seq - 50 * p] = Uint8Array.of(0xff, 0xff)));
      await refuse(from, `DATA_LOSS: pack ${addresses[p]}: INVALID_ARGUMENT: message at seq ${seq} is not a vac.mvds.Message`);
      // And in the error's details, for a caller of the library (they held the pack's address only).
      const store = new DirPackStore(from);
      const failure = await runRestore({ store, head: (await store.readHead())!.pack, to: join(dir, `library-${seq}`) }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failure).toMatchObject({ code: "DATA_LOSS", details: { address: addresses[p], seq } });
    }
    // A message of the first pack again in the third.
    let repeated: Uint8Array = new Uint8Array(0);
    const twice = await chain((packs) => (packs[2][10] = repeated = packs[0][3]));
    await refuse(twice.from, `DATA_LOSS: pack ${twice.addresses[2]}: CONFLICT: message ${toHex(messageId(decodeMessage(repeated)))} at seq 110 is in the log already`);
    // A last_id that is not the last message's.
    const lying = await chain(() => {}, () => new Uint8Array(32).fill(9));
    await refuse(lying.from, `DATA_LOSS: pack ${lying.addresses[0]}: its last message has id`);
  });
});

describe("restore and verify - a deflate bomb", () => {
  it("refuse a small pack whose body would inflate to 64 MiB of empty messages, before inflating it, with DATA_LOSS naming it", async () => {
    const dir = await tempDir();
    const empties = Buffer.alloc(64 << 20);
    for (let i = 0; i < empties.length; i += 2) empties[i] = 0x0a;
    const only = encodeMessage(newMessage(new TextEncoder().encode("g"), 0n, new TextEncoder().encode("only")));
    const pack = encodePack({ logName: "log", firstSeq: 0, lastSeq: 0, count: 1, previous: new Uint8Array(0), lastId: messageId(decodeMessage(only)) }, [only], new Uint8Array(deflateRawSync(empties, { level: 9 })));
    const store = new DirPackStore(join(dir, "bomb"));
    await store.put([pack]);
    await store.writeHead({ pack: pack.address }, undefined);
    const why = `DATA_LOSS: pack ${addressText(pack.address)} is malformed: its `;
    // The old code inflated it (up to 1 GiB) and split it: restore died of a V8 fatal error, verify ran out of heap.
    const restore = await runCli(["restore", "--from", store.dir, "--to", join(dir, "restored")]);
    expect(restore.code, restore.stderr).toBe(1);
    expect(restore.stderr).toContain(why);
    expect(restore.stderr).toMatch(/deflated body inflates past \d+ bytes, more than a writer's Huffman-only DEFLATE can make/);
    await expect(readdir(join(dir, "restored"))).rejects.toThrow();
    const verify = await runCli(["verify", "--from", store.dir, "--read-data"]);
    expect(verify.code, verify.stdout).toBe(1);
    expect(verify.stdout + verify.stderr).toMatch(/deflated body inflates past \d+ bytes/);
  });
});

describe("backup - a remote log that holds a message twice", () => {
  it("is refused with DATA_LOSS naming the message, where the backup passed and could never be restored", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const group = new TextEncoder().encode("g");
    const [first, twice, last] = ["first", "twice", "last"].map((body) => encodeMessage(newMessage(group, 1n, new TextEncoder().encode(body))));
    // A draft-style page (no page info), newest first, with one message at two positions: receive delivers both.
    const page = toBinary(RemoteLogSchema, create(RemoteLogSchema, { pair: [last, twice, twice, first].map((m) => ({ remoteHash: addressOf(m), localHash: messageId(decodeMessage(m)), data: m })) }));
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      await remote.putBlocks([page]);
      await remote.updateName("twice", page, 0n);
    } finally {
      remote.close();
    }
    const backup = await runCli(["backup", "--from-name", "twice", "--unsigned", "--server", server.url, "--to", join(dir, "packs")]);
    expect(backup.code, backup.stdout).toBe(1);
    expect(backup.stderr).toContain(`DATA_LOSS: name "twice" holds message ${toHex(messageId(decodeMessage(twice)))} twice: a local log takes each message once, so a backup of it could not be restored`);
  });
});

describe("backup - to a default server without --pack-size", () => {
  it("cuts packs to fit the server's largest block (1 MiB), where the 2 MiB default was refused TOO_LARGE", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const log = join(dir, "alice");
    await writeLog(log, 15_000, { bodySize: 150 });
    const key = join(dir, "backup.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const backup = await runCli(["backup", "--from-dir", log, "--to", server.url, "--key", key, "--no-compress", "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(json(backup.stdout)).toMatchObject({ messages: 15_000, packs: 3 });
    const name = (await runCli(["key", "name", key])).stdout.trim();
    const restored = await runCli(["restore", "--name", name, "--from", server.url, "--to", join(dir, "restored")]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await readLog(join(dir, "restored"))).toHaveLength(15_000);
  });
});

describe("backup - to a server whose gc runs meanwhile", () => {
  it("a backup running longer than the gc's grace loses no pack: its head moves onto what is stored as it goes", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "2s"]);
    // 40 ms round trips and small packs: a backup of several seconds, past the 2 s grace.
    const proxy = await startDelayProxy(server.url, 40);
    try {
      const log = join(dir, "alice");
      await writeLog(log, 12_000, { bodySize: 100 });
      const backup = spawnCli(["backup", "--from-dir", log, "--to", proxy.url, "--head-name", "alice-backup", "--pack-size", "4KiB", "--no-compress", "--head-every", "500ms", "--json"]);
      const finished = collect(backup, undefined, 120_000);
      let running = true;
      void finished.then(() => (running = false));
      let collections = 0;
      while (running) {
        const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
        expect(gc.code, gc.stderr).toBe(0);
        collections++;
      }
      const result = await finished;
      expect(result.code, result.stderr).toBe(0);
      expect(collections).toBeGreaterThan(1);
      // The old backup moved its head only at the end: the gc swept the packs it had stored first, and
      // the head then named a broken chain (verify: a pack missing).
      const verify = await runCli(["verify", "--name", "alice-backup", "--from", server.url, "--read-data"]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      const restored = await runCli(["restore", "--name", "alice-backup", "--from", server.url, "--to", join(dir, "restored")]);
      expect(restored.code, restored.stderr).toBe(0);
      expect(await readLog(join(dir, "restored"))).toHaveLength(12_000);
    } finally {
      await proxy.close();
    }
  }, 180_000);
});

describe("backup - remote log to a CAS service", () => {
  it("backs up a long unsigned name whole and in order, its pages read in parallel rounds, and restores the sender's very log", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    // 1,300 messages in pages of 16: 82 pages, whose first round of fetches follows the head's skip links
    // (pages that are not neighbours), and reads of 256 messages and more go to the verify threads.
    const sent = await runCli(["send", "--unsigned", "--name", "long", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "16", "--embed", "none"], { stdin: lines(1300) });
    expect(sent.code, sent.stderr).toBe(0);
    const backup = await runCli(["backup", "--from-name", "long", "--unsigned", "--server", server.url, "--to", join(dir, "packs"), "--pack-size", "16KiB", "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(json(backup.stdout)).toMatchObject({ messages: 1300, added: 1300, logName: "long" });
    const restored = await runCli(["restore", "--from", join(dir, "packs"), "--to", join(dir, "restored")]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await readLog(join(dir, "restored"))).toEqual(await readLog(join(dir, "alice")));
    // And an incremental backup by name after it goes on from there.
    expect((await runCli(["send", "--unsigned", "--name", "long", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "16"], { stdin: lines(40, "more") })).code).toBe(0);
    const more = await runCli(["backup", "--from-name", "long", "--unsigned", "--server", server.url, "--to", join(dir, "packs"), "--json"]);
    expect(json(more.stdout)).toMatchObject({ messages: 1340, added: 40 });
    expect((await runCli(["restore", "--from", join(dir, "packs"), "--to", join(dir, "restored"), "--force"])).code).toBe(0);
    expect(await readLog(join(dir, "restored"))).toEqual(await readLog(join(dir, "alice")));
  });

  it("reads a long name's messages in calls of neighbouring pages, however scattered the pages arrive", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    // 12,000 messages in pages of 256: 47 pages, whose first rounds follow skip links.
    const sent = await runCli(["send", "--unsigned", "--name", "wide", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(12_000) });
    expect(sent.code, sent.stderr).toBe(0);
    const before = await getManyCalls(server.url);
    const backup = await runCli(["backup", "--from-name", "wide", "--unsigned", "--server", server.url, "--to", join(dir, "packs"), "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(json(backup.stdout)).toMatchObject({ messages: 12_000, added: 12_000 });
    // The pages' rounds, then the messages in calls of up to 4,096: 10 calls. Read as the pages came,
    // a page or two a call, it took 41.
    expect((await getManyCalls(server.url)) - before).toBeLessThanOrEqual(16);
    expect((await runCli(["restore", "--from", join(dir, "packs"), "--to", join(dir, "restored")])).code).toBe(0);
    expect(await readLog(join(dir, "restored"))).toEqual(await readLog(join(dir, "alice")));
  });

  it("backs up a signed name, records a signed head, verifies, exports and imports a CAR", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--max-block", String(8 << 20)]);
    const key = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", key])).stdout.trim();
    expect((await runCli(["send", "--key", key, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "16"], { stdin: lines(500) })).code).toBe(0);

    const backupKey = join(dir, "backup.key");
    const headName = (await runCli(["key", "gen", "--out", backupKey])).stdout.trim();
    const first = await runCli(["backup", "--from", name, "--server", server.url, "--to", server.url, "--key", backupKey, "--pack-size", "8KiB", "--json"]);
    expect(first.code, first.stderr).toBe(0);
    expect(json(first.stdout)).toMatchObject({ messages: 500, added: 500, logName: name });
    expect((await runCli(["send", "--key", key, "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(20, "more") })).code).toBe(0);
    const second = json((await runCli(["backup", "--from", name, "--server", server.url, "--to", server.url, "--key", backupKey, "--json"])).stdout);
    expect(second).toMatchObject({ messages: 520, added: 20, packs: 1 });

    const verifyBackup = await runCli(["verify", "--name", headName, "--from", server.url, "--read-data", "--json"]);
    expect(verifyBackup.code, verifyBackup.stdout).toBe(0);
    expect(json(verifyBackup.stdout)).toMatchObject({ kind: "backup", ok: true, messages: 520 });
    const verifyLog = await runCli(["verify", "--name", name, "--from", server.url, "--read-data", "--json"]);
    expect(verifyLog.code, verifyLog.stdout).toBe(0);
    expect(json(verifyLog.stdout)).toMatchObject({ kind: "log", ok: true, messages: 520 });

    // export → import → restore, and the CAR parses with @ipld/car's own reader.
    const car = join(dir, "backup.car");
    const exported = json((await runCli(["export", "--car", car, "--name", headName, "--from", server.url, "--json"])).stdout);
    expect(exported.root).toBe(second.head);
    const reader = await CarReader.fromBytes(await readFile(car));
    expect((await reader.getRoots()).map(String)).toEqual([second.head]);
    let blocks = 0;
    for await (const block of reader.blocks()) {
      expect(block.cid.code).toBe(0x55);
      blocks++;
    }
    expect(blocks).toBe(exported.blocks);
    const imported = await runCli(["import", "--car", car, "--to", join(dir, "imported")]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout.trim()).toBe(second.head);
    const restore = await runCli(["restore", "--pack", String(second.head), "--from", join(dir, "imported"), "--to", join(dir, "restored"), "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(json(restore.stdout)).toMatchObject({ messages: 520 });

    // A remote log as a CAR: its pages and messages, imported into a fresh server, read by receive.
    const logCar = join(dir, "log.car");
    expect((await runCli(["export", "--car", logCar, "--name", name, "--from", server.url])).code).toBe(0);
    const other = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const into = await runCli(["import", "--car", logCar, "--to", other.url, "--unnamed", "--json"]);
    expect(into.code, into.stderr).toBe(0);
    expect(json(into.stdout).blocks).toBeGreaterThan(520);

    // A corrupt CAR block is refused, naming it.
    const damaged = await readFile(car);
    damaged[damaged.length - 10] ^= 0xff;
    await writeFile(join(dir, "bad.car"), damaged);
    const bad = await runCli(["import", "--car", join(dir, "bad.car"), "--to", join(dir, "bad")]);
    expect(bad.code).toBe(1);
    // The last block of the file is the oldest pack.
    expect(bad.stderr).toMatch(/DATA_LOSS: .*bad\.car: block bafk\w+ does not hash to its CID/);
  });
});

/** GetMany calls the server has answered, from its metrics. */
function getManyCalls(url: string): Promise<number> {
  return rpcRequests(url, "remotelog.v1.BlockService/GetMany");
}
