import { describe, expect, it } from "vitest";
import { addressOf, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { decodePage, encodePage, repeatedBytesUnknown, parseEmbed, planPages, EMBED_MAX_BYTES, positionOf, skipNumbers, verifyPairData, type LogEntry } from "../../core/page.js";
import { walkChain } from "../../core/chain.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { AddManyRequestSchema, GetManyRequestSchema } from "../../gen/remotelog/v1/blocks_pb.js";

function entries(n: number, from = 0): LogEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const message = newMessage(new TextEncoder().encode("g"), 1700000000n + BigInt(from + i), new TextEncoder().encode(`m${from + i}`));
    const data = encodeMessage(message);
    return { id: messageId(message), address: addressOf(data), data };
  });
}

/** A CAS of the sealed pages, for walking what planPages produced. */
function casOf(...plans: ReturnType<typeof planPages>[]) {
  const blocks = new Map<string, Uint8Array>();
  for (const plan of plans) for (const page of plan.sealed) blocks.set(toHex(page.address), page.bytes);
  return async (address: Uint8Array) => {
    const bytes = blocks.get(toHex(address));
    if (!bytes) throw new Error("missing");
    return bytes;
  };
}

describe("page - layout", () => {
  it("keeps a short log in one head page, newest first, with no tail", () => {
    const log = entries(3);
    const plan = planPages(log, new Uint8Array(0), 4, "none");
    expect(plan.sealed).toHaveLength(0);
    expect(plan.head.pair.map((p) => toHex(p.localHash))).toEqual(log.map((e) => toHex(e.id)).reverse());
    expect(plan.head.tail.length).toBe(0);
    expect(plan.referenced).toHaveLength(3);
  });

  it("keeps a full head as the head, and seals it only on the next append", () => {
    expect(planPages(entries(4), new Uint8Array(0), 4, "none").sealed).toHaveLength(0);
    const plan = planPages(entries(5), new Uint8Array(0), 4, "none");
    expect(plan.sealed).toHaveLength(1);
    expect(plan.head.pair).toHaveLength(1);
    expect(plan.head.tail).toEqual(plan.sealed[0].address);
  });

  it("links sealed pages by tail, oldest first, and the walk returns every pair in order", async () => {
    const log = entries(10);
    const plan = planPages(log, new Uint8Array(0), 3, "none");
    expect(plan.sealed).toHaveLength(3);
    expect(decodePage(plan.sealed[0].bytes, "p").tail.length).toBe(0);
    expect(decodePage(plan.sealed[1].bytes, "p").tail).toEqual(plan.sealed[0].address);
    const walk = await walkChain(plan.head, casOf(plan));
    expect(walk.pairs.map((p) => toHex(p.localHash))).toEqual(log.map((e) => toHex(e.id)));
    expect(walk.pages).toBe(4);
  });

  it("appends copy-on-write: old head entries plus new ones give the same chain as one big append", () => {
    const log = entries(9);
    const first = planPages(log.slice(0, 5), new Uint8Array(0), 4, "none"); // head holds 4..4
    const headStart = 5 - first.head.pair.length;
    const second = planPages(log.slice(headStart), first.head.tail, 4, "none", positionOf(first.head));
    const once = planPages(log, new Uint8Array(0), 4, "none");
    expect(encodePage(second.head)).toEqual(encodePage(once.head));
    expect([...first.sealed, ...second.sealed].map((p) => toHex(p.address))).toEqual(once.sealed.map((p) => toHex(p.address)));
  });

  it("embeds all data in every page with all, and only the head's newest K with K", () => {
    const log = entries(7);
    const all = planPages(log, new Uint8Array(0), 3, "all");
    expect(all.referenced).toHaveLength(0);
    expect(decodePage(all.sealed[0].bytes, "p").pair.every((p) => p.data.length > 0)).toBe(true);
    const two = planPages(log, new Uint8Array(0), 3, 2);
    expect(two.head.pair.map((p) => p.data.length > 0)).toEqual([true]);
    expect(decodePage(two.sealed[1].bytes, "p").pair.every((p) => p.data.length === 0)).toBe(true);
    const big = planPages(entries(3), new Uint8Array(0), 3, 2);
    expect(big.head.pair.map((p) => p.data.length > 0)).toEqual([true, true, false]);
    expect(big.referenced.map((e) => toHex(e.id))).toEqual([toHex(entries(3)[0].id)]);
  });

  it("embeds no more than EMBED_MAX_BYTES in a head for K: a message that would pass it is referenced, smaller older ones still embedded", () => {
    const sized = (bytes: number, t: number): LogEntry => {
      const message = newMessage(new TextEncoder().encode("g"), BigInt(t), new Uint8Array(bytes).fill(0x61));
      const data = encodeMessage(message);
      return { id: messageId(message), address: addressOf(data), data };
    };
    // Oldest first: small, 600 KB, small, 600 KB (newest).
    const log = [sized(10, 1), sized(600_000, 2), sized(10, 3), sized(600_000, 4)];
    const plan = planPages(log, new Uint8Array(0), 16, 8);
    // Newest first: the newest 600 KB message is over the budget on its own; the next ones fit.
    const budget = EMBED_MAX_BYTES;
    expect(budget).toBeLessThan(600_000);
    expect(plan.head.pair.map((p) => p.data.length > 0)).toEqual([false, true, false, true]);
    expect(plan.referenced.map((e) => toHex(e.id)).sort()).toEqual([toHex(log[3].id), toHex(log[1].id)].sort());
    expect(encodePage(plan.head).length).toBeLessThan(budget + 1024);
    // Full replication is asked for as such: "all" embeds every message whatever its size.
    expect(planPages(log, new Uint8Array(0), 16, "all").head.pair.every((p) => p.data.length > 0)).toBe(true);
  });

  it("parses embed modes and refuses others", () => {
    expect(parseEmbed("none")).toBe("none");
    expect(parseEmbed("all")).toBe("all");
    expect(parseEmbed("12")).toBe(12);
    expect(() => parseEmbed("-1")).toThrowError(/INVALID_ARGUMENT/);
    expect(() => parseEmbed("some")).toThrowError(/INVALID_ARGUMENT/);
  });

  it("refuses a page size below one", () => {
    expect(() => planPages(entries(1), new Uint8Array(0), 0, "none")).toThrowError(/INVALID_ARGUMENT/);
  });
});

describe("page - encoding", () => {
  it("writes the same bytes as protobuf-es, for every page shape", () => {
    const big = new Uint8Array(200_000).fill(3);
    const shapes = [
      create(RemoteLogSchema, {}),
      create(RemoteLogSchema, { tail: addressOf(new Uint8Array(1)) }),
      planPages(entries(300), new Uint8Array(0), 256, 7).head,
      planPages(entries(9), addressOf(new Uint8Array(2)), 256, "all", null).head,
      planPages(entries(2000), new Uint8Array(0), 16, "none").head,
      create(RemoteLogSchema, { pair: [{ localHash: new Uint8Array(32), seqid: 300n, redacted: true }], info: {} }),
      create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(big), localHash: new Uint8Array(32), data: big }, { localHash: new Uint8Array(32) }] }),
    ];
    for (const page of shapes) expect(encodePage(page)).toEqual(toBinary(RemoteLogSchema, page));
    for (const sealed of planPages(entries(40), new Uint8Array(0), 16, "all").sealed) {
      expect(sealed.bytes).toEqual(toBinary(RemoteLogSchema, fromBinary(RemoteLogSchema, sealed.bytes)));
    }
  });

  it("lays sealed pages of the writer's own entries out as encodePage lays out the pairs they decode to", () => {
    const log = entries(100);
    for (const position of [undefined, null]) {
      for (const embed of ["none", "all", 3] as const) {
        const plan = planPages(log, position === null ? addressOf(new Uint8Array(2)) : new Uint8Array(0), 16, embed, position);
        expect(plan.sealed).toHaveLength(6);
        plan.sealed.forEach((sealed, p) => {
          const page = decodePage(sealed.bytes, "sealed page");
          expect(sealed.bytes).toEqual(encodePage(page));
          expect(sealed.bytes).toEqual(toBinary(RemoteLogSchema, page));
          expect(sealed.address).toEqual(addressOf(sealed.bytes));
          const newestFirst = log.slice(16 * p, 16 * p + 16).reverse();
          expect(page.pair.map((pair) => [pair.remoteHash, pair.localHash, pair.data, pair.seqid, pair.redacted])).toEqual(
            newestFirst.map((entry, i) => [entry.address, entry.id, embed === "all" ? entry.data : new Uint8Array(0), position === null ? 0n : BigInt(16 * p + 15 - i), false]),
          );
        });
        // Sealed pages reference every message they carry no data of, newest first within each page, before the head's.
        const sealedReferenced = embed === "all" ? [] : plan.sealed.flatMap((_, p) => log.slice(16 * p, 16 * p + 16).reverse());
        expect(plan.referenced.slice(0, sealedReferenced.length)).toEqual(sealedReferenced);
      }
    }
  });

  it("a pre-encoded repeated bytes field decodes as the list, beside the request's other fields", () => {
    const lists = [[], [new Uint8Array(0)], [new Uint8Array([1, 2, 3])], [new Uint8Array(127).fill(1), new Uint8Array(128).fill(2), new Uint8Array(0), new Uint8Array(20_000).fill(9)]];
    for (const blocks of lists) {
      const pending = { name: "n", content: new Uint8Array([7]), record: new Uint8Array(0) };
      const request = create(AddManyRequestSchema, { pending });
      request.$unknown = repeatedBytesUnknown(1, blocks);
      const bytes = toBinary(AddManyRequestSchema, request);
      const decoded = fromBinary(AddManyRequestSchema, bytes);
      expect(decoded.blocks).toEqual(blocks);
      expect(decoded.pending?.name).toBe("n");
      expect(decoded.$unknown ?? []).toEqual([]);
      // The same bytes as the list in its own field, apart from field order.
      expect(bytes.length).toBe(toBinary(AddManyRequestSchema, create(AddManyRequestSchema, { blocks, pending })).length);
      const ids = create(GetManyRequestSchema, { partialOk: true });
      ids.$unknown = repeatedBytesUnknown(1, blocks);
      // Alone, exactly the bytes of the list in its own field.
      const alone = create(GetManyRequestSchema, {});
      alone.$unknown = repeatedBytesUnknown(1, blocks);
      expect(toBinary(GetManyRequestSchema, alone)).toEqual(toBinary(GetManyRequestSchema, create(GetManyRequestSchema, { ids: blocks })));
      expect(fromBinary(GetManyRequestSchema, toBinary(GetManyRequestSchema, ids))).toMatchObject({ ids: blocks, partialOk: true });
    }
  });
});

describe("page - seqids and skip links", () => {
  it("numbers pairs and pages, and links each page to the newest multiple of every power of two before it", () => {
    const plan = planPages(entries(100), new Uint8Array(0), 4, "none");
    const pages = [...plan.sealed.map((s) => decodePage(s.bytes, "p")), plan.head];
    expect(pages).toHaveLength(25);
    pages.forEach((page, n) => {
      expect(page.info!.number).toBe(BigInt(n));
      expect(page.info!.firstSeqid).toBe(BigInt(4 * n));
      expect(page.pair.map((p) => p.seqid)).toEqual([3, 2, 1, 0].map((k) => BigInt(4 * n + k)));
      expect(page.info!.skips.map((skip) => Number(skip.number))).toEqual(skipNumbers(n));
      for (const skip of page.info!.skips) {
        expect(skip.address).toEqual(plan.sealed[Number(skip.number)].address);
        expect(skip.firstSeqid).toBe(skip.number * 4n);
      }
    });
    expect(skipNumbers(0)).toEqual([]);
    expect(skipNumbers(1)).toEqual([0]);
    expect(skipNumbers(13)).toEqual([12, 8, 0]);
    expect(skipNumbers(17)).toEqual([16, 0]);
    expect(skipNumbers(6)).toEqual([5, 4, 0]);
  });

  it("keeps a log's seqids and links when the head grows by appends of any size", () => {
    const log = entries(50);
    const once = planPages(log, new Uint8Array(0), 8, "none");
    let plan = planPages(log.slice(0, 1), new Uint8Array(0), 8, "none");
    const sealed = [...plan.sealed];
    let at = 1;
    for (const step of [3, 9, 1, 17, 19]) {
      const start = at - plan.head.pair.length;
      plan = planPages(log.slice(start, at + step), plan.head.tail, 8, "none", positionOf(plan.head));
      sealed.push(...plan.sealed);
      at += step;
    }
    expect(encodePage(plan.head)).toEqual(encodePage(once.head));
    expect(sealed.map((p) => toHex(p.address))).toEqual(once.sealed.map((p) => toHex(p.address)));
  });

  it("refuses page info that disagrees with the page", () => {
    const plan = planPages(entries(40), new Uint8Array(0), 4, "none");
    const good = decodePage(plan.sealed[6].bytes, "p");
    const bad = (change: (page: ReturnType<typeof decodePage>) => void) => {
      const page = fromBinary(RemoteLogSchema, toBinary(RemoteLogSchema, good));
      change(page);
      return () => decodePage(toBinary(RemoteLogSchema, page), "page", "DATA_LOSS");
    };
    expect(bad(() => {})).not.toThrow();
    expect(bad((p) => (p.info!.count = 5))).toThrowError(/DATA_LOSS: page is malformed: its info counts 5/);
    expect(bad((p) => (p.pair[1].seqid = 99n))).toThrowError(/pair 1 has seqid 99/);
    expect(bad((p) => (p.info!.number = 9n))).toThrowError(/skip link/);
    expect(bad((p) => p.info!.skips.pop())).toThrowError(/must have 3 skip links/);
    expect(bad((p) => (p.info!.skips[1].firstSeqid = 30n))).toThrowError(/not below the newer one/);
    expect(bad((p) => (p.info!.skips[0].address = plan.sealed[2].address))).toThrowError(/first skip link is not its tail/);
    expect(bad((p) => (p.tail = new Uint8Array(0)))).toThrowError(/page 6 and has no tail/);
    expect(bad((p) => (p.pair[0].redacted = true))).toThrowError(/redacted but still has an address/);
    expect(bad((p) => Object.assign(p.pair[0], { redacted: true, remoteHash: new Uint8Array(0) }))).not.toThrow();
  });
});

describe("page - decoding and checks", () => {
  it("reports undecodable and malformed pages with the code asked for", () => {
    expect(() => decodePage(new Uint8Array([0x0a, 0x05, 0x01]), "page x")).toThrowError(/INVALID_ARGUMENT: page x is not/);
    const bad = create(RemoteLogSchema, { pair: [{ remoteHash: new Uint8Array([1, 2]), localHash: new Uint8Array(32) }] });
    expect(() => decodePage(encodePage(bad), "page y", "DATA_LOSS")).toThrowError(/DATA_LOSS: page y is malformed: pair 0 remoteHash/);
    const shortId = create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(new Uint8Array(1)), localHash: new Uint8Array(31) }] });
    expect(() => decodePage(encodePage(shortId), "page z")).toThrowError(/31-byte localHash/);
  });

  it("checks H2 against the bytes and H1 against the decoded message", () => {
    const [entry, other] = entries(2);
    expect(toHex(messageId(verifyPairData({ remoteHash: entry.address, localHash: entry.id }, entry.data, "t")))).toBe(toHex(entry.id));
    expect(() => verifyPairData({ remoteHash: entry.address, localHash: entry.id }, other.data, "t")).toThrowError(/DATA_LOSS: t: bytes of message/);
    expect(() => verifyPairData({ remoteHash: other.address, localHash: entry.id }, other.data, "t")).toThrowError(/DATA_LOSS: t: message at .* has id/);
    const junk = new Uint8Array([0xff, 0xff]);
    expect(() => verifyPairData({ remoteHash: addressOf(junk), localHash: entry.id }, junk, "t")).toThrowError(/not a vac.mvds.Message/);
  });
});

describe("chain - bounded walk", () => {
  it("stops at the last delivered id and returns only newer pairs", async () => {
    const log = entries(10);
    const plan = planPages(log, new Uint8Array(0), 3, "none");
    const walk = await walkChain(plan.head, casOf(plan), { stopAtId: log[6].id });
    expect(walk.reachedStop).toBe(true);
    expect(walk.pairs.map((p) => toHex(p.localHash))).toEqual(log.slice(7).map((e) => toHex(e.id)));
    expect(walk.pages).toBe(2);
  });

  it("says when the stop id is not in the chain", async () => {
    const plan = planPages(entries(4), new Uint8Array(0), 3, "none");
    const walk = await walkChain(plan.head, casOf(plan), { stopAtId: new Uint8Array(32) });
    expect(walk.reachedStop).toBe(false);
    expect(walk.pairs).toHaveLength(4);
  });

  it("refuses a page that does not hash to its tail", async () => {
    const plan = planPages(entries(5), new Uint8Array(0), 2, "none");
    await expect(walkChain(plan.head, async () => plan.sealed[0].bytes)).rejects.toThrowError(/DATA_LOSS: page .* does not hash to its address/);
  });

  it("refuses a tail pointing at itself and a chain that loops back, without hanging", async () => {
    // With every page checked against its address, a real cycle would need a hash cycle, so a store
    // serving a loop is serving bytes that do not match: either check must end the walk.
    const plan = planPages(entries(6), new Uint8Array(0), 2, "none");
    const first = plan.sealed[0];
    const selfTail = encodePage(create(RemoteLogSchema, { pair: decodePage(first.bytes, "p").pair, tail: first.address }));
    const servesSelf = async () => selfTail;
    await expect(walkChain(create(RemoteLogSchema, { tail: first.address }), servesSelf)).rejects.toThrowError(/DATA_LOSS/);
    // A store that answers every address with one page: a loop back to a page already read.
    const loopsBack = async () => plan.sealed[1].bytes;
    const head = create(RemoteLogSchema, { tail: plan.sealed[1].address });
    const pageTwo = decodePage(plan.sealed[1].bytes, "p");
    pageTwo.tail = plan.sealed[1].address;
    // Without page info it promises nothing of its tail, so the walk gets as far as the loop (with info,
    // the page fetched would fail its link's promise first).
    pageTwo.info = undefined;
    await expect(walkChain(pageTwo, loopsBack)).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);
    await expect(walkChain(head, casOf(plan))).resolves.toMatchObject({ pages: 3 });
  });

  it("refuses a chain longer than maxPages", async () => {
    const plan = planPages(entries(10), new Uint8Array(0), 2, "none");
    await expect(walkChain(plan.head, casOf(plan), { maxPages: 3 })).rejects.toThrowError(/longer than 3 pages/);
  });
});
