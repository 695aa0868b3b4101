import { randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS, RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { PackSchema } from "../../gen/remotelog/v1/pack_pb.js";
import { Remote } from "../../actors/remote.js";
import { collectGarbage } from "../../backup/gc.js";
import { encodeBackupHead, encodePack } from "../../backup/pack-format.js";
import { addressOf, addressText, decodeMessage, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { encodePage } from "../../core/page.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { cleanup, collect, lines, parseJsonl, runCli, spawnCli, startServer, stop, tempDir, bodyText } from "../helpers/processes.js";

afterEach(cleanup);

function message(i: number): Uint8Array {
  return encodeMessage(newMessage(new TextEncoder().encode("gc"), BigInt(i), randomBytes(40)));
}

describe("gc - fs content store", () => {
  it("keeps what names and backup heads reach, rewrites packs without the rest, and keeps a block put during the sweep", async () => {
    const dir = await tempDir();
    const store = await FsContentStore.open(dir);
    const names = new MemoryNameStore();
    const live = message(1);
    const dead = [message(2), message(3)];
    const revived = message(4);
    // One pack holding live and dead blocks together, so the sweep must rewrite it.
    await store.putMany([live, ...dead, revived]);
    const page = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(live), localHash: messageId(newMessage(new Uint8Array(0), 0n, new Uint8Array(0))) }] }));
    const sealed = encodePage(create(RemoteLogSchema, { pair: [] }));
    await store.putMany([sealed]);
    const head = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(live), localHash: new Uint8Array(32) }], tail: addressOf(page) }));
    await store.putMany([page]);
    await names.put("log", head);
    // A backup: two packs chained, the head recorded in the NS.
    const older = encodePack({ logName: "x", firstSeq: 0, lastSeq: 0, count: 1, previous: new Uint8Array(0), lastId: messageId(newMessage(new TextEncoder().encode("gc"), 5n, new Uint8Array(0))) }, [encodeMessage(newMessage(new TextEncoder().encode("gc"), 5n, new Uint8Array(0)))]);
    const newer = encodePack({ logName: "x", firstSeq: 1, lastSeq: 1, count: 1, previous: older.address, lastId: new Uint8Array(32) }, [message(6)]);
    await store.putMany([older.bytes]);
    await store.putMany([newer.bytes]);
    await names.put("backup", encodeBackupHead({ pack: newer.address, logName: "x", lastSeq: 1n }));

    await new Promise((r) => setTimeout(r, 20));
    const running = collectGarbage({ store, names, graceMs: 1 });
    // Put again while the collection runs: it must survive, as a sender's re-upload would.
    await store.putMany([revived]);
    const summary = await running;
    expect(summary).toMatchObject({ roots: 2, removedBlocks: 3, sweptPacks: 2, missing: [] });
    for (const block of [live, revived, page, older.bytes, newer.bytes]) expect(await store.has(addressOf(block))).toBe(true);
    for (const block of [...dead, sealed]) expect(await store.has(addressOf(block))).toBe(false);
    expect((await store.getMany([addressOf(live)]))[0]).toEqual(live);
    await store.close();

    // What is on disk agrees: a reopened store has exactly the kept blocks, every one intact.
    const reopened = await FsContentStore.open(dir);
    expect(reopened.stats().blocks).toBe(5);
    await reopened.check();
    await reopened.close();
  });
});

describe("gc - a running server", () => {
  it("follows a page that a stranger's page names as its message: the victim's older pages are kept", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "0s"]);
    const victim = join(dir, "victim");
    const sent = await runCli(["send", "--unsigned", "--name", "victim", "--server", server.url, "--data", victim, "--page-size", "4", "--embed", "none"], { stdin: lines(12) });
    expect(sent.code, sent.stderr).toBe(0);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      // The victim's head links its older page by tail, which anyone can read. A stranger's name, listed
      // before the victim's, holds a page whose one "message" is that page.
      const head = await remote.fetchName("victim");
      const tail = fromBinary(RemoteLogSchema, head!.content).tail;
      expect(tail.length).toBeGreaterThan(0);
      const lure = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: tail, localHash: new Uint8Array(32) }] }));
      await remote.updateName("a-stranger", lure, 0n);
    } finally {
      remote.close();
    }
    const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
    expect(gc.code, gc.stderr).toBe(0);
    // The old mark took the victim's older page for a message and never read it: its pages and messages went.
    const read = await runCli(["cat", "victim", "--unsigned", "--server", server.url]);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trimEnd().split("\n")).toHaveLength(12);
    expect(JSON.parse(gc.stdout)).toMatchObject({ roots: 2, removedBlocks: 0 });
  });

  it("collects garbage while a sender publishes, and a full receive then verifies every message", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "1s"]);
    const alice = join(dir, "alice");
    expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice, "--page-size", "16"], { stdin: lines(300, "first") })).code).toBe(0);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    const garbage = Array.from({ length: 200 }, (_, i) => message(1000 + i));
    await remote.putBlocks(garbage);
    remote.close();
    await new Promise((r) => setTimeout(r, 1100));

    // A real sender, publishing round after round, while gc runs again and again.
    const rounds = 15;
    const sender = (async () => {
      for (let round = 0; round < rounds; round++) {
        const sent = await collect(spawnCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice, "--page-size", "16"]), lines(100, `round${round}`));
        expect(sent.code, sent.stderr).toBe(0);
      }
    })();
    let removed = 0;
    let runs = 0;
    let sending = true;
    sender.finally(() => (sending = false)).catch(() => {});
    while (sending || runs < 2) {
      const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      const result = JSON.parse(gc.stdout);
      expect(result.missing).toEqual([]);
      removed += result.removedBlocks;
      runs++;
    }
    await sender;
    expect(runs).toBeGreaterThan(1);
    expect(removed).toBeGreaterThanOrEqual(garbage.length);

    const received = await runCli(["receive", "--unsigned", "--name", "chat", "--server", server.url, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    const messages = parseJsonl<{ seq: number; body: string }>(received.stdout);
    expect(messages).toHaveLength(300 + rounds * 100);
    expect(messages.map((m) => m.seq)).toEqual(messages.map((_, i) => i));
    expect(bodyText(messages[messages.length - 1])).toBe(`round${rounds - 1} 99`);
    const verify = await runCli(["verify", "--name", "chat", "--from", server.url, "--read-data"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it("a backup imported from a CAR goes under a head name and survives gc, which moves on only to a chain that reaches its head; into a URL without one, import refuses before storing", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "0s"]);
    const alice = join(dir, "alice");
    expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice], { stdin: lines(300) })).code).toBe(0);
    expect((await runCli(["backup", "--from-dir", alice, "--to", join(dir, "bk"), "--pack-size", "8KiB"])).code).toBe(0);
    const car = join(dir, "bk.car");
    expect((await runCli(["export", "--from", join(dir, "bk"), "--car", car])).code).toBe(0);
    const blocksBefore = (await runCli(["gc", "--server", server.admin!, "--dry-run", "--json"])).stdout;

    // The README's import, as it was: the old code stored the packs under no name, and the next gc removed them all.
    const unnamed = await runCli(["import", "--car", car, "--to", server.url]);
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toContain("gc removes blocks that no name reaches, after its grace: give --head-name NAME (or --key FILE)");
    // Nothing was stored: a dry run would remove as many blocks as before.
    const blocksAfter = (await runCli(["gc", "--server", server.admin!, "--dry-run", "--json"])).stdout;
    expect(JSON.parse(blocksAfter).removedBlocks).toBe(JSON.parse(blocksBefore).removedBlocks);

    const imported = await runCli(["import", "--car", car, "--to", server.url, "--head-name", "alice-imported", "--json"]);
    expect(imported.code, imported.stderr).toBe(0);
    const root = JSON.parse(imported.stdout).roots[0];
    expect(JSON.parse(imported.stdout).head).toBe(root);
    // Run again, it changes nothing.
    expect((await runCli(["import", "--car", car, "--to", server.url, "--head-name", "alice-imported"])).code).toBe(0);
    const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
    expect(gc.code, gc.stderr).toBe(0);
    const restored = await runCli(["restore", "--name", "alice-imported", "--from", server.url, "--to", join(dir, "restored"), "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ messages: 300 });
    const verified = await runCli(["verify", "--pack", root, "--from", server.url, "--read-data"]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);

    // A name that holds another backup is not moved off it; a newer backup of the same chain moves it on.
    expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice], { stdin: lines(5, "more") })).code).toBe(0);
    expect((await runCli(["backup", "--from-dir", alice, "--to", join(dir, "bk2")])).code).toBe(0);
    const other = join(dir, "bk2.car");
    expect((await runCli(["export", "--from", join(dir, "bk2"), "--car", other])).code).toBe(0);
    const taken = await runCli(["import", "--car", other, "--to", server.url, "--head-name", "alice-imported"]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`CONFLICT: name "alice-imported" holds another backup (head pack ${root}), which the chain of`);
    expect((await runCli(["backup", "--from-dir", alice, "--to", join(dir, "bk"), "--pack-size", "8KiB"])).code).toBe(0);
    expect((await runCli(["export", "--from", join(dir, "bk"), "--car", car])).code).toBe(0);
    const newer = await runCli(["import", "--car", car, "--to", server.url, "--head-name", "alice-imported", "--json"]);
    expect(newer.code, newer.stderr).toBe(0);
    expect(JSON.parse(newer.stdout).head).not.toBe(root);
    const grown = await runCli(["restore", "--name", "alice-imported", "--from", server.url, "--to", join(dir, "restored-grown"), "--json"]);
    expect(JSON.parse(grown.stdout)).toMatchObject({ messages: 305 });
    const logCar = join(dir, "log.car");
    expect((await runCli(["export", "--name", "chat", "--from", server.url, "--car", logCar])).code).toBe(0);
    const log = await runCli(["import", "--car", logCar, "--to", server.url, "--head-name", "chat-imported"]);
    expect(log.code).toBe(1);
    expect(log.stderr).toMatch(/INVALID_ARGUMENT: root bafk\w+ is not a backup's head pack/);
    expect((await runCli(["import", "--car", logCar, "--to", server.url, "--unnamed"])).code).toBe(0);
    expect((await runCli(["restore", "--name", "alice-imported", "--from", server.url, "--to", join(dir, "restored-again"), "--json"])).code).toBe(0);
    expect((await runCli(["verify", "--name", "alice-imported", "--from", server.url, "--read-data"])).code).toBe(0);
  });

  it("--drop-name retires a name: a dry run forgets nothing and counts what would go, a run forgets it and sweeps what it alone reached", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "0s"]);
    const alice = join(dir, "alice");
    expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", alice], { stdin: lines(300) })).code).toBe(0);
    const backup = await runCli(["backup", "--from-dir", alice, "--to", server.url, "--head-name", "nightly-1", "--pack-size", "8KiB", "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    const { head, packs } = JSON.parse(backup.stdout);
    expect(packs).toBeGreaterThan(1);

    // The old gc had no way to retire a name: the backup, and any message a redaction took out of the log since, stayed for good.
    const dry = await runCli(["gc", "--server", server.admin!, "--drop-name", "nightly-1", "--dry-run", "--json"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ droppedNames: ["nightly-1"], removedBlocks: packs, dryRun: true });
    expect((await runCli(["restore", "--name", "nightly-1", "--from", server.url, "--to", join(dir, "still")])).code).toBe(0);

    const run = await runCli(["gc", "--server", server.admin!, "--drop-name", "nightly-1", "--drop-name", "never-was"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('dropped name "nightly-1"');
    expect(run.stderr).toContain('name "never-was" is not there (dropped before?)');
    expect(run.stdout).toContain(`removed ${packs} blocks`);
    const gone = await runCli(["restore", "--name", "nightly-1", "--from", server.url, "--to", join(dir, "gone")]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('name "nightly-1" has no backup');
    const verify = await runCli(["verify", "--pack", head, "--from", server.url]);
    expect(verify.code).toBe(1);
    expect(verify.stdout + verify.stderr).toContain("NOT_FOUND");
    // Safe to repeat, and the log the name did not reach reads whole.
    const again = await runCli(["gc", "--server", server.admin!, "--drop-name", "nightly-1", "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ droppedNames: [], removedBlocks: 0 });
    const read = await runCli(["cat", "--unsigned", "chat", "--server", server.url, "--format", "jsonl"]);
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl(read.stdout)).toHaveLength(300);
    const bad = await runCli(["gc", "--server", server.admin!, "--drop-name", ""]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("INVALID_ARGUMENT: name is empty");
  });

  it("--drop-name of a key name keeps it dropped: a stranger's kept record is refused, readers hear of no log, and the owner's next send publishes the log anew", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "0s"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    const send = (stdin: string) => runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4", "--embed", "none", "--json"], { stdin });
    const receive = (state: string) => runCli(["receive", "--name", name, "--server", server.url, "--state", join(dir, state)]);
    // Any stranger may read a name's head and keep it: its record is public.
    const stranger = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const kept: { data: Uint8Array; record: Uint8Array; version: bigint }[] = [];
    expect((await send(lines(20))).code).toBe(0);
    kept.push(await stranger.fetch({ name }));
    expect((await send(lines(5, "more"))).code).toBe(0);
    kept.push(await stranger.fetch({ name }));
    expect(kept.map((head) => head.version)).toEqual([1n, 2n]);
    expect(parseJsonl((await receive("bob")).stdout)).toHaveLength(25);

    const gc = await runCli(["gc", "--server", server.admin!, "--drop-name", name, "--json"]);
    expect(gc.code, gc.stderr).toBe(0);
    const summary = JSON.parse(gc.stdout);
    expect(summary.droppedNames).toEqual([name]);
    expect(summary.removedBlocks).toBeGreaterThan(25);

    // The old NS took the kept record back (its sequence was above the nothing left), and every reader then met
    // pages gc had removed. Refused, whichever record, however sent, as a record not newer than the NS holds is.
    for (const head of kept) {
      for (const expectedVersion of [undefined, 0n]) {
        const err = await stranger.update({ name, content: head.data, record: head.record, expectedVersion }).then(() => undefined, (e: unknown) => e);
        expect(err, `sequence ${head.version} taken back`).toBeInstanceOf(ConnectError);
        expect(Code[(err as ConnectError).code]).toBe("FailedPrecondition");
        expect((err as ConnectError).rawMessage).toBe(
          `name ${JSON.stringify(name)} was dropped by the operator at sequence 2; only a newer record from its key is taken, and this one has sequence ${head.version}`,
        );
      }
    }
    const none = await receive("carol");
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`name ${JSON.stringify(name)} has no remote log yet`);
    expect(none.stderr).not.toContain("DATA_LOSS");

    // The owner's next send finds the name gone and publishes its whole log again, under a record above the tombstone.
    const anew = await send(lines(3, "after"));
    expect(anew.code, anew.stderr).toBe(0);
    expect(JSON.parse(anew.stdout)).toMatchObject({ name, published: 28, version: 3 });
    const carol = parseJsonl<{ seq: number; body: string }>((await receive("carol")).stdout);
    expect(carol.map((line) => line.seq)).toEqual(Array.from({ length: 28 }, (_, i) => i));
    expect(carol.slice(25).map((line) => line.body)).toEqual(lines(3, "after").trim().split("\n"));
    expect(parseJsonl<{ seq: number }>((await receive("bob")).stdout).map((line) => line.seq)).toEqual([25, 26, 27]);
    // From then on the name's own version refuses the old records.
    const stale = await stranger.update({ name, content: kept[1].data, record: kept[1].record }).then(() => undefined, (e: unknown) => e);
    expect((stale as ConnectError).rawMessage).toMatch(/has sequence 2, older than the name's version 3/);
    const verify = await runCli(["verify", "--name", name, "--from", server.url, "--read-data"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it("a reachable page stored whole that does not decode is reported and kept, and the older chain its fields link survives a gc that sweeps", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "1s"]);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      // head -> malformed -> older: the malformed page hashes to its address (a writer stored it so) but
      // is not a page of the format; its tail field still names the older page, which gc must keep.
      const older = [message(1), message(2)];
      const olderPage = encodePage(create(RemoteLogSchema, { pair: older.map((m) => ({ remoteHash: addressOf(m), localHash: messageId(decodeMessage(m)) })) }));
      // A 31-byte H1: every byte of its tail is there, but it does not decode.
      const third = message(3);
      const malformed = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(third), localHash: new Uint8Array(31) }], tail: addressOf(olderPage) }));
      const newest = message(4);
      const head = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(newest), localHash: messageId(decodeMessage(newest)) }], tail: addressOf(malformed) }));
      const garbage = [message(5), message(6)];
      await remote.putBlocks([...older, olderPage, third, malformed, newest, ...garbage]);
      await remote.updateName("malformed-chain", head, 0n);
      await new Promise((r) => setTimeout(r, 1100));

      const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      const result = JSON.parse(gc.stdout);
      expect(result).toMatchObject({ removedBlocks: 2, missing: [], missingCount: 0, unreadableCount: 1 });
      expect(result.unreadable).toEqual([{ name: "malformed-chain", address: addressText(addressOf(malformed)), kind: "page", reason: expect.stringMatching(/31-byte localHash/) }]);
      for (const block of [...older, olderPage, third, malformed, newest]) expect(await remote.getBlock(addressOf(block))).toEqual(block);
      for (const block of garbage) await expect(remote.getBlock(addressOf(block))).rejects.toMatchObject({ code: "NOT_FOUND" });
    } finally {
      remote.close();
    }
  });

  it("a backup pack of a version gc does not know is reported and kept, and the older packs it links survive", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "1s"]);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const first = message(10);
      const oldest = encodePack({ logName: "x", firstSeq: 0, lastSeq: 0, count: 1, previous: new Uint8Array(0), lastId: messageId(decodeMessage(first)) }, [first]);
      const second = message(11);
      // What a newer remotelog might write: the same fields, version 2.
      const newer = fromBinary(PackSchema, encodePack({ logName: "x", firstSeq: 1, lastSeq: 1, count: 1, previous: oldest.address, lastId: messageId(decodeMessage(second)) }, [second]).bytes);
      newer.version = 2;
      const newerBytes = toBinary(PackSchema, newer);
      const garbage = message(12);
      await remote.putBlocks([oldest.bytes, newerBytes, garbage]);
      await remote.updateName("backup-head", encodeBackupHead({ pack: addressOf(newerBytes), logName: "x", lastSeq: 1n }), 0n);
      await new Promise((r) => setTimeout(r, 1100));

      const gc = await runCli(["gc", "--server", server.admin!]);
      expect(gc.code, gc.stderr).toBe(0);
      expect(gc.stdout).toMatch(/^removed 1 blocks /);
      expect(gc.stderr).toContain(`unreadable: pack ${addressText(addressOf(newerBytes))}, which name "backup-head" reaches, is kept but could not be read as such`);
      expect(await remote.getBlock(oldest.address)).toEqual(oldest.bytes);
      expect(await remote.getBlock(addressOf(newerBytes))).toEqual(newerBytes);
      await expect(remote.getBlock(addressOf(garbage))).rejects.toMatchObject({ code: "NOT_FOUND" });
    } finally {
      remote.close();
    }
  });

  it("a stranger's name cannot stop gc: content that is no page, a page whose tail is a message, a backup head naming a message, a deflate bomb", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "1s"]);
    const sent = await runCli(["send", "--unsigned", "--name", "victim", "--server", server.url, "--data", join(dir, "victim"), "--page-size", "4", "--embed", "none"], { stdin: lines(12) });
    expect(sent.code, sent.stderr).toBe(0);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    const bait = message(20);
    const garbage = [message(21), message(22), message(23)];
    try {
      await remote.putBlocks([bait, ...garbage]);
      const tailIsMessage = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(bait), localHash: messageId(decodeMessage(bait)) }], tail: addressOf(bait) }));
      // Listed before the victim's name, as a stranger would choose.
      await remote.updateName("a-no-page", new TextEncoder().encode("not a page at all"), 0n);
      await remote.updateName("b-tail-is-a-message", tailIsMessage, 0n);
      await remote.updateName("c-head-of-a-message", encodeBackupHead({ pack: addressOf(bait), logName: "x", lastSeq: 0n }), 0n);
      // A pack whose body would inflate to 4 MiB of empty messages: gc reads its header only.
      const empties = Buffer.alloc(4 << 20);
      for (let i = 0; i < empties.length; i += 2) empties[i] = 0x0a;
      const bomb = encodePack({ logName: "x", firstSeq: 0, lastSeq: 0, count: 1, previous: new Uint8Array(0), lastId: messageId(decodeMessage(bait)) }, [bait], new Uint8Array(deflateRawSync(empties, { level: 9 })));
      await remote.putBlocks([bomb.bytes]);
      await remote.updateName("d-bomb", encodeBackupHead({ pack: bomb.address, logName: "x", lastSeq: 0n }), 0n);
    } finally {
      remote.close();
    }
    await new Promise((r) => setTimeout(r, 1100));

    const gc = await runCli(["gc", "--server", server.admin!, "--json"]);
    // The old gc stopped with DATA_LOSS at the first of them, every run, and swept nothing.
    expect(gc.code, gc.stderr).toBe(0);
    const result = JSON.parse(gc.stdout);
    expect(result).toMatchObject({ roots: 5, removedBlocks: garbage.length, missingCount: 0, unreadableCount: 3 });
    expect(result.unreadable.map((u: { name: string; kind: string }) => [u.name, u.kind])).toEqual([
      ["a-no-page", "name"],
      ["b-tail-is-a-message", "page"],
      ["c-head-of-a-message", "pack"],
    ]);
    const read = await runCli(["cat", "victim", "--unsigned", "--server", server.url]);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trimEnd().split("\n")).toHaveLength(12);
  });

  it("counts the messages lost with a pack set aside as damaged as missing, with the pages", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const args = ["--listen", "127.0.0.1:0", "--data", data, "--admin-listen", "127.0.0.1:0"];
    let server = await startServer(args);
    const sent = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice"), "--embed", "none"], { stdin: lines(20) });
    expect(sent.code, sent.stderr).toBe(0);
    const read = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url]);
    expect(read.code, read.stderr).toBe(0);
    const addresses = parseJsonl<{ address: string }>(read.stdout).map((line) => line.address);
    expect(addresses).toHaveLength(20);
    await stop(server.process);
    const packs = join(data, "cas", "packs");
    const names = (await readdir(packs)).filter((name) => name.endsWith(".pack"));
    for (const pack of names) {
      const bytes = await readFile(join(packs, pack));
      bytes[bytes.length - 1] ^= 0xff;
      await writeFile(join(packs, pack), bytes);
    }
    // The server sets the damaged packs aside as it starts; the name still reaches what they held.
    server = await startServer(args);
    const gc = await runCli(["gc", "--server", server.admin!, "--json", "--dry-run"]);
    expect(gc.code, gc.stderr).toBe(0);
    const result = JSON.parse(gc.stdout);
    // The old gc read only pages: it listed the head's tail, if any, and none of the 20 messages.
    expect(result.missing).toEqual(expect.arrayContaining(addresses));
    expect(result.missingCount).toBe(result.missing.length);
    expect(result.missingCount).toBeGreaterThanOrEqual(20);
  });

  it("--data refuses a directory that is not a whole server's, and makes nothing there: a typo, the user's own, a CAS served alone", async () => {
    const dir = await tempDir();
    const own = join(dir, "photos");
    await mkdir(own);
    await writeFile(join(own, "a.jpg"), "jpeg");
    for (const [target, why] of [
      [join(dir, "sever-data"), "is not a directory"],
      [own, "holds no CAS"],
    ] as const) {
      const refused = await runCli(["gc", "--data", target, "--dry-run"]);
      expect(refused.code, refused.stdout).toBe(1);
      expect(refused.stderr).toContain(`NOT_FOUND: ${target} ${why}`);
    }
    await expect(stat(join(dir, "sever-data"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readdir(own)).toEqual(["a.jpg"]);

    // The split deployment of the README: its CAS alone holds blocks that only the other's names reach.
    const casData = join(dir, "cas-data");
    const cas = await startServer(["--only", "cas", "--listen", "127.0.0.1:0", "--data", casData]);
    const ns = await startServer(["--only", "ns", "--listen", "127.0.0.1:0", "--data", join(dir, "ns-data")]);
    const endpoints = (casUrl: string) => ["--cas", casUrl, "--ns", ns.url];
    const sent = await runCli(["send", "--unsigned", "--name", "notes", "--data", join(dir, "notes"), "--embed", "none", ...endpoints(cas.url)], { stdin: lines(300) });
    expect(sent.code, sent.stderr).toBe(0);
    await stop(cas.process);
    const refused = await runCli(["gc", "--data", casData, "--grace", "0s"]);
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stderr).toContain(`NOT_FOUND: ${casData} holds no name store`);
    expect(await readdir(casData)).toEqual(["cas"]);
    const again = await startServer(["--only", "cas", "--listen", "127.0.0.1:0", "--data", casData]);
    const read = await runCli(["cat", "notes", "--unsigned", ...endpoints(again.url)]);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trimEnd().split("\n")).toHaveLength(300);
  });

  it("--data stops at a damaged pack with DATA_LOSS naming it, and leaves it in place, dry run or not", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(50) })).code).toBe(0);
    await stop(server.process);
    const packs = join(data, "cas", "packs");
    const [pack] = (await readdir(packs)).filter((name) => name.endsWith(".pack"));
    const bytes = await readFile(join(packs, pack));
    bytes[bytes.length - 1] ^= 0xff; // the trailer: its index no longer checks out
    await writeFile(join(packs, pack), bytes);
    for (const dry of [["--dry-run"], []]) {
      const gc = await runCli(["gc", "--data", data, "--grace", "0s", ...dry]);
      expect(gc.code, gc.stdout).toBe(1);
      expect(gc.stderr).toContain(`DATA_LOSS: gc stopped, nothing swept: pack ${join(packs, pack)} is damaged`);
      // The old gc moved it into quarantine/ (a dry run too), then reported success.
      expect(await readFile(join(packs, pack))).toEqual(bytes);
      await expect(stat(join(data, "cas", "quarantine"))).rejects.toMatchObject({ code: "ENOENT" });
    }
  });

  it("refuses --data while a server holds the directory", async () => {
    const dir = await tempDir();
    await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const refused = await runCli(["gc", "--data", join(dir, "server")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFLICT: .* is in use.*gc --server URL/);
  });
});
