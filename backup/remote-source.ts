import { RemoteLogError } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { LogReader } from "../core/log-reader.js";
import type { LogRemote } from "../core/log-remote.js";
import { isKeyName } from "../core/names.js";
import type { BackedUpTo, LogSource, SourceRead } from "./source.js";

/**
 * A remote log by name, read as `receive` reads it (core/log-reader.ts): a key name's head must carry
 * a record that verifies and is not older than the one the previous backup read; the walk goes back
 * only to the last backed-up message, and every page and message is checked by its hashes.
 */
export class RemoteLogSource implements LogSource {
  private readonly reader: LogReader;

  constructor(
    private readonly remote: LogRemote,
    readonly logName: string,
    private readonly options: { unsigned?: boolean; maxPages?: number } = {},
  ) {
    this.reader = new LogReader(remote, logName, { maxPages: options.maxPages });
  }

  async readSince(after: BackedUpTo | undefined): Promise<SourceRead> {
    const name = this.logName;
    if (!isKeyName(name) && !this.options.unsigned) {
      throw RemoteLogError.invalidArgument(`${JSON.stringify(name)} is not a key name (k51…), so nothing vouches for its heads; pass --unsigned to back it up anyway`);
    }
    const opened = await this.reader.require({ floor: after?.sequence });
    const walk = await this.reader.walk(opened.page, { stopAtId: after?.lastId });
    if (after && !walk.reachedStop) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(name)} no longer holds message ${toHex(after.lastId)}, the last one backed up: its log was replaced`);
    }
    // A redacted pair (a tombstone) has no message left to keep: the backup holds what the log still holds.
    const { pairs, data } = await this.reader.readMessages(walk.pairs, after ? after.lastSeq + 1 : 0);
    return {
      firstSeq: after ? after.lastSeq + 1 : 0,
      messages: data,
      lastId: pairs.length > 0 ? pairs[pairs.length - 1].localHash : (after?.lastId ?? new Uint8Array(0)),
      logHead: { page: opened.address, sequence: opened.sequence ?? opened.entry.version },
    };
  }

  async close(): Promise<void> {
    this.remote.close();
  }
}
