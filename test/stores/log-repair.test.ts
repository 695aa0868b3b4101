import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { refillFromRemote } from "../../actors/log-refill.js";
import { Sender } from "../../actors/sender.js";
import { addressOf, decodeMessage, messageId, toHex } from "../../core/hash.js";
import { FileCheckpointStore } from "../../stores/file/checkpoint-store.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { repairLocalLog } from "../../stores/file/log-repair.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { memoryWorld } from "../helpers/connect.js";
import { message } from "../contract/local-log.contract.js";
import { TempDirs, failure } from "./temp.js";

const dirs = new TempDirs();
afterEach(() => dirs.removeAll());

const recordSize = (i: number) => 40 + message(i).length;
const idOf = (data: Uint8Array) => messageId(decodeMessage(data));

async function logOf(count: number): Promise<string> {
  const dir = await dirs.make();
  const log = await FileLocalLog.open(dir);
  await log.append(Array.from({ length: count }, (_, i) => message(i)));
  await log.close();
  return dir;
}

describe("repairLocalLog", () => {
  it("sets aside a damaged range up to the next whole record and keeps every record after it", async () => {
    const dir = await logOf(10);
    const path = join(dir, "log.bin");
    const bytes = await readFile(path);
    const offset = 3 * recordSize(0);
    bytes.writeUInt32LE(0x7fffffff, offset); // seq 3's length now runs past the end
    await writeFile(path, bytes);
    const report = await repairLocalLog(dir);
    expect(report).toMatchObject({ changed: true, before: 9, after: 9 });
    expect(report.setAside).toEqual([expect.objectContaining({ offset, bytes: recordSize(3), seq: 3 })]);
    expect(await readFile(join(report.savedIn!, "log.bin"))).toEqual(bytes);
    const log = await FileLocalLog.open(dir, { readOnly: true });
    expect((await log.read(0, 9)).map((entry) => toHex(entry.data))).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9].map((i) => toHex(message(i))));
    await log.close();
    // Again: nothing to do, nothing written.
    expect(await repairLocalLog(dir)).toMatchObject({ changed: false, before: 9 });
    expect((await readdir(dir)).filter((name) => name.startsWith("repair-"))).toHaveLength(1);
  });

  it("sets aside a repeated id (a copy is kept) and refuses while a sender holds the log", async () => {
    const dir = await logOf(3);
    const path = join(dir, "log.bin");
    const bytes = await readFile(path);
    await writeFile(path, Buffer.concat([bytes, bytes.subarray(0, recordSize(0))]));
    await failure(FileLocalLog.open(dir, { readOnly: true }), "DATA_LOSS");
    const report = await repairLocalLog(dir);
    expect(report.setAside).toEqual([expect.objectContaining({ seq: 3, why: expect.stringContaining("already in the log") })]);
    const repaired = await FileLocalLog.open(dir, { readOnly: true });
    expect(repaired.length).toBe(3);
    await repaired.close();

    const writer = await FileLocalLog.open(dir);
    await failure(repairLocalLog(dir), "CONFLICT");
    await writer.close();
  });
});

describe("repairLocalLog - published marks", () => {
  it("moves a mark to where its last message is, even on a healthy log (a repair that crashed before the marks), and removes one whose message is gone", async () => {
    const dir = await logOf(5);
    const marks = await FileCheckpointStore.open(join(dir, "published"));
    const reader = await FileLocalLog.open(dir, { readOnly: true });
    const ids = (await reader.read(0, 5)).map((entry) => entry.id);
    await reader.close();
    await marks.save("a", { delivered: 9, lastId: ids[2] });
    await marks.save("b", { delivered: 4, lastId: idOf(message(99)) });
    await marks.save("c", { delivered: 5, lastId: ids[4] });
    const report = await repairLocalLog(dir);
    expect(report.changed).toBe(true);
    expect(report.setAside).toEqual([]);
    expect(report.marks).toEqual([
      { name: "a", from: 9, to: 3 },
      { name: "b", from: 4, to: 0 },
    ].sort((x, y) => (marks.pathOf(x.name) < marks.pathOf(y.name) ? -1 : 1)));
    expect(await marks.load("a")).toMatchObject({ delivered: 3 });
    expect(await marks.load("b")).toBeUndefined();
    expect(await marks.load("c")).toMatchObject({ delivered: 5 });
    expect((await readdir(join(report.savedIn!, "published"))).length).toBe(3);
    expect(await repairLocalLog(dir)).toMatchObject({ changed: false });
    await marks.close();
  });
});

describe("refillFromRemote", () => {
  it("refills what the local log lacks from an intact remote log, in its place, and refuses a remote block that does not check out", async () => {
    const world = memoryWorld();
    const log = new MemoryLocalLog();
    const sender = new Sender({ name: "n", log, published: new MemoryCheckpointStore(), remote: world.remote(), pageSize: 4 });
    await log.append(Array.from({ length: 10 }, (_, i) => message(i)));
    await sender.publish();
    const kept = (await log.read(0, 10)).filter((entry) => entry.seq !== 4 && entry.seq !== 7);
    const refill = await refillFromRemote(world.remote(), "n", kept);
    expect(refill.refilled).toBe(2);
    expect(refill.messages.map((m) => toHex(m.data))).toEqual(Array.from({ length: 10 }, (_, i) => toHex(message(i))));

    world.lie(addressOf(message(4)), message(40));
    await expect(refillFromRemote(world.remote(), "n", kept)).rejects.toMatchObject({ code: "DATA_LOSS" });
  });
});
