/*
 * log.bin: the on-disk format of FileLocalLog. One append-only file of records, back to back, all
 * integers little-endian:
 *
 *   u32  data length
 *   32   id (H1, messageId of the decoded data)
 *   u32  crc32 of id || data
 *        data (an encoded vac.mvds.Message)
 *
 * A record's seq is its position in the file. Each append() writes all its records with one synced
 * write (O_DSYNC, or a write and an fdatasync), so a crash during an append can leave only an
 * incomplete last record (a torn append, never acknowledged). A writer's open() cuts that, after
 * saving its bytes to `log.bin.tail-<offset>-<time>`, and says so in `recovered`. Anything else is
 * damage: a whole record whose checksum fails, or a length that runs past the end while a whole
 * record follows it, anywhere in the file. That is DATA_LOSS naming the file, the offset and the seq,
 * and nothing is cut, moved or rewritten: `remotelog repair` (cli/repair.ts) salvages a damaged log on
 * purpose.
 *
 * `<dir>/owner.json` records whom the log belongs to ({"format":1,"name":…,"key"?:…}), written on the
 * first claim().
 */
import { crc32 } from "node:zlib";
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ownerMismatch, type ClaimResult, type LocalLog, type LocalLogEntry, type LogOwner } from "../../core/local-log.js";
import { RemoteLogError } from "../../core/errors.js";
import { ensureDir, fsyncDir, ioError, openRegularFile, readRegularFile, removeLeftoverTmp, SYNCED_WRITES, userPathError, writeAll, writeFileAtomic } from "./atomic.js";
import { LockFile } from "./lock-file.js";
import { messageIdOfEncoded, toHex } from "../../core/hash.js";
import { Mutex } from "./mutex.js";
import { DigestTable } from "../../core/digest-table.js";
import { FileCheckpointStore } from "./checkpoint-store.js";

export const HEADER_SIZE = 4 + 32 + 4;
export const LOG_FILE = "log.bin";

/** NOT_FOUND for a directory that holds no local log, naming the log file it lacks (details.file). */
export function noLocalLog(dir: string): RemoteLogError {
  return RemoteLogError.notFound(`${dir} holds no local log (no ${LOG_FILE})`, { file: join(dir, LOG_FILE) });
}

export const OWNER_FILE = "owner.json";
/** Where a sender keeps its published marks, beside its local log (FileCheckpointStore, one file a name). */
export const PUBLISHED_DIR = "published";

export interface LogRecovery {
  /** Where the file was cut: the end of the last whole record. */
  truncatedAt: number;
  /** Bytes removed after it. */
  droppedBytes: number;
  /** The file that keeps them. */
  savedTo: string;
}

/** One whole record of log.bin whose checksum holds; id and data are views of the file's bytes. */
export interface LogRecord {
  offset: number;
  end: number;
  id: Uint8Array;
  data: Uint8Array;
}

/**
 * The record at offset `at` of a log.bin's bytes: the record when whole and checksummed, "incomplete"
 * when its header or data runs past the end, "bad" when whole but its checksum fails.
 */
export function recordAt(bytes: Uint8Array, at: number): LogRecord | "incomplete" | "bad" {
  if (at + HEADER_SIZE > bytes.length) return "incomplete";
  // Read where they lie, without a DataView: this runs for every record read or opened.
  const end = at + HEADER_SIZE + readUint32LE(bytes, at);
  if (end > bytes.length) return "incomplete";
  // Plain Uint8Array views, not Buffers, whatever bytes is: callers compare them as Uint8Arrays.
  const id = new Uint8Array(bytes.buffer, bytes.byteOffset + at + 4, 32);
  const data = new Uint8Array(bytes.buffer, bytes.byteOffset + at + HEADER_SIZE, end - at - HEADER_SIZE);
  if (recordChecksum(id, data) !== readUint32LE(bytes, at + 36)) return "bad";
  return { offset: at, end, id, data };
}

/** CRC-32 (zlib's) of the bytes 0..255, for the id's part of a record checksum. */
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/**
 * crc32 of id || data. The 32-byte id is folded in here and only the data goes to zlib: a native call
 * per record instead of two, on every append, every read and every open of the log.
 */
export function recordChecksum(id: Uint8Array, data: Uint8Array): number {
  return recordChecksumAt(id, 0, data);
}

/** recordChecksum with the id the 32 bytes of bytes from idAt (a record being laid out in place). */
function recordChecksumAt(bytes: Uint8Array, idAt: number, data: Uint8Array): number {
  let c = -1;
  for (let i = idAt; i < idAt + 32; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return crc32(data, (c ^ -1) >>> 0);
}

/** Writes one record (length, id, crc32 of id and data, data) into bytes at `at`; returns where it ends. */
export function writeRecord(bytes: Uint8Array, at: number, id: Uint8Array, data: Uint8Array): number {
  bytes.set(id, at + 4);
  return writeRecordAroundId(bytes, at, data);
}

/**
 * writeRecord for a record whose id is in place already, at bytes[at + 4, at + 36) (an append copies
 * it there, a restore computes it there): its length, checksum and data around it. Every writer of
 * log.bin records (append, repair, restore) lays them out here.
 */
export function writeRecordAroundId(bytes: Uint8Array, at: number, data: Uint8Array): number {
  writeUint32LE(bytes, at, data.length);
  writeUint32LE(bytes, at + 36, recordChecksumAt(bytes, at + 4, data));
  bytes.set(data, at + HEADER_SIZE);
  return at + HEADER_SIZE + data.length;
}

function readUint32LE(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

function writeUint32LE(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = value >>> 24;
}

/** The first offset at or after from where a whole, checksummed record starts, or -1. */
export function nextRecordStart(bytes: Uint8Array, from: number): number {
  for (let at = from; at + HEADER_SIZE <= bytes.length; at++) {
    if (typeof recordAt(bytes, at) === "object") return at;
  }
  return -1;
}

/**
 * What follows the whole records of a log.bin that ends at `at` with something else: "torn" when it
 * can only be an incomplete last append (it is not whole, and no whole record starts after it; or it
 * is all zeros, a file that grew before its data reached the disk), "damaged" otherwise.
 */
export function classifyTail(bytes: Uint8Array, at: number, found: "incomplete" | "bad"): "torn" | "damaged" {
  if (bytes.subarray(at).every((byte) => byte === 0)) return "torn";
  if (found === "bad") return "damaged";
  return nextRecordStart(bytes, at + 1) === -1 && !wholeButLength(bytes, at) ? "torn" : "damaged";
}

/**
 * Whether everything from `at` to the end is one record whole but for its length field, which the
 * checksum does not cover: the bytes after its header check out against its id and checksum. A torn
 * append's do not (its data is cut short), so a last record whose length took a flipped bit is
 * damage, not a torn append to cut off: it was acknowledged, and maybe never published.
 */
export function wholeButLength(bytes: Uint8Array, at: number): boolean {
  if (bytes.length - at < HEADER_SIZE) return false;
  return recordChecksumAt(bytes, at + 4, bytes.subarray(at + HEADER_SIZE)) === readUint32LE(bytes, at + 36);
}

/** What is wrong with a record that classifyTail found "damaged", in words. */
export function damageOf(bytes: Uint8Array, at: number, found: "incomplete" | "bad"): string {
  if (found === "bad") return "its checksum does not match";
  if (wholeButLength(bytes, at)) return `its length field is damaged (it says ${readUint32LE(bytes, at)} bytes; the ${bytes.length - at - HEADER_SIZE} after its header check out as its data)`;
  return "its length runs past the end, yet whole records follow";
}

/** Bytes of log.bin read at a time while opening it. */
const LOAD_CHUNK = 16 * 1024 * 1024;

/**
 * The sender's durable local log: `<dir>/log.bin` (format above), locked by `<dir>/LOCK` so that one
 * writer at a time has it open. Opened read-only, it takes no lock and writes nothing at all, so a
 * read-only verb can look at a log, damaged or in use, without changing a byte or an mtime.
 *
 * What stays in memory is an index, ~56 bytes a message: the ids in a DigestTable (seq = the id's
 * number) and each record's offset in a Float64Array. Open reads log.bin once, a chunk at a time, to
 * check it and build the index; read() reads the records again with one pread for the range and checks
 * each against its checksum and the id it had at open. A million-message log is ~56 MB of index,
 * whatever the size of its messages, and nothing of it is an object the collector walks.
 */
export class FileLocalLog implements LocalLog {
  /** Seq by id: the ids in append order, so that id number n is the id of seq n. */
  private readonly ids = new DigestTable();
  /** Where each seq's record starts in log.bin; the record ends where the next starts, or at size. */
  private offsets = new Float64Array(1024);
  private readonly appends = new Mutex();
  /** Reads in progress, which close() waits for before it closes the file. */
  private readonly reads = new Set<Promise<unknown>>();
  private closed = false;
  /** Bytes of whole records in log.bin: where the next append writes. */
  private size = 0;
  private recovery: LogRecovery | undefined;
  private torn = 0;
  private recordedOwner: LogOwner | undefined;

  private constructor(
    readonly dir: string,
    private readonly handle: FileHandle,
    private readonly lock: LockFile | undefined,
  ) {}

  get length(): number {
    return this.ids.size;
  }

  get path(): string {
    return join(this.dir, LOG_FILE);
  }

  /** Set when a writer's open() cut a torn append off log.bin. */
  get recovered(): LogRecovery | undefined {
    return this.recovery;
  }

  /** Bytes of a torn append that a read-only open left in place (and does not read). */
  get tornBytes(): number {
    return this.torn;
  }

  get owner(): LogOwner | undefined {
    return this.recordedOwner;
  }

  /**
   * The DATA_LOSS (file, offset, seq) an open given acknowledged throws, when the log holds fewer whole
   * records than the published ones; undefined otherwise. For a read-only verb that learns the count
   * only after the open (from the owner the log records) and says what the log holds before failing.
   */
  shortOf(published: number): RemoteLogError | undefined {
    return shortOfAcknowledged(this, this.size, this.size + this.torn, published);
  }

  /**
   * Opens the log in dir. A writer (the default) creates it if needed, takes the lock, and cuts a torn
   * append after saving it beside log.bin (see `recovered`). With readOnly it takes no lock, creates and
   * cuts nothing, and reads only the whole records (NOT_FOUND when there is no log). Throws DATA_LOSS
   * (details: file, offset, seq) when log.bin is damaged or holds one id twice, or owner.json does not
   * parse; INVALID_ARGUMENT (details.file), at once, when log.bin or owner.json is not a regular file (a
   * FIFO, which a plain open waited on for ever); CONFLICT when another live process (or this one) has the log open for writing; INTERNAL on
   * an I/O failure. Given acknowledged (how many records were published: publishedCount), it throws
   * DATA_LOSS, and cuts nothing, when the log holds fewer whole records: a torn tail over them is damage;
   * and a writer throws NOT_FOUND, creating nothing, when there is no log.bin at all.
   */
  static async open(dir: string, options: { readOnly?: boolean; acknowledged?: number } = {}): Promise<FileLocalLog> {
    const path = join(dir, LOG_FILE);
    if (options.readOnly) {
      let handle: FileHandle;
      try {
        // A FIFO (or anything but a file) at log.bin is refused at once: a plain open waited for a writer.
        handle = await openRegularFile(path, constants.O_RDONLY, "local log");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw noLocalLog(dir);
        throw userPathError(`cannot read local log ${dir}`, err, path);
      }
      try {
        const log = new FileLocalLog(dir, handle, undefined);
        const { end, fileSize } = await log.load();
        log.size = end;
        log.torn = fileSize - end;
        log.recordedOwner = await readOwner(dir);
        const short = shortOfAcknowledged(log, end, fileSize, options.acknowledged);
        if (short) throw short;
        return log;
      } catch (err) {
        await handle.close().catch(() => {});
        throw ioError(`cannot read local log ${dir}`, err, path);
      }
    }
    await ensureDir(dir);
    const lock = await LockFile.acquire(join(dir, "LOCK"), `local log ${dir}`);
    let handle: FileHandle | undefined;
    try {
      let created = false;
      try {
        handle = await openRegularFile(path, constants.O_RDWR | SYNCED_WRITES, "local log");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        // Messages were published from a log.bin that is not there: an empty one made now would take
        // their seqs. Refused before any file but the lock is made or removed in dir.
        if ((options.acknowledged ?? 0) > 0) throw missingPublishedLog(dir, options.acknowledged!);
        handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | SYNCED_WRITES);
        created = true;
      }
      await removeLeftoverTmp(dir);
      if (created) await fsyncDir(dir);
      const log = new FileLocalLog(dir, handle, lock);
      const { end, fileSize } = await log.load();
      log.size = end;
      log.recordedOwner = await readOwner(dir);
      // Records acknowledged elsewhere (published) cannot be an unfinished append: what ends short of
      // them is damage, said and left as it is, never cut, and no append may take their seqs.
      const short = shortOfAcknowledged(log, end, fileSize, options.acknowledged);
      if (short) throw short;
      if (end < fileSize) {
        const savedTo = join(dir, `${LOG_FILE}.tail-${end}-${Date.now()}`);
        await writeFileAtomic(savedTo, await readAt(handle, end, fileSize - end));
        await handle.truncate(end);
        await handle.sync();
        log.recovery = { truncatedAt: end, droppedBytes: fileSize - end, savedTo };
      }
      return log;
    } catch (err) {
      await handle?.close().catch(() => {});
      await lock.release();
      throw ioError(`cannot open local log ${dir}`, err, path);
    }
  }

  /**
   * Appends the messages whose ids are not in the log yet, with one synced write (SYNCED_WRITES), and
   * returns the entries appended (duplicates within the call count once). All or nothing: throws
   * INVALID_ARGUMENT, naming the first bad message by its index, and appends none of them if any
   * message does not decode; INTERNAL on an I/O failure, after which none of them is in the log.
   */
  async append(messages: Uint8Array[]): Promise<LocalLogEntry[]> {
    const handle = this.writable();
    // Ids and records are made before waiting for the lock: they need none, and the records are our
    // own copy, so the caller may reuse its buffers as soon as it has called. The ids go into one
    // buffer, not an array each: this runs for every message a sender takes.
    const ids = Buffer.allocUnsafe(32 * messages.length);
    for (let i = 0; i < messages.length; i++) messageIdOfEncoded(messages[i], ids, 32 * i, "message", i);
    // The index only grows, so its size says whether any id came in after encode looked.
    const indexed = this.ids.size;
    let batch = this.encode(messages, ids);
    // Ids in the index are durable already: they are added only after their fsync.
    if (batch.offsets.length === 0) return [];
    return this.appends.run(async () => {
      // An append that held the lock before this one may have added some of the same messages; when
      // none came in meanwhile (appends one after another), encode's look stands.
      if (this.ids.size !== indexed && batch.offsets.some((offset) => this.ids.find(batch.bytes, offset + 4) !== -1)) {
        const kept = batch.offsets.map((offset) => batch.bytes.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + batch.bytes.readUInt32LE(offset)));
        const keptIds = Buffer.allocUnsafe(32 * kept.length);
        batch.offsets.forEach((offset, j) => batch.bytes.copy(keptIds, 32 * j, offset + 4, offset + 36));
        batch = this.encode(kept, keptIds);
        if (batch.offsets.length === 0) return [];
      }
      const { bytes, offsets } = batch;
      try {
        await writeAll(handle, bytes, this.size);
        if (SYNCED_WRITES === 0) await handle.datasync();
      } catch (err) {
        // Cut off whatever part was written, so the next append starts at a record boundary.
        await handle.truncate(this.size).catch(() => {});
        throw ioError(`cannot append to ${this.path}`, err, this.path);
      }
      const first = this.ids.size;
      const appended: LocalLogEntry[] = new Array(offsets.length);
      for (let j = 0; j < offsets.length; j++) {
        const at = offsets[j];
        const end = j + 1 < offsets.length ? offsets[j + 1] : bytes.length;
        this.index(bytes, at + 4, this.size + at);
        appended[j] = {
          seq: first + j,
          id: new Uint8Array(bytes.buffer, bytes.byteOffset + at + 4, 32),
          data: new Uint8Array(bytes.buffer, bytes.byteOffset + at + HEADER_SIZE, end - at - HEADER_SIZE),
        };
      }
      this.size += bytes.length;
      return appended;
    });
  }

  /**
   * Records owner in owner.json on first use (atomically); CONFLICT, naming both, when another owner is
   * recorded. A log with messages and no owner.json (made before owners were recorded) is adopted.
   */
  async claim(owner: LogOwner): Promise<ClaimResult> {
    this.writable();
    if (this.recordedOwner) {
      const mismatch = ownerMismatch(`local log ${this.dir}`, this.recordedOwner, owner);
      if (mismatch) throw mismatch;
      return "same";
    }
    const file: OwnerFile = { format: 1, name: owner.name, ...(owner.key ? { key: owner.key } : {}) };
    await writeFileAtomic(join(this.dir, OWNER_FILE), Buffer.from(`${JSON.stringify(file)}\n`, "utf8"));
    this.recordedOwner = { ...owner };
    return this.length > 0 ? "adopted" : "new";
  }

  /**
   * The records of the messages not in the log yet, each once, as one buffer, and where each starts in
   * it. ids: the messages' ids, 32 bytes each, back to back.
   */
  private encode(messages: Uint8Array[], ids: Buffer): { bytes: Buffer; offsets: number[] } {
    const fresh: number[] = [];
    // A batch of one has nothing to repeat: no table for it (a follower's every message is one).
    const seen = messages.length > 1 ? new DigestTable(messages.length) : undefined;
    let size = 0;
    for (let i = 0; i < messages.length; i++) {
      // One probe of the batch's own table: added there unless it was there already.
      if (this.ids.find(ids, 32 * i) !== -1 || (seen && seen.addIfNew(ids, 32 * i) !== -1)) continue;
      fresh.push(i);
      size += HEADER_SIZE + messages[i].length;
    }
    const bytes = Buffer.allocUnsafe(size);
    const offsets: number[] = new Array(fresh.length);
    let at = 0;
    for (let j = 0; j < fresh.length; j++) {
      const data = messages[fresh[j]];
      offsets[j] = at;
      ids.copy(bytes, at + 4, 32 * fresh[j], 32 * fresh[j] + 32);
      at = writeRecordAroundId(bytes, at, data);
    }
    return { bytes, offsets };
  }

  /**
   * Entries with from <= seq < to, in order; the range is clamped to the log. The records are read
   * from log.bin with one pread and checked again: DATA_LOSS (file, offset, seq) when one no longer
   * matches its checksum or the id it had at open (the file changed under the open log).
   */
  async read(from: number, to: number): Promise<LocalLogEntry[]> {
    this.checkOpen();
    const first = Math.max(0, from);
    const end = Math.min(to, this.length);
    if (first >= end) return [];
    const read = this.readRecords(first, end);
    this.reads.add(read);
    try {
      return await read;
    } finally {
      this.reads.delete(read);
    }
  }

  private async readRecords(first: number, end: number): Promise<LocalLogEntry[]> {
    const start = this.offsets[first];
    const stop = end < this.length ? this.offsets[end] : this.size;
    let bytes: Buffer;
    try {
      bytes = await readAt(this.handle, start, stop - start);
    } catch (err) {
      throw ioError(`cannot read ${this.path}`, err, this.path);
    }
    const entries: LocalLogEntry[] = new Array(end - first);
    for (let seq = first; seq < end; seq++) {
      const at = this.offsets[seq];
      const record = recordAt(bytes, at - start);
      const next = seq + 1 < this.length ? this.offsets[seq + 1] : this.size;
      if (typeof record === "string" || record.end + start !== next || !this.ids.matches(seq, record.id)) {
        const why = typeof record === "string" ? (record === "bad" ? "its checksum does not match" : "the file is shorter than it was") : "it is not the record that was there at open";
        throw RemoteLogError.dataLoss(`${this.path} changed under an open log at byte ${at}, the record of seq ${seq}: ${why}; nothing was changed`, undefined, {
          file: this.path,
          offset: at,
          seq,
        });
      }
      entries[seq - first] = { seq, id: record.id, data: record.data };
    }
    return entries;
  }

  seqOf(id: Uint8Array): number | undefined {
    if (id.length !== 32) return undefined;
    const seq = this.ids.find(id);
    return seq === -1 ? undefined : seq;
  }

  /** Waits for appends and reads in progress, closes the file and releases the lock. Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.appends.run(async () => {});
    await Promise.allSettled([...this.reads]);
    await this.handle.close().catch(() => {});
    await this.lock?.release();
  }

  /** Adds the next seq's id (32 bytes of bytes from at) and where its record starts. */
  private index(bytes: Uint8Array, at: number, offset: number): void {
    const seq = this.ids.add(bytes, at);
    if (seq === this.offsets.length) {
      const grown = new Float64Array(this.offsets.length * 2);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.offsets[seq] = offset;
  }

  /**
   * Reads log.bin a chunk at a time and indexes every record up to a torn append, if any. Returns where
   * the whole records end and the file's size. Throws DATA_LOSS at the first damaged record.
   */
  private async load(): Promise<{ end: number; fileSize: number }> {
    const path = this.path;
    const fileSize = (await this.handle.stat()).size;
    // window holds the file's bytes from base on.
    let window: Buffer = Buffer.alloc(0);
    let base = 0;
    let at = 0;
    while (at < fileSize) {
      const record = recordAt(window, at - base);
      if (typeof record === "string") {
        const windowEnd = base + window.length;
        if (record === "incomplete" && windowEnd < fileSize) {
          // The record runs past the window, not (yet) past the file: read on from its start.
          const known = at + HEADER_SIZE <= windowEnd ? HEADER_SIZE + window.readUInt32LE(at - base) : HEADER_SIZE;
          window = await readAt(this.handle, at, Math.min(fileSize - at, Math.max(LOAD_CHUNK, known)));
          base = at;
          continue;
        }
        // What follows is judged on all of it, as it was before open read in chunks.
        if (windowEnd < fileSize) {
          window = await readAt(this.handle, at, fileSize - at);
          base = at;
        }
        if (classifyTail(window, at - base, record) === "torn") break;
        const seq = this.length;
        throw RemoteLogError.dataLoss(
          `${path} is damaged at byte ${at}, the record of seq ${seq}: ${damageOf(window, at - base, record)}; ` +
            `nothing was changed. Run remotelog repair --data ${this.dir} to set the damage aside and keep the rest`,
          undefined,
          { file: path, offset: at, seq },
        );
      }
      const twice = this.ids.find(record.id);
      if (twice !== -1) {
        const seq = this.length;
        throw RemoteLogError.dataLoss(`${path} holds id ${toHex(record.id)} twice (seq ${twice} and ${seq}, byte ${at}); was it written by something else?`, undefined, {
          file: path,
          offset: at,
          seq,
        });
      }
      this.index(record.id, 0, at);
      at = base + record.end;
    }
    return { end: at, fileSize };
  }

  private writable(): FileHandle {
    this.checkOpen();
    if (!this.lock) throw RemoteLogError.internal(`local log ${this.dir} is open read-only`);
    return this.handle;
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`local log ${this.dir} is closed`);
  }
}

interface OwnerFile {
  format: 1;
  name: string;
  key?: string;
}

/**
 * DATA_LOSS when the log holds fewer whole records than were acknowledged (published), naming file,
 * offset and seq; undefined otherwise. end is where its whole records end, fileSize its length.
 */
function shortOfAcknowledged(log: FileLocalLog, end: number, fileSize: number, acknowledged = 0): RemoteLogError | undefined {
  if (log.length >= acknowledged) return undefined;
  const what = end < fileSize ? `ends at byte ${end} in ${fileSize - end} bytes that are not a whole record` : `ends after ${log.length} whole records`;
  return RemoteLogError.dataLoss(
    `local log ${log.path} ${what}, where seq ${log.length} is, yet its first ${acknowledged} messages were published: it is damaged, and nothing was cut or written. ` +
      `remotelog repair --data ${log.dir} --server URL --from-remote can refill it from the remote log`,
    undefined,
    { file: log.path, offset: end, seq: log.length },
  );
}

/**
 * NOT_FOUND, as for any directory without a log (noLocalLog: details.file), for one whose published
 * mark says acknowledged messages went out from a log.bin that is not there. Nothing in it was read
 * as damaged: the file is simply gone, and only the user knows where it went.
 */
function missingPublishedLog(dir: string, acknowledged: number): RemoteLogError {
  const path = join(dir, LOG_FILE);
  return RemoteLogError.notFound(
    `local log ${path} is missing, yet ${acknowledged} messages were published from it (${join(dir, PUBLISHED_DIR)} says so): nothing was created or written. ` +
      `Put ${LOG_FILE} back, or rebuild the log from a backup with remotelog restore --from BACKUP --to ${dir} --force`,
    { file: path },
  );
}

/**
 * How many of the records of the local log in dir were published: the published mark (dir/published)
 * of name, by default the name that owns the log (owner.json); 0 when there is none.
 */
export async function publishedCount(dir: string, name?: string): Promise<number> {
  name ??= (await readOwner(dir))?.name;
  if (name === undefined) return 0;
  const marks = await FileCheckpointStore.open(join(dir, PUBLISHED_DIR), { readOnly: true });
  try {
    return (await marks.load(name))?.delivered ?? 0;
  } finally {
    await marks.close();
  }
}

/** The owner recorded in dir/owner.json, or undefined when there is none; DATA_LOSS when it does not parse. */
export async function readOwner(dir: string): Promise<LogOwner | undefined> {
  const path = join(dir, OWNER_FILE);
  let text: string;
  try {
    text = (await readRegularFile(path, "local log owner record")).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw userPathError(`cannot read ${path}`, err, path);
  }
  let file: OwnerFile | undefined;
  try {
    file = JSON.parse(text) as OwnerFile;
  } catch {
    file = undefined;
  }
  if (!file || typeof file !== "object" || file.format !== 1 || typeof file.name !== "string" || (file.key !== undefined && typeof file.key !== "string")) {
    throw RemoteLogError.dataLoss(`${path} is damaged: it is not a local log's owner record of format 1`, undefined, { file: path });
  }
  return file.key === undefined ? { name: file.name } : { name: file.name, key: file.key };
}

/** length bytes of the file from position; shorter only when the file ends first. */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(bytes, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return bytes.subarray(0, done);
}

