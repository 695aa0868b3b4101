import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Remote } from "../../actors/remote.js";
import { Receiver } from "../../actors/receiver.js";
import { Sender } from "../../actors/sender.js";
import { isRemoteLogError } from "../../core/errors.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { BlockService, GetManyRequestSchema } from "../../gen/remotelog/v1/blocks_pb.js";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { BlockServiceImpl } from "../../services/block-service.js";
import { addressOf, addressText, toHex } from "../../core/hash.js";
import { LogReader } from "../../core/log-reader.js";
import type { PagesWithLinked } from "../../core/log-remote.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

const GROUP = new TextEncoder().encode("linked");
const COUNT = 3000;

/** A real Remote whose page calls are counted: those of getPagesWithLinked, and getBlocks calls of pages only. */
class CountingRemote extends Remote {
  linkedCalls = 0;
  plainPageCalls = 0;
  linkedBytes = 0;
  pageKeys = new Set<string>();

  override async getPagesWithLinked(addresses: Uint8Array[], fromSeqid: number, maxLinkedBytes: number): Promise<PagesWithLinked> {
    this.linkedCalls++;
    const answer = await super.getPagesWithLinked(addresses, fromSeqid, maxLinkedBytes);
    this.linkedBytes += answer.linked.reduce((sum, page) => sum + page.bytes.length, 0);
    return this.alter(answer);
  }

  override async getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> {
    if (addresses.every((address) => this.pageKeys.has(toHex(address)))) this.plainPageCalls++;
    return super.getBlocks(addresses);
  }

  /** What a hostile server would change in an answer; nothing here. */
  protected alter(answer: PagesWithLinked): PagesWithLinked {
    return answer;
  }
}

/** A Remote that does not offer linked pages: the collection fetches by rounds, as from an older server. */
class RoundsRemote extends CountingRemote {}
(RoundsRemote.prototype as { getPagesWithLinked?: unknown }).getPagesWithLinked = undefined;

describe("a receiver collects a chain's pages with the linked pages a server sends along (GetMany linked_pages)", () => {
  let server: Listening;
  let pageKeys: Set<string>;

  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    const log = new MemoryLocalLog();
    const sender = new Sender({ name: "chain", log, published: new MemoryCheckpointStore(), remote, pageSize: 16, embed: "none" });
    await sender.append(Array.from({ length: COUNT }, (_, i) => new TextEncoder().encode(`message ${i}`)), GROUP, 1n);
    await sender.publish();
    // Every page's address, from a walk by tails.
    pageKeys = new Set();
    const reader = new LogReader(remote, "chain");
    await reader.walk((await reader.require()).page, {}, (address) => pageKeys.add(toHex(address)));
    remote.close();
  });
  afterAll(async () => {
    await server?.close();
  });

  const open = <T extends CountingRemote>(Kind: new (options: { casUrl: string; nsUrl: string }) => T): T => {
    const remote = new Kind({ casUrl: server.url, nsUrl: server.url });
    remote.pageKeys = pageKeys;
    return remote;
  };

  async function syncAll(remote: CountingRemote): Promise<string[]> {
    const bodies: string[] = [];
    await new Receiver({ name: "chain", remote, checkpoints: new MemoryCheckpointStore() }).sync(async (batch) => {
      for (const delivery of batch) bodies.push(new TextDecoder().decode(delivery.message!.body));
    });
    return bodies;
  }

  /** The page calls of a collection as a receiver makes it (it holds 64 pages, and reads the others again as it delivers). */
  async function collectionCalls(remote: CountingRemote): Promise<{ linkedCalls: number; plainPageCalls: number }> {
    const reader = new LogReader(remote, "chain");
    const collected = await reader.collect((await reader.require()).page, 0, { holdPages: 64, tellUnheld: false });
    expect(collected.last - collected.first + 1).toBe(pageKeys.size + 1);
    return { linkedCalls: remote.linkedCalls, plainPageCalls: remote.plainPageCalls };
  }

  it("a fresh receiver gets every page in one call and delivers the whole log in order; without them it takes rounds", async () => {
    expect(pageKeys.size).toBeGreaterThan(180);
    const linked = open(CountingRemote);
    const rounds = open(RoundsRemote);
    try {
      // The head's links in one call, and every other page sent along with them.
      expect(await collectionCalls(linked)).toEqual({ linkedCalls: 1, plainPageCalls: 0 });
      const byRounds = await collectionCalls(rounds);
      expect(byRounds.linkedCalls).toBe(0);
      expect(byRounds.plainPageCalls).toBeGreaterThanOrEqual(6);
      const expected = Array.from({ length: COUNT }, (_, i) => `message ${i}`);
      expect(await syncAll(linked)).toEqual(expected);
      expect(await syncAll(rounds)).toEqual(expected);
    } finally {
      linked.close();
      rounds.close();
    }
  });

  it("a receiver from a seq near the end is sent only the pages it needs", async () => {
    const near = open(CountingRemote);
    const fresh = open(CountingRemote);
    try {
      const bodies: string[] = [];
      await new Receiver({ name: "chain", remote: near, checkpoints: new MemoryCheckpointStore(), fromSeq: 2900 }).sync(async (batch) => {
        for (const delivery of batch) bodies.push(new TextDecoder().decode(delivery.message!.body));
      });
      expect(bodies).toEqual(Array.from({ length: COUNT - 2900 }, (_, i) => `message ${2900 + i}`));
      await syncAll(fresh);
      // The pages of the last 100 messages and a few links, not the chain's ~190.
      expect(near.linkedCalls).toBe(1);
      expect(near.linkedBytes).toBeGreaterThan(0);
      expect(near.linkedBytes).toBeLessThan(fresh.linkedBytes / 10);
    } finally {
      near.close();
      fresh.close();
    }
  });

  it("the server sends them to a Connect JSON client too, and none to a call it answers only in part", async () => {
    const reader = new LogReader(new Remote({ casUrl: server.url, nsUrl: server.url }), "chain");
    const head = (await reader.require()).page;
    const asked = head.info!.skips.map((skip) => skip.address);
    const json = createClient(BlockService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", useBinaryFormat: false }));
    const answer = await json.getMany({ ids: asked, partialOk: true, linkedPages: { fromSeqid: 0n } });
    expect(answer.blocks.length).toBe(asked.length);
    expect(answer.linkedIds.map(toHex).sort()).toEqual([...pageKeys].filter((key) => !asked.some((address) => toHex(address) === key)).sort());
    answer.linked.forEach((bytes, i) => expect(toHex(addressOf(bytes))).toBe(toHex(answer.linkedIds[i])));
  });

  it("pages of links to nothing stored cost the server at most a GetMany's worth of lookups in all", async () => {
    class CountingStore extends MemoryContentStore {
      looked = 0;
      override async getMany(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
        this.looked += addresses.length;
        return super.getMany(addresses);
      }
    }
    const store = new CountingStore();
    const service = new BlockServiceImpl(store, { maxBatchBlocks: 8 });
    // Blocks laid out as pages, each linking to the next and to 7 blocks no one stored: anyone may store such blocks.
    const missing = (page: number) => Array.from({ length: 7 }, (_, i) => addressOf(new TextEncoder().encode(`nothing ${page}.${i}`)));
    const pageLinking = (next: Uint8Array | undefined, n: number) => {
      const links = next ? [next, ...missing(n)] : [...missing(n), addressOf(new TextEncoder().encode(`nothing ${n}`))];
      const skips = links.map((address, i) => ({ address, firstSeqid: BigInt(100 - i), number: BigInt(100 - i) }));
      return toBinary(RemoteLogSchema, create(RemoteLogSchema, { tail: links[0], info: { firstSeqid: 1000n, count: 0, number: 1000n, skips } }));
    };
    let next: Uint8Array | undefined;
    let first: Uint8Array | undefined;
    for (let n = 5; n >= 1; n--) {
      const page = pageLinking(next, n);
      [next] = await store.putMany([page]);
      first = page;
    }
    store.looked = 0;
    const answer = await service.getMany(create(GetManyRequestSchema, { ids: [next!], linkedPages: { fromSeqid: 0n } }));
    expect(answer.blocks).toEqual([first]);
    // The block asked for, and 8 links in all: the second page, whose links are not looked up then. Level
    // by level without a bound in all, a chain of such pages cost 8, 7, 6… lookups a page.
    expect(store.looked).toBe(1 + 8);
    expect(answer.linked.length).toBe(1);
  });

  it("a linked page that is not what its link promised is DATA_LOSS naming it, and nothing is delivered", async () => {
    let damaged: string[] = [];
    class Flipping extends CountingRemote {
      protected override alter(answer: PagesWithLinked): PagesWithLinked {
        const victim = answer.linked[answer.linked.length >> 1];
        damaged = [addressText(victim.address)];
        const bytes = victim.bytes.slice();
        bytes[bytes.length - 3] ^= 1;
        return { blocks: answer.blocks, linked: answer.linked.map((page) => (page === victim ? { address: page.address, bytes } : page)) };
      }
    }
    class Swapping extends CountingRemote {
      protected override alter(answer: PagesWithLinked): PagesWithLinked {
        // Two intact pages, each under the other's address.
        const [a, b] = answer.linked;
        damaged = [addressText(a.address), addressText(b.address)];
        return { blocks: answer.blocks, linked: [{ address: a.address, bytes: b.bytes }, { address: b.address, bytes: a.bytes }, ...answer.linked.slice(2)] };
      }
    }
    for (const remote of [open(Flipping), open(Swapping)] as CountingRemote[]) {
      try {
        let delivered = 0;
        const failure = await new Receiver({ name: "chain", remote, checkpoints: new MemoryCheckpointStore() })
          .sync(async (batch) => {
            delivered += batch.length;
          })
          .then(() => undefined, (err: unknown) => err);
        expect(isRemoteLogError(failure, "DATA_LOSS"), String(failure)).toBe(true);
        const text = String((failure as Error).message);
        expect(text).toMatch(/does not hash to its address/);
        expect(damaged.some((address) => text.includes(address)), text).toBe(true);
        expect(delivered).toBe(0);
      } finally {
        remote.close();
      }
    }
  });
});
