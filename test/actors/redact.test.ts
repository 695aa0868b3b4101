import { describe, expect, it } from "vitest";
import { Mirror } from "../../actors/mirror.js";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { redact } from "../../actors/redactor.js";
import { Sender } from "../../actors/sender.js";
import { generateNameKey, keyName } from "../../core/names.js";
import { decodePage } from "../../core/page.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { memoryWorld } from "../helpers/connect.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
const text = (d: Delivery) => (d.message ? new TextDecoder().decode(d.message.body) : `x${d.seq}`);

async function world(embed: "none" | "all" = "none") {
  const w = memoryWorld();
  const key = await generateNameKey();
  const name = keyName(key);
  const log = new MemoryLocalLog();
  const sender = new Sender({ name, key, log, published: new MemoryCheckpointStore(), remote: w.remote(), pageSize: 4, embed });
  const publish = async (count: number, prefix: string) => {
    await sender.append(Array.from({ length: count }, (_, i) => utf8(`${prefix}${i}`)), utf8("g"), 1n);
    return sender.publish();
  };
  const idOf = async (seq: number) => (await log.read(seq, seq + 1))[0].id;
  const receiver = (checkpoints = new MemoryCheckpointStore()) => {
    const r = new Receiver({ name, remote: w.remote(), checkpoints });
    return async () => {
      const got: Delivery[] = [];
      await r.sync(async (batch) => void got.push(...batch));
      return got;
    };
  };
  return { ...w, key, name, log, sender, publish, idOf, receiver, redact: (ids: Uint8Array[]) => redact({ name, remote: w.remote(), key }, ids) };
}

describe("redact - tombstones in a remote log", () => {
  it.each(["none", "all"] as const)("removes a message: fresh receivers get its tombstone in place, receivers that had it get the tombstone next (embed %s)", async (embed) => {
    const w = await world(embed);
    await w.publish(30, "m");
    const early = w.receiver();
    expect((await early()).map(text)).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`));

    const result = await w.redact([await w.idOf(5)]);
    // Page 1 (seq 4-7) up to the head (page 7): 7 pages rewritten, the head among them.
    expect(result).toMatchObject({ redacted: [5], pages: 7, version: 2n, redactions: 1 });

    const fresh = await w.receiver()();
    expect(fresh.map(text)).toEqual(Array.from({ length: 30 }, (_, i) => (i === 5 ? "x5" : `m${i}`)));
    expect(fresh[5]).toMatchObject({ seq: 5, id: await w.idOf(5), redacted: true });
    expect(fresh[5].message).toBeUndefined();

    const again = await early();
    expect(again).toEqual([{ seq: 5, id: await w.idOf(5), address: new Uint8Array(0), redacted: true }]);
    expect(await early()).toEqual([]);

    // The sender goes on over the rewritten head: the tombstone stays, and nothing comes twice.
    await w.publish(6, "n");
    expect((await early()).map(text)).toEqual(Array.from({ length: 6 }, (_, i) => `n${i}`));
    const head = decodePage((await w.names.get(w.name))!.content, "head");
    expect(head.info!.redactions).toBe(1n);
    expect((await w.receiver()()).filter((d) => d.redacted).map((d) => d.seq)).toEqual([5]);
  });

  it("redacts in the head page, several at once, once only, and names what is not there", async () => {
    const w = await world();
    await w.publish(10, "m");
    const early = w.receiver();
    await early();
    const result = await w.redact([await w.idOf(9), await w.idOf(2)]);
    expect(result.redacted).toEqual([2, 9]);
    expect((await early()).map((d) => d.seq)).toEqual([2, 9]);
    expect(await w.redact([await w.idOf(9)])).toMatchObject({ redacted: [], pages: 0, version: 2n });
    await expect(w.redact([new Uint8Array(32)])).rejects.toThrowError(/NOT_FOUND: name "k51\w+" holds no message 0{64}/);
    await expect(redact({ name: w.name, remote: w.remote() }, [await w.idOf(1)])).rejects.toThrowError(/INVALID_ARGUMENT: .*needs its key/);
  });

  it("starts again when a sender publishes between its read and its update, losing nothing", async () => {
    const w = await world();
    await w.publish(12, "m");
    const remote = w.remote();
    const update = remote.updateName.bind(remote);
    let raced = false;
    remote.updateName = async (...args) => {
      if (!raced) {
        raced = true;
        await w.publish(3, "race");
      }
      return update(...args);
    };
    const result = await redact({ name: w.name, remote, key: w.key }, [await w.idOf(1)]);
    expect(result.redacted).toEqual([1]);
    const got = await w.receiver()();
    expect(got.map(text)).toEqual([...Array.from({ length: 12 }, (_, i) => (i === 1 ? "x1" : `m${i}`)), "race0", "race1", "race2"]);
  });

  it("a sender that publishes before every one of its updates: redact gives up after its lost races (maxLostRaces) and says so, naming the name; nothing is redacted", async () => {
    const w = await world();
    await w.publish(6, "m");
    const remote = w.remote();
    const update = remote.updateName.bind(remote);
    let races = 0;
    remote.updateName = async (...args) => {
      races++;
      await w.publish(1, `race${races}-`);
      return update(...args);
    };
    const failed = await redact({ name: w.name, remote, key: w.key, maxLostRaces: 4 }, [await w.idOf(1)]).catch((err: unknown) => err);
    expect(failed).toMatchObject({ code: "ABORTED" });
    expect((failed as Error).message).toMatch(new RegExp(`redact of "${w.name}" gave up after losing 4 races in a row to another writer of the name.*run it again when that writer is quieter \\(last: .*is at version \\d+, not \\d+\\)`));
    expect(races).toBe(4);
    const got = await w.receiver()();
    expect(got.map(text).slice(0, 6)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
  });

  it("a mirror copies tombstones as they are", async () => {
    const w = await world();
    const copy = memoryWorld();
    await w.publish(9, "m");
    await w.redact([await w.idOf(3)]);
    await new Mirror({ name: w.name, source: w.remote(), target: copy.remote() }).sync();
    const got: Delivery[] = [];
    await new Receiver({ name: w.name, remote: copy.remote(), checkpoints: new MemoryCheckpointStore() }).sync(async (batch) => void got.push(...batch));
    expect(got.map(text)).toEqual(Array.from({ length: 9 }, (_, i) => (i === 3 ? "x3" : `m${i}`)));
  });
});
