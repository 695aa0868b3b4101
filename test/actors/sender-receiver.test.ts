import { describe, expect, it } from "vitest";
import { createRouterTransport } from "@connectrpc/connect";
import { Remote } from "../../actors/remote.js";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { Sender } from "../../actors/sender.js";
import { routes } from "../../services/server.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { addressOf, encodeMessage, newMessage, toHex } from "../../core/hash.js";
import { decodePage, encodePage } from "../../core/page.js";
import type { EmbedMode } from "../../core/page.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
const GROUP = utf8("g");

/** Real services over Connect's in-memory transport, on memory stores the test can reach into. */
function world() {
  const content = new MemoryContentStore();
  const names = new MemoryNameStore();
  const transport = createRouterTransport(routes({ content, names }));
  const remote = () => new Remote({ casUrl: "memory://cas", nsUrl: "memory://ns", casTransport: transport, nsTransport: transport });
  return { content, names, remote };
}

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
    const sender = new Sender({ name: "alice", log, remote: w.remote(), pageSize, embed });
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

  it("publishing twice with nothing new changes nothing", async () => {
    const w = world();
    const sender = new Sender({ name: "a", log: new MemoryLocalLog(), remote: w.remote(), pageSize: 4 });
    await sender.append(bodies(6), GROUP, 1n);
    const first = await sender.publish();
    const second = await sender.publish();
    expect(second).toMatchObject({ added: 0, version: first.version, published: 6 });
    expect((await w.names.get("a"))!.version).toBe(first.version);
  });

  it("stores messages and sealed pages before the head that names them", async () => {
    const w = world();
    const sender = new Sender({ name: "a", log: new MemoryLocalLog(), remote: w.remote(), pageSize: 2 });
    await sender.append(bodies(5), GROUP, 1n);
    await sender.publish();
    const head = decodePage((await w.names.get("a"))!.content, "head");
    let page = head;
    let pages = 1;
    for (;;) {
      for (const pair of page.pair) expect(await w.content.has(pair.remoteHash)).toBe(true);
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
    const a = new Sender({ name: "n", log, remote: w.remote(), pageSize: 4 });
    const b = new Sender({ name: "n", log, remote: w.remote(), pageSize: 4 });
    const results = await Promise.all([a.publish(), b.publish(), a.publish()]);
    expect(results.every((r) => r.published === 50)).toBe(true);
    const got = await receiveAll(new Receiver({ name: "n", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }));
    expect(got.map((d) => d.seq)).toEqual([...Array(50).keys()]);
  });

  it("refuses to publish over a name that holds another log", async () => {
    const w = world();
    const one = new Sender({ name: "shared", log: new MemoryLocalLog(), remote: w.remote() });
    await one.append(bodies(3, "one"), GROUP, 1n);
    await one.publish();
    const other = new Sender({ name: "shared", log: new MemoryLocalLog(), remote: w.remote() });
    await other.append(bodies(3, "other"), GROUP, 1n);
    await expect(other.publish()).rejects.toThrowError(/CONFLICT: name "shared" holds message [0-9a-f]{64}, which is not in the local log/);
  });

  it("skips a message whose id is already in the log", async () => {
    const w = world();
    const sender = new Sender({ name: "d", log: new MemoryLocalLog(), remote: w.remote() });
    expect(await sender.append([utf8("same"), utf8("same"), utf8("other")], GROUP, 7n)).toHaveLength(2);
  });
});

describe("actors - the receiver verifies what it is served", () => {
  async function published(embed: EmbedMode = "none") {
    const w = world();
    const log = new MemoryLocalLog();
    const sender = new Sender({ name: "v", log, remote: w.remote(), pageSize: 3, embed });
    await sender.append(bodies(10), GROUP, 1n);
    await sender.publish();
    return { w, log, sender, receiver: () => new Receiver({ name: "v", remote: w.remote(), checkpoints: new MemoryCheckpointStore() }) };
  }

  it("a tampered message block is DATA_LOSS from the CAS, and nothing of its batch is delivered", async () => {
    const { w, log, receiver } = await published();
    const [victim] = await log.read(4, 5);
    w.content.corrupt(addressOf(victim.data), utf8("evil"));
    const delivered: Delivery[] = [];
    await expect(receiver().sync(async (batch) => void delivered.push(...batch))).rejects.toThrowError(/DATA_LOSS/);
    expect(delivered).toHaveLength(0);
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
    const other = new Sender({ name: "v2", log: new MemoryLocalLog(), remote: w.remote() });
    await other.append(bodies(2, "x"), GROUP, 1n);
    await other.publish();
    await w.names.put("v", (await w.names.get("v2"))!.content);
    await expect(bob.sync(async () => {})).rejects.toThrowError(/CONFLICT: name "v" no longer holds message/);
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
});
