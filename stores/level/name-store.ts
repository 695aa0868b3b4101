import { constants } from "node:fs";
import { copyFile, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ClassicLevel } from "classic-level";
import { nextVersion, type ListOptions, type NameEntry, type NameStore, type PutOptions } from "../../core/name-store.js";
import { isRemoteLogError, RemoteLogError } from "../../core/errors.js";
import { KeyedMutex } from "../file/mutex.js";
import { isOutOfSpace, serverOutOfSpace } from "../file/atomic.js";

/*
 * One LevelDB key per name (the name as UTF-8), whose value is, big-endian:
 *
 *   u8   format, 1
 *   u64  version
 *   u32  content length
 *        content
 *        record (the rest)
 *
 * or, for a name dropped with a record (NameStore.drop), its tombstone:
 *
 *   u8   2
 *   u64  the version it had
 *
 * One key per name makes an update a single LevelDB put, atomic by itself: a drop that leaves a
 * tombstone is one put of it, and the put that makes the name anew overwrites it. The per-name mutex
 * makes "read version, compare, write" atomic against the other puts and drops of this process.
 * LevelDB's own LOCK file keeps other processes out.
 */
const FORMAT = 1;
const HEADER = 1 + 8 + 4;
const DROPPED = 2;
const TOMBSTONE_BYTES = 1 + 8;

/** What a key holds: a name's entry, or the tombstone of a name dropped with a record. */
type Stored = NameEntry | { droppedAt: bigint };
const isTombstone = (stored: Stored | undefined): stored is { droppedAt: bigint } => stored !== undefined && "droppedAt" in stored;

/** Names whose version a store keeps in memory (LevelNameStore.versions): a few hundred KB at most. */
const VERSIONS_KEPT = 4096;

/**
 * The embedded NS backend, on classic-level (LevelDB). Puts are written with sync, so they are durable
 * once they resolve.
 */
export class LevelNameStore implements NameStore {
  private readonly locks = new KeyedMutex();
  private closed = false;
  /**
   * The version of names written lately, newest last (at most VERSIONS_KEPT): a put needs the
   * current version, and reading it from LevelDB was a thread-pool round trip ahead of the synced
   * write on every update, a follower's latency. Only this process writes (LevelDB's LOCK), and only
   * under the name's lock, so what it holds is the stored version.
   */
  private readonly versions = new Map<string, bigint>();
  /**
   * How many names there are, when the store was opened with { counted }: kept as names are made, since
   * walking every key at each count made a public /metrics scrape cost O(names) (0.15 s at 40,000).
   */
  private names: number | undefined;

  private constructor(
    readonly dir: string,
    private readonly db: ClassicLevel<string, Uint8Array>,
    /** The throwaway copy a read-only store reads (open's readOnly), removed by close(). */
    private readonly copy?: string,
  ) {}

  /**
   * Opens (creating if needed) the store in dir. Throws CONFLICT when another process has it open,
   * INTERNAL when LevelDB cannot open it (damaged, permissions).
   *
   * With readOnly (gc --data --dry-run) nothing in dir is written, and put and drop throw INTERNAL.
   * LevelDB has no read-only open: any open rotates its LOG and writes a new MANIFEST, .log and CURRENT.
   * So the store read is a throwaway copy of dir's files in the system's temp directory, removed by
   * close(), and a store that does not exist is not made. dir's LOCK is linked into the copy, not
   * copied: a process that holds dir still makes the open CONFLICT, and none can take it meanwhile.
   */
  static async open(dir: string, options: { counted?: boolean; readOnly?: boolean } = {}): Promise<LevelNameStore> {
    const copy = options.readOnly ? await throwawayCopy(dir) : undefined;
    const db = new ClassicLevel<string, Uint8Array>(copy ?? dir, { keyEncoding: "utf8", valueEncoding: "view", createIfMissing: !copy });
    try {
      await db.open();
    } catch (err) {
      if (copy) await rm(copy, { recursive: true, force: true }).catch(() => {});
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === "LEVEL_LOCKED") {
        throw RemoteLogError.conflict(`name store ${dir} is in use by another process`);
      }
      throw RemoteLogError.internal(`cannot open name store ${dir}: ${describe(err)}`, err);
    }
    const store = new LevelNameStore(dir, db, copy);
    // Walked here, before anyone can write: a count taken beside puts could not tell which it saw.
    if (options.counted) store.names = await store.walkCount();
    return store;
  }

  /** The name's entry, or undefined. Throws DATA_LOSS if the stored value does not decode, INTERNAL on an I/O failure. */
  async get(name: string): Promise<NameEntry | undefined> {
    this.checkOpen();
    return this.read(name);
  }

  /** The name's tombstone (NameStore.droppedAt), or undefined. Throws as get does. */
  async droppedAt(name: string): Promise<bigint | undefined> {
    this.checkOpen();
    const stored = await this.readStored(name);
    return isTombstone(stored) ? stored.droppedAt : undefined;
  }

  private async read(name: string): Promise<NameEntry | undefined> {
    const stored = await this.readStored(name);
    return isTombstone(stored) ? undefined : stored;
  }

  private async readStored(name: string): Promise<Stored | undefined> {
    let value: Uint8Array | undefined;
    try {
      value = await this.db.get(name);
    } catch (err) {
      throw RemoteLogError.internal(`cannot read name ${JSON.stringify(name)}: ${describe(err)}`, err);
    }
    return value && decodeStored(name, value);
  }

  /**
   * Sets the name's content and returns its new version, as NameStore.put says: CONFLICT (naming the
   * name and the versions) when expectedVersion is not the current version or a given version is not
   * newer, CONFLICT when it is not above the name's tombstone, INVALID_ARGUMENT for a version outside
   * 1..2^64-1; nothing changes then. Durable when it resolves; INTERNAL on an I/O failure.
   */
  async put(name: string, content: Uint8Array, options: PutOptions = {}): Promise<bigint> {
    this.checkWritable();
    // Copied now: the caller may reuse its buffers while we wait for the lock.
    const value = encodeEntry(0n, content, options.record ?? new Uint8Array(0));
    return this.locks.run(name, async () => {
      // A name whose version is kept has an entry, so no tombstone: only a drop makes one, and it forgets the version.
      const kept = this.versions.get(name);
      const stored = kept === undefined ? await this.readStored(name) : undefined;
      const current = kept ?? (isTombstone(stored) ? 0n : (stored?.version ?? 0n));
      // The write below replaces the tombstone, if any.
      const version = nextVersion(name, current, options, isTombstone(stored) ? stored.droppedAt : undefined);
      Buffer.from(value.buffer, value.byteOffset, value.length).writeBigUInt64BE(version, 1);
      try {
        await this.db.put(name, value, { sync: true });
      } catch (err) {
        // Whether a failed write reached the disk is unknown: the next put reads the version again, and
        // a count reads every key again.
        this.versions.delete(name);
        this.names = undefined;
        if (isOutOfSpace(err)) throw serverOutOfSpace(`cannot write name ${JSON.stringify(name)}`, err);
        throw RemoteLogError.internal(`cannot write name ${JSON.stringify(name)}: ${describe(err)}`, err);
      }
      this.remember(name, version);
      if (current === 0n && this.names !== undefined) this.names++;
      return version;
    });
  }

  /**
   * Forgets the name, as NameStore.drop says, under its lock: a name with a record is replaced by its
   * tombstone, in one synced put, one without is removed. A name not there (or only its tombstone) is
   * false, and the tombstone stays. INTERNAL on an I/O failure.
   */
  async drop(name: string): Promise<boolean> {
    this.checkWritable();
    return this.locks.run(name, async () => {
      const entry = await this.read(name);
      if (entry === undefined) return false;
      try {
        if (entry.record.length > 0) await this.db.put(name, encodeTombstone(entry.version), { sync: true });
        else await this.db.del(name, { sync: true });
      } catch (err) {
        this.versions.delete(name);
        this.names = undefined;
        throw RemoteLogError.internal(`cannot remove name ${JSON.stringify(name)}: ${describe(err)}`, err);
      }
      this.versions.delete(name);
      if (this.names !== undefined) this.names--;
      return true;
    });
  }

  private remember(name: string, version: bigint): void {
    this.versions.delete(name);
    this.versions.set(name, version);
    if (this.versions.size > VERSIONS_KEPT) this.versions.delete(this.versions.keys().next().value!);
  }

  /** How many names have an entry: kept, when opened with { counted }; else read every key, tombstones left out (stats and tests). */
  async count(): Promise<number> {
    this.checkOpen();
    return this.names ?? this.walkCount();
  }

  /** Keys that hold an entry: a tombstone is no name. Reads the values for their first byte. */
  private async walkCount(): Promise<number> {
    let count = 0;
    for await (const value of this.db.values()) if (!(value.length === TOMBSTONE_BYTES && value[0] === DROPPED)) count++;
    return count;
  }

  /**
   * Every name and its entry, in key order (the names' UTF-8 bytes); for gc, which takes them all as
   * roots, or a page of them. Tombstones are skipped, so a page of limit names may read more keys.
   */
  async *list(options: ListOptions = {}): AsyncGenerator<[string, NameEntry]> {
    this.checkOpen();
    const limit = options.limit ?? Infinity;
    if (limit <= 0) return;
    let listed = 0;
    for await (const [name, value] of this.db.iterator(options.after !== undefined ? { gt: options.after } : {})) {
      const stored = decodeStored(name, value);
      if (isTombstone(stored)) continue;
      yield [name, stored];
      if (++listed >= limit) return;
    }
  }

  /** Waits for puts in progress, then closes the database. Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locks.idle();
    await this.db.close();
    if (this.copy) await rm(this.copy, { recursive: true, force: true }).catch(() => {});
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`name store ${this.dir} is closed`);
  }

  private checkWritable(): void {
    this.checkOpen();
    // A write would go to the throwaway copy, and be lost at close.
    if (this.copy) throw RemoteLogError.internal(`name store ${this.dir} is open read-only`);
  }
}

/**
 * A copy of the LevelDB files of dir in a new directory under the system's temp directory, for a
 * read-only open to write into; LOCK a symbolic link to dir's (LevelDB locks the file it opens). Cloned,
 * not copied, where the temp directory's file system can.
 */
async function throwawayCopy(dir: string): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), "remotelog-ns-"));
  try {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name === "LOCK") await symlink(resolve(dir, entry.name), join(copy, entry.name));
      else if (entry.isFile()) {
        // Gone since the listing: a live writer's compaction, which holds the lock, so the open is CONFLICT.
        await copyFile(join(dir, entry.name), join(copy, entry.name), constants.COPYFILE_FICLONE).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        });
      }
    }
  } catch (err) {
    await rm(copy, { recursive: true, force: true }).catch(() => {});
    throw RemoteLogError.internal(`cannot read name store ${dir}: ${describe(err)}`, err);
  }
  return copy;
}

function encodeEntry(version: bigint, content: Uint8Array, record: Uint8Array): Uint8Array {
  const value = Buffer.allocUnsafe(HEADER + content.length + record.length);
  value.writeUInt8(FORMAT, 0);
  value.writeBigUInt64BE(version, 1);
  value.writeUInt32BE(content.length, 9);
  value.set(content, HEADER);
  value.set(record, HEADER + content.length);
  return new Uint8Array(value.buffer, value.byteOffset, value.length);
}

function encodeTombstone(version: bigint): Uint8Array {
  const value = Buffer.allocUnsafe(TOMBSTONE_BYTES);
  value.writeUInt8(DROPPED, 0);
  value.writeBigUInt64BE(version, 1);
  return new Uint8Array(value.buffer, value.byteOffset, value.length);
}

function decodeStored(name: string, value: Uint8Array): Stored {
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.length);
  const bad = (why: string) => RemoteLogError.dataLoss(`stored entry of name ${JSON.stringify(name)} is damaged: ${why}`);
  if (bytes[0] === DROPPED) {
    if (bytes.length !== TOMBSTONE_BYTES) throw bad(`a tombstone of ${bytes.length} bytes, expected ${TOMBSTONE_BYTES}`);
    return { droppedAt: bytes.readBigUInt64BE(1) };
  }
  if (bytes.length < HEADER) throw bad(`${bytes.length} bytes`);
  if (bytes[0] !== FORMAT) throw bad(`format ${bytes[0]}, expected ${FORMAT} or ${DROPPED}`);
  const contentLength = bytes.readUInt32BE(9);
  if (HEADER + contentLength > bytes.length) throw bad(`content of ${contentLength} bytes in a value of ${bytes.length}`);
  return {
    version: bytes.readBigUInt64BE(1),
    // Copies into plain Uint8Arrays: LevelDB hands out Buffers, whose slice() is a view.
    content: new Uint8Array(bytes.subarray(HEADER, HEADER + contentLength)),
    record: new Uint8Array(bytes.subarray(HEADER + contentLength)),
  };
}

function describe(err: unknown): string {
  if (isRemoteLogError(err)) return err.message;
  const cause = (err as { cause?: Error }).cause;
  return `${(err as Error).message}${cause ? ` (${cause.message})` : ""}`;
}
