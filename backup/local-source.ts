import { basename, resolve } from "node:path";
import { RemoteLogError } from "../core/errors.js";
import { equalBytes, toHex } from "../core/hash.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import type { BackedUpTo, LogSource, SourceRead } from "./source.js";

/**
 * A sender's local log directory (stores/file/local-log.ts), opened read-only: a backup writes nothing
 * in it and takes no lock, and reads only whole records, so an append in progress is left for the next
 * backup. A damaged log is DATA_LOSS, never a shorter backup.
 */
export class LocalLogSource implements LogSource {
  private constructor(
    private readonly log: FileLocalLog,
    readonly logName: string,
  ) {}

  static async open(dir: string, logName?: string): Promise<LocalLogSource> {
    return new LocalLogSource(await FileLocalLog.open(dir, { readOnly: true }), logName ?? basename(resolve(dir)));
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
