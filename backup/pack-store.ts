import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ErrorCodes, isRemoteLogError, RemoteLogError } from "../core/errors.js";
import { addressText, equalBytes, parseAddressText } from "../core/hash.js";
import { ensureDir, ioError, removeLeftoverTmp, userPathError, writeFileAtomic } from "../stores/file/atomic.js";

/** Where a backup's head points: the newest pack, and what it covers. */
export interface BackupHeadInfo {
  pack: Uint8Array;
  /** The head's NS version (URL targets), for the conditional update that moves it. */
  version?: bigint;
}

/**
 * Where packs live: a directory (one file per pack, named by its CID, plus HEAD) or a CAS service
 * (blocks, plus a name in its NS for the head; remote-pack-store.ts). Packs are immutable and content-addressed, so put is
 * idempotent; only the head changes, and it moves after the packs it names are stored.
 */
export interface PackStore {
  /** The directory or URL, for messages. */
  readonly where: string;
  /** The NS name that holds the head, in a CAS service (a directory keeps HEAD instead). */
  readonly headName?: string;
  /** A pack's bytes, or undefined when it is not stored. Callers check the bytes against the address. */
  get(address: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * A pack's first length bytes (all of it when it is shorter) and its size, or undefined when it is
   * not stored, where the store can read part of a pack (a directory): a restore walks a chain by
   * its packs' headers (pack-chain.ts). Unchecked: callers check the pack read whole.
   */
  readStart?(address: Uint8Array, length: number): Promise<{ bytes: Uint8Array; size: number } | undefined>;
  /** Stores packs durably; those already stored are skipped. */
  put(packs: { address: Uint8Array; bytes: Uint8Array }[]): Promise<void>;
  /** The local file a pack is kept in, where the store keeps packs as files (a directory); undefined elsewhere. */
  fileOf?(address: Uint8Array): string;
  /** The largest pack the store takes, when it has a limit and says it (a CAS's largest block). */
  largestPack?(): Promise<number | undefined>;
  /** The recorded head, or undefined before the first backup. */
  readHead(): Promise<BackupHeadInfo | undefined>;
  /** Moves the head, and returns it as readHead would; CONFLICT when someone else moved it since previous. */
  writeHead(head: { pack: Uint8Array; logName: string; lastSeq: number }, previous: BackupHeadInfo | undefined): Promise<BackupHeadInfo>;
  close(): Promise<void>;
}

/**
 * err, damage found in the pack at address (DATA_LOSS), naming the local file the pack is in when
 * store keeps packs as files: damage found in a local file names it, in the text and in
 * details.file, as the local log's does. Any other error, or one from a CAS, is returned as it is.
 */
export function inPackFile(store: Pick<PackStore, "fileOf">, address: Uint8Array, err: unknown): unknown {
  const file = store.fileOf?.(address);
  if (file === undefined || !isRemoteLogError(err, ErrorCodes.DATA_LOSS) || err.details.file !== undefined) return err;
  return RemoteLogError.dataLoss(`${err.text} (file ${file})`, err.cause, { ...err.details, file });
}

export function isUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/**
 * A directory of packs: `<dir>/<cid>` per pack (base32 CID text), each written atomically (temporary
 * file, fdatasync, rename, directory fsync), and `<dir>/HEAD` holding the head pack's CID and a newline,
 * replaced the same way once every pack it reaches is in place.
 */
export class DirPackStore implements PackStore {
  readonly where: string;
  private ready?: Promise<void>;

  constructor(readonly dir: string) {
    this.where = resolve(dir);
  }

  fileOf(address: Uint8Array): string {
    return join(this.dir, addressText(address));
  }

  // A directory's packs are read with synchronous calls: a restore reads each pack while both of its
  // threads are busy laying out others, and an asynchronous read, a callback per 512 KiB, waited for
  // them between packs (~25 ms each), so that the threads waited for the reads. A read from the page
  // cache takes ~1 ms a pack.
  async get(address: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      // A view, not a copy: restore moves a pack's own buffer to the thread that checks it.
      const bytes = readFileSync(this.fileOf(address));
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw this.cannotRead(address, err);
    }
  }

  async readStart(address: Uint8Array, length: number): Promise<{ bytes: Uint8Array; size: number } | undefined> {
    let fd: number;
    try {
      fd = openSync(this.fileOf(address), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw this.cannotRead(address, err);
    }
    try {
      const { size } = fstatSync(fd);
      const bytes = new Uint8Array(Math.min(length, size));
      let read = 0;
      for (let got = -1; read < bytes.length && got !== 0; read += got) got = readSync(fd, bytes, read, bytes.length - read, read);
      return { bytes: bytes.subarray(0, read), size };
    } catch (err) {
      throw this.cannotRead(address, err);
    } finally {
      closeSync(fd);
    }
  }

  private cannotRead(address: Uint8Array, err: unknown): RemoteLogError {
    return ioError(`cannot read pack ${addressText(address)} in ${this.dir}`, err, this.fileOf(address));
  }

  async put(packs: { address: Uint8Array; bytes: Uint8Array }[]): Promise<void> {
    // A backup killed mid-write leaves a temporary file; its pack is written again by this run.
    this.ready ??= ensureDir(this.dir).then(() => removeLeftoverTmp(this.dir)).then(() => {});
    await this.ready;
    for (const pack of packs) {
      const path = join(this.dir, addressText(pack.address));
      // Only a file holding these very bytes is this pack (they hash to its name). One of the right
      // name and size can still be damaged in place (bit rot, which verify reports): it is replaced,
      // atomically, so that running the backup again heals the directory instead of calling it written.
      const existing = await this.get(pack.address).catch(() => undefined);
      if (existing && equalBytes(existing, pack.bytes)) continue;
      await writeFileAtomic(path, pack.bytes);
    }
  }

  /** Every file in the directory whose name is a CID: the packs (or, after an import, any blocks). */
  async list(): Promise<Uint8Array[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw ioError(`cannot list ${this.dir}`, err, this.dir);
    }
    const addresses: Uint8Array[] = [];
    for (const name of names) {
      if (!name.startsWith("b")) continue;
      try {
        addresses.push(parseAddressText(name).bytes);
      } catch {
        // a temporary file or something of the user's: not a block
      }
    }
    return addresses;
  }

  async readHead(): Promise<BackupHeadInfo | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dir, "HEAD"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw userPathError(`cannot read ${join(this.dir, "HEAD")}`, err, join(this.dir, "HEAD"));
    }
    try {
      return { pack: parseAddressText(text).bytes };
    } catch (err) {
      throw RemoteLogError.dataLoss(`${join(this.dir, "HEAD")} does not hold a pack's CID: ${(err as Error).message}`, err, { file: join(this.dir, "HEAD") });
    }
  }

  async writeHead(head: { pack: Uint8Array }, previous: BackupHeadInfo | undefined): Promise<BackupHeadInfo> {
    const current = await this.readHead();
    if ((current === undefined) !== (previous === undefined) || (current && previous && !equalBytes(current.pack, previous.pack))) {
      throw RemoteLogError.aborted(`${join(this.dir, "HEAD")} moved during the backup (another backup ran?); run it again`);
    }
    await writeFileAtomic(join(this.dir, "HEAD"), new TextEncoder().encode(`${addressText(head.pack)}\n`));
    return { pack: head.pack };
  }

  async close(): Promise<void> {}
}
