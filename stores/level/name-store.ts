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
 * One key per name makes an update a single LevelDB put, atomic by itself; the per-name mutex makes
 * "read version, compare, write" atomic against the other puts of this process. LevelDB's own LOCK
 * file keeps other processes out.
 */
const FORMAT = 1;
const HEADER = 1 + 8 + 4;

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
  ) {}

  /**
   * Opens (creating if needed) the store in dir. Throws CONFLICT when another process has it open,
   * INTERNAL when LevelDB cannot open it (damaged, permissions).
   */
  static async open(dir: string, options: { counted?: boolean } = {}): Promise<LevelNameStore> {
    const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === "LEVEL_LOCKED") {
        throw RemoteLogError.conflict(`name store ${dir} is in use by another process`);
      }
      throw RemoteLogError.internal(`cannot open name store ${dir}: ${describe(err)}`, err);
    }
    const store = new LevelNameStore(dir, db);
    // Walked here, before anyone can write: a count taken beside puts could not tell which it saw.
    if (options.counted) store.names = await store.walkCount();
    return store;
  }

  /** The name's entry, or undefined. Throws DATA_LOSS if the stored value does not decode, INTERNAL on an I/O failure. */
  async get(name: string): Promise<NameEntry | undefined> {
    this.checkOpen();
    return this.read(name);
  }

  private async read(name: string): Promise<NameEntry | undefined> {
    let value: Uint8Array | undefined;
    try {
      value = await this.db.get(name);
    } catch (err) {
      throw RemoteLogError.internal(`cannot read name ${JSON.stringify(name)}: ${describe(err)}`, err);
    }
    return value && decodeEntry(name, value);
  }

  /**
   * Sets the name's content and returns its new version, as NameStore.put says: CONFLICT (naming the
   * name and the versions) when expectedVersion is not the current version or a given version is not
   * newer, INVALID_ARGUMENT for a version outside 1..2^64-1; nothing changes then. Durable when it
   * resolves; INTERNAL on an I/O failure.
   */
  async put(name: string, content: Uint8Array, options: PutOptions = {}): Promise<bigint> {
    this.checkOpen();
    // Copied now: the caller may reuse its buffers while we wait for the lock.
    const value = encodeEntry(0n, content, options.record ?? new Uint8Array(0));
    return this.locks.run(name, async () => {
      const current = this.versions.get(name) ?? (await this.read(name))?.version ?? 0n;
      const version = nextVersion(name, current, options);
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

  /** Forgets the name, as NameStore.drop says, under its lock; INTERNAL on an I/O failure. */
  async drop(name: string): Promise<boolean> {
    this.checkOpen();
    return this.locks.run(name, async () => {
      if ((await this.read(name)) === undefined) return false;
      try {
        await this.db.del(name, { sync: true });
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

  /** How many names have an entry: kept, when opened with { counted }; else read every key (stats and tests). */
  async count(): Promise<number> {
    this.checkOpen();
    return this.names ?? this.walkCount();
  }

  private async walkCount(): Promise<number> {
    let count = 0;
    for await (const _ of this.db.keys()) count++;
    return count;
  }

  /** Every name and its entry, in key order (the names' UTF-8 bytes); for gc, which takes them all as roots, or a page of them. */
  async *list(options: ListOptions = {}): AsyncGenerator<[string, NameEntry]> {
    this.checkOpen();
    const range = { ...(options.after !== undefined ? { gt: options.after } : {}), ...(options.limit !== undefined ? { limit: options.limit } : {}) };
    for await (const [name, value] of this.db.iterator(range)) yield [name, decodeEntry(name, value)];
  }

  /** Waits for puts in progress, then closes the database. Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locks.idle();
    await this.db.close();
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`name store ${this.dir} is closed`);
  }
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

function decodeEntry(name: string, value: Uint8Array): NameEntry {
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.length);
  const bad = (why: string) => RemoteLogError.dataLoss(`stored entry of name ${JSON.stringify(name)} is damaged: ${why}`);
  if (bytes.length < HEADER) throw bad(`${bytes.length} bytes`);
  if (bytes[0] !== FORMAT) throw bad(`format ${bytes[0]}, expected ${FORMAT}`);
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
