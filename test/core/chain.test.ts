import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { RemoteLogSchema, type RemoteLog } from "../../gen/vac/cas/cas_pb.js";
import { collectedPages, collectPages, walkChain } from "../../core/chain.js";
import { addressOf, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { decodePage, encodePage, planPages, type LogEntry } from "../../core/page.js";

function entries(n: number): LogEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const message = newMessage(new TextEncoder().encode("g"), 1700000000n, new TextEncoder().encode(`m${i}`));
    const data = encodeMessage(message);
    return { id: messageId(message), address: addressOf(data), data };
  });
}

/** A chain of n messages in pages of size, with a CAS of its pages that counts what it is asked. */
function chainOf(n: number, size: number) {
  const plan = planPages(entries(n), new Uint8Array(0), size, "none");
  const blocks = new Map(plan.sealed.map((page) => [toHex(page.address), page.bytes]));
  const asked = { calls: 0, pages: 0 };
  const fetchPages = async (addresses: Uint8Array[]) => {
    asked.calls++;
    asked.pages += addresses.length;
    return addresses.map((address) => {
      const bytes = blocks.get(toHex(address));
      if (!bytes) throw new Error(`no block ${toHex(address)}`);
      return bytes;
    });
  };
  return { plan, blocks, asked, fetchPages };
}

/** A full garbage collection, from a test that was not started with --expose-gc. */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

const seqids = (pages: RemoteLog[]) => pages.flatMap((page) => page.pair.map((pair) => Number(pair.seqid)).reverse());

describe("chain - collecting an indexed chain by skip links", () => {
  it("collects every page of a chain in about log2(pages) rounds, exactly as a walk by tails reads it", async () => {
    const { plan, asked, fetchPages } = chainOf(1000, 4); // 250 pages
    const result = await collectPages(plan.head, 0, fetchPages);
    const pages = await collectedPages(result);
    expect(seqids(pages)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(result.fetched).toBe(249);
    expect(asked.pages).toBe(249);
    expect(result.rounds).toBeLessThanOrEqual(10);
    const walk = await walkChain(plan.head, async (address) => (await fetchPages([address]))[0]);
    expect(pages.flatMap((page) => page.pair).map((pair) => toHex(pair.localHash)).sort()).toEqual(walk.pairs.map((pair) => toHex(pair.localHash)).sort());
  });

  it("fetches a page as soon as a page fetched before links it, without waiting for the other calls under way", async () => {
    const { plan, fetchPages } = chainOf(1000, 4); // 250 pages; the head links pages 248, 240, 224, 192, 128 and 0
    const numberOf = new Map(plan.sealed.map((page, number) => [toHex(page.address), number]));
    const asked: number[] = [];
    let answeredZero = false;
    let release = () => {};
    const zeroHeld = new Promise<void>((resolve) => (release = resolve));
    // Only so that the old way (rounds that wait for their slowest call) ends rather than hangs: the
    // test is the order below, not this bound.
    const fallback = setTimeout(release, 2000);
    const collected = await collectPages(
      plan.head,
      0,
      async (addresses) => {
        const numbers = addresses.map((address) => numberOf.get(toHex(address))!);
        asked.push(...numbers);
        // Page 64 is linked by page 128 only, so asking for it means page 128's links were followed.
        if (numbers.includes(64)) release();
        if (numbers.includes(0)) {
          await zeroHeld;
          answeredZero = true;
        }
        expect(numbers.includes(64) && answeredZero, "page 64 asked for only once page 0's call was answered").toBe(false);
        return fetchPages(addresses);
      },
      { pagesPerCall: 1 },
    );
    clearTimeout(fallback);
    expect(asked.indexOf(64)).toBeGreaterThan(asked.indexOf(128));
    const pages = await collectedPages(collected);
    expect(seqids(pages)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(collected.fetched).toBe(249);
    expect(new Set(asked).size).toBe(249);
    expect(collected.rounds).toBeLessThanOrEqual(10);
  });

  it("seeks to any seqid: the page holding it and every later one, and nothing older", async () => {
    const { plan, fetchPages } = chainOf(203, 8);
    for (const from of [0, 1, 7, 8, 9, 63, 64, 100, 191, 192, 199, 200, 202, 203, 5000]) {
      const collected = await collectPages(plan.head, from, fetchPages);
      const got = seqids(await collectedPages(collected));
      const rounds = collected.rounds;
      const start = Math.min(from, 200) - (Math.min(from, 200) % 8);
      expect(got[0], `from ${from}`).toBe(start);
      expect(got[got.length - 1]).toBe(202);
      expect(rounds).toBeLessThanOrEqual(6);
    }
  });

  it("holds no more than holdPages pages at once, the oldest needed, and fetches the others again (checked) when taken", async () => {
    const { plan, asked, fetchPages } = chainOf(1000, 4); // 250 pages
    const collected = await collectPages(plan.head, 0, fetchPages, {
      holdPages: 8,
      onPages: (got) => {
        for (const { number, held } of got) if (held) expect(number).toBeLessThan(8);
      },
    });
    // What it holds now: pages 0-7, handed over without a fetch; anything else costs a fetch.
    const before = asked.pages;
    const oldest = await collected.take([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(asked.pages).toBe(before);
    expect(seqids(oldest)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    // Taken pages are no longer held: taking them again fetches them again.
    await collected.take([0]);
    expect(asked.pages).toBe(before + 1);
    const rest = await collected.take(Array.from({ length: 242 }, (_, i) => 8 + i)); // pages 8..249, the head last
    expect(asked.pages).toBe(before + 1 + 241);
    expect(seqids([...oldest, ...rest])).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(collected.count(0)).toBe(4);
  });

  it("keeps no fetch answer alive for its links: only the pages it holds keep theirs", async () => {
    const { plan, fetchPages } = chainOf(1000, 4); // 250 pages
    // Each answer is one buffer that its pages are views of, as a GetMany answer is.
    const answers: WeakRef<ArrayBuffer>[] = [];
    const collected = await collectPages(
      plan.head,
      0,
      async (addresses) => {
        const blocks = await fetchPages(addresses);
        const answer = new Uint8Array(blocks.reduce((sum, block) => sum + block.length, 0));
        answers.push(new WeakRef(answer.buffer));
        let at = 0;
        return blocks.map((block) => {
          answer.set(block, at);
          return answer.subarray(at, (at += block.length));
        });
      },
      { holdPages: 1, tellUnheld: false },
    );
    // WeakRefs made in a job hold until it ends, so each collection comes a turn later. Two of them: in
    // one CI run on a loaded machine a single one left one answer more alive, which the next takes.
    for (let collection = 0; collection < 2; collection++) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      collectGarbage();
    }
    const alive = answers.filter((answer) => answer.deref() !== undefined).length;
    // Page 0's answer is held with page 0; before, every answer stayed alive with the links learned from it.
    expect(answers.length).toBeGreaterThan(10);
    expect(alive).toBeLessThanOrEqual(1);
    expect(seqids(await collected.take([0]))).toEqual([0, 1, 2, 3]);
  });

  it("a page fetched again that is not the one collected is DATA_LOSS", async () => {
    const { plan, blocks, fetchPages } = chainOf(100, 4);
    const collected = await collectPages(plan.head, 0, fetchPages, { holdPages: 1 });
    // Page 0 is held; page 1 is fetched again, and now the CAS answers other bytes for it.
    blocks.set(toHex(plan.sealed[1].address), plan.sealed[2].bytes);
    await expect(collected.take(Array.from({ length: 25 }, (_, i) => i))).rejects.toThrowError(/DATA_LOSS/);
  });

  it("needs no fetch when the head holds the seqid", async () => {
    const { plan, asked, fetchPages } = chainOf(20, 8);
    const pages = await collectedPages(await collectPages(plan.head, 17, fetchPages));
    expect(pages).toEqual([plan.head]);
    expect(asked.calls).toBe(0);
  });

  it("refuses a page that is not the one its link promised, a broken tail, and bytes that do not hash: DATA_LOSS", async () => {
    const { plan, blocks, fetchPages } = chainOf(100, 4);
    const addressOfPage = (n: number) => plan.sealed[n].address;
    // A store serving page 3's bytes for page 5: they do not hash to 5's address.
    blocks.set(toHex(addressOfPage(5)), plan.sealed[3].bytes);
    await expect(collectPages(plan.head, 0, fetchPages)).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);
    blocks.set(toHex(addressOfPage(5)), plan.sealed[5].bytes);

    // A writer whose head links page 12 under page 16's number: the bytes hash, the claim does not hold.
    const head = structuredClone(plan.head) as RemoteLog;
    const lie = head.info!.skips.findIndex((skip) => skip.number === 16n);
    head.info!.skips[lie].address = addressOfPage(12);
    const lying = decodePage(toBinary(RemoteLogSchema, head), "head");
    await expect(collectPages(lying, 0, fetchPages)).rejects.toThrowError(/DATA_LOSS: page \S+ is not the page its link promised \(number 16/);

    // Pages that link properly but whose tails make another chain: rebuilt page 20 whose tail is page 18.
    const bent = decodePage(plan.sealed[20].bytes, "p");
    bent.tail = addressOfPage(18);
    bent.info!.skips[0] = { ...bent.info!.skips[0], address: addressOfPage(18) };
    const bentBytes = encodePage(bent);
    const forged = structuredClone(plan.head) as RemoteLog;
    for (const skip of forged.info!.skips) if (skip.number === 20n) skip.address = addressOf(bentBytes);
    blocks.set(toHex(addressOf(bentBytes)), bentBytes);
    await expect(collectPages(decodePage(encodePage(forged), "head"), 0, fetchPages)).rejects.toThrowError(/DATA_LOSS/);
  });
});

describe("chain - walking a chain by tails", () => {
  it("refuses a page that is not the one its tail's link promised, as collectPages does: a chain longer than its pages claim", async () => {
    // Pages that each say "I am page 1, my tail is page 0 from seqid 0", over one real page 0: each
    // decodes alone, and only the link that led to it lies.
    const blocks = new Map<string, Uint8Array>();
    let bytes = encodePage(create(RemoteLogSchema, { tail: new Uint8Array(0), info: { number: 0n, firstSeqid: 0n, count: 0 } }));
    for (let i = 1; i < 5; i++) {
      const tail = addressOf(bytes);
      blocks.set(toHex(tail), bytes);
      bytes = encodePage(create(RemoteLogSchema, { tail, info: { number: 1n, firstSeqid: 1n, count: 0, skips: [{ address: tail, number: 0n, firstSeqid: 0n }] } }));
    }
    const fetched: string[] = [];
    const fetchPage = async (address: Uint8Array) => {
      fetched.push(toHex(address));
      return blocks.get(toHex(address))!;
    };
    await expect(walkChain(decodePage(bytes, "head"), fetchPage)).rejects.toThrowError(/^DATA_LOSS: page \S+ is not the page its link promised \(number 0, from seqid 0\)$/);
    // Refused at the first page fetched, not walked on to page 0.
    expect(fetched).toHaveLength(1);
  });
});
