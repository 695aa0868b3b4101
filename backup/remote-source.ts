import type { RemoteLike } from "../actors/remote.js";
import { walkChain } from "../core/chain.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { addressOf, toHex } from "../core/hash.js";
import { isKeyName, verifyNameRecord } from "../core/names.js";
import { decodePage, verifyPairData } from "../core/page.js";
import type { BackedUpTo, LogSource, SourceRead } from "./source.js";

/**
 * A remote log by name, read as `receive` reads it: a key name's head must carry a record that
 * verifies; the walk goes back only to the last backed-up message, and every page and message is
 * checked by its hashes (walkChain, verifyPairData).
 */
export class RemoteLogSource implements LogSource {
  constructor(
    private readonly remote: RemoteLike,
    readonly logName: string,
    private readonly options: { unsigned?: boolean; batch?: number } = {},
  ) {}

  async readSince(after: BackedUpTo | undefined): Promise<SourceRead> {
    const name = this.logName;
    const entry = await this.remote.fetchName(name);
    if (!entry) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} has no log at ${this.remote.nsUrl}`);
    if (isKeyName(name)) await verifyNameRecord(name, entry.record, entry.content);
    else if (!this.options.unsigned) throw RemoteLogError.invalidArgument(`${JSON.stringify(name)} is not a key name (k51…), so nothing vouches for its heads; pass --unsigned to back it up anyway`);
    const head = decodePage(entry.content, `head of name ${JSON.stringify(name)}`, ErrorCodes.DATA_LOSS);
    const walk = await walkChain(head, (address) => this.remote.getBlock(address), { stopAtId: after?.lastId });
    if (after && !walk.reachedStop) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(name)} no longer holds message ${toHex(after.lastId)}, the last one backed up: its log was replaced`);
    }
    // A redacted pair (a tombstone) has no message left to keep: the backup holds what the log still holds.
    const pairs = walk.pairs.filter((pair) => !pair.redacted);
    const missing = pairs.filter((pair) => pair.data.length === 0).map((pair) => pair.remoteHash);
    const fetched = missing.length > 0 ? await this.remote.getBlocks(missing) : [];
    let next = 0;
    const messages = pairs.map((pair, i) => {
      const data = pair.data.length > 0 ? pair.data : fetched[next++];
      verifyPairData(pair, data, `message ${i} of name ${JSON.stringify(name)}`);
      return data;
    });
    return {
      firstSeq: after ? after.lastSeq + 1 : 0,
      messages,
      lastId: pairs.length > 0 ? pairs[pairs.length - 1].localHash : (after?.lastId ?? new Uint8Array(0)),
      logHead: { page: addressOf(entry.content), sequence: entry.version },
    };
  }

  async close(): Promise<void> {
    this.remote.close();
  }
}
