/*
 * log.bin: the on-disk format of FileLocalLog. One append-only file of records, back to back, all
 * integers little-endian:
 *
 *   u32  data length
 *   32   id (H1, messageId of the decoded data)
 *   u32  crc32 of id || data
 *        data (an encoded vac.mvds.Message)
 *
 * A record's seq is its position in the file. Each append() writes all its records with one write
 * and one fdatasync. A crash during an append can leave a torn or garbled tail (the record was never
 * acknowledged), so open() keeps the longest prefix of whole, checksummed records and truncates the
 * rest. It cannot tell bit rot in the middle of the file from a torn tail (a crash may lose a middle
 * page of the last write and keep a later one), so it never throws the cut bytes away: they are saved
 * first to `log.bin.tail-<offset>-<time>`, and `recovered` says where, for the caller to report.
 */
import { crc32 } from "node:zlib";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { LocalLog, LocalLogEntry } from "../../core/local-log.js";
import { RemoteLogError } from "../../core/errors.js";
import { ensureDir, fsyncDir, ioError, removeLeftoverTmp, writeFileAtomic } from "./atomic.js";
import { LockFile } from "./lock-file.js";
import { decodeMessage, messageId, toHex } from "../../core/hash.js";
import { Mutex } from "./mutex.js";

const HEADER_SIZE = 4 + 32 + 4;

export interface LogRecovery {
  /** Where the file was cut: the end of the last whole record. */
  truncatedAt: number;
  /** Bytes removed after it. */
  droppedBytes: number;
  /** The file that keeps them. */
  savedTo: string;
}

/**
 * The sender's durable local log: `<dir>/log.bin` (format above), locked by `<dir>/LOCK` so that one
 * process at a time has it open.
 *
 * Every entry is kept in memory, data included, from open to close: reads and seqOf never touch the
 * disk, and a sender's log of a million 300-byte messages is a few hundred megabytes. A log that
 * outgrows memory needs an on-disk index instead; the format does not change for it.
 */
export class FileLocalLog implements LocalLog {
  private readonly entries: LocalLogEntry[] = [];
  /** Seq by id, keyed by the id as a latin1 string (see message-id.ts). */
  private readonly seqs = new Map<string, number>();
  private readonly appends = new Mutex();
  private closed = false;
  /** Bytes of whole records in log.bin: where the next append writes. */
  private size = 0;
  private recovery: LogRecovery | undefined;

  private constructor(
    readonly dir: string,
    private readonly handle: FileHandle,
    private readonly lock: LockFile,
  ) {}

  get length(): number {
    return this.entries.length;
  }

  /** Set when open() cut a torn or damaged tail off log.bin. */
  get recovered(): LogRecovery | undefined {
    return this.recovery;
  }

  /**
   * Opens (creating if needed) the log in dir. Truncates a torn or damaged tail, durably, after saving
   * it beside log.bin, and says so in `recovered`. Throws CONFLICT when another live process (or this one) has the log open, DATA_LOSS
   * when log.bin holds one id twice, INTERNAL on an I/O failure.
   */
  static async open(dir: string): Promise<FileLocalLog> {
    await ensureDir(dir);
    const lock = await LockFile.acquire(join(dir, "LOCK"), `local log ${dir}`);
    let handle: FileHandle | undefined;
    try {
      await removeLeftoverTmp(dir);
      const path = join(dir, "log.bin");
      let created = false;
      try {
        handle = await open(path, "r+");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        handle = await open(path, "wx+");
        created = true;
      }
      if (created) await fsyncDir(dir);
      const bytes = await handle.readFile();
      const log = new FileLocalLog(dir, handle, lock);
      log.size = log.load(path, bytes);
      if (log.size < bytes.length) {
        const savedTo = join(dir, `log.bin.tail-${log.size}-${Date.now()}`);
        await writeFileAtomic(savedTo, bytes.subarray(log.size));
        await handle.truncate(log.size);
        await handle.sync();
        log.recovery = { truncatedAt: log.size, droppedBytes: bytes.length - log.size, savedTo };
      }
      return log;
    } catch (err) {
      await handle?.close().catch(() => {});
      await lock.release();
      throw ioError(`cannot open local log ${dir}`, err);
    }
  }

  /**
   * Appends the messages whose ids are not in the log yet, with one write and one fdatasync, and
   * returns the entries appended (duplicates within the call count once). All or nothing: throws
   * INVALID_ARGUMENT, naming the first bad message by its index, and appends none of them if any
   * message does not decode; INTERNAL on an I/O failure, after which none of them is in the log.
   */
  async append(messages: Uint8Array[]): Promise<LocalLogEntry[]> {
    this.checkOpen();
    // Ids and records are made before waiting for the lock: they need none, and the records are our
    // own copy, so the caller may reuse its buffers as soon as it has called.
    const keys = messages.map((data, i) => Buffer.from(messageId(decodeMessage(data, `message ${i}`))).toString("latin1"));
    let batch = this.encode(messages, keys);
    // Ids in the index are durable already: they are added only after their fsync.
    if (batch.keys.length === 0) return [];
    return this.appends.run(async () => {
      // An append that held the lock before this one may have added some of the same messages.
      if (batch.keys.some((key) => this.seqs.has(key))) {
        batch = this.encode(batch.entries.map((entry) => entry.data), batch.keys);
        if (batch.keys.length === 0) return [];
      }
      try {
        await writeAll(this.handle, batch.bytes, this.size);
        await this.handle.datasync();
      } catch (err) {
        // Cut off whatever part was written, so the next append starts at a record boundary.
        await this.handle.truncate(this.size).catch(() => {});
        throw ioError(`cannot append to ${join(this.dir, "log.bin")}`, err);
      }
      this.size += batch.bytes.length;
      const first = this.entries.length;
      const appended = batch.entries.map((entry, j) => ({ seq: first + j, id: entry.id, data: entry.data }));
      for (let j = 0; j < appended.length; j++) {
        this.entries.push(appended[j]);
        this.seqs.set(batch.keys[j], first + j);
      }
      return appended;
    });
  }

  /**
   * The records of the messages not in the log yet, each once, as one buffer; the entries' ids and data
   * are views of it.
   */
  private encode(messages: Uint8Array[], keys: string[]): { bytes: Buffer; keys: string[]; entries: { id: Uint8Array; data: Uint8Array }[] } {
    const fresh: number[] = [];
    const seen = new Set<string>();
    let size = 0;
    for (let i = 0; i < messages.length; i++) {
      if (this.seqs.has(keys[i]) || seen.has(keys[i])) continue;
      seen.add(keys[i]);
      fresh.push(i);
      size += HEADER_SIZE + messages[i].length;
    }
    const bytes = Buffer.allocUnsafe(size);
    const entries: { id: Uint8Array; data: Uint8Array }[] = new Array(fresh.length);
    let at = 0;
    for (let j = 0; j < fresh.length; j++) {
      const data = messages[fresh[j]];
      bytes.writeUInt32LE(data.length, at);
      bytes.write(keys[fresh[j]], at + 4, 32, "latin1");
      const id = bytes.subarray(at + 4, at + 36);
      bytes.writeUInt32LE(crc32(data, crc32(id)), at + 36);
      bytes.set(data, at + HEADER_SIZE);
      entries[j] = {
        id: new Uint8Array(bytes.buffer, bytes.byteOffset + at + 4, 32),
        data: new Uint8Array(bytes.buffer, bytes.byteOffset + at + HEADER_SIZE, data.length),
      };
      at += HEADER_SIZE + data.length;
    }
    return { bytes, keys: fresh.map((i) => keys[i]), entries };
  }

  /** Entries with from <= seq < to, in order; the range is clamped to the log. */
  async read(from: number, to: number): Promise<LocalLogEntry[]> {
    this.checkOpen();
    return this.entries.slice(Math.max(0, from), Math.max(0, to));
  }

  seqOf(id: Uint8Array): number | undefined {
    return this.seqs.get(Buffer.from(id.buffer, id.byteOffset, id.length).toString("latin1"));
  }

  /** Waits for appends in progress, closes the file and releases the lock. Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.appends.run(async () => {});
    await this.handle.close().catch(() => {});
    await this.lock.release();
  }

  /**
   * Loads every whole, checksummed record and returns where they end. Entries are views of the file's
   * bytes, read with one readFile (so log.bin is limited to 2 GiB, Node's largest single read).
   */
  private load(path: string, bytes: Buffer): number {
    let at = 0;
    while (at + HEADER_SIZE <= bytes.length) {
      const length = bytes.readUInt32LE(at);
      const end = at + HEADER_SIZE + length;
      if (end > bytes.length) break;
      const id = bytes.subarray(at + 4, at + 36);
      const data = bytes.subarray(at + HEADER_SIZE, end);
      if (crc32(data, crc32(id)) !== bytes.readUInt32LE(at + 36)) break;
      const key = id.toString("latin1");
      const seq = this.entries.length;
      if (this.seqs.has(key)) {
        throw RemoteLogError.dataLoss(`${path} holds id ${toHex(id)} twice (seq ${this.seqs.get(key)} and ${seq}); was it written by something else?`);
      }
      this.seqs.set(key, seq);
      this.entries.push({ seq, id: new Uint8Array(id.buffer, id.byteOffset, id.length), data: new Uint8Array(data.buffer, data.byteOffset, data.length) });
      at = end;
    }
    return at;
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`local log ${this.dir} is closed`);
  }
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
