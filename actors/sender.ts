import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { addressOf, encodeMessage, newMessage, toHex } from "../core/hash.js";
import type { LocalLog, LocalLogEntry } from "../core/local-log.js";
import { decodePage, encodePage, planPages, type EmbedMode, type LogEntry } from "../core/page.js";
import type { Remote } from "./remote.js";

export interface SenderOptions {
  name: string;
  log: LocalLog;
  remote: Pick<Remote, "putBlocks" | "fetchName" | "updateName">;
  /** Pairs per page; default 256. */
  pageSize?: number;
  embed?: EmbedMode;
  /** Conditional-update attempts before a lost race is reported; default 5. */
  maxAttempts?: number;
}

export interface PublishResult {
  /** Messages the remote log holds after this publish. */
  published: number;
  /** Messages this publish added. */
  added: number;
  /** Pages sealed into the CAS by this publish. */
  sealedPages: number;
  /** The name's version after this publish (unchanged when there was nothing to add). */
  version: bigint;
  /** Message blocks uploaded (old head messages are uploaded again; the CAS keeps one copy). */
  uploadedBlocks: number;
}

/**
 * Alice: appends to a durable local log, then publishes what the remote log lacks.
 *
 * The sender keeps no publish state of its own: the name's head says how far the remote log goes
 * (its newest pair is a message of the local log), and everything a publish does before the name
 * update is idempotent. So a crash at any point is repaired by publishing again, with no gap and no
 * duplicate pair, and a conditional update keeps two publishers from overwriting each other.
 */
export class Sender {
  readonly name: string;
  private readonly log: LocalLog;
  private readonly remote: SenderOptions["remote"];
  private readonly pageSize: number;
  private readonly embed: EmbedMode;
  private readonly maxAttempts: number;

  constructor(options: SenderOptions) {
    this.name = options.name;
    this.log = options.log;
    this.remote = options.remote;
    this.pageSize = options.pageSize ?? 256;
    this.embed = options.embed ?? "none";
    this.maxAttempts = options.maxAttempts ?? 5;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1) throw RemoteLogError.invalidArgument(`page size must be at least 1, not ${this.pageSize}`);
  }

  /** Wraps bodies as MVDS messages of one group and appends them durably. Repeated ids are skipped. */
  async append(bodies: Uint8Array[], groupId: Uint8Array, timestamp = BigInt(Math.floor(Date.now() / 1000))): Promise<LocalLogEntry[]> {
    return this.log.append(bodies.map((body) => encodeMessage(newMessage(groupId, timestamp, body))));
  }

  /** Publishes every appended message the remote log does not have yet. Safe to repeat at any time. */
  async publish(): Promise<PublishResult> {
    let lostRace: RemoteLogError | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const result = await this.publishOnce();
      if (!(result instanceof RemoteLogError)) return result;
      lostRace = result;
    }
    throw RemoteLogError.conflict(`gave up publishing ${JSON.stringify(this.name)} after ${this.maxAttempts} lost races; last: ${lostRace?.message}`);
  }

  /** One attempt; a lost conditional update comes back as the error rather than thrown, to be retried. */
  private async publishOnce(): Promise<PublishResult | RemoteLogError> {
    const current = await this.remote.fetchName(this.name);
    let published = 0;
    let headPairs = 0;
    let tail: Uint8Array = new Uint8Array(0);
    if (current) {
      const head = decodePage(current.content, `head of name ${JSON.stringify(this.name)}`, ErrorCodes.DATA_LOSS);
      ({ published, headPairs } = this.locate(head.pair.map((pair) => pair.localHash)));
      tail = head.tail;
    }
    const version = current?.version ?? 0n;
    const total = this.log.length;
    if (total === published) return { published, added: 0, sealedPages: 0, version, uploadedBlocks: 0 };

    const entries: LogEntry[] = (await this.log.read(published - headPairs, total)).map((entry) => ({
      id: entry.id,
      address: addressOf(entry.data),
      data: entry.data,
    }));
    const plan = planPages(entries, tail, this.pageSize, this.embed);

    // Messages and sealed pages go in before the head that names them, so no reader ever meets a dangling address.
    const messageBlocks = plan.referenced.map((entry) => entry.data);
    await this.remote.putBlocks([...messageBlocks, ...plan.sealed.map((sealed) => sealed.bytes)]);

    let newVersion: bigint;
    try {
      newVersion = await this.remote.updateName(this.name, encodePage(plan.head), version);
    } catch (err) {
      if (err instanceof RemoteLogError && err.code === ErrorCodes.CONFLICT) return err;
      throw err;
    }
    return { published: total, added: total - published, sealedPages: plan.sealed.length, version: newVersion, uploadedBlocks: messageBlocks.length };
  }

  /**
   * Where the remote head stands in the local log: the head's pairs must be the local messages just
   * before `published`, newest first. Anything else means the name holds another log.
   */
  private locate(headIdsNewestFirst: Uint8Array[]): { published: number; headPairs: number } {
    if (headIdsNewestFirst.length === 0) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(this.name)} has an empty head page; it was not written by a remotelog sender`);
    }
    const newest = this.log.seqOf(headIdsNewestFirst[0]);
    if (newest === undefined) {
      throw RemoteLogError.conflict(
        `name ${JSON.stringify(this.name)} holds message ${toHex(headIdsNewestFirst[0])}, which is not in the local log: another log publishes under this name`,
      );
    }
    const published = newest + 1;
    headIdsNewestFirst.forEach((id, i) => {
      if (this.log.seqOf(id) !== newest - i) {
        throw RemoteLogError.conflict(`name ${JSON.stringify(this.name)} diverges from the local log at seq ${newest - i}`);
      }
    });
    return { published, headPairs: headIdsNewestFirst.length };
  }
}
