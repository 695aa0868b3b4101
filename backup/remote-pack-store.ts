import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import type { LogRemote } from "../core/log-remote.js";
import { verifySignedHead } from "../core/name-checks.js";
import { createNameRecord, isKeyName, keyName, type PrivateKey } from "../core/names.js";
import { decodeBackupHead, encodeBackupHead } from "./pack-format.js";
import type { BackupHeadInfo, PackStore } from "./pack-store.js";

/**
 * Packs as blocks of a CAS service, the head as a name in its NS whose content is a BackupHead,
 * signed with key when given (the name is then the key's), as a log's name would be.
 */
export class RemotePackStore implements PackStore {
  readonly where: string;
  readonly headName?: string;

  constructor(
    private readonly remote: LogRemote,
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
        throw RemoteLogError.tooLarge(`${err.text}; packs must fit the CAS's largest block: pass a smaller --pack-size (such as 1MiB), or serve with a larger --max-block`);
      }
      throw err;
    }
  }

  async largestPack(): Promise<number | undefined> {
    return (await this.remote.casLimits?.())?.maxBlockBytes;
  }

  async readHead(): Promise<BackupHeadInfo | undefined> {
    const name = this.requireName();
    const entry = await this.remote.fetchName(name);
    if (!entry) return undefined;
    if (isKeyName(name)) await verifySignedHead(name, entry.content, entry.record, undefined, `backup head ${JSON.stringify(name)} from NS ${this.remote.nsUrl}`, entry.version);
    const head = decodeBackupHead(entry.content);
    if (!head) throw RemoteLogError.conflict(`name ${JSON.stringify(name)} at ${this.remote.nsUrl} is not a backup head (a log's name?)`);
    return { pack: head.pack, version: entry.version };
  }

  async writeHead(head: { pack: Uint8Array; logName: string; lastSeq: number }, previous: BackupHeadInfo | undefined): Promise<BackupHeadInfo> {
    const name = this.requireName();
    const content = encodeBackupHead({ pack: head.pack, logName: head.logName, lastSeq: BigInt(head.lastSeq) });
    const version = previous?.version ?? 0n;
    const record = this.key ? await createNameRecord(this.key, content, version + 1n) : undefined;
    return { pack: head.pack, version: await this.remote.updateName(name, content, version, record) };
  }

  private requireName(): string {
    if (!this.headName) throw RemoteLogError.invalidArgument("a backup in a CAS service needs --head-name NAME (or --key FILE) to record its head");
    return this.headName;
  }

  async close(): Promise<void> {
    this.remote.close();
  }
}
