import { crc32 } from "node:zlib";
import { appendFile, open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LocalLog } from "../../core/local-log.js";
import { decodeMessage, encodeMessage, equalBytes, messageId, newMessage, toHex } from "../../core/hash.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { localLogContract, message } from "../contract/local-log.contract.js";
import { deadPid, fileCalls, TempDirs, failure } from "./temp.js";

const contractDirs = new TempDirs();
localLogContract(
  "file",
  async () => FileLocalLog.open(await contractDirs.make()),
  async (log: LocalLog) => {
    await log.close();
    await contractDirs.removeAll();
  },
);

const recordSize = (data: Uint8Array) => 4 + 32 + 4 + data.length;

describe("file local log - on disk", () => {
  const dirs = new TempDirs();
  const opened: FileLocalLog[] = [];
  const openLog = async (dir: string) => {
    const log = await FileLocalLog.open(dir);
    opened.push(log);
    return log;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((log) => log.close()));
    await dirs.removeAll();
  });

  it("reopen - entries, ids and seqs survive a close, and appends go on from there", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    const first = await log.append(Array.from({ length: 100 }, (_, i) => message(i)));
    await log.close();

    const again = await openLog(dir);
    expect(again.recovered).toBeUndefined();
    expect(again.length).toBe(100);
    const read = await again.read(0, 100);
    expect(read.map((e) => [e.seq, toHex(e.id), toHex(e.data)])).toEqual(first.map((e) => [e.seq, toHex(e.id), toHex(e.data)]));
    expect(again.seqOf(first[42].id)).toBe(42);
    expect(await again.append([message(5)])).toEqual([]);
    expect((await again.append([message(100)]))[0].seq).toBe(100);
  });

  it("format - records are [u32 length][id][u32 crc32 of id and data][data], little-endian, back to back", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    const messages = [message(0), message(1)];
    await log.append(messages);
    const bytes = await readFile(join(dir, "log.bin"));
    expect(bytes.length).toBe(recordSize(messages[0]) + recordSize(messages[1]));
    expect(bytes.readUInt32LE(0)).toBe(messages[0].length);
    const id = bytes.subarray(4, 36);
    expect(equalBytes(id, messageId(decodeMessage(messages[0])))).toBe(true);
    expect(bytes.readUInt32LE(36)).toBe(crc32(Buffer.concat([id, messages[0]])));
    expect(equalBytes(bytes.subarray(40, 40 + messages[0].length), messages[0])).toBe(true);
  });

  it("torn tail - a partial record is cut off at reopen, durably, and later appends work", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append(Array.from({ length: 10 }, (_, i) => message(i)));
    await log.close();
    const path = join(dir, "log.bin");
    const whole = (await stat(path)).size;
    // What a crash mid-append leaves: the start of a record, never acknowledged.
    const torn = Buffer.alloc(recordSize(message(10)));
    torn.writeUInt32LE(message(10).length, 0);
    await appendFile(path, torn.subarray(0, 25));

    const again = await openLog(dir);
    expect(again.length).toBe(10);
    expect(again.recovered).toMatchObject({ truncatedAt: whole, droppedBytes: 25 });
    expect((await stat(path)).size).toBe(whole);
    // Cut, but not thrown away: the bytes are kept for a human.
    expect(again.recovered!.savedTo.startsWith(join(dir, `log.bin.tail-${whole}-`))).toBe(true);
    expect(await readFile(again.recovered!.savedTo)).toEqual(torn.subarray(0, 25));
    expect((await again.append([message(10)]))[0].seq).toBe(10);
    await again.close();

    const third = await openLog(dir);
    expect(third.recovered).toBeUndefined();
    expect(third.length).toBe(11);
    expect(equalBytes((await third.read(10, 11))[0].data, message(10))).toBe(true);
  });

  it("damage - a whole last record whose checksum fails is DATA_LOSS (file, offset, seq), for a writer and a reader, and nothing is cut", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append(Array.from({ length: 5 }, (_, i) => message(i)));
    await log.close();
    const path = join(dir, "log.bin");
    const size = (await stat(path)).size;
    const handle = await open(path, "r+");
    await handle.write(Buffer.from([0]), 0, 1, size - 1);
    await handle.close();
    const bytes = await readFile(path);

    for (const options of [{}, { readOnly: true }]) {
      const err = await failure(FileLocalLog.open(dir, options), "DATA_LOSS");
      expect(err.details).toEqual({ file: path, offset: size - recordSize(message(4)), seq: 4 });
    }
    expect(await readFile(path)).toEqual(bytes);
  });

  it("damage - a flipped byte in the middle is DATA_LOSS naming its record, and the records after it are not cut", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append(Array.from({ length: 10 }, (_, i) => message(i)));
    await log.close();
    const path = join(dir, "log.bin");
    const offset = 4 * recordSize(message(0));
    const bytes = await readFile(path);
    bytes[offset + 45] ^= 1;
    await writeFile(path, bytes);
    const err = await failure(FileLocalLog.open(dir), "DATA_LOSS");
    expect(err.details).toEqual({ file: path, offset, seq: 4 });
    expect(err.message).toContain("remotelog repair");
    expect(await readFile(path)).toEqual(bytes);
  });

  it("damage - a byte flipped while the log is open is DATA_LOSS (file, offset, seq) when read, for a writer and a reader; the file stays as it is", async () => {
    // Reads come from the file, not from a copy made at open: they are checked again.
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append(Array.from({ length: 10 }, (_, i) => message(i)));
    const reader = await FileLocalLog.open(dir, { readOnly: true });
    opened.push(reader);
    const path = join(dir, "log.bin");
    const offset = 6 * recordSize(message(0));
    const bytes = await readFile(path);
    bytes[offset + 45] ^= 1;
    await writeFile(path, bytes);
    for (const open of [log, reader]) {
      expect((await open.read(0, 6)).map((entry) => entry.seq)).toEqual([0, 1, 2, 3, 4, 5]);
      const err = await failure(open.read(2, 8), "DATA_LOSS");
      expect(err.details).toEqual({ file: path, offset, seq: 6 });
    }
    expect(await readFile(path)).toEqual(bytes);
  });

  it("large - a log.bin of several 16 MiB chunks reopens whole, with records across each chunk's end", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    const big = (i: number) => encodeMessage(newMessage(new Uint8Array(1), BigInt(i), new Uint8Array(3_000_001 + i).fill(i)));
    const appended = await log.append(Array.from({ length: 12 }, (_, i) => big(i)));
    await log.close();
    const reopened = await openLog(dir);
    expect(reopened.length).toBe(12);
    const read = await reopened.read(0, 12);
    expect(read.map((entry) => [entry.seq, toHex(entry.id), entry.data.length])).toEqual(appended.map((entry) => [entry.seq, toHex(entry.id), entry.data.length]));
    expect(reopened.seqOf(appended[11].id)).toBe(11);
  });

  it("owner - owner.json survives a reopen, a read-only open sees it, and a damaged one is DATA_LOSS", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.claim({ name: "chat" });
    await log.close();
    expect((await openLog(dir)).owner).toEqual({ name: "chat" });
    const reader = await FileLocalLog.open(dir, { readOnly: true });
    opened.push(reader);
    expect(reader.owner).toEqual({ name: "chat" });
    await writeFile(join(dir, "owner.json"), "{");
    const other = await dirs.make();
    await writeFile(join(other, "owner.json"), "{");
    const err = await failure(FileLocalLog.open(other), "DATA_LOSS");
    expect(err.details.file).toBe(join(other, "owner.json"));
  });

  it("read-only - takes no lock, creates nothing, leaves a torn append in place and reads the whole records", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append(Array.from({ length: 3 }, (_, i) => message(i)));
    // A writer holds the log: a reader still opens it.
    await appendFile(join(dir, "log.bin"), Buffer.from([9, 0, 0]));
    const reader = await FileLocalLog.open(dir, { readOnly: true });
    expect(reader.length).toBe(3);
    expect(reader.tornBytes).toBe(3);
    await failure(reader.append([message(3)]), "INTERNAL");
    await reader.close();
    expect((await stat(join(dir, "log.bin"))).size).toBe(3 * recordSize(message(0)) + 3);
    await failure(FileLocalLog.open(join(dir, "none"), { readOnly: true }), "NOT_FOUND");
  });

  it("torn tail - a length field pointing past the end (garbage) is cut off", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append([message(0)]);
    await log.close();
    await appendFile(join(dir, "log.bin"), Buffer.alloc(64, 0xff));
    const again = await openLog(dir);
    expect(again.length).toBe(1);
    expect(again.recovered?.droppedBytes).toBe(64);
  });

  it("an id twice in log.bin (not something append writes) fails open with DATA_LOSS", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append([message(0)]);
    await log.close();
    const path = join(dir, "log.bin");
    await appendFile(path, await readFile(path));
    const err = await failure(FileLocalLog.open(dir), "DATA_LOSS");
    expect(err.message).toContain(toHex(messageId(decodeMessage(message(0)))));
  });

  it("all or nothing - a batch with one bad message appends none of it and leaves the file as it was", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.append([message(0)]);
    const size = (await stat(join(dir, "log.bin"))).size;
    const err = await failure(log.append([message(1), Uint8Array.of(0xff, 0xff), message(2)]), "INVALID_ARGUMENT");
    expect(err.message).toContain("message 1");
    expect(log.length).toBe(1);
    expect((await stat(join(dir, "log.bin"))).size).toBe(size);
  });

  it("lock - a second open is CONFLICT naming the holder's pid, and works once the first is closed", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    const err = await failure(FileLocalLog.open(dir), "CONFLICT");
    expect(err.message).toContain(String(process.pid));
    expect(err.message).toContain(join(dir, "LOCK"));
    await log.close();
    const again = await openLog(dir);
    expect(again.length).toBe(0);
  });

  it("lock - a lock left by a dead process, or holding garbage, is taken over", async () => {
    for (const content of [`${deadPid()}\n`, "", "not a pid"]) {
      const dir = await dirs.make();
      await writeFile(join(dir, "LOCK"), content);
      const log = await openLog(dir);
      expect(await readFile(join(dir, "LOCK"), "utf8")).toBe(`${process.pid}\n`);
      await log.close();
    }
  });

  it("lock - a lock held by another live process is CONFLICT", async () => {
    const dir = await dirs.make();
    await writeFile(join(dir, "LOCK"), `${process.ppid}\n`);
    const err = await failure(FileLocalLog.open(dir), "CONFLICT");
    expect(err.message).toContain(String(process.ppid));
    expect(await readFile(join(dir, "LOCK"), "utf8")).toBe(`${process.ppid}\n`);
  });

  it("lock - close releases it", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    await log.close();
    await expect(stat(join(dir, "LOCK"))).rejects.toThrow(/ENOENT/);
  });

  it("a closed log refuses calls with INTERNAL; appends called before close complete", async () => {
    const dir = await dirs.make();
    const log = await openLog(dir);
    const pending = log.append([message(0)]);
    await log.close();
    expect(await pending).toHaveLength(1);
    await failure(log.append([message(1)]), "INTERNAL");
    await failure(log.read(0, 1), "INTERNAL");
    const again = await openLog(dir);
    expect(again.length).toBe(1);
  });

  it("10,000 messages in one append are one write and at most one fdatasync, not one per message", async () => {
    const log = await openLog(await dirs.make());
    const messages = Array.from({ length: 10_000 }, (_, i) => message(i, "batch"));
    const { result, calls } = await fileCalls(["write", "writev", "sync", "datasync"], () => log.append(messages));
    expect(result).toHaveLength(10_000);
    // A short write goes on where it stopped: a few calls at most, whatever the batch.
    expect(calls.write + calls.writev).toBeGreaterThanOrEqual(1);
    expect(calls.write + calls.writev).toBeLessThanOrEqual(4);
    expect(calls.sync + calls.datasync).toBeLessThanOrEqual(1);
  });
});
