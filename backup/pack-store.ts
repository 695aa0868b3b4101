import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Remote } from "../actors/remote.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText, cidOf, parseAddressText } from "../core/hash.js";
import { createNameRecord, isKeyName, keyName, verifyNameRecord, type PrivateKey } from "../core/names.js";
import { ensureDir, ioError, writeFileAtomic } from "../stores/file/atomic.js";
import { decodeBackupHead, encodeBackupHead } from "./pack-format.js";

/** Where a backup's head points: the newest pack, and what it covers. */
export interface BackupHeadInfo {
  pack: Uint8Array;
  /** The head's NS version (URL targets), for the conditional update that moves it. */
  version?: bigint;
}

/**
 * Where packs live: a directory (one file per pack, named by its CID, plus HEAD) or a CAS service
 * (blocks, plus a name in its NS for the head). Packs are immutable and content-addressed, so put is
 * idempotent; only the head changes, and it moves after the packs it names are stored.
 */
export interface PackStore {
  /** The directory or URL, for messages. */
  readonly where: string;
  /** A pack's bytes, or undefined when it is not stored. Callers check the bytes against the address. */
  get(address: Uint8Array): Promise<Uint8Array | undefined>;
  /** Stores packs durably; those already stored are skipped. */
  put(packs: { address: Uint8Array; bytes: Uint8Array }[]): Promise<void>;
  /** The recorded head, or undefined before the first backup. */
  readHead(): Promise<BackupHeadInfo | undefined>;
  /** Moves the head; CONFLICT when someone else moved it since readHead. */
  writeHead(head: { pack: Uint8Array; logName: string; lastSeq: number }, previous: BackupHeadInfo | undefined): Promise<void>;
  close(): Promise<void>;
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

  constructor(readonly dir: string) {
    this.where = resolve(dir);
  }

  async get(address: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(join(this.dir, addressText(address))));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw ioError(`cannot read pack ${addressText(address)} in ${this.dir}`, err);
    }
  }

  async put(packs: { address: Uint8Array; bytes: Uint8Array }[]): Promise<void> {
    await ensureDir(this.dir);
    for (const pack of packs) {
      const path = join(this.dir, addressText(pack.address));
      // Named by its content: a file of that name and size is this pack, written whole by a rename.
      const existing = await stat(path).catch(() => undefined);
      if (existing?.size === pack.bytes.length) continue;
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
      throw ioError(`cannot list ${this.dir}`, err);
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
      throw ioError(`cannot read ${join(this.dir, "HEAD")}`, err);
    }
    try {
      return { pack: parseAddressText(text).bytes };
    } catch (err) {
      throw RemoteLogError.dataLoss(`${join(this.dir, "HEAD")} does not hold a pack's CID: ${(err as Error).message}`, err);
    }
  }

  async writeHead(head: { pack: Uint8Array }, previous: BackupHeadInfo | undefined): Promise<void> {
    const current = await this.readHead();
    if (current?.pack.toString() !== previous?.pack.toString()) {
      throw RemoteLogError.conflict(`${join(this.dir, "HEAD")} moved during the backup (another backup ran?); run it again`);
    }
    await writeFileAtomic(join(this.dir, "HEAD"), new TextEncoder().encode(`${addressText(head.pack)}\n`));
  }

  async close(): Promise<void> {}
}

/**
 * Packs as blocks of a CAS service, the head as a name in its NS whose content is a BackupHead,
 * signed with key when given (the name is then the key's), as a log's name would be.
 */
export class RemotePackStore implements PackStore {
  readonly where: string;
  readonly headName?: string;

  constructor(
    private readonly remote: Remote,
    options: { headName?: string; key?: PrivateKey },
    private readonly key = options.key,
  ) {
    this.where = remote.casUrl;
    this.headName = options.headName ?? (options.key ? keyName(options.key) : undefined);
  }

  async get(address: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      return await this.remote.getBlock(address);
    } catch (err) {
      if (isRemoteLogError(err, ErrorCodes.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async put(packs: { address: Uint8Array; bytes: Uint8Array }[]): Promise<void> {
    try {
      await this.remote.putBlocks(packs.map((pack) => pack.bytes));
    } catch (err) {
      if (isRemoteLogError(err, ErrorCodes.TOO_LARGE)) {
        throw RemoteLogError.tooLarge(`${err.message}; packs must fit the CAS's largest block: pass a smaller --pack-size (such as 1MiB), or serve with a larger --max-block`);
      }
      throw err;
    }
  }

  async readHead(): Promise<BackupHeadInfo | undefined> {
    const name = this.requireName();
    const entry = await this.remote.fetchName(name);
    if (!entry) return undefined;
    if (isKeyName(name)) await verifyNameRecord(name, entry.record, entry.content);
    const head = decodeBackupHead(entry.content);
    if (!head) throw RemoteLogError.conflict(`name ${JSON.stringify(name)} at ${this.remote.nsUrl} is not a backup head (a log's name?)`);
    return { pack: head.pack, version: entry.version };
  }

  async writeHead(head: { pack: Uint8Array; logName: string; lastSeq: number }, previous: BackupHeadInfo | undefined): Promise<void> {
    const name = this.requireName();
    const content = encodeBackupHead({ pack: head.pack, logName: head.logName, lastSeq: BigInt(head.lastSeq) });
    const version = previous?.version ?? 0n;
    const record = this.key ? await createNameRecord(this.key, content, version + 1n) : undefined;
    await this.remote.updateName(name, content, version, record);
  }

  private requireName(): string {
    if (!this.headName) throw RemoteLogError.invalidArgument("a backup in a CAS service needs --head-name NAME (or --key FILE) to record its head");
    return this.headName;
  }

  async close(): Promise<void> {
    this.remote.close();
  }
}

/** The CID text of a head page's content, for messages. */
export function contentCid(content: Uint8Array): string {
  return cidOf(content).toString();
}
