import { basename, resolve } from "node:path";
import { RemoteLogError } from "../core/errors.js";
import { equalBytes, toHex } from "../core/hash.js";
import { FileLocalLog, publishedCount } from "../stores/file/local-log.js";
import type { BackedUpTo, LogSource, SourceRead } from "./source.js";

/** Messages read from the log at once: a few packs' worth. */
const LOCAL_CHUNK = 16_384;

/**
 * A sender's local log directory (stores/file/local-log.ts), opened read-only: a backup writes nothing
 * in it and takes no lock, and reads only whole records, so an append in progress is left for the next
 * backup. A damaged log is DATA_LOSS, never a shorter backup.
 */
export class LocalLogSource implements LogSource {
  readonly logNameFlag = "--log-name";

  private constructor(
    private readonly log: FileLocalLog,
    readonly logName: string,
  ) {}

  static async open(dir: string, logName?: string): Promise<LocalLogSource> {
    // Records published from the log and no longer whole in it are damage (DATA_LOSS), not an append in progress.
    const log = await FileLocalLog.open(dir, { readOnly: true, acknowledged: await publishedCount(dir) });
    return new LocalLogSource(log, logName ?? basename(resolve(dir)));
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
    const end = this.log.length;
    const log = this.log;
    return {
      firstSeq: from,
      expected: end - from,
      // A chunk at a time: a long log is never all in memory.
      chunks: (async function* () {
        for (let at = from; at < end; at += LOCAL_CHUNK) {
          const entries = await log.read(at, Math.min(end, at + LOCAL_CHUNK));
          yield { messages: entries.map((entry) => entry.data), lastId: entries[entries.length - 1].id };
        }
      })(),
    };
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}
