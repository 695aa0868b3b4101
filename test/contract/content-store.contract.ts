import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ContentStore } from "../../core/content-store.js";
import { addressOf, equalBytes, parseAddress } from "../../core/hash.js";

/** stats() is optional: the checks that use it run only for backends that offer it. */
function statsOf(store: ContentStore): { blocks: number; bytes: number } | undefined {
  return store.stats?.();
}

const text = (s: string) => new TextEncoder().encode(s);

export interface ContentStoreContractOptions {
  /**
   * Blocks in the one-call bulk case; default 10,000. A backend that pays one network request per
   * block on a slow test node may ask for fewer, so the case stays within its timeout.
   */
  bulkBlocks?: number;
}

/**
 * The ContentStore contract. Every backend runs it with a fresh store per case:
 * `contentStoreContract("fs", () => FsContentStore.open(dir), (s) => s.close())`.
 */
export function contentStoreContract(
  name: string,
  setup: () => Promise<ContentStore>,
  teardown: (store: ContentStore) => Promise<void>,
  options: ContentStoreContractOptions = {},
): void {
  const bulk = options.bulkBlocks ?? 10_000;
  describe(`${name} content store - contract`, () => {
    let store: ContentStore;
    beforeEach(async () => {
      store = await setup();
    });
    afterEach(async () => {
      await teardown(store);
    });

    it("put then get returns the same bytes, at the address addressOf gives", async () => {
      const blocks = [text("alpha"), text("beta"), randomBytes(300)];
      const addresses = await store.putMany(blocks);
      expect(addresses).toHaveLength(3);
      addresses.forEach((address, i) => {
        expect(equalBytes(address, addressOf(blocks[i]))).toBe(true);
        // Every address we hand out is one the rest of the system accepts.
        expect(() => parseAddress(address)).not.toThrow();
      });
      const got = await store.getMany(addresses);
      got.forEach((block, i) => expect(block && equalBytes(block, blocks[i])).toBe(true));
    });

    it("putting a block again is a no-op that returns the same address", async () => {
      const block = text("same block");
      const [first] = await store.putMany([block]);
      const before = statsOf(store);
      const [second] = await store.putMany([block]);
      expect(equalBytes(first, second)).toBe(true);
      if (before) expect(statsOf(store)).toEqual(before);
      expect((await store.getMany([first]))[0]).toEqual(block);
    });

    it("duplicates within one call are stored once and each gets its address", async () => {
      const a = text("a");
      const b = text("b");
      const before = statsOf(store);
      const addresses = await store.putMany([a, a, b, a]);
      expect(addresses.map((x) => equalBytes(x, addressOf(a)))).toEqual([true, true, false, true]);
      expect(equalBytes(addresses[2], addressOf(b))).toBe(true);
      if (before) expect(statsOf(store)).toEqual({ blocks: before.blocks + 2, bytes: before.bytes + 2 });
      const got = await store.getMany(addresses);
      expect(got.map((x) => x && new TextDecoder().decode(x))).toEqual(["a", "a", "b", "a"]);
    });

    it("stores an empty block", async () => {
      const [address] = await store.putMany([new Uint8Array(0)]);
      expect(equalBytes(address, addressOf(new Uint8Array(0)))).toBe(true);
      expect(await store.has(address)).toBe(true);
      const [got] = await store.getMany([address]);
      expect(got).toBeInstanceOf(Uint8Array);
      expect(got!.length).toBe(0);
    });

    it("a block never stored gets undefined, next to stored ones", async () => {
      const [stored] = await store.putMany([text("here")]);
      const missing = addressOf(text("never stored"));
      const got = await store.getMany([missing, stored, missing]);
      expect(got[0]).toBeUndefined();
      expect(got[1]).toEqual(text("here"));
      expect(got[2]).toBeUndefined();
      expect(await store.getMany([])).toEqual([]);
    });

    it("has() tells stored from missing", async () => {
      const [address] = await store.putMany([text("has me")]);
      expect(await store.has(address)).toBe(true);
      expect(await store.has(addressOf(text("not me")))).toBe(false);
    });

    it("keeps its own copy: changing the caller's buffer afterwards changes nothing", async () => {
      const block = text("original");
      const [address] = await store.putMany([block]);
      block.fill(0);
      expect((await store.getMany([address]))[0]).toEqual(text("original"));
    });

    it("parallel putMany calls with overlapping blocks all succeed and store each block once", async () => {
      const blocks = Array.from({ length: 200 }, (_, i) => text(`parallel ${i}`));
      const calls = Array.from({ length: 20 }, (_, c) => blocks.filter((_, i) => i % 20 === c || i % 7 === c % 7));
      const before = statsOf(store);
      const results = await Promise.all(calls.map((call) => store.putMany(call)));
      results.forEach((addresses, c) => addresses.forEach((address, i) => expect(equalBytes(address, addressOf(calls[c][i]))).toBe(true)));
      const got = await store.getMany(blocks.map(addressOf));
      got.forEach((block, i) => expect(block && equalBytes(block, blocks[i])).toBe(true));
      if (before) expect(statsOf(store)!.blocks).toBe(before.blocks + 200);
    });

    it("parallel getMany and putMany calls see every block that was stored", async () => {
      const first = Array.from({ length: 100 }, (_, i) => text(`first ${i}`));
      const firstAddresses = await store.putMany(first);
      const more = Array.from({ length: 10 }, (_, c) => Array.from({ length: 50 }, (_, i) => text(`more ${c} ${i}`)));
      const [reads] = await Promise.all([Promise.all(Array.from({ length: 10 }, () => store.getMany(firstAddresses))), ...more.map((blocks) => store.putMany(blocks))]);
      for (const got of reads) got.forEach((block, i) => expect(block && equalBytes(block, first[i])).toBe(true));
      const all = more.flat();
      const got = await store.getMany(all.map(addressOf));
      got.forEach((block, i) => expect(block && equalBytes(block, all[i])).toBe(true));
    });

    it("stores a 1 MiB block", async () => {
      const big = randomBytes(1024 * 1024);
      const [address] = await store.putMany([big]);
      expect(equalBytes(address, addressOf(big))).toBe(true);
      const [got] = await store.getMany([address]);
      expect(got!.length).toBe(big.length);
      expect(equalBytes(got!, big)).toBe(true);
    });

    it(`stores and returns ${bulk.toLocaleString("en")} blocks in one call each way`, async () => {
      const blocks = Array.from({ length: bulk }, (_, i) => text(`message number ${i} `.repeat(1 + (i % 20))));
      const addresses = await store.putMany(blocks);
      expect(addresses).toHaveLength(bulk);
      const got = await store.getMany(addresses);
      let same = 0;
      got.forEach((block, i) => (same += block && equalBytes(block, blocks[i]) ? 1 : 0));
      expect(same).toBe(bulk);
      const stats = statsOf(store);
      if (stats) expect(stats).toEqual({ blocks: bulk, bytes: blocks.reduce((sum, b) => sum + b.length, 0) });
    });

    it("preserves order: addresses follow the input, and getMany follows the addresses asked", async () => {
      const blocks = Array.from({ length: 50 }, (_, i) => text(`ordered ${i}`));
      const addresses = await store.putMany(blocks);
      addresses.forEach((address, i) => expect(equalBytes(address, addressOf(blocks[i]))).toBe(true));
      const order = [...blocks.keys()].reverse().filter((i) => i % 3 !== 0).concat([7, 7, 0]);
      const got = await store.getMany(order.map((i) => addresses[i]));
      got.forEach((block, j) => expect(new TextDecoder().decode(block!)).toBe(`ordered ${order[j]}`));
    });

    it("close is idempotent", async () => {
      await store.putMany([text("before close")]);
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
