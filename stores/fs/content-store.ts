/*
 * FsContentStore: the embedded CAS. Blocks live in append-only pack files under `<dir>/packs/`; an
 * in-memory index (block-index.ts: typed arrays, ~70 bytes a block), rebuilt at open from the packs'
 * own indexes, says where each block is.
 *
 * A pack, in short (pack.ts has the full format and the reasons), integers big-endian:
 *
 *   "RLPK" u32 version | the blocks, back to back | per block: 32-byte sha2-256 digest, u32 length,
 *   u32 CRC-32 | u64 index offset, u32 count, u32 version, sha2-256 of the index and these 16 bytes,
 *   "RLPKEND\n"
 *
 * so a block costs 40 bytes beyond its own and a pack 64 bytes (version 1 packs, still read, have no
 * CRC-32: 36 bytes a block). The file is named by its index
 * checksum, written as a .tmp file, fsynced, renamed and its directory fsynced.
 */
import { hash } from "node:crypto";
import { readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { BlockSweeper, ContentStore, GcGuard, PackListing } from "../../core/content-store.js";
import { isRemoteLogError, RemoteLogError } from "../../core/errors.js";
import { ADDRESS_PREFIX, addressText, matchesAddress } from "../../core/hash.js";
import { ensureDir, fsyncDir, ioError, isOutOfDescriptors, isOutOfSpace, removeLeftoverTmp, serverOutOfSpace, SharedDir, TMP_SUFFIX, writeFileAtomic } from "../file/atomic.js";
import { BlockIndex } from "./block-index.js";
import { defaultOpenPacks, FileCache } from "./file-cache.js";
import { blockChecksum, encodePack, ENTRY_SIZE, entrySize, HEADER_SIZE, MAX_PACK_SIZE, PACK_NAME, readPackIndex, suspectDigests, TRAILER_SIZE, type PackIndex } from "./pack.js";

const KEY_PREFIX = Buffer.from(ADDRESS_PREFIX).toString("latin1");

/** Blocks closer than this in one pack are read with one pread, gap included. */
const READ_GAP = 64 * 1024;
/** A single read never spans more than this, unless one block is bigger. */
const READ_SPAN = 4 * 1024 * 1024;
/** Calls that waited for a pack write are merged into packs of about this size. */
const GROUP_COMMIT_BYTES = 64 * 1024 * 1024;
/** Packs read at once by one getMany call. */
const READ_CONCURRENCY = 4;

export interface FsContentStoreOptions {
  /**
   * Idle pack files kept open for reads (least recently used are closed first). Default 1,024, or a
   * quarter of the process's descriptor limit if less (defaultOpenPacks). Running out of descriptors
   * closes them all and retries (FileCache), so a low `ulimit -n` is slower, not broken.
   */
  maxOpenFiles?: number;
  /**
   * Told of each pack found damaged at open and moved into `<dir>/quarantine/`: its file name, where
   * it now is, and why. The store opens without it; its blocks answer DATA_LOSS.
   */
  onQuarantine?: (pack: string, movedTo: string, why: string) => void;
  /**
   * false: a pack found damaged at open is not moved: the open throws DATA_LOSS naming it, and the
   * store is left as it was (gc --data, which must neither change a store it only reports on in a dry
   * run nor sweep one whose damage it has not said). Default true.
   */
  quarantine?: boolean;
  /**
   * true: the store is only read (gc --data --dry-run): the open makes and removes nothing (no packs/
   * made, no leftover removed, a damaged pack DATA_LOSS as with quarantine false), and putMany and a
   * sweep that is not a dry run throw INTERNAL. Default false.
   */
  readOnly?: boolean;
}

export interface FsContentStoreStats {
  /** Distinct blocks stored. */
  blocks: number;
  /** Sum of their sizes, without pack overhead. */
  bytes: number;
  /** Damaged packs set aside in `<dir>/quarantine/`; absent when none. */
  quarantinedPacks?: number;
}

export type { GcGuard } from "../../core/content-store.js";

/** A putMany call waiting for its blocks to be in a pack. */
interface Pending {
  keys: string[];
  addresses: Uint8Array[];
  blocks: Uint8Array[];
  size: number;
  done: () => void;
  failed: (err: unknown) => void;
}

/**
 * The embedded CAS backend: blocks in append-only pack files under `<dir>/packs/` (format in pack.ts),
 * with an in-memory index rebuilt at open from the packs' own indexes.
 *
 * Within one process, calls may overlap freely: packs are written one at a time. Other processes may read the
 * same directory, but they see the packs that existed when they opened it; after a gc (sweepPack) in the
 * process that writes, a reader opened before it may find a pack gone (DATA_LOSS) and must reopen.
 */
export class FsContentStore implements ContentStore, BlockSweeper {
  /** gc may sweep this store (core/content-store.ts BlockSweeper). */
  readonly sweeper: BlockSweeper = this;
  private readonly index = new BlockIndex();
  private readonly packs: string[] = [];
  /** Numbers (in the index) of the blocks indexed in each pack (by pack id), for gc; emptied when a pack is retired. */
  private readonly packBlocks: Int32Array[] = [];
  /** When each pack was written (ms since the epoch): by this process, or the file's mtime at open. */
  private readonly packTimes: number[] = [];
  /** Whether each pack's index holds its blocks' CRC-32s (version 2), which reads check instead of re-hashing. */
  private readonly packChecksummed: boolean[] = [];
  /** Collections in progress; every key put (even one already stored) is recorded in each. */
  private readonly guards = new Set<GcGuard>();
  /** When a block already stored was last put again, so that gc treats it as freshly written. */
  private readonly reput = new Map<string, number>();
  /** getMany calls in flight, which a swept pack's file must outlive. */
  private readonly reads = new Set<Promise<unknown>>();
  /** Calls waiting for their pack, oldest first. */
  private readonly pending: Pending[] = [];
  /** Whether drain() is running; a call made meanwhile waits for it. */
  private draining = false;
  /** The last drain(), for close() to wait on. */
  private writing: Promise<void> = Promise.resolve();
  private readonly files: FileCache;
  /** packs/, held open once a pack is written or swept: each of those fsyncs it (see SharedDir). */
  private readonly packsDirHeld: SharedDir;
  /** Keys the index of a quarantined pack claims, with that pack's name, for gets that are not served elsewhere. */
  private readonly quarantinedKeys = new Map<string, string>();
  private readonly quarantined = new Set<string>();
  /**
   * Blocks a read found not matching their address since the store opened. The index still names the
   * damaged copy (reads answer DATA_LOSS, gc stops at it, the bytes stay), but a put of the block is
   * not taken as stored already: it writes a good copy, which the index then names. Acknowledging it
   * unwritten left the block unreadable.
   */
  private readonly damagedKeys = new Set<string>();
  private bytes = 0;
  private closed = false;
  private readonly readOnly: boolean;

  private constructor(
    readonly dir: string,
    options: FsContentStoreOptions,
  ) {
    this.files = new FileCache(Math.max(1, options.maxOpenFiles ?? defaultOpenPacks()));
    this.packsDirHeld = new SharedDir(this.packsDir);
    this.readOnly = options.readOnly ?? false;
  }

  private get packsDir(): string {
    return join(this.dir, "packs");
  }

  private get quarantineDir(): string {
    return join(this.dir, "quarantine");
  }

  /**
   * Opens (creating if needed) the store in dir, removes leftover temporary files of crashed writers,
   * and loads every pack's index. A pack whose header, trailer or index is damaged does not stop the
   * store: it is moved into `<dir>/quarantine/` (options.onQuarantine hears of it), and the blocks its
   * index claims answer DATA_LOSS until they are stored again. Packs quarantined by earlier opens stay
   * counted. Throws CONFLICT for a file in packs/ that is not ours, INTERNAL on an I/O failure. With
   * readOnly it creates, removes and moves nothing (FsContentStoreOptions.readOnly).
   */
  static async open(dir: string, options: FsContentStoreOptions = {}): Promise<FsContentStore> {
    const store = new FsContentStore(dir, options);
    const packsDir = store.packsDir;
    if (!options.readOnly) {
      await ensureDir(packsDir);
      await removeLeftoverTmp(packsDir);
    }
    // Read only, a store that never had a pack written has no packs/ yet: it holds no block.
    const names = (
      await readdir(packsDir).catch((err: unknown) => {
        if (options.readOnly && (err as NodeJS.ErrnoException).code === "ENOENT") return [];
        throw err;
      })
    ).sort();
    for (const name of names) {
      // A live writer's temporary file (removeLeftoverTmp keeps those) is not part of the store yet.
      if (name.endsWith(TMP_SUFFIX)) continue;
      if (!PACK_NAME.test(name)) {
        throw RemoteLogError.conflict(`${join(packsDir, name)} is not a pack file; remove it or open another directory`);
      }
    }
    const packNames = names.filter((name) => PACK_NAME.test(name));
    // Indexes are read a few at a time: a store of thousands of packs opens in parallel, within fd limits.
    const indexes: (PackIndex | undefined)[] = new Array(packNames.length);
    const times: number[] = new Array(packNames.length);
    const damaged: { name: string; why: string }[] = [];
    let next = 0;
    const worker = async () => {
      while (next < packNames.length) {
        const i = next++;
        try {
          indexes[i] = await readPackIndex(join(packsDir, packNames[i]), packNames[i]);
        } catch (err) {
          if (!isRemoteLogError(err, "DATA_LOSS")) throw err;
          damaged.push({ name: packNames[i], why: err.text });
          continue;
        }
        times[i] = (await stat(join(packsDir, packNames[i]))).mtimeMs;
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, packNames.length) }, worker));
    if ((options.quarantine === false || options.readOnly) && damaged.length > 0) {
      const [{ name, why }] = damaged.sort((a, b) => (a.name < b.name ? -1 : 1));
      const others = damaged.length > 1 ? ` (and ${damaged.length - 1} more)` : "";
      throw RemoteLogError.dataLoss(`pack ${join(packsDir, name)} is damaged${others}: ${why}; it was left where it is`, undefined, { file: join(packsDir, name) });
    }
    for (const { name, why } of damaged) {
      const movedTo = await store.quarantine(name);
      options.onQuarantine?.(name, movedTo, why);
    }
    await store.loadQuarantine();
    packNames.forEach((name, i) => {
      if (indexes[i]) store.addPack(name, indexes[i], times[i]);
    });
    return store;
  }

  /**
   * Moves a damaged pack out of packs/ into quarantine/, durably, keeping its bytes for whoever wants
   * to salvage them. Returns where it went.
   */
  private async quarantine(name: string): Promise<string> {
    await ensureDir(this.quarantineDir);
    const to = join(this.quarantineDir, name);
    try {
      await rename(join(this.packsDir, name), to);
    } catch (err) {
      throw ioError(`cannot move damaged pack ${name} into ${this.quarantineDir}`, err);
    }
    await fsyncDir(this.quarantineDir);
    await fsyncDir(this.packsDir);
    return to;
  }

  /** Counts the packs in quarantine/ and remembers the blocks their indexes claim. */
  private async loadQuarantine(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.quarantineDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw ioError(`cannot list ${this.quarantineDir}`, err, this.quarantineDir);
    }
    for (const name of names.filter((n) => PACK_NAME.test(n)).sort()) {
      this.quarantined.add(name);
      for (const digest of await suspectDigests(join(this.quarantineDir, name))) {
        this.quarantinedKeys.set(KEY_PREFIX + digest.toString("latin1"), name);
      }
    }
  }

  /**
   * Stores the blocks not already stored, durably, and returns every block's address in input order.
   * Idempotent; duplicates within the call are stored once. All the call's new blocks go into one
   * pack, so after a crash either all of them are stored or none. Calls that arrive while a pack is
   * being written are group-committed: the next pack holds all of them, for one fsync. Throws TOO_LARGE
   * if the new blocks do not fit in one buffer, INTERNAL on an I/O failure (nothing of the call is
   * stored then).
   */
  async putMany(blocks: Uint8Array[]): Promise<Uint8Array[]> {
    this.checkWritable();
    // Hashing is most of the cost of a put; it runs before any waiting.
    const keys = blocks.map(keyOf);
    const addresses = addressesOf(keys);
    if (this.guards.size > 0) for (const guard of this.guards) for (const key of keys) guard.touched.add(key);
    const fresh: Pending = { keys: [], addresses: [], blocks: [], size: 0, done: () => {}, failed: () => {} };
    const seen = new Set<string>();
    const now = Date.now();
    for (let i = 0; i < blocks.length; i++) {
      const stored = this.holds(addresses[i], keys[i]);
      if (stored) this.reput.set(keys[i], now);
      if (stored || seen.has(keys[i])) continue;
      seen.add(keys[i]);
      fresh.keys.push(keys[i]);
      fresh.addresses.push(addresses[i]);
      fresh.blocks.push(blocks[i]);
      fresh.size += blocks[i].length;
    }
    // Everything in the index is already durable: it is added only after its pack is.
    if (fresh.keys.length === 0) return addresses;
    if (HEADER_SIZE + fresh.size + fresh.keys.length * ENTRY_SIZE + TRAILER_SIZE > MAX_PACK_SIZE) {
      throw RemoteLogError.tooLarge(`${fresh.keys.length} blocks of ${fresh.size} bytes do not fit in one pack; store them in smaller calls`);
    }
    const stored = new Promise<void>((resolve, reject) => {
      fresh.done = resolve;
      fresh.failed = reject;
    });
    // A call that waits keeps a copy: the caller may reuse its buffers as soon as it has called.
    if (this.draining) fresh.blocks = copyBlocks(fresh.blocks, fresh.size);
    this.pending.push(fresh);
    if (!this.draining) {
      // drain() encodes the first pack before it first awaits, so a lone call needs no copy.
      this.draining = true;
      this.writing = this.drain();
    }
    await stored;
    return addresses;
  }

  /** Writes pending calls, a group at a time, until none is left. Never throws: each call hears its own outcome. */
  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      let size = 0;
      let take = 0;
      while (take < this.pending.length && (take === 0 || size + this.pending[take].size <= GROUP_COMMIT_BYTES)) size += this.pending[take++].size;
      const group = this.pending.splice(0, take);
      try {
        // Earlier groups may have stored some of these blocks, and calls of one group may share blocks.
        // A lone call was deduplicated when it was made and, if nothing was stored since, is used as is.
        const lone = group.length === 1 && !group[0].addresses.some((address, i) => this.holds(address, group[0].keys[i]));
        const keys: string[] = lone ? group[0].keys : [];
        const addresses: Uint8Array[] = lone ? group[0].addresses : [];
        const blocks: Uint8Array[] = lone ? group[0].blocks : [];
        const seen = new Set<string>();
        for (const call of lone ? [] : group) {
          for (let i = 0; i < call.keys.length; i++) {
            if (this.holds(call.addresses[i], call.keys[i]) || seen.has(call.keys[i])) continue;
            seen.add(call.keys[i]);
            keys.push(call.keys[i]);
            addresses.push(call.addresses[i]);
            blocks.push(call.blocks[i]);
          }
        }
        if (keys.length > 0) {
          const pack = encodePack(blocks, addresses);
          await this.writePack(pack.name, pack.bytes);
          const packId = this.packs.push(pack.name) - 1;
          const numbers = new Int32Array(keys.length);
          this.packBlocks[packId] = numbers;
          this.packTimes[packId] = Date.now();
          this.packChecksummed[packId] = true;
          let offset = HEADER_SIZE;
          for (let j = 0; j < keys.length; j++) {
            // A damaged block stored again is counted once: the index moves to the good copy, and its
            // count of stored blocks does not grow.
            const stored = this.index.size;
            numbers[j] = this.index.add(addresses[j], 4, packId, offset, blocks[j].length, pack.checksums[j]);
            if (this.index.size > stored) this.bytes += blocks[j].length;
            offset += blocks[j].length;
            if (this.damagedKeys.size > 0) this.damagedKeys.delete(keys[j]);
          }
        }
        for (const call of group) call.done();
      } catch (err) {
        for (const call of group) call.failed(err);
      }
    }
    this.draining = false;
  }

  /**
   * Returns each block (undefined when not stored) in input order, after checking it against the
   * CRC-32 its pack's index holds (re-hashing it where there is none, or where it does not match).
   * Throws DATA_LOSS naming the block when stored bytes do not match their address or a pack is
   * missing or short, INTERNAL on another I/O failure. Returned arrays may share memory with each other.
   */
  async getMany(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return this.read(addresses, false);
  }

  /** getMany, re-hashing every block when rehash is set. */
  private read(addresses: Uint8Array[], rehash: boolean): Promise<(Uint8Array | undefined)[]> {
    this.checkOpen();
    const read = this.readMany(addresses, rehash);
    this.reads.add(read);
    read.then(
      () => this.reads.delete(read),
      () => this.reads.delete(read),
    );
    return read;
  }

  private async readMany(addresses: Uint8Array[], rehash: boolean): Promise<(Uint8Array | undefined)[]> {
    const count = addresses.length;
    const result: (Uint8Array | undefined)[] = new Array(count).fill(undefined);
    // Where each block found is, in typed arrays by its index in addresses, and the found ones in
    // read order: two objects a block were most of a catch-up's garbage on the server.
    const packs = new Int32Array(count);
    const offsets = new Float64Array(count);
    const lengths = new Uint32Array(count);
    // The CRC-32 to check each block against, and whether there is one (else it is re-hashed).
    const checksums = new Uint32Array(count);
    const checksummed = new Uint8Array(count);
    const order: number[] = [];
    let inOrder = true;
    for (let i = 0; i < count; i++) {
      const n = this.index.find(addresses[i]);
      if (n !== -1) {
        packs[i] = this.index.pack(n);
        offsets[i] = this.index.offset(n);
        lengths[i] = this.index.length(n);
        if (!rehash && this.packChecksummed[packs[i]]) {
          checksums[i] = this.index.checksum(n);
          checksummed[i] = 1;
        }
        const last = order.length > 0 ? order[order.length - 1] : -1;
        if (last !== -1 && (packs[last] > packs[i] || (packs[last] === packs[i] && offsets[last] > offsets[i]))) inOrder = false;
        order.push(i);
        continue;
      }
      const key = this.quarantinedKeys.size > 0 ? keyOfAddress(addresses[i]) : "";
      if (this.quarantinedKeys.has(key)) {
        const pack = this.quarantinedKeys.get(key)!;
        throw RemoteLogError.dataLoss(`block ${addressText(addresses[i])} was in pack ${pack}, which is damaged and set aside; storing the block again restores it`, undefined, {
          address: addressText(addresses[i]),
          file: join(this.quarantineDir, pack),
        });
      }
    }
    // A log's messages are usually asked for in the order they were stored: then there is nothing to sort.
    if (!inOrder) order.sort((a, b) => packs[a] - packs[b] || offsets[a] - offsets[b]);
    // Nearby blocks of one pack become one read: 10,000 small blocks are a handful of preads, not
    // 10,000. Span s reads [spanStart[s], spanEnd[s]) of its pack, for order[spanFrom[s]] up to the next span's.
    const spanFrom: number[] = [];
    const spanStart: number[] = [];
    const spanEnd: number[] = [];
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      const end = offsets[i] + lengths[i];
      const s = spanFrom.length - 1;
      if (s >= 0 && packs[order[spanFrom[s]]] === packs[i] && offsets[i] <= spanEnd[s] + READ_GAP && end - spanStart[s] <= READ_SPAN) {
        spanEnd[s] = Math.max(spanEnd[s], end);
      } else {
        spanFrom.push(k);
        spanStart.push(offsets[i]);
        spanEnd.push(end);
      }
    }
    spanFrom.push(order.length);
    let next = 0;
    const worker = async () => {
      while (next < spanStart.length) {
        const s = next++;
        const first = order[spanFrom[s]];
        const pack = this.packs[packs[first]];
        const path = join(this.packsDir, pack);
        const start = spanStart[s];
        const buffer = await this.files.read(path, start, spanEnd[s] - start, () => addressText(addresses[first]));
        for (let k = spanFrom[s]; k < spanFrom[s + 1]; k++) {
          const i = order[k];
          const block = new Uint8Array(buffer.buffer, buffer.byteOffset + offsets[i] - start, lengths[i]);
          // A CRC-32 the bytes do not match may be a damaged CRC-32: the re-hash decides.
          if ((checksummed[i] === 0 || blockChecksum(block) !== checksums[i]) && !matchesAddress(block, addresses[i])) {
            this.damagedKeys.add(keyOfAddress(addresses[i]));
            // The pack's name, not its path: this message goes to remote clients.
            throw RemoteLogError.dataLoss(`block ${addressText(addresses[i])} in pack ${pack} does not match its address`, undefined, {
              address: addressText(addresses[i]),
              file: path,
              offset: offsets[i],
            });
          }
          result[i] = block;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, spanStart.length) }, worker));
    return result;
  }

  /** Whether a put of the block (its address and key) finds it stored, intact as far as any read has seen. */
  private holds(address: Uint8Array, key: string): boolean {
    return this.index.findDigest(address, 4) !== -1 && !(this.damagedKeys.size > 0 && this.damagedKeys.has(key));
  }

  /** Whether a block is stored, from the index alone. */
  async has(address: Uint8Array): Promise<boolean> {
    this.checkOpen();
    return this.index.find(address) !== -1;
  }

  /** Distinct blocks and their total size. */
  stats(): FsContentStoreStats {
    return { blocks: this.index.size, bytes: this.bytes, ...(this.quarantined.size > 0 ? { quarantinedPacks: this.quarantined.size } : {}) };
  }

  /**
   * Reads and re-hashes every stored block, as `restic check --read-data` does. Returns the stats;
   * throws DATA_LOSS for the first block that does not match.
   */
  async check(): Promise<FsContentStoreStats> {
    const numbers = [...this.index.stored()];
    for (let i = 0; i < numbers.length; i += 10_000) {
      await this.read(numbers.slice(i, i + 10_000).map((n) => this.index.address(n)), true);
    }
    return this.stats();
  }

  /**
   * Starts a collection (backup/gc.ts): from now until guard.end(), every key put, even one already
   * stored, is recorded in guard.touched, and sweepPack keeps it. At most one collection at a time:
   * CONFLICT otherwise.
   */
  beginGc(): GcGuard {
    this.checkOpen();
    // The store, not its path: a running server sends this to whoever asked for the collection.
    if (this.guards.size > 0) throw RemoteLogError.conflict("a garbage collection of this store is already running");
    const guard: GcGuard = { startedMs: Date.now(), touched: new Set(), end: () => void this.guards.delete(guard) };
    this.guards.add(guard);
    return guard;
  }

  /** Every live pack: its file name, when it was written, and the blocks it holds (as index keys). */
  listPacks(): PackListing[] {
    const out: PackListing[] = [];
    this.packs.forEach((name, id) => {
      if (name !== "") out.push({ name, writtenMs: this.packTimes[id], keys: Array.from(this.packBlocks[id], (n) => this.keyOfBlock(n)) });
    });
    return out;
  }

  /**
   * Rewrites pack `name` without the blocks that are not live, for gc. A block is dropped only when
   * live(key) is false and it was not put, or put again, at or after `keepPutSinceMs`, nor during the
   * collection (guard.touched). The kept blocks are read (and re-hashed), written as a new pack
   * (atomically, as any pack), the index moves to it in one synchronous step, and the old file is
   * removed only after the reads that may still use it have finished. A pack with nothing to drop is
   * left alone; one with nothing to keep is removed. Returns what was dropped. Throws as getMany and
   * putMany do; on a failure the old pack stays and nothing is dropped. With dryRun, changes nothing
   * and returns what a sweep would drop now, by the same rule, so that a dry run's figures are the run's.
   */
  async sweepPack(name: string, live: (key: string) => boolean, guard: GcGuard, keepPutSinceMs: number, options: { dryRun?: boolean } = {}): Promise<{ blocks: number; bytes: number }> {
    if (options.dryRun) this.checkOpen();
    else this.checkWritable();
    const id = this.packs.indexOf(name);
    if (id === -1 || name === "") return { blocks: 0, bytes: 0 };
    // Keys (latin1 strings) are made here, for gc's sets, and not kept: the index holds numbers.
    const keys = new Map<number, string>();
    const key = (n: number) => keys.get(n) ?? keys.set(n, this.keyOfBlock(n)).get(n)!;
    const isDead = (n: number) => this.index.pack(n) === id && !live(key(n)) && !guard.touched.has(key(n)) && (this.reput.get(key(n)) ?? 0) < keepPutSinceMs;
    for (let attempt = 0; attempt < 3; attempt++) {
      const numbers = Array.from(this.packBlocks[id]).filter((n) => this.index.pack(n) === id);
      const dead = numbers.filter(isDead);
      if (dead.length === 0) return { blocks: 0, bytes: 0 };
      if (options.dryRun) return { blocks: dead.length, bytes: dead.reduce((sum, n) => sum + this.index.length(n), 0) };
      const deadSet = new Set(dead);
      const kept = numbers.filter((n) => !deadSet.has(n));
      let written: { name: string; blocks: Uint8Array[]; checksums: Uint32Array } | undefined;
      if (kept.length > 0) {
        const keptAddresses = kept.map((n) => this.index.address(n));
        // Re-hashed, not checked by CRC-32: the new pack's CRC-32s are made from these bytes.
        const blocks = (await this.read(keptAddresses, true)) as Uint8Array[];
        const pack = encodePack(blocks, keptAddresses);
        await this.writePack(pack.name, pack.bytes);
        written = { name: pack.name, blocks, checksums: pack.checksums };
      }
      // Puts made while the new pack was written may have revived a block it leaves out: start again.
      if (dead.some((n) => !isDead(n))) continue;
      // From here to the end of the swap there is no await, so no put or read sees a half-moved index.
      let bytes = 0;
      for (const n of dead) {
        bytes += this.index.length(n);
        this.index.remove(n);
      }
      this.bytes -= bytes;
      if (written) {
        const newId = this.packs.push(written.name) - 1;
        this.packBlocks[newId] = Int32Array.from(kept);
        this.packTimes[newId] = this.packTimes[id];
        this.packChecksummed[newId] = true;
        let offset = HEADER_SIZE;
        kept.forEach((n, j) => {
          this.index.move(n, newId, offset, written.blocks[j].length, written.checksums[j]);
          offset += written.blocks[j].length;
        });
      }
      this.packs[id] = "";
      this.packBlocks[id] = new Int32Array(0);
      // A read that resolved its locations before the swap may still open the old file.
      await Promise.allSettled([...this.reads]);
      if (written?.name !== name) {
        try {
          await unlink(join(this.packsDir, name));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(`cannot remove pack ${name}`, err);
        }
        await this.syncPacksDir();
      }
      return { blocks: dead.length, bytes };
    }
    return { blocks: 0, bytes: 0 };
  }

  /** Forgets re-puts older than ms, which no collection starting later can need. */
  forgetPutsBefore(ms: number): void {
    for (const [key, at] of this.reput) if (at < ms) this.reput.delete(key);
  }

  /** Waits for writes in progress, then closes every file. Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    await this.files.close();
    // A sweep still running closes it when it is done, and opens packs/ for itself from here on.
    await this.packsDirHeld.release();
  }

  private async syncPacksDir(): Promise<void> {
    await this.packsDirHeld.use((held) => held.sync());
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`content store ${this.dir} is closed`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw RemoteLogError.internal(`content store ${this.dir} is open read-only`);
  }

  private addPack(name: string, { version, entries }: PackIndex, time: number): void {
    const packId = this.packs.push(name) - 1;
    const entry = entrySize(version);
    const checksummed = entry === ENTRY_SIZE;
    const numbers = new Int32Array(entries.length / entry);
    let count = 0;
    this.packTimes[packId] = time;
    this.packChecksummed[packId] = checksummed;
    let offset = HEADER_SIZE;
    for (let at = 0; at < entries.length; at += entry) {
      const length = entries.readUInt32BE(at + 32);
      // The same block in two packs (two processes wrote it, or it was stored again after a read found
      // a copy damaged): the later written copy is the one read.
      const found = this.index.findDigest(entries, at);
      if (found === -1) {
        numbers[count++] = this.index.add(entries, at, packId, offset, length, checksummed ? entries.readUInt32BE(at + 36) : 0);
        this.bytes += length;
      } else if (time > this.packTimes[this.index.pack(found)]) {
        this.index.move(found, packId, offset, length, checksummed ? entries.readUInt32BE(at + 36) : 0);
        numbers[count++] = found;
      }
      offset += length;
    }
    this.packBlocks[packId] = numbers.subarray(0, count);
  }

  /** Block n's index key (its address as a latin1 string), as gc's sets and guards hold them. */
  private keyOfBlock(n: number): string {
    return Buffer.from(this.index.address(n)).toString("latin1");
  }

  private async writePack(name: string, bytes: Uint8Array): Promise<void> {
    // If another process already wrote this very pack, the name says the content is the same.
    const write = () => this.packsDirHeld.use((held) => writeFileAtomic(join(this.packsDir, name), bytes, held));
    try {
      try {
        await write();
      } catch (err) {
        // Out of descriptors, the packs kept open for reads are what this store can give back.
        if (!isOutOfDescriptors(err) || !(await this.files.giveBack())) throw err;
        await write();
      }
    } catch (err) {
      // writeFileAtomic removed its temporary file: what was stored before is as it was.
      if (isOutOfSpace(err)) throw serverOutOfSpace(`no room for a pack of ${bytes.length} bytes`, err);
      // Connections hold the rest: a retry once some close may find one. No path: this goes to clients.
      if (isOutOfDescriptors(err)) throw RemoteLogError.unavailable(`cannot write a pack of ${bytes.length} bytes: the server has too many files open`, err);
      throw err;
    }
  }
}

/*
 * Index keys are addresses as latin1 strings (one char per byte). Measured on 10,000 blocks of 280 B:
 * a digest returned as a string costs 0.4 µs against 1 µs or more as a Buffer (each Buffer is an
 * object made in C++), and 36-char keys hash faster than 72-char hex ones. This is most of putMany.
 */
function keyOf(block: Uint8Array): string {
  return KEY_PREFIX + hash("sha256", block, "binary");
}

function keyOfAddress(address: Uint8Array): string {
  return Buffer.from(address.buffer, address.byteOffset, address.length).toString("latin1");
}

/** Addresses for keys, as views of one buffer: one allocation instead of one per address. */
function addressesOf(keys: string[]): Uint8Array[] {
  const all = Buffer.from(keys.join(""), "latin1");
  const addresses: Uint8Array[] = new Array(keys.length);
  let at = 0;
  for (let i = 0; i < keys.length; i++) {
    addresses[i] = new Uint8Array(all.buffer, all.byteOffset + at, keys[i].length);
    at += keys[i].length;
  }
  return addresses;
}

/** Copies of blocks, as views of one buffer. */
function copyBlocks(blocks: Uint8Array[], size: number): Uint8Array[] {
  const all = Buffer.allocUnsafe(size);
  let at = 0;
  return blocks.map((block) => {
    all.set(block, at);
    const copy = new Uint8Array(all.buffer, all.byteOffset + at, block.length);
    at += block.length;
    return copy;
  });
}
