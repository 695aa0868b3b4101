import { describe, expect, it } from "vitest";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { FETCH_BYTES } from "../../core/log-reader.js";
import { Sender } from "../../actors/sender.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { addressOf, encodeMessage, newMessage } from "../../core/hash.js";
import { memoryWorld } from "../helpers/connect.js";
import { weighedRemote } from "../helpers/weighed-remote.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";
import { decodePage, encodePage } from "../../core/page.js";
import { create } from "@bufbuild/protobuf";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { RemoteLogSource } from "../../backup/remote-source.js";
import type { SourceRead } from "../../backup/source.js";

// The receiver against a lying NS and CAS: the services check what they store, but a receiver must
// not depend on that, so these tests write straight into the stores behind them, as a hostile or
// broken operator could. Given only the name, every lie must be caught, naming what failed.

const utf8 = (text: string) => new TextEncoder().encode(text);

async function signedWorld(pageSize = 3) {
  const { content, names, remote, lie } = memoryWorld();
  const key = await generateNameKey();
  const name = keyName(key);
  const log = new MemoryLocalLog();
  const sender = new Sender({ name, key, log, published: new MemoryCheckpointStore(), remote: remote(), pageSize });
  const checkpoints = new MemoryCheckpointStore();
  const receiver = () => new Receiver({ name, remote: remote(), checkpoints });
  const publish = async (count: number, prefix: string) => {
    await sender.append(Array.from({ length: count }, (_, i) => utf8(`${prefix}${i}`)), utf8("g"), 1n);
    return sender.publish();
  };
  const receive = async () => {
    const got: Delivery[] = [];
    await receiver().sync(async (batch) => void got.push(...batch));
    return got;
  };
  return { content, lie, names, remote, key, name, log, sender, checkpoints, receiver, publish, receive };
}

describe("hostile - a receiver given only a key name", () => {
  it("reads a signed log, and remembers the sequence it accepted", async () => {
    const w = await signedWorld();
    const result = await w.publish(7, "a");
    expect(result.version).toBe(1n);
    expect(await w.receive()).toHaveLength(7);
    expect((await w.checkpoints.load(w.name))!.sequence).toBe(1n);
    await w.publish(2, "b");
    expect((await w.receive()).map((d) => d.seq)).toEqual([7, 8]);
    expect((await w.checkpoints.load(w.name))!.sequence).toBe(2n);
  });

  it("rejects a head the NS serves without a record", async () => {
    const w = await signedWorld();
    await w.publish(2, "a");
    const stored = (await w.names.get(w.name))!;
    await w.names.put(w.name, stored.content, { record: new Uint8Array(0) });
    await expect(w.receive()).rejects.toThrowError(/PERMISSION_DENIED: head of name "k51\w+" from NS memory:\/\/ns comes without a signed record/);
  });

  it("rejects a head signed by another key", async () => {
    const w = await signedWorld();
    await w.publish(2, "a");
    const stored = (await w.names.get(w.name))!;
    const forged = await createNameRecord(await generateNameKey(), stored.content, 5n);
    await w.names.put(w.name, stored.content, { record: forged });
    await expect(w.receive()).rejects.toThrowError(/PERMISSION_DENIED: head of name "k51\w+"/);
  });

  it("rejects a valid record served beside a page it does not vouch for", async () => {
    const w = await signedWorld();
    await w.publish(2, "a");
    const stored = (await w.names.get(w.name))!;
    const page = decodePage(stored.content, "head");
    page.pair.pop();
    await w.names.put(w.name, encodePage(page), { record: stored.record });
    // The server holds a page its record does not vouch for: damaged data, not a bad argument of Bob's.
    await expect(w.receive()).rejects.toMatchObject({ code: "DATA_LOSS", message: expect.stringMatching(/head of name "k51\w+".*points at/) });
  });

  it("rejects a rollback to an older, validly signed head", async () => {
    const w = await signedWorld();
    await w.publish(2, "a");
    const old = (await w.names.get(w.name))!;
    await w.publish(2, "b");
    expect(await w.receive()).toHaveLength(4);
    await w.names.put(w.name, old.content, { record: old.record });
    await expect(w.receive()).rejects.toThrowError(/CONFLICT: head of name "k51\w+" .* is a rollback: its record has sequence 1, and sequence 2 was accepted before/);
  });

  it("rejects an expired record", async () => {
    const w = await signedWorld();
    await w.publish(1, "a");
    const stored = (await w.names.get(w.name))!;
    const expired = await createNameRecord(w.key, stored.content, 9n, { validityMs: 1 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await w.names.put(w.name, stored.content, { record: expired });
    await expect(w.receive()).rejects.toThrowError(/CONFLICT: head of name "k51\w+".*expired/i);
  });

  it("rejects signed bytes that are not a page", async () => {
    const w = await signedWorld();
    const junk = new Uint8Array([0xff, 0x01, 0x02]);
    await w.names.put(w.name, junk, { record: await createNameRecord(w.key, junk, 1n) });
    await expect(w.receive()).rejects.toThrowError(/DATA_LOSS: head of name "k51\w+" is not a vac.cas.RemoteLog page/);
  });

  it("rejects tampered page bytes and tampered message bytes in the CAS, delivering nothing of the batch", async () => {
    const w = await signedWorld(2);
    await w.publish(6, "a");
    const head = decodePage((await w.names.get(w.name))!.content, "head");
    w.content.corrupt(head.tail, utf8("not the page"));
    await expect(w.receive()).rejects.toThrowError(/DATA_LOSS/);

    const v = await signedWorld(2);
    await v.publish(6, "a");
    const [first] = await v.log.read(0, 1);
    v.content.corrupt(addressOf(first.data), encodeMessage(newMessage(utf8("g"), 1n, utf8("evil"))));
    const delivered: Delivery[] = [];
    await expect(v.receiver().sync(async (batch) => void delivered.push(...batch))).rejects.toThrowError(/DATA_LOSS/);
    expect(delivered).toHaveLength(0);
  });

  it("rejects a signed head whose tail points at itself, or at a chain that loops back", async () => {
    const w = await signedWorld();
    await w.publish(1, "a");
    // The page a tail names must hash to it, so a loop can only be served as bytes that do not.
    const stored = (await w.names.get(w.name))!;
    const selfish = create(RemoteLogSchema, { pair: decodePage(stored.content, "head").pair, tail: addressOf(stored.content) });
    const selfishBytes = encodePage(selfish);
    w.lie(addressOf(stored.content), selfishBytes);
    await w.names.put(w.name, selfishBytes, { record: await createNameRecord(w.key, selfishBytes, 2n) });
    await expect(w.receive()).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);

    // A longer chain whose oldest page is served as the head again: the walk ends, it does not loop.
    const v = await signedWorld(2);
    await v.publish(7, "a");
    const head = decodePage((await v.names.get(v.name))!.content, "head");
    const second = decodePage((await v.content.getMany([head.tail]))[0]!, "page");
    v.lie(second.tail, (await v.names.get(v.name))!.content);
    await expect(v.receive()).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);
  });

  it("checks pages and messages a lying CAS serves: a tampered page, a tampered message", async () => {
    const w = await signedWorld(2);
    await w.publish(6, "a");
    const head = decodePage((await w.names.get(w.name))!.content, "head");
    w.lie(head.tail, encodePage(create(RemoteLogSchema, {})));
    await expect(w.receive()).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);

    const v = await signedWorld(2);
    await v.publish(6, "a");
    const [first] = await v.log.read(0, 1);
    v.lie(addressOf(first.data), encodeMessage(newMessage(utf8("g"), 1n, utf8("evil"))));
    await expect(v.receive()).rejects.toThrowError(/DATA_LOSS: name "k51\w+" seq 0: bytes of message [0-9a-f]{64} do not hash to its address/);
  });
});

describe("hostile - a backup by name reads as a receiver does", () => {
  it("checks what a lying CAS serves on a fresh backup's parallel path: a tampered page, a tampered message", async () => {
    // A fresh backup of an indexed log collects pages in parallel rounds and fetches messages as pages
    // arrive (backup/remote-source.ts readIndexed), not through the receiver's loop: it must catch the same lies.
    const w = await signedWorld(2);
    await w.publish(40, "a");
    const head = decodePage((await w.names.get(w.name))!.content, "head");
    expect(head.info).toBeDefined();
    w.lie(head.tail, encodePage(create(RemoteLogSchema, {})));
    await expect(new RemoteLogSource(w.remote(), w.name).readSince(undefined).then(allMessages)).rejects.toThrowError(/DATA_LOSS: page \S+ does not hash to its address/);

    const v = await signedWorld(2);
    await v.publish(40, "a");
    const [middle] = await v.log.read(21, 22);
    v.lie(addressOf(middle.data), encodeMessage(newMessage(utf8("g"), 1n, utf8("evil"))));
    await expect(new RemoteLogSource(v.remote(), v.name).readSince(undefined).then(allMessages)).rejects.toThrowError(/DATA_LOSS: name "k51\w+" seq 21: bytes of message [0-9a-f]{64} do not hash to its address/);
    // Untouched, the same path reads every message, in order.
    const clean = await signedWorld(2);
    await clean.publish(40, "a");
    const read = await new RemoteLogSource(clean.remote(), clean.name).readSince(undefined);
    expect(await allMessages(read)).toEqual((await clean.log.read(0, 40)).map((e) => e.data));
  });
});

/** Every message a backup source hands over, in one array: a fault found on the way is thrown. */
async function allMessages(read: SourceRead): Promise<Uint8Array[]> {
  const messages: Uint8Array[] = [];
  for await (const chunk of read.chunks) for (const message of chunk.messages) messages.push(message);
  return messages;
}

describe("hostile - a sender reads its own name as any reader does", () => {
  it("refuses to carry a head signed by another key into its next signed head", async () => {
    const w = await signedWorld();
    await w.publish(2, "a");
    // The NS now serves a head someone else wrote and signed: its pairs must not be carried.
    const forged = encodePage(create(RemoteLogSchema, { pair: [{ remoteHash: addressOf(utf8("x")), localHash: new Uint8Array(32) }] }));
    const stored = (await w.names.get(w.name))!;
    await w.names.put(w.name, forged, { record: await createNameRecord(await generateNameKey(), forged, stored.version + 1n), version: stored.version + 1n });
    // A fresh sender of the same log, which has no head of its own in hand, fetches the name.
    const sender = new Sender({ name: w.name, key: w.key, log: w.log, published: new MemoryCheckpointStore(), remote: w.remote(), pageSize: 3 });
    await sender.append([utf8("b0")], utf8("g"), 1n);
    await expect(sender.publish()).rejects.toThrowError(/PERMISSION_DENIED: head of name "k51\w+"/);
    expect((await w.names.get(w.name))!.content).toEqual(forged);
  });
});

describe("receiver - memory, whatever the messages' sizes", () => {
  it("holds at most FETCH_BYTES of messages a fetch and a delivered batch (and the one message that crosses it), and delivers every message once, in order", async () => {
    // A writer picks its messages' sizes: fetches counted in messages alone held what they added up to
    // (4,096 messages of 1 MiB a call, 32 calls ahead of delivery: a receive grew past 12 GB).
    const { remote } = memoryWorld();
    const log = new MemoryLocalLog();
    const sender = new Sender({ name: "big", log, published: new MemoryCheckpointStore(), remote: remote(), embed: "none" });
    const size = 700_000;
    const count = 40;
    await sender.append(
      Array.from({ length: count }, (_, i) => new Uint8Array(size).fill(i)),
      utf8("g"),
      1n,
    );
    await sender.publish();

    // The real Remote, each fetch's answer weighed as it comes back.
    const { remote: observed, fetched } = weighedRemote(remote());
    const got: Delivery[] = [];
    // Each message is a view into its fetch's answer, and keeps it alive until its batch has gone out.
    const batchBytes: number[] = [];
    await new Receiver({ name: "big", remote: observed, checkpoints: new MemoryCheckpointStore() }).sync(async (batch) => {
      got.push(...batch);
      batchBytes.push(batch.reduce((sum, delivery) => sum + (delivery.message?.body.length ?? 0), 0));
    });

    expect(got.map((delivery) => delivery.seq)).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(got.every((delivery, i) => delivery.message?.body.length === size && delivery.message.body[0] === i)).toBe(true);
    // Each message once, with the few bytes of its envelope (vac.mvds.Message's group and timestamp).
    const message = encodeMessage(newMessage(utf8("g"), 1n, new Uint8Array(size))).length;
    expect(fetched.reduce((a, b) => a + b, 0)).toBe(count * message);
    expect(fetched.length).toBeGreaterThan(1);
    expect(Math.max(...fetched)).toBeLessThanOrEqual(FETCH_BYTES + message);
    expect(Math.max(...batchBytes)).toBeLessThanOrEqual(FETCH_BYTES + size);
  });
});
