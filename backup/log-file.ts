import { open } from "node:fs/promises";
import { join } from "node:path";
import { DigestTable } from "../core/digest-table.js";
import { RemoteLogError } from "../core/errors.js";
import { messageIdOfEncoded, toHex } from "../core/hash.js";
import { ensureDir, fsyncDir, ioError } from "../stores/file/atomic.js";
import { HEADER_SIZE, LOG_FILE, writeRecordAroundId } from "../stores/file/local-log.js";

/*
 * Writes a new local log for restore: `<dir>/log.bin` in exactly the record format that
 * stores/file/local-log.ts documents and FileLocalLog reads (u32 LE length, 32-byte id, u32 LE crc32
 * of id || data, data), laid out by its writeRecordAroundId. FileLocalLog.append does the same per
 * call, but also keeps an index of the log for its life, which a restore that closes the log at once
 * does not need: writing the records here made a 100,000-message restore about twice as fast.
 * test/backup/backup-restore.test.ts reads every restored log back through FileLocalLog.
 */

export interface EncodedRecords {
  /** The records, back to back. */
  bytes: Uint8Array;
  /**
   * The records' ids again, back to back (id i at 32i): the restoring thread checks a pack's ids for
   * duplicates with one copy into its table (DigestTable.addAllIfNew) instead of a copy per id, which
   * was a fifth of its time. Not a view per id, which cost a restore its garbage collection.
   */
  ids: Uint8Array;
}

/** The id of record i of records (a view). */
export function idOf(records: EncodedRecords, i: number): Uint8Array {
  return records.ids.subarray(32 * i, 32 * i + 32);
}

/** Messages where they lie in one buffer: message i is bytes[spans[2i], spans[2i + 1]) (a pack's body, read by readPackBody). */
export interface MessageRun {
  bytes: Uint8Array;
  spans: Uint32Array;
}

/**
 * Lays out messages as log.bin records: decodes each, computes its id (H1) and the record's CRC: the
 * costly part of a restore. Throws INVALID_ARGUMENT naming the seq (firstSeq + index) of a message
 * that does not decode. shared: the records in SharedArrayBuffers, for a restore thread to hand over
 * without moving them (restore-worker.ts says why).
 */
export function encodeRecords(messages: Uint8Array[] | MessageRun, firstSeq: number, shared = false): EncodedRecords {
  const run = Array.isArray(messages) ? undefined : messages;
  const list = Array.isArray(messages) ? messages : undefined;
  const count = run ? run.spans.length / 2 : list!.length;
  let size = 0;
  if (run) for (let i = 0; i < count; i++) size += HEADER_SIZE + run.spans[2 * i + 1] - run.spans[2 * i];
  else for (const data of list!) size += HEADER_SIZE + data.length;
  // The records, then the ids, in one buffer. Plain views: Buffer's subarray makes a Buffer through a
  // JS constructor, which cost more than the copy.
  const whole = shared ? new Uint8Array(new SharedArrayBuffer(size + 32 * count)) : plainView(Buffer.allocUnsafe(size + 32 * count));
  // Made before the loop, not after it: V8 compiles a first call's long loop while it runs, and code
  // after the loop, never run by then, threw that compiled code away on the way out (a recompile a
  // thread, ~10-25 ms of a core).
  const records = { bytes: whole.subarray(0, size), ids: whole.subarray(size) };
  let at = 0;
  for (let i = 0, idAt = size; i < count; i++, idAt += 32) {
    const data = run ? run.bytes.subarray(run.spans[2 * i], run.spans[2 * i + 1]) : list![i];
    messageIdOfEncoded(data, whole, idAt, "message at seq", firstSeq + i);
    whole.copyWithin(at + 4, idAt, idAt + 32);
    at = writeRecordAroundId(whole, at, data);
  }
  return records;
}

function plainView(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

/**
 * A data sync is started after each this many bytes written, while the rest is laid out: the one at
 * close then has only the last of them to flush. A 100,000-message restore (31 MB of log) waited
 * 15-17 ms for it, idle, with every byte still to go to the disk; 2-3 ms with these.
 */
const SYNC_EVERY_BYTES = 8 << 20;

export class LogFileWriter {
  /**
   * The ids written, numbered by seq, for the duplicate check: a DigestTable, whose slots a backup's
   * author cannot line up (ids are hashes of what they wrote). A Map of prefixes cost a restore more
   * than its records' CRCs; a latin1 string per id, a third of the writing in garbage collection.
   */
  private ids = new DigestTable();
  private writing: Promise<void> = Promise.resolve();
  private position = 0;
  private count = 0;
  /** Bytes written since the last data sync was started. */
  private unsynced = 0;
  /** Data syncs started while writing goes on (SYNC_EVERY_BYTES); close() waits for them. */
  private syncing: Promise<void>[] = [];

  /** dir's log.bin, which errors name (their text and details.file). */
  private readonly path: string;

  private constructor(
    readonly dir: string,
    private readonly handle: Awaited<ReturnType<typeof open>>,
    private readonly syncEveryBytes: number,
  ) {
    this.path = join(dir, LOG_FILE);
  }

  /**
   * Creates dir and an empty log.bin in it; CONFLICT if log.bin exists. expected: how many messages
   * will be written, when known, to size the duplicate check once.
   */
  static async create(dir: string, expected = 0, syncEveryBytes = SYNC_EVERY_BYTES): Promise<LogFileWriter> {
    await ensureDir(dir);
    const path = join(dir, LOG_FILE);
    try {
      const writer = new LogFileWriter(dir, await open(path, "wx"), syncEveryBytes);
      if (expected > 1024) writer.ids = new DigestTable(expected);
      return writer;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw RemoteLogError.conflict(`${path} exists`);
      throw ioError(`cannot create ${path}`, err, path);
    }
  }

  get length(): number {
    return this.count;
  }

  /**
   * Appends messages as records and returns their ids; the write goes on in the background, and
   * close() reports its failure. Throws INVALID_ARGUMENT naming the seq of a message that does not
   * decode, CONFLICT for an id already written (FileLocalLog refuses a log that holds one id twice);
   * nothing of the call is written then.
   */
  async append(messages: Uint8Array[]): Promise<Uint8Array[]> {
    const encoded = encodeRecords(messages, this.count);
    this.appendEncoded([encoded]);
    return Array.from({ length: encoded.ids.length / 32 }, (_, i) => idOf(encoded, i));
  }

  /**
   * Appends records made by encodeRecords, the parts in order: checks
   * their ids for duplicates, then writes them in the background. CONFLICT as append.
   */
  appendEncoded(parts: EncodedRecords[]): void {
    const first = this.count;
    let seq = first;
    try {
      for (const part of parts) {
        const repeated = this.ids.addAllIfNew(part.ids);
        if (repeated !== -1) throw RemoteLogError.conflict(`message ${toHex(idOf(part, repeated))} at seq ${seq + repeated} is in the log already`);
        seq += part.ids.length / 32;
      }
    } catch (err) {
      this.forgetFrom(first);
      throw err;
    }
    // Written on the thread pool while the caller prepares the next call; close() waits for it, and
    // a failed write fails every later call and close().
    for (const part of parts) {
      const position = this.position;
      const bytes = part.bytes;
      this.writing = this.writing.then(async () => {
        let done = 0;
        try {
          while (done < bytes.length) done += (await this.handle.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
        } catch (err) {
          throw ioError(`cannot write ${this.path}`, err, this.path);
        }
        this.unsynced += bytes.length;
        if (this.unsynced >= this.syncEveryBytes) {
          this.unsynced = 0;
          const synced = this.handle.datasync().catch((err: unknown) => {
            throw ioError(`cannot sync ${this.path}`, err, this.path);
          });
          synced.catch(() => {});
          this.syncing.push(synced);
        }
      });
      this.writing.catch(() => {});
      this.position += bytes.length;
    }
    this.count = seq;
  }

  /** Forgets the ids of seqs from `from` on, after a failed append. */
  private forgetFrom(from: number): void {
    this.ids.truncate(from);
  }

  /** Makes everything written durable (data, then the directory entry) and closes the file. */
  async close(): Promise<void> {
    try {
      await this.writing;
      await Promise.all(this.syncing);
      await this.handle.datasync();
    } finally {
      await this.handle.close();
    }
    await fsyncDir(this.dir);
  }
}
