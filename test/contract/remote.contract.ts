import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isRemoteLogError } from "../../core/errors.js";
import { addressOf, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { LogReader } from "../../core/log-reader.js";
import { BLOCKS_A_ROUND_WITHOUT_BOUND, WatchUnsupportedError, blocksWithin, type LogRemote } from "../../core/log-remote.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";
import { decodePage, encodePage, planPages } from "../../core/page.js";

const text = (s: string) => new TextEncoder().encode(s);

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => (isRemoteLogError(err) ? err.code : `not a RemoteLogError: ${String(err)}`),
  );
}

export interface RemoteContractOptions {
  /** Whether the NS pushes heads (watchName yields); otherwise watchName throws WatchUnsupportedError. */
  watches: boolean;
  /** Whether it sends a chain's linked pages along (getPagesWithLinked); otherwise it has no such method. */
  linkedPages: boolean;
  /** Whether the CAS bounds an answer's bytes (getBlocksWithin); otherwise blocksWithin fetches BLOCKS_A_ROUND_WITHOUT_BOUND at a time. */
  boundsAnswers: boolean;
}

/**
 * The client port (core/log-remote.ts): what every verb relies on of a CAS and an NS, whatever carries
 * them. Remote (Connect to remotelog's services) and KuboRemote (a Kubo node's RPC API) both pass it.
 * Signed names only, the one kind every NS holds.
 */
export function remoteContract(label: string, open: () => Promise<{ remote: LogRemote; close(): Promise<void> }>, options: RemoteContractOptions): void {
  describe(`remote contract - ${label}`, () => {
    let remote: LogRemote;
    let close: () => Promise<void>;
    beforeEach(async () => {
      ({ remote, close } = await open());
    });
    afterEach(async () => {
      remote.close();
      await close();
    });

    it("stores blocks idempotently and returns them in request order; a missing one is NOT_FOUND", async () => {
      const blocks = [text(`one ${Math.random()}`), text(`two ${Math.random()}`), text(`three ${Math.random()}`)];
      await remote.putBlocks(blocks);
      await remote.putBlocks(blocks.slice(1));
      expect(await remote.getBlocks(blocks.map(addressOf).reverse())).toEqual(blocks.slice().reverse());
      expect(await remote.getBlock(addressOf(blocks[0]))).toEqual(blocks[0]);
      const missing = addressOf(text(`absent ${Math.random()}`));
      expect(await codeOf(remote.getBlock(missing))).toBe("NOT_FOUND");
      expect(await codeOf(remote.getBlocks([addressOf(blocks[0]), missing]))).toBe("NOT_FOUND");
    });

    it("tells which blocks it lacks: undefined for each in its place, the others as stored, over answers that page", async () => {
      // Optional in the port; both of these implement it, and a reader that reports faults relies on it.
      expect(typeof remote.getBlocksAllowingMissing).toBe("function");
      // 12 blocks of almost 1 MiB: more than one answer of a server's 8 MiB, so that missing ones land in later answers too.
      const blocks = Array.from({ length: 12 }, () => randomBytes((1 << 20) - 64));
      await remote.putBlocks(blocks);
      const absent = Array.from({ length: 12 }, () => addressOf(randomBytes(40)));
      const addresses = blocks.flatMap((block, i) => (i % 3 === 0 ? [absent[i], addressOf(block), absent[i + 1]] : [addressOf(block)]));
      const expected = blocks.flatMap((block, i) => (i % 3 === 0 ? [undefined, block, undefined] : [block]));
      const got = await remote.getBlocksAllowingMissing!(addresses);
      expect(got.length).toBe(expected.length);
      got.forEach((bytes, i) => expect(bytes === undefined ? undefined : Buffer.compare(bytes, expected[i]!), `block ${i}`).toBe(expected[i] === undefined ? undefined : 0));
    });

    it("fetches only the first blocks within a byte budget, the first whatever its size; missing ones are undefined in their place", async () => {
      expect(typeof remote.getBlocksWithin).toBe(options.boundsAnswers ? "function" : "undefined");
      const size = 256 << 10;
      const blocks = Array.from({ length: 24 }, () => randomBytes(size));
      await remote.putBlocks(blocks);
      const absent = addressOf(randomBytes(40));
      // The third is missing: it costs the budget nothing.
      const addresses = [addressOf(blocks[0]), addressOf(blocks[1]), absent, ...blocks.slice(2).map(addressOf)];
      const expected = [blocks[0], blocks[1], undefined, ...blocks.slice(2)];
      const within = blocksWithin(remote);
      const fetchedWithin = async (maxBytes: number) => {
        const got = await within(addresses, maxBytes);
        got.forEach((bytes, i) => expect(bytes === undefined ? undefined : Buffer.compare(bytes, expected[i]!), `block ${i} of ${got.length}`).toBe(expected[i] === undefined ? undefined : 0));
        return got.length;
      };
      // The whole list when the budget holds it; nothing fetched past it, beyond what the remote can bound.
      expect(await fetchedWithin(100 << 20)).toBe(addresses.length);
      if (options.boundsAnswers) {
        expect(await fetchedWithin(1)).toBe(1);
        expect(await fetchedWithin(size * 4)).toBe(5);
        expect(await fetchedWithin(size * 4 + 1)).toBe(6);
      } else {
        expect(await fetchedWithin(1)).toBe(BLOCKS_A_ROUND_WITHOUT_BOUND);
        // The first round holds the missing block and BLOCKS_A_ROUND_WITHOUT_BOUND - 1 others.
        expect(await fetchedWithin(size * (BLOCKS_A_ROUND_WITHOUT_BOUND - 1))).toBe(BLOCKS_A_ROUND_WITHOUT_BOUND);
        expect(await fetchedWithin(size * (BLOCKS_A_ROUND_WITHOUT_BOUND - 1) + 1)).toBe(addresses.length);
      }
    });

    it("a name never updated is undefined; a signed update's version is its sequence, and the head comes back as stored", async () => {
      const key = await generateNameKey();
      const name = keyName(key);
      expect(await remote.fetchName(name)).toBeUndefined();
      const page = text(`head ${Math.random()}`);
      const record = await createNameRecord(key, page, 3n);
      await remote.putBlocks([page]);
      expect(await remote.updateName(name, page, 0n, record)).toBe(3n);
      expect(await remote.fetchName(name)).toEqual({ content: page, version: 3n, record });
      // The same update again changes nothing and is not an error: a retried publish.
      expect(await remote.updateName(name, page, 3n, record)).toBe(3n);
    });

    it("refuses what the NS must refuse, and the name stays as it was", async () => {
      const key = await generateNameKey();
      const name = keyName(key);
      const first = text(`first ${Math.random()}`);
      await remote.putBlocks([first]);
      await remote.updateName(name, first, 0n, await createNameRecord(key, first, 1n));
      const next = text(`next ${Math.random()}`);
      await remote.putBlocks([next]);
      // A lost race: the name is no longer at the expected version.
      expect(await codeOf(remote.updateName(name, next, 0n, await createNameRecord(key, next, 2n)))).toBe("ABORTED");
      // No record, another key's record, a record for other content, an older sequence.
      expect(await codeOf(remote.updateName(name, next, 1n))).toBe("PERMISSION_DENIED");
      expect(await codeOf(remote.updateName(name, next, 1n, await createNameRecord(await generateNameKey(), next, 2n)))).toBe("PERMISSION_DENIED");
      expect(await codeOf(remote.updateName(name, next, 1n, await createNameRecord(key, first, 2n)))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(remote.updateName(name, next, 1n, await createNameRecord(key, next, 0n)))).toBe("CONFLICT");
      expect((await remote.fetchName(name))?.content).toEqual(first);
    });

    it("pushes heads, or says it cannot", async () => {
      const key = await generateNameKey();
      const name = keyName(key);
      const page = text(`watched ${Math.random()}`);
      await remote.putBlocks([page]);
      await remote.updateName(name, page, 0n, await createNameRecord(key, page, 1n));
      const stop = new AbortController();
      try {
        const watch = remote.watchName(name, stop.signal);
        if (options.watches) expect((await watch.next()).value).toMatchObject({ content: page, version: 1n });
        else await expect(watch.next()).rejects.toBeInstanceOf(WatchUnsupportedError);
      } finally {
        stop.abort();
      }
    });

    it("a log published through it reads back whole through the log reader, every page and message checked", async () => {
      const key = await generateNameKey();
      const name = keyName(key);
      const entries = Array.from({ length: 20 }, (_, i) => {
        const message = newMessage(text("contract"), BigInt(i), randomBytes(16));
        const data = encodeMessage(message);
        return { id: messageId(message), address: addressOf(data), data };
      });
      const plan = planPages(entries, new Uint8Array(0), 4, "none");
      await remote.putBlocks([...entries.map((entry) => entry.data), ...plan.sealed.map((page) => page.bytes)]);
      const head = encodePage(plan.head);
      await remote.updateName(name, head, 0n, await createNameRecord(key, head, 1n));

      const reader = new LogReader(remote, name, { maxPages: 10 });
      const opened = await reader.require();
      expect(opened.sequence).toBe(1n);
      const walk = await reader.walk(opened.page);
      expect(walk.pages).toBe(5);
      const { data } = await reader.readMessages(walk.pairs);
      expect(data).toEqual(entries.map((entry) => entry.data));
      // The same head read with a floor above its sequence is a rollback.
      expect(await codeOf(reader.open({ floor: 2n }))).toBe("CONFLICT");
      expect(await codeOf(new LogReader(remote, name, { maxPages: 3 }).walk(opened.page))).toBe("DATA_LOSS");
    });

    it("sends along the pages a chain's pages link to that a reader from a seqid needs, where it can; the pages asked come back in order", async () => {
      if (!options.linkedPages) return expect(remote.getPagesWithLinked).toBeUndefined();
      const entries = Array.from({ length: 40 }, (_, i) => {
        const message = newMessage(text("contract"), BigInt(i), randomBytes(16));
        const data = encodeMessage(message);
        return { id: messageId(message), address: addressOf(data), data };
      });
      const plan = planPages(entries, new Uint8Array(0), 4, "none");
      await remote.putBlocks([...entries.map((entry) => entry.data), ...plan.sealed.map((page) => page.bytes)]);
      const asked = plan.head.info!.skips.map((skip) => skip.address);
      for (const fromSeqid of [0, 21, 36]) {
        const { blocks, linked } = await remote.getPagesWithLinked!(asked, fromSeqid, 1 << 20);
        expect(blocks.map((bytes) => toHex(addressOf(bytes)))).toEqual(asked.map(toHex));
        for (const page of linked) expect(toHex(addressOf(page.bytes))).toBe(toHex(page.address));
        // Every sealed page holding a seqid at or after fromSeqid, but those asked: each once.
        const needed = plan.sealed.filter((page) => {
          const info = decodePage(page.bytes, "page").info!;
          return Number(info.firstSeqid) + info.count - 1 >= fromSeqid;
        });
        const askedKeys = new Set(asked.map(toHex));
        expect(linked.map((page) => toHex(page.address)).sort()).toEqual(needed.map((page) => toHex(page.address)).filter((key) => !askedKeys.has(key)).sort());
      }
      // Bounded by the bytes the caller gives: at most that much, whole pages.
      const small = await remote.getPagesWithLinked!(asked, 0, plan.sealed[0].bytes.length * 2);
      expect(small.linked.reduce((sum, page) => sum + page.bytes.length, 0)).toBeLessThanOrEqual(plan.sealed[0].bytes.length * 2);
      // Message blocks link to nothing.
      expect((await remote.getPagesWithLinked!([entries[0].address], 0, 1 << 20)).linked).toEqual([]);
    });

    it("a round trip, where it can tell one, is a number of ms once a call has been made, and never a failure", async () => {
      await remote.fetchName("round-trip");
      const ms = await remote.roundTripMs?.();
      if (ms !== undefined) expect(ms).toBeGreaterThanOrEqual(0);
    });

    it("close is idempotent", () => {
      remote.close();
      remote.close();
    });
  });
}

