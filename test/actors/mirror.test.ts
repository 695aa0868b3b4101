import { describe, expect, it } from "vitest";
import { Mirror } from "../../actors/mirror.js";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { FETCH_BYTES } from "../../core/log-reader.js";
import { Sender } from "../../actors/sender.js";
import { addressOf, encodeMessage, newMessage } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";
import type { EmbedMode } from "../../core/page.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { memoryWorld } from "../helpers/connect.js";
import { weighedRemote } from "../helpers/weighed-remote.js";

const utf8 = (text: string) => new TextEncoder().encode(text);

const services = (label: string) => memoryWorld(label);

async function world(embed: EmbedMode = "none", pageSize = 4) {
  const a = services("a");
  const b = services("b");
  const key = await generateNameKey();
  const name = keyName(key);
  const log = new MemoryLocalLog();
  const sender = new Sender({ name, key, log, published: new MemoryCheckpointStore(), remote: a.remote(), pageSize, embed });
  const publish = async (count: number, prefix: string) => {
    await sender.append(Array.from({ length: count }, (_, i) => utf8(`${prefix}${i}`)), utf8("g"), 1n);
    return sender.publish();
  };
  const mirror = new Mirror({ name, source: a.remote(), target: b.remote() });
  const receive = async (from: ReturnType<typeof services>, checkpoints = new MemoryCheckpointStore()) => {
    const got: Delivery[] = [];
    await new Receiver({ name, remote: from.remote(), checkpoints }).sync(async (batch) => void got.push(...batch));
    return got;
  };
  return { a, b, key, name, log, publish, mirror, receive };
}

describe("mirror - a verified copy on a second CAS and NS", () => {
  it.each<[string, EmbedMode]>([
    ["referenced messages", "none"],
    ["embedded messages", "all"],
  ])("copies a signed log with its record unchanged, then only what is new: %s", async (_, embed) => {
    const w = await world(embed);
    await w.publish(50, "a");
    const first = await w.mirror.sync();
    expect(first).toMatchObject({ found: true, updated: true, messages: 50, pages: 12, sequence: 1n });
    const [source, copy] = [await w.a.names.get(w.name), await w.b.names.get(w.name)];
    expect(copy!.content).toEqual(source!.content);
    expect(copy!.record).toEqual(source!.record);
    expect((await w.receive(w.b)).map((d) => new TextDecoder().decode(d.message!.body))).toEqual(Array.from({ length: 50 }, (_, i) => `a${i}`));

    expect(await w.mirror.sync()).toMatchObject({ updated: false, pages: 0, messages: 0 });
    await w.publish(9, "b");
    const second = await w.mirror.sync();
    // The copy's head held a2 of page 12; the head is rewritten, and pages 12 and 13 are sealed. Only the 9
    // new messages are copied and counted, not the 2 of the old head page the copy had (issue 12 §7).
    expect(second).toMatchObject({ updated: true, messages: 9, sequence: 2n });
    expect(second.pages).toBeLessThanOrEqual(3);
    expect(await w.receive(w.b)).toHaveLength(59);
  });

  it("copies the page that was the copy's head when the source seals it unchanged as a tail", async () => {
    const w = await world("none", 4);
    // 48 messages in pages of 4: the head page is full, so the next publish seals it as it is, and the
    // new head's tail names it. The copy holds that page only as its NS head, not as a CAS block.
    await w.publish(48, "a");
    await w.mirror.sync();
    await w.publish(3, "b");
    const second = await w.mirror.sync();
    expect(second).toMatchObject({ updated: true, messages: 3 });
    const fresh = await w.receive(w.b);
    expect(fresh.map((d) => d.seq)).toEqual(Array.from({ length: 51 }, (_, i) => i));
  });

  it("lets a receiver move between the source and the copy with one checkpoint", async () => {
    const w = await world();
    const checkpoints = new MemoryCheckpointStore();
    await w.publish(10, "a");
    await w.mirror.sync();
    expect(await w.receive(w.a, checkpoints)).toHaveLength(10);
    await w.publish(5, "b");
    await w.mirror.sync();
    expect((await w.receive(w.b, checkpoints)).map((d) => d.seq)).toEqual([10, 11, 12, 13, 14]);
  });

  it("refuses what a receiver would refuse, and leaves the copy as it was", async () => {
    const w = await world();
    await w.publish(10, "a");
    await w.mirror.sync();
    await w.publish(10, "b");
    const [message] = await w.log.read(14, 15);
    w.a.lie(addressOf(message.data), encodeMessage(newMessage(utf8("g"), 1n, utf8("evil"))));
    const before = await w.b.names.get(w.name);
    await expect(w.mirror.sync()).rejects.toThrowError(/DATA_LOSS: name "k51\w+" seq \d+: bytes of message [0-9a-f]{64} do not hash/);
    expect(await w.b.names.get(w.name)).toEqual(before);

    // A source that serves an older, validly signed head than the copy holds is a rollback.
    const v = await world();
    await v.publish(3, "a");
    const old = (await v.a.names.get(v.name))!;
    await v.publish(3, "b");
    await v.mirror.sync();
    await v.a.names.put(v.name, old.content, { record: old.record });
    await expect(v.mirror.sync()).rejects.toThrowError(/FAILED_PRECONDITION|CONFLICT: .* is a rollback/);

    // A head whose record another key signed.
    const u = await world();
    await u.publish(3, "a");
    const stored = (await u.a.names.get(u.name))!;
    await u.a.names.put(u.name, stored.content, { record: await createNameRecord(await generateNameKey(), stored.content, 5n) });
    await expect(u.mirror.sync()).rejects.toThrowError(/PERMISSION_DENIED/);
    expect(await u.b.names.get(u.name)).toBeUndefined();
  });

  it("finishes after a crash between copying blocks and the head, and reports a name the source lacks", async () => {
    const w = await world();
    await w.publish(20, "a");
    // Blocks copied, head not: what a crash after the last putBlocks leaves.
    const target = w.b.remote();
    const partial = new Mirror({ name: w.name, source: w.a.remote(), target: { ...target, nsUrl: target.nsUrl, casUrl: target.casUrl, fetchName: (n) => target.fetchName(n), putBlocks: (b) => target.putBlocks(b), updateName: async () => { throw new Error("crash"); } } });
    await expect(partial.sync()).rejects.toThrowError(/crash/);
    expect(await w.b.names.get(w.name)).toBeUndefined();
    expect(await w.mirror.sync()).toMatchObject({ updated: true, messages: 20 });
    expect(await w.receive(w.b)).toHaveLength(20);
    expect(await new Mirror({ name: "nobody", signed: false, source: w.a.remote(), target: w.b.remote() }).sync()).toMatchObject({ found: false });
  });
});

describe("mirror - memory, whatever the messages' sizes", () => {
  it("reads at most FETCH_BYTES of messages a round (and the one that crosses it), and copies every message", async () => {
    const a = services("big-a");
    const b = services("big-b");
    const key = await generateNameKey();
    const name = keyName(key);
    const sender = new Sender({ name, key, log: new MemoryLocalLog(), published: new MemoryCheckpointStore(), remote: a.remote(), embed: "none" });
    const size = 700_000;
    const count = 40;
    await sender.append(Array.from({ length: count }, (_, i) => new Uint8Array(size).fill(i)), utf8("g"), 1n);
    await sender.publish();

    // The real source Remote, each read's answer weighed as it comes back.
    const { remote: source, fetched: read } = weighedRemote(a.remote());
    expect(await new Mirror({ name, source, target: b.remote() }).sync()).toMatchObject({ found: true, updated: true, messages: count });

    const message = encodeMessage(newMessage(utf8("g"), 1n, new Uint8Array(size))).length;
    // The messages' reads (pages are a few KiB each) never held more than the budget and one message.
    expect(Math.max(...read)).toBeLessThanOrEqual(FETCH_BYTES + message);
    const got: Delivery[] = [];
    await new Receiver({ name, remote: b.remote(), checkpoints: new MemoryCheckpointStore() }).sync(async (batch) => void got.push(...batch));
    expect(got.map((delivery) => delivery.message?.body[0])).toEqual(Array.from({ length: count }, (_, i) => i));
  });
});
