import { describe, expect, it } from "vitest";
import { aheadFor, Receiver, type Delivery } from "../../actors/receiver.js";
import { Sender } from "../../actors/sender.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { memoryWorld } from "../helpers/connect.js";
import { addressOf, addressText, encodeMessage, newMessage, toHex } from "../../core/hash.js";
import { RemoteLogError } from "../../core/errors.js";
import { decodePage, encodePage } from "../../core/page.js";
import type { EmbedMode } from "../../core/page.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
const GROUP = utf8("g");

const world = memoryWorld;

function bodies(n: number, prefix = "m"): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => utf8(`${prefix}${i}`));
}

async function receiveAll(receiver: Receiver): Promise<Delivery[]> {
  const out: Delivery[] = [];
  await receiver.sync(async (batch) => {
    out.push(...batch);
  });
  return out;
}

describe("actors - sender and receiver over the in-memory transport", () => {
  it.each<[string, EmbedMode, number]>([
    ["no embedding", "none", 5],
    ["full replication", "all", 5],
    ["embed newest 2", 2, 5],
    ["linked list", "none", 1],
  ])("round-trips a log in several publishes: %s", async (_, embed, pageSize) => {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "alice", log, remote: w.remote(), pageSize, embed });
    const receiver = new Receiver({ name: "alice", remote: w.remote(), checkpoints: new MemoryCheckpointStore(), batchSize: 3 });
    const got: Delivery[] = [];
    let stamp = 1000n;
    for (const count of [1, 4, 0, 12, 5]) {
      await sender.append(bodies(count, `p${stamp}-`), GROUP, stamp++);
      const result = await sender.publish();
      expect(result.published).toBe(log.length);
      got.push(...(await receiveAll(receiver)));
    }
    const entries = await log.read(0, log.length);
    expect(got.map((d) => d.seq)).toEqual(entries.map((e) => e.seq));
    expect(got.map((d) => toHex(d.id))).toEqual(entries.map((e) => toHex(e.id)));
    // Full replication carries every message in its pages, so no message block is uploaded apart.
    expect(await w.content.has(addressOf(entries[0].data))).toBe(embed !== "all");
  });

  it.each<[string, EmbedMode]>([
    ["the default embed", 8],
    ["embed all", "all"],
  ])("a one-message publish reads the local log twice, not once per carried message: %s", async (_, embed) => {
    // The real in-memory log, its reads counted: each read of a FileLocalLog is a pread and a check.
    class CountingLog extends MemoryLocalLog {
      reads = 0;
      override read(from: number, to: number) {
        this.reads++;
        return super.read(from, to);
      }
    }
    const w = world();
    const log = new CountingLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "alice", log, remote: w.remote(), pageSize: 16, embed });
    await sender.append(bodies(20), GROUP, 1n);
    await sender.publish();
    for (let i = 0; i < 3; i++) {
      await sender.append([utf8(`one more ${i}`)], GROUP, 2n);
      log.reads = 0;
      const result = await sender.publish();
      expect(result).toMatchObject({ added: 1, published: 21 + i });
      // The mark's record, the new message and the new mark in one read; the carried embedded pairs in one.
      expect(log.reads).toBeLessThanOrEqual(2);
    }
    const receiver = new Receiver({ name: "alice", remote: w.remote(), checkpoints: new MemoryCheckpointStore() });
    const got = await receiveAll(receiver);
    expect(got.map((d) => toHex(d.id))).toEqual((await log.read(0, log.length)).map((e) => toHex(e.id)));
  });

  it("publishing twice with nothing new changes nothing", async () => {
    const w = world();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "a", log: new MemoryLocalLog(), remote: w.remote(), pageSize: 4 });
    await sender.append(bodies(6), GROUP, 1n);
    const first = await sender.publish();
    const second = await sender.publish();
    expect(second).toMatchObject({ added: 0, version: first.version, published: 6 });
    expect((await w.names.get("a"))!.version).toBe(first.version);
  });

  // The default embeds the newest 8 of the head; with none, every message is in the CAS.
  it.each([["default", undefined], ["none", "none" as const]])("stores messages and sealed pages before the head that names them (embed %s)", async (_, embed) => {
    const w = world();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "a", log: new MemoryLocalLog(), remote: w.remote(), pageSize: 2, embed });
    await sender.append(bodies(5), GROUP, 1n);
    await sender.publish();
    const head = decodePage((await w.names.get("a"))!.content, "head");
    let page = head;
    let pages = 1;
    for (;;) {
      // A message is in the CAS unless this page carries it (the head embeds its newest by default).
      for (const pair of page.pair) expect(pair.data.length > 0 || (await w.content.has(pair.remoteHash))).toBe(true);
      if (page.tail.length === 0) break;
      page = decodePage((await w.content.getMany([page.tail]))[0]!, "page");
      pages++;
    }
    expect(pages).toBe(3);
  });

  it("two senders of one log on one name never lose an update: the loser rebases and retries", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    await log.append(bodies(50).map((b) => encodeMessage(newMessage(GROUP, 1n, b))));
    const a = new Sender({ published: new MemoryCheckpointStore(), name: "n", log, remote: w.remote(), pageSize: 4 });
    const b = new Sender({ published: new MemoryCheckpointStore(), name: "n", log, remote: w.remote(), pageSize: 4 });
    const results = await Promise.all([a.publish(), b.publish(), a.publish()]);
    expect(results.every((r) => r.published === 50)).toBe(true);
    const got = await receiveAll(new Receiver({ name: "n", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual([...Array(50).keys()]);
  });

  it("two writers of one name, each with its own log, interleave without losing or repeating a message", async () => {
    const w = world();
    const devices = ["phone", "laptop"].map((device) => {
      const log = new MemoryLocalLog();
      return { device, log, sender: new Sender({ published: new MemoryCheckpointStore(), name: "shared", log, remote: w.remote(), pageSize: 3 }) };
    });
    let stamp = 1n;
    let lostRaces = 0;
    for (let round = 0; round < 4; round++) {
      for (const { device, sender } of devices) await sender.append(bodies(2 + round, `${device}-${round}-`), GROUP, stamp++);
      // Both publish at once: one wins each version, the other rebases onto it.
      const results = await Promise.all(devices.map(({ sender }) => sender.publish()));
      expect(results.every((r) => r.published > 0)).toBe(true);
      lostRaces += results.reduce((sum, r) => sum + r.lostRaces, 0);
    }
    expect(lostRaces).toBeGreaterThan(0);
    const got = await receiveAll(new Receiver({ name: "shared", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    const all = (await Promise.all(devices.map(({ log }) => log.read(0, log.length)))).flat().map((e) => toHex(e.id));
    expect(got.map((d) => toHex(d.id)).sort()).toEqual(all.sort());
    expect(new Set(got.map((d) => toHex(d.id))).size).toBe(got.length);
    // Each device's own messages keep their order.
    for (const { log } of devices) {
      const own = new Set((await log.read(0, log.length)).map((e) => toHex(e.id)));
      expect(got.map((d) => toHex(d.id)).filter((id) => own.has(id))).toEqual((await log.read(0, log.length)).map((e) => toHex(e.id)));
    }
  });

  it("a publish whose success was not remembered (a crash) is found in the chain, not repeated", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const first = new Sender({ published: new MemoryCheckpointStore(), name: "c", log, remote: w.remote(), pageSize: 4 });
    await first.append(bodies(10), GROUP, 1n);
    await first.publish();
    // A sender with no memory of that publish, as after a crash right after the name update.
    const again = new Sender({ published: new MemoryCheckpointStore(), name: "c", log, remote: w.remote(), pageSize: 4 });
    expect(await again.publish()).toMatchObject({ added: 0, published: 10 });
    await again.append(bodies(3, "more"), GROUP, 2n);
    expect(await again.publish()).toMatchObject({ added: 3, published: 13 });
    const got = await receiveAll(new Receiver({ name: "c", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => toHex(d.id))).toEqual((await log.read(0, 13)).map((e) => toHex(e.id)));
  });

  it("publishes the whole log again to an NS that has lost the name, leaving no gap", async () => {
    const first = world();
    const log = new MemoryLocalLog();
    const published = new MemoryCheckpointStore();
    await new Sender({ published, name: "m", log, remote: first.remote() }).append(bodies(5), GROUP, 1n);
    await new Sender({ published, name: "m", log, remote: first.remote() }).publish();
    const moved = world();
    const sender = new Sender({ published, name: "m", log, remote: moved.remote() });
    await sender.append(bodies(2, "new"), GROUP, 2n);
    expect(await sender.publish()).toMatchObject({ added: 7, published: 7 });
    const got = await receiveAll(new Receiver({ name: "m", remote: moved.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("refuses to publish when the name no longer holds the last message this sender published", async () => {
    const w = world();
    const published = new MemoryCheckpointStore();
    const sender = new Sender({ published, name: "r", log: new MemoryLocalLog(), remote: w.remote() });
    await sender.append(bodies(3), GROUP, 1n);
    await sender.publish();
    const other = new Sender({ published: new MemoryCheckpointStore(), name: "r2", log: new MemoryLocalLog(), remote: w.remote() });
    await other.append(bodies(2, "x"), GROUP, 1n);
    await other.publish();
    await w.names.put("r", (await w.names.get("r2"))!.content);
    await sender.append(bodies(1, "late"), GROUP, 2n);
    await expect(sender.publish()).rejects.toThrowError(/CONFLICT: name "r" no longer holds message [0-9a-f]{64}, the last this sender published/);
  });

  it("publishes again, on top, what another writer's update replaced (two devices straight to one Kubo node), losing nothing", async () => {
    const w = world();
    const alice = new Sender({ published: new MemoryCheckpointStore(), name: "t", log: new MemoryLocalLog(), remote: w.remote() });
    const bob = new Sender({ published: new MemoryCheckpointStore(), name: "t", log: new MemoryLocalLog(), remote: w.remote() });
    await alice.append(bodies(3, "a"), GROUP, 1n);
    await alice.publish();
    await bob.append(bodies(2, "b"), GROUP, 2n);
    await bob.publish();
    const before = (await w.names.get("t"))!;
    await alice.append(bodies(2, "a-lost"), GROUP, 3n);
    expect(await alice.publish()).toMatchObject({ published: 5, added: 2 });
    // Bob's device updates the name from the head it read before alice's update: hers is gone.
    await w.names.put("t", before.content);
    await bob.append(bodies(1, "b-late"), GROUP, 4n);
    await bob.publish();
    await alice.append(bodies(1, "a-late"), GROUP, 5n);
    expect(await alice.publish()).toMatchObject({ published: 6, added: 3, resent: 2, foreign: 3 });
    const got = await receiveAll(new Receiver({ name: "t", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    const text = (d: Delivery) => new TextDecoder().decode(d.message!.body);
    expect(got.map(text)).toEqual(["a0", "a1", "a2", "b0", "b1", "b-late0", "a-lost0", "a-lost1", "a-late0"]);
  });

  it("skips a message whose id is already in the log", async () => {
    const w = world();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "d", log: new MemoryLocalLog(), remote: w.remote() });
    expect(await sender.append([utf8("same"), utf8("same"), utf8("other")], GROUP, 7n)).toHaveLength(2);
  });
});

describe("actors - the receiver verifies what it is served", () => {
  async function published(embed: EmbedMode = "none") {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "v", log, remote: w.remote(), pageSize: 3, embed });
    await sender.append(bodies(10), GROUP, 1n);
    await sender.publish();
    return { w, log, sender, receiver: () => new Receiver({ name: "v", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }) };
  }

  it("a tampered message block is DATA_LOSS from the CAS naming the name, its seq and its address, after every message before it is delivered and nothing after", async () => {
    const { w, log } = await published();
    const [victim] = await log.read(4, 5);
    w.content.corrupt(addressOf(victim.data), utf8("evil"));
    const delivered: Delivery[] = [];
    const checkpoints = new MemoryCheckpointStore();
    const bob = new Receiver({ name: "v", remote: w.remote(), checkpoints });
    const failed = bob.sync(async (batch) => void delivered.push(...batch));
    await expect(failed).rejects.toThrowError(/DATA_LOSS: name "v" seq 4: /);
    await expect(failed).rejects.toMatchObject({ details: { name: "v", seq: 4, address: addressText(addressOf(victim.data)) } });
    expect(delivered.map((delivery) => delivery.seq)).toEqual([0, 1, 2, 3]);
    expect((await checkpoints.load("v"))?.delivered).toBe(4);
    // The next sync starts at the fault and fails the same way: nothing is skipped.
    await expect(bob.sync(async (batch) => void delivered.push(...batch))).rejects.toMatchObject({ code: "DATA_LOSS", details: { seq: 4 } });
    expect(delivered).toHaveLength(4);
  });

  it("an embedded message that does not match its pair is DATA_LOSS naming the seq", async () => {
    const { w, log } = await published(2);
    const entry = await w.names.get("v");
    const head = decodePage(entry!.content, "head");
    const [other] = await log.read(0, 1);
    head.pair[0].data = other.data;
    await w.names.put("v", encodePage(head));
    const receiver = new Receiver({ name: "v", remote: w.remote(), checkpoints: new MemoryCheckpointStore() });
    await expect(receiver.sync(async () => {})).rejects.toThrowError(/DATA_LOSS: name "v" seq 9: bytes of message/);
  });

  it("a head that no longer holds the last delivered message is CONFLICT, not a silent skip", async () => {
    const { w, receiver } = await published();
    const checkpoints = new MemoryCheckpointStore();
    const bob = new Receiver({ name: "v", remote: w.remote(), checkpoints });
    await receiveAll(bob);
    const other = new Sender({ published: new MemoryCheckpointStore(), name: "v2", log: new MemoryLocalLog(), remote: w.remote() });
    await other.append(bodies(2, "x"), GROUP, 1n);
    await other.publish();
    await w.names.put("v", (await w.names.get("v2"))!.content);
    const replaced = bob.sync(async () => {});
    await expect(replaced).rejects.toThrowError(/CONFLICT: name "v" no longer holds message/);
    // The name as a field, as a rollback's CONFLICT carries it, for an app that resets that name's state.
    await expect(replaced).rejects.toMatchObject({ details: { name: "v" } });
    void receiver;
  });

  it("a head that is not a page is DATA_LOSS", async () => {
    const w = world();
    await w.names.put("junk", new Uint8Array([0xff, 0xff, 0xff]));
    const receiver = new Receiver({ name: "junk", remote: w.remote(), checkpoints: new MemoryCheckpointStore() });
    await expect(receiver.sync(async () => {})).rejects.toThrowError(/DATA_LOSS: head of name "junk"/);
  });

  it("an unknown name is reported as not found, with nothing delivered", async () => {
    const w = world();
    const receiver = new Receiver({ name: "nobody", remote: w.remote(), checkpoints: new MemoryCheckpointStore() });
    expect(await receiver.sync(async () => {})).toMatchObject({ found: false, delivered: 0 });
  });

  it("a failed delivery does not move the checkpoint", async () => {
    const { w } = await published();
    const checkpoints = new MemoryCheckpointStore();
    const receiver = new Receiver({ name: "v", remote: w.remote(), checkpoints, batchSize: 4 });
    let calls = 0;
    await expect(
      receiver.sync(async () => {
        if (++calls === 2) throw new Error("consumer down");
      }),
    ).rejects.toThrowError(/consumer down/);
    expect((await checkpoints.load("v"))!.delivered).toBe(4);
    const rest = await receiveAll(receiver);
    expect(rest.map((d) => d.seq)).toEqual([4, 5, 6, 7, 8, 9]);
  });

  it("seeks: fromSeq delivers from that seqid on, reading only the pages from there, and later syncs go on from there", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "s", log, remote: w.remote(), pageSize: 4 });
    await sender.append(bodies(1000), GROUP, 1n);
    await sender.publish();
    const checkpoints = new MemoryCheckpointStore();
    const receiver = new Receiver({ name: "s", remote: w.remote(), checkpoints, fromSeq: 990 });
    const first = await receiveAll(receiver);
    expect(first.map((d) => d.seq)).toEqual(Array.from({ length: 10 }, (_, i) => 990 + i));
    expect(new TextDecoder().decode(first[0].message!.body)).toBe("m990");
    await sender.append(bodies(3, "n"), GROUP, 1n);
    await sender.publish();
    const next = await receiveAll(receiver);
    expect(next.map((d) => d.seq)).toEqual([1000, 1001, 1002]);
    expect(await checkpoints.load("s")).toMatchObject({ delivered: 1003 });

    // A seek past the end is OUT_OF_RANGE, or waits there (waitForSeq) without storing a checkpoint the
    // log does not have; a seek back delivers again from the seqid asked for.
    const aheadCheckpoints = new MemoryCheckpointStore();
    const ahead = new Receiver({ name: "s", remote: w.remote(), checkpoints: aheadCheckpoints, fromSeq: 2000 });
    await expect(receiveAll(ahead)).rejects.toMatchObject({ code: "OUT_OF_RANGE", details: { seq: 2000 } });
    const waiting = new Receiver({ name: "s", remote: w.remote(), checkpoints: aheadCheckpoints, fromSeq: 2000, waitForSeq: true });
    expect(await receiveAll(waiting)).toHaveLength(0);
    expect(await aheadCheckpoints.load("s")).toBeUndefined();
    const back = new Receiver({ name: "s", remote: w.remote(), checkpoints, fromSeq: 1 });
    expect((await receiveAll(back)).map((d) => d.seq)).toEqual(Array.from({ length: 1002 }, (_, i) => i + 1));
  });

  it("reads an indexed log in parallel page fetches, not a round trip per page", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "p", log, remote: w.remote(), pageSize: 2 });
    await sender.append(bodies(2048), GROUP, 1n);
    await sender.publish();
    const remote = w.remote();
    let calls = 0;
    const getBlocks = remote.getBlocks.bind(remote);
    remote.getBlocks = async (ids) => {
      calls++;
      return getBlocks(ids);
    };
    const got = await receiveAll(new Receiver({ name: "p", remote, checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 2048 }, (_, i) => i));
    // 1023 sealed pages, up to 16 a call, each call made as soon as an answer brings new links (so
    // many carry fewer than 16), and a few message fetches: far from a call per page.
    expect(calls).toBeLessThan(1023 / 4);
  });

  it("fetches messages a batch a call as the window slides, and few at a time while it still finds pages", async () => {
    const { w, remote } = await pagesOfFour("calls");
    let inFlight = 0;
    // Each call as it starts: a page fetch, or a message fetch with the message fetches then in flight.
    const calls: ({ pages: true } | { messages: number; inFlight: number })[] = [];
    // Pages come by getBlocks, messages by getBlocksWithin (a fetch of messages is bounded in bytes).
    const getBlocks = remote.getBlocks.bind(remote);
    remote.getBlocks = async (addresses) => {
      if (await w.content.getMany([addresses[0]]).then(([bytes]) => isPage(bytes!))) calls.push({ pages: true });
      return getBlocks(addresses);
    };
    const getBlocksWithin = remote.getBlocksWithin.bind(remote);
    remote.getBlocksWithin = async (addresses, maxBytes) => {
      calls.push({ messages: addresses.length, inFlight: ++inFlight });
      try {
        return await afterRoundTrip(() => getBlocksWithin(addresses, maxBytes));
      } finally {
        inFlight--;
      }
    };
    const run = async (options: { holdPages: number; prefetchPairs: number }) => {
      calls.length = 0;
      const receiver = new Receiver({ name: "calls", remote, checkpoints: new MemoryCheckpointStore(), batchSize: 16, concurrency: 8, verifyPool: null, ...options });
      let delivered = 0;
      await receiver.sync(async (batch) => {
        delivered += batch.length;
      });
      expect(delivered).toBe(2000);
      return calls.flatMap((call) => ("messages" in call ? [call] : []));
    };
    // Pages of 4 messages: a call a page as the window slid cost four times the calls.
    const sliding = await run({ holdPages: 64, prefetchPairs: 64 });
    expect(sliding.length).toBeLessThanOrEqual(2000 / 16 + 8);
    // Every page held, so the last page fetch ends the search for pages. Before it, message fetches
    // queued the page rounds behind megabytes at the server.
    await run({ holdPages: 512, prefetchPairs: 2000 });
    const lastPageCall = calls.findLastIndex((call) => "pages" in call);
    const whileFinding = calls.slice(0, lastPageCall).flatMap((call) => ("messages" in call ? [call.inFlight] : []));
    expect(whileFinding.length).toBeGreaterThan(0);
    expect(Math.max(...whileFinding)).toBeLessThanOrEqual(4);
  });

  it("fetches further ahead over a longer round trip (aheadFor), unless told how far", async () => {
    const { remote } = await pagesOfFour("ahead");
    let inFlight = 0;
    let most = 0;
    // Message calls only (pages come by getBlocks): how many overlap.
    const getBlocksWithin = remote.getBlocksWithin.bind(remote);
    remote.getBlocksWithin = async (addresses, maxBytes) => {
      if (addresses.length < 64) return getBlocksWithin(addresses, maxBytes);
      most = Math.max(most, ++inFlight);
      try {
        return await afterRoundTrip(() => getBlocksWithin(addresses, maxBytes));
      } finally {
        inFlight--;
      }
    };
    // The round trip the remote reports (transport-node.ts times it by a PING; this one is in memory).
    let roundTripMs: number | undefined;
    remote.roundTripMs = async () => roundTripMs;
    const run = async (ms: number | undefined, concurrency?: number) => {
      roundTripMs = ms;
      most = 0;
      let delivered = 0;
      const receiver = new Receiver({ name: "ahead", remote, checkpoints: new MemoryCheckpointStore(), batchSize: 16, verifyPool: null, holdPages: 8, prefetchPairs: 32, ...(concurrency ? { concurrency } : {}) });
      await receiver.sync(async (batch) => {
        delivered += batch.length;
      });
      expect(delivered).toBe(2000);
      return most;
    };
    // 60 ms: 32 batches ahead (33 x 16 messages, in calls of 64: about eight at once).
    const slow = await run(60);
    // Under a millisecond, or a remote that cannot tell: 8 ahead (nine batches, two or three calls);
    // and so when told 8, whatever the round trip.
    const fast = await run(0.3);
    const unknown = await run(undefined);
    const told = await run(60, 8);
    expect(aheadFor(0)).toBe(8);
    expect(aheadFor(20)).toBe(24);
    expect(aheadFor(1000)).toBe(32);
    expect(slow).toBeGreaterThanOrEqual(6);
    expect(told).toBeLessThanOrEqual(3);
    expect(unknown).toBeLessThanOrEqual(3);
    expect(slow).toBeGreaterThan(fast);
  });

  it("reads the pages it did not hold several chunks at once, not one chunk a round trip", async () => {
    const { w, remote } = await pagesOfFour("again");
    const seen = new Set<number>();
    let rereading = 0;
    let mostRereading = 0;
    const getBlocks = remote.getBlocks.bind(remote);
    remote.getBlocks = async (addresses) => {
      const [first] = await w.content.getMany([addresses[0]]);
      if (!isPage(first!)) return getBlocks(addresses);
      const firstSeqid = Number(decodePage(first!, "page", "DATA_LOSS").info!.firstSeqid);
      if (!seen.has(firstSeqid)) {
        for (const [block] of await Promise.all(addresses.map((address) => w.content.getMany([address])))) seen.add(Number(decodePage(block!, "page", "DATA_LOSS").info!.firstSeqid));
        return getBlocks(addresses);
      }
      mostRereading = Math.max(mostRereading, ++rereading);
      try {
        return await afterRoundTrip(() => getBlocks(addresses));
      } finally {
        rereading--;
      }
    };
    const receiver = new Receiver({ name: "again", remote, checkpoints: new MemoryCheckpointStore(), holdPages: 16, prefetchPairs: 64, batchSize: 16, concurrency: 4, verifyPool: null });
    let delivered = 0;
    await receiver.sync(async (batch) => {
      delivered += batch.length;
    });
    expect(delivered).toBe(2000);
    // Two windows of (4 + 1) × 16 messages are 40 pages of 4, in chunks of 16 / 4 pages.
    expect(mostRereading).toBeGreaterThan(1);
  });

  it("refuses to seek in a log without seqids", async () => {
    const w = world();
    const page = encodePage({ $typeName: "vac.cas.RemoteLog", pair: [], tail: new Uint8Array(0) } as never);
    await w.names.put("legacy", page);
    const receiver = new Receiver({ name: "legacy", remote: w.remote(), checkpoints: new MemoryCheckpointStore(), fromSeq: 5 });
    await expect(receiver.sync(async () => {})).rejects.toThrowError(/FAILED_PRECONDITION|CONFLICT/);
  });

  it("publishes in one round trip once it has published: its own last head stands in for a fetch, and blocks ride with the update", async () => {
    const w = world();
    const remote = w.remote();
    const calls: string[] = [];
    for (const method of ["fetchName", "putBlocks", "updateName", "updateNameWithBlocks", "getBlock", "getBlocks"] as const) {
      const original = (remote[method] as (...args: unknown[]) => Promise<unknown>).bind(remote);
      (remote as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        calls.push(method);
        return original(...args);
      };
    }
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "one", log, remote, pageSize: 4 });
    await sender.append(bodies(3), GROUP, 1n);
    await sender.publish();
    calls.length = 0;
    for (let i = 0; i < 5; i++) {
      await sender.append([utf8(`next ${i}`)], GROUP, 1n);
      await sender.publish();
    }
    // No fetch at all. (CAS and NS have different URLs here, so updateNameWithBlocks stores the blocks
    // first; with one server URL they ride in the update, as test/services covers.)
    expect(calls.filter((c) => c === "fetchName")).toHaveLength(0);
    expect(calls.filter((c) => c === "updateNameWithBlocks")).toHaveLength(5);

    // Another writer moves the name: the stale head loses the race, and the retry fetches.
    const other = new Sender({ published: new MemoryCheckpointStore(), name: "one", log: new MemoryLocalLog(), remote: w.remote(), pageSize: 4 });
    await other.append([utf8("from elsewhere")], GROUP, 1n);
    await other.publish();
    await sender.append([utf8("after")], GROUP, 1n);
    const result = await sender.publish();
    expect(result.lostRaces).toBe(1);
    const got = await receiveAll(new Receiver({ name: "one", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => new TextDecoder().decode(d.message!.body)).slice(-2)).toEqual(["from elsewhere", "after"]);
  });
});

describe("actors - a long log in bounded memory", () => {
  it("a long backlog is published in steps, each a whole publish no larger than the step, and reads back whole", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const remote = w.remote();
    // Counts what each call carries: a step's blocks at most, however long the backlog.
    const carried: number[] = [];
    const putBlocks = remote.putBlocks.bind(remote);
    remote.putBlocks = async (blocks, pending) => (carried.push(blocks.length), putBlocks(blocks, pending));
    const update = remote.updateNameWithBlocks.bind(remote);
    remote.updateNameWithBlocks = async (name, content, version, record, blocks) => (carried.push(blocks.length), update(name, content, version, record, blocks));
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "long", log, remote, pageSize: 4, embed: "none", publishStep: 100 });
    await sender.append(bodies(1003), GROUP, 1n);
    const result = await sender.publish();
    expect(result).toMatchObject({ published: 1003, added: 1003, version: 11n });
    // A step's 100 messages, the 3 or 4 its last head carried over, and their 26 pages at most.
    expect(Math.max(...carried)).toBeLessThanOrEqual(100 + 4 + 26);
    const got = await receiveAll(new Receiver({ name: "long", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 1003 }, (_, i) => i));
    expect(new TextDecoder().decode(got[1002].message!.body)).toBe("m1002");
  });

  it("publishes what it appended itself without reading it back, and reads from the log what it did not append or no longer holds", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const reads: [number, number][] = [];
    const read = log.read.bind(log);
    log.read = async (from, to) => (reads.push([from, to]), read(from, to));
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "kept", log, remote: w.remote(), pageSize: 4, embed: "none", publishStep: 10 });
    await sender.append(bodies(8, "a"), GROUP, 1n);
    expect(await sender.publish()).toMatchObject({ published: 8, added: 8 });
    expect(reads).toEqual([]);
    // Appended past the sender (seqs 8-10), then through it (11-14): the first three come from the log, with the last published (7).
    await log.append(bodies(3, "b").map((body) => encodeMessage(newMessage(GROUP, 1n, body))));
    await sender.append(bodies(4, "c"), GROUP, 1n);
    expect(await sender.publish()).toMatchObject({ published: 15, added: 7 });
    expect(reads).toEqual([[7, 11]]);
    // More than two steps at once is not held: read from the log a step at a time (but for 14, the last published, still held).
    reads.length = 0;
    await sender.append(bodies(25, "d"), GROUP, 1n);
    expect(await sender.publish()).toMatchObject({ published: 40, added: 25 });
    expect(reads).toEqual([
      [15, 25],
      [24, 35],
      [34, 40],
    ]);
    const got = await receiveAll(new Receiver({ name: "kept", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    const texts = [...bodies(8, "a"), ...bodies(3, "b"), ...bodies(4, "c"), ...bodies(25, "d")].map((body) => new TextDecoder().decode(body));
    expect(got.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(texts);
    expect(got.map((d) => d.seq)).toEqual(texts.map((_, i) => i));
  });

  it("a receiver reads a long indexed log holding a window of pages, reading each page again only as delivery reaches it", async () => {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "long", log, remote: w.remote(), pageSize: 4, embed: "none" });
    await sender.append(bodies(2000), GROUP, 1n);
    await sender.publish();

    const remote = w.remote();
    let delivered = 0;
    // Every page fetched, by its first seqid, with how many messages were delivered when it was.
    const pageFetches: { firstSeqid: number; delivered: number; call: number }[] = [];
    let calls = 0;
    const getBlocks = remote.getBlocks.bind(remote);
    const record = (blocks: Uint8Array[]) => {
      const call = calls++;
      for (const block of blocks) {
        try {
          const page = decodePage(block, "block", "DATA_LOSS");
          if (page.info && page.pair.length > 0 && page.pair[0].localHash.length === 32) pageFetches.push({ firstSeqid: Number(page.info.firstSeqid), delivered, call });
        } catch {
          // a message, not a page
        }
      }
    };
    remote.getBlocks = async (addresses) => {
      const blocks = await getBlocks(addresses);
      record(blocks);
      return blocks;
    };
    // The pages a server sends along with those asked (GetMany linked_pages) are read as well.
    const getPagesWithLinked = remote.getPagesWithLinked.bind(remote);
    remote.getPagesWithLinked = async (addresses, fromSeqid, maxLinkedBytes) => {
      const answer = await getPagesWithLinked(addresses, fromSeqid, maxLinkedBytes);
      record([...answer.blocks, ...answer.linked.map((page) => page.bytes)]);
      return answer;
    };
    const receiver = new Receiver({ name: "long", remote, checkpoints: new MemoryCheckpointStore(), holdPages: 16, prefetchPairs: 64, batchSize: 16, concurrency: 2, verifyPool: null });
    const got: Delivery[] = [];
    await receiver.sync(async (batch) => {
      got.push(...batch);
      delivered += batch.length;
    });
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    // 500 pages, the head among them: each of the 499 others read while collecting, and those past the
    // 16 held read once more, each only when delivery came within two windows of it and a chunk (a
    // window: (2 + 1) × 16 messages fetched ahead; a chunk: 16 / 4 pages of 4), plus a batch not yet
    // counted as delivered and a page: never the whole log's pages at once.
    const again = pageFetches.filter((fetch, i) => pageFetches.findIndex((other) => other.firstSeqid === fetch.firstSeqid) !== i);
    expect(pageFetches.length - again.length).toBe(499);
    expect(again.length).toBeGreaterThanOrEqual(499 - 16);
    for (const fetch of again) expect(fetch.firstSeqid - fetch.delivered).toBeLessThanOrEqual(2 * 3 * 16 + 4 * 4 + 16 + 4);
    // Read again a chunk of pages per call, not a page per call as the window slides: over a slow
    // network each call is a round trip (100k messages at 20 ms took 4 s instead of 1.3 s).
    const rereadCalls = new Set(again.map((fetch) => fetch.call)).size;
    expect(rereadCalls).toBeLessThanOrEqual(Math.ceil(again.length / 3));
  });
});

/** Whether bytes are a page with page info (the sender's sealed pages), not a message. */
function isPage(bytes: Uint8Array): boolean {
  try {
    const page = decodePage(bytes, "block", "DATA_LOSS");
    return page.info !== undefined && page.pair.length > 0 && page.pair[0].localHash.length === 32;
  } catch {
    return false;
  }
}

/** call, after a round trip's wait, so that calls overlap as they do over a network. */
async function afterRoundTrip<T>(call: () => Promise<T>): Promise<T> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return call();
}

/** A log of 2,000 messages in pages of 4, every message only in the CAS, and a remote to read it. */
/**
 * A log of 2,000 messages in pages of 4, and a remote to read it that fetches pages by rounds, as from
 * a server that sends no linked pages along (test/integration/linked-pages.test.ts has those).
 */
async function pagesOfFour(name: string) {
  const w = world();
  const sender = new Sender({ published: new MemoryCheckpointStore(), name, log: new MemoryLocalLog(), remote: w.remote(), pageSize: 4, embed: "none" });
  await sender.append(bodies(2000), GROUP, 1n);
  await sender.publish();
  const remote = w.remote();
  (remote as { getPagesWithLinked?: unknown }).getPagesWithLinked = undefined;
  return { w, remote };
}

describe("actors - appendAndPublish: the blocks go up while the append writes", () => {
  const COUNT = 3000;
  const encoded = (prefix: string) => bodies(COUNT, prefix).map((body) => encodeMessage(newMessage(GROUP, 1n, body)));

  /** A remote whose calls are recorded in order with the blocks each carried, beside the log's appends; fail names a call to fail once. */
  function recorded(w: ReturnType<typeof world>, log: MemoryLocalLog, fail?: "putBlocks" | "updateNameWithBlocks") {
    const remote = w.remote();
    const events: { what: string; blocks: number }[] = [];
    const failed = new Set<string>();
    for (const method of ["putBlocks", "updateNameWithBlocks"] as const) {
      const original = (remote[method] as (...args: unknown[]) => Promise<unknown>).bind(remote);
      (remote as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        const blocks = args[method === "putBlocks" ? 0 : 4] as Uint8Array[];
        events.push({ what: method, blocks: blocks.length });
        if (method === fail && !failed.has(method)) {
          failed.add(method);
          throw RemoteLogError.unavailable(`${method} refused once by the test`);
        }
        return original(...args);
      };
    }
    const append = log.append.bind(log);
    log.append = async (messages) => {
      const entries = await append(messages);
      events.push({ what: "appended", blocks: entries.length });
      return entries;
    };
    return { remote, events };
  }

  async function texts(w: ReturnType<typeof world>, name: string): Promise<string[]> {
    const got = await receiveAll(new Receiver({ name, remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: got.length }, (_, i) => i));
    return got.map((d) => new TextDecoder().decode(d.message!.body));
  }

  it("uploads the messages it will reference before the append ends, and updates the name only after it", async () => {
    const w = world("ahead");
    const log = new MemoryLocalLog();
    const { remote, events } = recorded(w, log);
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "ahead", log, remote });
    const { appended, published } = await sender.appendAndPublish(encoded("a"));
    expect(appended).toHaveLength(COUNT);
    // All but the newest 15 (the most the default embed of 8 may keep in the head) went before the append ended.
    expect(events[0]).toEqual({ what: "putBlocks", blocks: COUNT - 15 });
    const appendedAt = events.findIndex((e) => e.what === "appended");
    const updates = events.filter((e) => e.what === "updateNameWithBlocks");
    expect(appendedAt).toBeGreaterThan(0);
    expect(updates).toHaveLength(1);
    expect(events.indexOf(updates[0])).toBeGreaterThan(appendedAt);
    // The update carries the 7 referenced newest that did not go ahead, and the 11 full pages of 256 sealed.
    expect(updates[0].blocks).toBe(7 + 11);
    expect(events.filter((e) => e.what === "putBlocks")).toHaveLength(1);
    expect(published).toMatchObject({ published: COUNT, added: COUNT, uploadedBlocks: COUNT - 8 });
    expect(await texts(w, "ahead")).toEqual(bodies(COUNT, "a").map((b) => new TextDecoder().decode(b)));
  });

  it("appendEncoded with uploadAhead does the same for the publish that follows, as `send` uses it", async () => {
    const w = world("ahead-append");
    const log = new MemoryLocalLog();
    const { remote, events } = recorded(w, log);
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "ahead-append", log, remote });
    expect(await sender.appendEncoded(encoded("e"), { uploadAhead: true })).toHaveLength(COUNT);
    expect(events.map((e) => e.what)).toEqual(["putBlocks", "appended"]);
    expect(await sender.publish()).toMatchObject({ published: COUNT, added: COUNT, uploadedBlocks: COUNT - 8 });
    expect(events.slice(2)).toEqual([{ what: "updateNameWithBlocks", blocks: 7 + 11 }]);
    expect(await texts(w, "ahead-append")).toHaveLength(COUNT);
    // More than the sender keeps for its next publishes (two steps) goes up with the publish instead.
    events.length = 0;
    const small = new Sender({ published: new MemoryCheckpointStore(), name: "ahead-append", log: new MemoryLocalLog(), remote, publishStep: 1000 });
    expect(await small.appendEncoded(encoded("f"), { uploadAhead: true })).toHaveLength(COUNT);
    expect(events).toEqual([]);
  });

  it("sends the blocks itself when the upload ahead failed", async () => {
    const w = world("ahead-failed");
    const log = new MemoryLocalLog();
    const { remote, events } = recorded(w, log, "putBlocks");
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "ahead-failed", log, remote });
    await expect(sender.appendAndPublish(encoded("b"))).resolves.toMatchObject({ published: { published: COUNT } });
    const carried = events.filter((e) => e.what !== "appended").reduce((sum, e) => sum + e.blocks, 0);
    expect(carried).toBeGreaterThanOrEqual(2 * (COUNT - 15));
    expect(await texts(w, "ahead-failed")).toHaveLength(COUNT);
  });

  it("counts on the blocks sent ahead for the publish right after only: a later publish sends them again", async () => {
    const w = world("ahead-later");
    const log = new MemoryLocalLog();
    const { remote, events } = recorded(w, log, "updateNameWithBlocks");
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "ahead-later", log, remote });
    await expect(sender.appendAndPublish(encoded("c"))).rejects.toThrow(/refused once by the test/);
    expect(log.length).toBe(COUNT);
    // The CAS may have collected them meanwhile, as blocks no page named.
    events.length = 0;
    expect(await sender.publish()).toMatchObject({ published: COUNT, added: COUNT });
    const carried = events.reduce((sum, e) => sum + e.blocks, 0);
    expect(carried).toBeGreaterThanOrEqual(COUNT - 8);
    expect(await texts(w, "ahead-later")).toHaveLength(COUNT);
  });

  it("appends nothing and updates no name when a message does not decode", async () => {
    const w = world("ahead-bad");
    const log = new MemoryLocalLog();
    const { remote, events } = recorded(w, log);
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: "ahead-bad", log, remote });
    const messages = encoded("d");
    messages[1500] = utf8("not a message");
    await expect(sender.appendAndPublish(messages)).rejects.toThrow(/INVALID_ARGUMENT|message 1500/);
    expect(log.length).toBe(0);
    expect(events.filter((e) => e.what !== "putBlocks")).toEqual([]);
    expect(await w.remote().fetchName("ahead-bad")).toBeUndefined();
  });
});
