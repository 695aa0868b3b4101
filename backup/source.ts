import { basename, resolve } from "node:path";
import type { Remote } from "../actors/remote.js";
import { walkChain } from "../core/chain.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { addressOf, equalBytes, toHex } from "../core/hash.js";
import { isKeyName, verifyNameRecord } from "../core/names.js";
import { decodePage, verifyPairData } from "../core/page.js";
import { FileLocalLog } from "../stores/file/local-log.js";

/** Where the previous backup stopped: the last message it holds. */
export interface BackedUpTo {
  lastSeq: number;
  lastId: Uint8Array;
}

export interface SourceRead {
  /** Seq of messages[0]. */
  firstSeq: number;
  /** Encoded vac.mvds.Messages after `after`, oldest first, exactly as the log holds them. */
  messages: Uint8Array[];
  /** The id of the last one (or of the last backed-up message when there is nothing new). */
  lastId: Uint8Array;
  /** The remote-log head read, for a remote source. */
  logHead?: { page: Uint8Array; sequence: bigint };
}

/** A log to back up. */
export interface LogSource {
  readonly logName: string;
  /** Messages after `after` (all of them without it). CONFLICT when the log no longer holds `after`. */
  readSince(after: BackedUpTo | undefined): Promise<SourceRead>;
  close(): Promise<void>;
}

/**
 * A sender's local log directory (stores/file/local-log.ts), opened under its lock: a sender using it
 * at the same time makes this CONFLICT, so a backup never reads a log that is being appended to.
 */
export class LocalLogSource implements LogSource {
  private constructor(
    private readonly log: FileLocalLog,
    readonly logName: string,
  ) {}

  static async open(dir: string, logName?: string): Promise<LocalLogSource> {
    return new LocalLogSource(await FileLocalLog.open(dir), logName ?? basename(resolve(dir)));
  }

  async readSince(after: BackedUpTo | undefined): Promise<SourceRead> {
    const from = after ? after.lastSeq + 1 : 0;
    if (after) {
      const [entry] = await this.log.read(after.lastSeq, after.lastSeq + 1);
      if (!entry || !equalBytes(entry.id, after.lastId)) {
        throw RemoteLogError.conflict(
          `the local log at ${this.log.dir} does not hold message ${toHex(after.lastId)} at seq ${after.lastSeq}, where the previous backup ends: is it another log?`,
        );
      }
    }
    const entries = await this.log.read(from, this.log.length);
    return {
      firstSeq: from,
      messages: entries.map((entry) => entry.data),
      lastId: entries.length > 0 ? entries[entries.length - 1].id : (after?.lastId ?? new Uint8Array(0)),
    };
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

/**
 * A remote log by name, read as `receive` reads it: a key name's head must carry a record that
 * verifies; the walk goes back only to the last backed-up message, and every page and message is
 * checked by its hashes (walkChain, verifyPairData).
 */
export class RemoteLogSource implements LogSource {
  constructor(
    private readonly remote: Remote,
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
