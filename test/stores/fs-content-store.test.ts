import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, truncate, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ContentStore } from "../../core/content-store.js";
import { addressOf, addressText, equalBytes } from "../../core/hash.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { encodePack } from "../../stores/fs/pack.js";
import { contentStoreContract } from "../contract/content-store.contract.js";
import { deadPid, fileCalls, openPaths, TempDirs, failure, text } from "./temp.js";

const contractDirs = new TempDirs();
contentStoreContract(
  "fs",
  async () => FsContentStore.open(await contractDirs.make()),
  async (store: ContentStore) => {
    await store.close();
    await contractDirs.removeAll();
  },
);

async function packFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "packs"))).filter((name) => name.endsWith(".pack")).sort();
}

/** Flips one byte of a file in place. */
async function flipByte(path: string, position: number): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0] ^= 0xff;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

/**
 * A version 1 pack, as stores written before version 2 hold them (stores/fs/pack.ts): index entries
 * of a digest and a length, no CRC-32. Laid out here by hand, so that a change to encodePack cannot
 * change what "version 1" means to the test.
 */
function packV1(blocks: Uint8Array[]): { name: string; bytes: Buffer } {
  const data = Buffer.concat(blocks);
  const index = Buffer.concat(blocks.map((block) => Buffer.concat([createHash("sha256").update(block).digest(), u32(block.length)])));
  const fields = Buffer.concat([u64(8 + data.length), u32(blocks.length), u32(1)]);
  const checksum = createHash("sha256").update(index).update(fields).digest();
  const bytes = Buffer.concat([Buffer.from("RLPK", "latin1"), u32(1), data, index, fields, checksum, Buffer.from("RLPKEND\n", "latin1")]);
  return { name: `${checksum.subarray(0, 16).toString("hex")}.pack`, bytes };
}

/**
 * A version 2 pack laid out by hand, whose index may claim for a block another digest than its bytes
 * have (claims[i]), with the CRC-32 of the bytes it holds: damage that a CRC-32 alone cannot see.
 */
function packV2(blocks: Uint8Array[], claims: Uint8Array[]): { name: string; bytes: Buffer } {
  const data = Buffer.concat(blocks);
  const index = Buffer.concat(blocks.map((block, i) => Buffer.concat([Buffer.from(claims[i].subarray(4)), u32(block.length), u32(crc32(block))])));
  const fields = Buffer.concat([u64(8 + data.length), u32(blocks.length), u32(2)]);
  const checksum = createHash("sha256").update(index).update(fields).digest();
  const bytes = Buffer.concat([Buffer.from("RLPK", "latin1"), u32(2), data, index, fields, checksum, Buffer.from("RLPKEND\n", "latin1")]);
  return { name: `${checksum.subarray(0, 16).toString("hex")}.pack`, bytes };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

describe("fs content store - packs on disk", () => {
  const dirs = new TempDirs();
  const open_: FsContentStore[] = [];
  const openStore = async (dir: string, options?: { maxOpenFiles?: number }) => {
    const store = await FsContentStore.open(dir, options);
    open_.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(open_.splice(0).map((store) => store.close()));
    await dirs.removeAll();
  });

  it("reopen - every block, the stats and the empty and large blocks survive a close", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const batches = [[text("one"), text("two")], [new Uint8Array(0), randomBytes(1024 * 1024)], Array.from({ length: 500 }, (_, i) => text(`b${i}`))];
    const addresses: Uint8Array[][] = [];
    for (const batch of batches) addresses.push(await store.putMany(batch));
    const stats = store.stats();
    await store.close();

    const again = await openStore(dir);
    expect(again.stats()).toEqual(stats);
    for (const [i, batch] of batches.entries()) {
      const got = await again.getMany(addresses[i]);
      got.forEach((block, j) => expect(block && equalBytes(block, batch[j])).toBe(true));
    }
    expect(await again.check()).toEqual(stats);
  });

  it("version 1 packs (no CRC-32) of an older store are read, re-hashed, checked and swept as before", async () => {
    const dir = await dirs.make();
    const blocks = Array.from({ length: 20 }, (_, i) => text(`old block ${i}`));
    const old = packV1(blocks);
    await mkdir(join(dir, "packs"), { recursive: true });
    await writeFile(join(dir, "packs", old.name), old.bytes);
    const store = await openStore(dir);
    expect(store.stats()).toEqual({ blocks: 20, bytes: blocks.reduce((sum, b) => sum + b.length, 0) });
    expect(await store.getMany(blocks.map(addressOf))).toEqual(blocks);
    expect(await store.check()).toEqual(store.stats());
    // A new block goes into a version 2 pack beside it; both read.
    const [fresh] = await store.putMany([text("new block")]);
    expect(await store.getMany([addressOf(blocks[3]), fresh])).toEqual([blocks[3], text("new block")]);
    // gc rewrites the old pack's live blocks into a version 2 pack, which reads back whole.
    const guard = store.beginGc();
    // One collection at a time; the refusal reaches a remote operator, so it names the store, not its path.
    expect(() => store.beginGc()).toThrow("CONFLICT: a garbage collection of this store is already running");
    const live = new Set(blocks.slice(0, 10).map((block) => Buffer.from(addressOf(block)).toString("latin1")));
    expect(await store.sweepPack(old.name, (key) => live.has(key), guard, Date.now() + 1000)).toMatchObject({ blocks: 10 });
    guard.end();
    expect(await store.getMany(blocks.slice(0, 10).map(addressOf))).toEqual(blocks.slice(0, 10));
    expect(await packFiles(dir)).not.toContain(old.name);
    await store.close();
    const again = await openStore(dir);
    expect(await again.getMany(blocks.slice(0, 10).map(addressOf))).toEqual(blocks.slice(0, 10));
    expect(await again.check()).toEqual(again.stats());
  });

  it("corruption - a damaged byte in a block of a version 1 pack is DATA_LOSS naming the block, its pack and offset", async () => {
    const dir = await dirs.make();
    const blocks = [text("old victim"), text("old neighbour")];
    const old = packV1(blocks);
    await mkdir(join(dir, "packs"), { recursive: true });
    await writeFile(join(dir, "packs", old.name), old.bytes);
    await flipByte(join(dir, "packs", old.name), 8 + 2);
    const store = await openStore(dir);
    const err = await failure(store.getMany(blocks.map(addressOf)), "DATA_LOSS");
    expect(err.message).toContain(`block ${addressText(addressOf(blocks[0]))} in pack ${old.name} does not match its address`);
    expect(err.details).toMatchObject({ address: addressText(addressOf(blocks[0])), offset: 8 });
    expect(await store.getMany([addressOf(blocks[1])])).toEqual([blocks[1]]);
  });

  it("corruption - a block a read found damaged is written again when stored again, and read from the good copy, also after reopening", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const victim = text("a block that rots");
    const neighbour = text("its neighbour");
    await store.putMany([victim, neighbour]);
    const [first] = await packFiles(dir);
    await flipByte(join(dir, "packs", first), 8 + 2); // inside the victim's bytes (the header is 8)
    await failure(store.getMany([addressOf(victim)]), "DATA_LOSS");
    // The old store took the put for a block it held already: acknowledged, nothing written, still unreadable.
    await store.putMany([victim]);
    expect(await packFiles(dir)).toHaveLength(2);
    expect(await store.getMany([addressOf(victim), addressOf(neighbour)])).toEqual([victim, neighbour]);
    expect(store.stats()).toEqual({ blocks: 2, bytes: victim.length + neighbour.length });
    // A put of a block no read found damaged is still taken as stored.
    await store.putMany([neighbour]);
    expect(await packFiles(dir)).toHaveLength(2);
    await store.close();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = await openStore(dir);
    expect(await again.getMany([addressOf(victim), addressOf(neighbour)])).toEqual([victim, neighbour]);
    expect(again.stats()).toEqual({ blocks: 2, bytes: victim.length + neighbour.length });
    // The damaged copy stays where it was, for whoever wants it.
    expect(await packFiles(dir)).toContain(first);
  });

  it("gc re-hashes the blocks it keeps: a block its CRC-32 passes but its address does not is DATA_LOSS, and its pack stays", async () => {
    const dir = await dirs.make();
    const good = text("kept and good");
    const claimed = text("what the index claims");
    const dead = text("dead block");
    // The index claims `claimed` where other bytes lie, with their CRC-32: a read checks the CRC-32
    // only, and hands them over (the receiver catches them against the address); gc must not copy
    // them into a new pack as if they were the block.
    const lying = packV2([good, text("other bytes"), dead], [addressOf(good), addressOf(claimed), addressOf(dead)]);
    await mkdir(join(dir, "packs"), { recursive: true });
    await writeFile(join(dir, "packs", lying.name), lying.bytes);
    const store = await openStore(dir);
    expect(await store.getMany([addressOf(claimed)])).toEqual([text("other bytes")]);
    await failure(store.check(), "DATA_LOSS");
    const guard = store.beginGc();
    const live = new Set([good, claimed].map((block) => Buffer.from(addressOf(block)).toString("latin1")));
    const err = await failure(store.sweepPack(lying.name, (key) => live.has(key), guard, Date.now() + 1000), "DATA_LOSS");
    guard.end();
    expect(err.message).toContain(`block ${addressText(addressOf(claimed))} in pack ${lying.name} does not match its address`);
    expect(await packFiles(dir)).toEqual([lying.name]);
  });

  it("packs - one pack per call that stores something new, of 64 + 40 bytes per block overhead", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const blocks = Array.from({ length: 100 }, (_, i) => text(`block ${i}`));
    await store.putMany(blocks);
    const [pack] = await packFiles(dir);
    const dataBytes = blocks.reduce((sum, b) => sum + b.length, 0);
    expect((await stat(join(dir, "packs", pack))).size).toBe(dataBytes + 100 * 40 + 64);

    await store.putMany(blocks.slice(0, 50));
    expect(await packFiles(dir)).toHaveLength(1);
    await store.putMany([blocks[0], text("new"), blocks[1]]);
    expect(await packFiles(dir)).toHaveLength(2);
    expect(store.stats()).toEqual({ blocks: 101, bytes: dataBytes + 3 });
  });

  it("group commit - calls made while a pack is written share the next pack, and each keeps its own copy", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const blocks = Array.from({ length: 50 }, (_, i) => text(`single ${i}`));
    const calls = blocks.map((block) => store.putMany([block]));
    // The first call's pack is already encoded, the others wait: none of them may see this.
    for (const block of blocks) block.fill(0);
    await Promise.all(calls);
    expect(await packFiles(dir)).toHaveLength(2);
    const got = await store.getMany(Array.from({ length: 50 }, (_, i) => addressOf(text(`single ${i}`))));
    got.forEach((block, i) => expect(block).toEqual(text(`single ${i}`)));
  });

  it("a failed pack write fails its calls with INTERNAL, stores none of their blocks, and later calls work", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    // A pack first, so that packs/ is held open when it goes.
    await store.putMany([text("before")]);
    await rm(join(dir, "packs"), { recursive: true });
    const err = await failure(store.putMany([text("lost")]), "INTERNAL");
    expect(err.message).toContain("ENOENT");
    expect(await store.has(addressOf(text("lost")))).toBe(false);
    await mkdir(join(dir, "packs"));
    const [address] = await store.putMany([text("lost")]);
    expect(await store.getMany([address])).toEqual([text("lost")]);
    if (existsSync("/proc/self/fd")) {
      // The new pack's entry was fsynced in the new packs/, not in the removed one still held open.
      const targets = await openPaths();
      expect(targets.filter((target) => target.startsWith(dir) && target.endsWith("(deleted)"))).toEqual([]);
      expect(targets.filter((target) => target === join(dir, "packs"))).toHaveLength(1);
    }
    await store.close();
  });

  it("a pack write that fails beside a sweep's leaves the sweep's fsync alone: the sweep completes, the put is INTERNAL", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    // A pack of 40 MiB with a fifth of it dead, so that the sweep's copy of the rest takes its while on disk.
    const blocks = Array.from({ length: 160 }, () => new Uint8Array(randomBytes(256 << 10)));
    await store.putMany(blocks);
    const [swept] = await packFiles(dir);
    const keep = blocks.slice(32);
    const live = new Set(keep.map((block) => Buffer.from(addressOf(block)).toString("latin1")));
    // The pack a put of this block writes is a directory already, so its rename fails.
    const doomed = text("doomed");
    const doomedPack = join(dir, "packs", encodePack([doomed], [addressOf(doomed)]).name);
    await mkdir(doomedPack);
    const guard = store.beginGc();
    let settled = false;
    const sweep = store.sweepPack(swept, (key) => live.has(key), guard, Date.now() + 1000).finally(() => (settled = true));
    // The put fails while the sweep writes its new pack: its temporary file is there, and it holds packs/ open.
    while (!settled && !(await readdir(join(dir, "packs"))).some((name) => name.endsWith(".tmp"))) await new Promise((ok) => setImmediate(ok));
    await failure(store.putMany([doomed]), "INTERNAL");
    // Before, the failed write closed packs/ under the sweep, whose fsync then failed (EBADF).
    expect(await sweep).toMatchObject({ blocks: 32 });
    guard.end();
    // Compared with equalBytes: toEqual walks 32 MiB an element at a time.
    const readsBack = async (from: FsContentStore) => (await from.getMany(keep.map(addressOf))).every((block, i) => block !== undefined && equalBytes(block, keep[i]));
    expect(await readsBack(store)).toBe(true);
    await store.close();
    await rm(doomedPack, { recursive: true });
    const reopened = await openStore(dir);
    expect(await readsBack(reopened)).toBe(true);
    expect(await reopened.has(addressOf(doomed))).toBe(false);
    await reopened.close();
  });

  it("corruption - a damaged byte in a block is DATA_LOSS naming the block, and other blocks still read", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const [victim, neighbour] = await store.putMany([text("victim block"), text("neighbour")]);
    const [elsewhere] = await store.putMany([text("in another pack")]);
    const packs = await packFiles(dir);
    // The first pack's data starts after its 8-byte header with the victim block.
    const first = (await readFile(join(dir, "packs", packs[0]))).includes(Buffer.from(text("victim block"))) ? packs[0] : packs[1];
    await flipByte(join(dir, "packs", first), 8 + 3);

    const err = await failure(store.getMany([neighbour, victim]), "DATA_LOSS");
    expect(err.message).toContain(`block ${addressText(victim)} in pack ${first} does not match its address`);
    expect(err.details).toMatchObject({ address: addressText(victim), offset: 8 });
    expect(await store.getMany([neighbour, elsewhere])).toEqual([text("neighbour"), text("in another pack")]);
    await failure(store.check(), "DATA_LOSS");

    // Reopening does not read block bytes, so the store opens; the damage shows again when read.
    await store.close();
    const again = await openStore(dir);
    await failure(again.getMany([victim]), "DATA_LOSS");
  });

  it("corruption - a pack with a damaged index, trailer or header, or renamed, is quarantined at open; its blocks are DATA_LOSS, others read", async () => {
    const damages: [string, (path: string, size: number) => Promise<void>][] = [
      ["index byte", (path, size) => flipByte(path, size - 56 - 40)],
      ["length in the index", (path, size) => flipByte(path, size - 56 - 1)],
      ["trailer count", (path, size) => flipByte(path, size - 48 + 3)],
      ["end magic", (path, size) => flipByte(path, size - 1)],
      ["header magic", (path) => flipByte(path, 0)],
      ["truncation", (path, size) => truncate(path, size - 1)],
      ["emptied", (path) => truncate(path, 0)],
      ["renamed", async (path) => rename(path, join(path, "..", `${"0".repeat(32)}.pack`))],
    ];
    for (const [what, damage] of damages) {
      const dir = await dirs.make();
      const store = await openStore(dir);
      const [a] = await store.putMany([text("a"), text("b"), text("c")]);
      const [victim] = await packFiles(dir);
      const [other] = await store.putMany([text("in a sound pack")]);
      await store.close();
      const path = join(dir, "packs", victim);
      await damage(path, (await stat(path)).size);
      const told: string[] = [];
      const reopened = await FsContentStore.open(dir, { onQuarantine: (name, movedTo) => told.push(name, movedTo) });
      expect(told, what).toHaveLength(2);
      expect(told[1], what).toBe(join(dir, "quarantine", told[0]));
      expect(await stat(told[1])).toBeTruthy();
      expect(reopened.stats().quarantinedPacks, what).toBe(1);
      expect(await reopened.getMany([other]), what).toEqual([text("in a sound pack")]);
      // Where the index still says what it held, its blocks are DATA_LOSS naming them, not just absent.
      if (what === "index byte" || what === "renamed" || what === "header magic") {
        const err = await failure(reopened.getMany([a]), "DATA_LOSS");
        expect(err.message, what).toContain(addressText(a));
        expect(err.message, what).not.toContain(dir);
      }
      // Storing the block again heals it.
      await reopened.putMany([text("a")]);
      expect(await reopened.getMany([a]), what).toEqual([text("a")]);
      await reopened.close();
      // The quarantine is still counted at the next open.
      const third = await FsContentStore.open(dir);
      expect(third.stats().quarantinedPacks, what).toBe(1);
      await third.close();
    }
  });

  it("a pack deleted while the store is open is DATA_LOSS naming the block and the pack", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const [address] = await store.putMany([text("soon gone")]);
    const [pack] = await packFiles(dir);
    await unlink(join(dir, "packs", pack));
    const err = await failure(store.getMany([address]), "DATA_LOSS");
    expect(err.message).toContain(addressText(address));
    expect(err.message).toContain(pack);
  });

  it("leftovers - temporary files of dead writers are removed at open; a live writer's, and a .tmp none of ours named, are kept", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const [address] = await store.putMany([text("kept")]);
    await store.close();
    const packs = join(dir, "packs");
    const dead = `${"a".repeat(32)}.pack.${deadPid()}-0123456789ab.tmp`;
    const odd = "something.tmp";
    const live = `${"b".repeat(32)}.pack.${process.pid}-0123456789ab.tmp`;
    for (const name of [dead, odd, live]) await writeFile(join(packs, name), "half a pack");

    const again = await openStore(dir);
    const left = await readdir(packs);
    expect(left).not.toContain(dead);
    expect(left).toContain(odd);
    expect(left).toContain(live);
    expect(await again.getMany([address])).toEqual([text("kept")]);
  });

  it("a file in packs/ that is not ours fails open with CONFLICT naming it", async () => {
    const dir = await dirs.make();
    await mkdir(join(dir, "packs"), { recursive: true });
    await writeFile(join(dir, "packs", "notes.txt"), "hello");
    const err = await failure(FsContentStore.open(dir), "CONFLICT");
    expect(err.message).toContain("notes.txt");
  });

  it("two stores on one directory (as two processes) may store the same block; reopening counts it once", async () => {
    const dir = await dirs.make();
    const a = await openStore(dir);
    const b = await openStore(dir);
    await a.putMany([text("shared"), text("only a")]);
    await b.putMany([text("shared"), text("only b")]);
    await a.close();
    await b.close();
    expect(await packFiles(dir)).toHaveLength(2);
    const again = await openStore(dir);
    expect(again.stats()).toEqual({ blocks: 3, bytes: 6 + 6 + 6 });
    expect(await again.getMany([addressOf(text("shared")), addressOf(text("only a")), addressOf(text("only b"))])).toEqual([
      text("shared"),
      text("only a"),
      text("only b"),
    ]);
  });

  it("file handles - reads across many packs keep at most maxOpenFiles idle files open", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir, { maxOpenFiles: 2 });
    const blocks = Array.from({ length: 30 }, (_, i) => text(`pack ${i}`));
    for (const block of blocks) await store.putMany([block]);
    const addresses = blocks.map(addressOf);
    const reads = await Promise.all(Array.from({ length: 8 }, (_, r) => store.getMany(r % 2 ? addresses : [...addresses].reverse())));
    reads.forEach((got, r) => {
      const expected = r % 2 ? blocks : [...blocks].reverse();
      got.forEach((block, i) => expect(block && equalBytes(block, expected[i])).toBe(true));
    });
    if (existsSync("/proc/self/fd")) {
      // Pack files; packs/ itself is held open too, for the fsync after each pack.
      const packFds = (await openPaths()).filter((target) => target.startsWith(join(dir, "packs") + "/")).length;
      expect(packFds).toBeLessThanOrEqual(2);
      await store.close();
      const after = (await openPaths()).filter((target) => target.startsWith(dir)).length;
      expect(after).toBe(0);
    }
  });

  it("a close while packs are written lets them finish, durably, and leaves nothing of the store open", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const blocks = Array.from({ length: 8 }, (_, i) => text(`closing ${i}`));
    const puts = blocks.map((block) => store.putMany([block]));
    await store.close();
    await Promise.all(puts);
    const reopened = await openStore(dir);
    expect(await reopened.getMany(blocks.map(addressOf))).toEqual(blocks);
    await reopened.close();
    if (existsSync("/proc/self/fd")) {
      expect((await openPaths()).filter((target) => target.startsWith(dir))).toEqual([]);
    }
  });

  it("a closed store refuses calls with INTERNAL", async () => {
    const store = await openStore(await dirs.make());
    await store.close();
    await failure(store.putMany([text("late")]), "INTERNAL");
    await failure(store.getMany([addressOf(text("late"))]), "INTERNAL");
  });

  it("10,000 blocks of 280 B go in as one pack with a few fsyncs, and come out in a few reads, not one per block", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const blocks = Array.from({ length: 10_000 }, () => randomBytes(280));
    const put = await fileCalls(["write", "writev", "sync", "datasync"], () => store.putMany(blocks));
    const addresses = put.result;
    expect(await packFiles(dir)).toHaveLength(1);
    // The pack and its directory (and packs/ the first time): a handful, whatever the batch.
    expect(put.calls.sync + put.calls.datasync).toBeLessThanOrEqual(4);
    expect(put.calls.write + put.calls.writev).toBeLessThanOrEqual(8);
    const get = await fileCalls(["read"], () => store.getMany(addresses));
    expect(get.result.every((block, i) => block && equalBytes(block, blocks[i]))).toBe(true);
    expect(get.calls.read).toBeLessThanOrEqual(64);
  });
});
