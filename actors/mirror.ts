import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { equalBytes, toHex } from "../core/hash.js";
import { collectedPages } from "../core/chain.js";
import { FETCH_BYTES, LogReader } from "../core/log-reader.js";
import type { LogReadRemote, LogRemote, PendingUpdate } from "../core/log-remote.js";
import { LostRace, retryLostRaces } from "./remote.js";

/** What a Mirror copies, from where to where. */
export interface MirrorOptions {
  name: string;
  /** Where the log is read from. */
  source: LogReadRemote;
  /** Where the copy goes: its CAS gets every page and message block, its NS the very same head and record. */
  target: Pick<LogRemote, "fetchName" | "putBlocks" | "updateName" | "nsUrl" | "casUrl">;
  /** Whether heads must carry a valid signed record; default: whether the name is a key name. */
  signed?: boolean;
  maxPages?: number;
  /** Messages fetched, checked and stored per step; default 4096. */
  batchSize?: number;
}

/** What one mirror sync copied. */
export interface MirrorResult {
  /** False when the source has no such name. */
  found: boolean;
  /** Whether the target's head changed. */
  updated: boolean;
  /** Pages and messages copied this time (blocks the target already held may be among them). */
  pages: number;
  messages: number;
  /** The head's record sequence, for a signed name. */
  sequence?: bigint;
}

/**
 * Keeps a verified copy of a name's remote log on a second CAS and NS. What the target already holds
 * is read from the target's own head, so the mirror keeps no state of its own and a crash anywhere
 * is repaired by running it again: pages and messages go in first, all checked as a receiver checks
 * them, and the head last, with the source's signed record unchanged, so that a receiver of either
 * copy verifies it with the same key. A source that serves an older head than the target holds is a
 * rollback and is refused.
 */
export class Mirror {
  readonly name: string;
  private readonly source: LogReader;
  private readonly target: MirrorOptions["target"];
  private readonly batchSize: number;

  constructor(options: MirrorOptions) {
    this.name = options.name;
    this.source = new LogReader(options.source, options.name, { signed: options.signed, maxPages: options.maxPages });
    this.target = options.target;
    this.batchSize = options.batchSize ?? 4096;
  }

  /**
   * `const result = await mirror.sync()`
   *
   * Copies the source's current head and whatever it needs; a lost race with another mirror is
   * retried. Throws PERMISSION_DENIED for a head whose record does not verify or is older than the
   * copy's (a rollback), DATA_LOSS for a page or message that does not match its hash, CONFLICT when
   * the source's log no longer holds the copy's newest message (it was replaced), ABORTED after losing
   * five races in a row, UNAVAILABLE when either side cannot be reached. Idempotent: a second sync with
   * nothing new changes nothing (`updated: false`), and one after a crash finishes the copy.
   */
  async sync(): Promise<MirrorResult> {
    return retryLostRaces(5, `mirror of ${JSON.stringify(this.name)}`, () => this.syncOnce());
  }

  private async syncOnce(): Promise<MirrorResult> {
    const source = await this.source.remote.fetchName(this.name);
    if (!source) return { found: false, updated: false, pages: 0, messages: 0 };
    const mirrored = await this.target.fetchName(this.name);
    if (mirrored && equalBytes(mirrored.content, source.content) && equalBytes(mirrored.record, source.record)) {
      return { found: true, updated: false, pages: 0, messages: 0 };
    }
    // The copy's own head is the rollback floor for the source's. Its record may have expired while
    // the sender was quiet (the source's new one is checked in full): an expired floor still bounds.
    const copy = mirrored
      ? await this.source.check(mirrored, { where: `head of name ${JSON.stringify(this.name)} on the mirror NS ${this.target.nsUrl}`, acceptExpired: true })
      : undefined;
    const { page: head, sequence } = await this.source.check(source, { floor: copy?.sequence });
    // A server taking signed writers only stores the blocks because they go ahead of this signed update.
    const pending = this.source.signed ? { name: this.name, content: source.content, record: source.record } : undefined;
    const copied = await this.copyChain(head, copy?.page, pending);
    try {
      await this.target.updateName(this.name, source.content, mirrored?.version ?? 0n, this.source.signed ? source.record : undefined);
    } catch (err) {
      // Another writer of the copy (a second mirror) moved it since it was read: start again from there.
      if (err instanceof RemoteLogError && err.code === ErrorCodes.ABORTED) {
        const now = await this.target.fetchName(this.name);
        if ((now?.version ?? 0n) !== (mirrored?.version ?? 0n)) throw new LostRace(err);
      }
      throw err;
    }
    return { found: true, updated: true, ...copied, sequence };
  }

  /**
   * Copies the pages and messages the target lacks: those after the newest pair of the target's head
   * (all of them for an empty target). Every page is checked against its address and every message
   * against its pair before anything is stored.
   */
  private async copyChain(head: RemoteLog, mirroredHead: RemoteLog | undefined, pending: PendingUpdate | undefined): Promise<{ pages: number; messages: number }> {
    const newest = mirroredHead?.pair[0];
    const pageBytes = new Map<string, Uint8Array>();
    const keep = (address: Uint8Array, bytes: Uint8Array) => void pageBytes.set(toHex(address), bytes);
    let pairs: RemoteLog_Pair[];
    // A redaction since the copy's head rewrote every page from its message's up, those below the copy's
    // head too: new addresses, which the new head links. Those pages carry the higher count, and are
    // copied as such; the walk ends at the first page the redaction left as it was, which the copy holds.
    const copiedRedactions = Number(mirroredHead?.info?.redactions ?? 0n);
    if (head.info && mirroredHead && Number(head.info.redactions) > copiedRedactions) {
      await this.source.walk(head, { takeWhile: (page) => page.info !== undefined && Number(page.info.redactions) > copiedRedactions }, keep);
    }
    if (head.info && (!mirroredHead || mirroredHead.info)) {
      const from = mirroredHead ? Number(mirroredHead.info!.firstSeqid) : 0;
      const collected = await this.source.collect(head, from, {}, keep);
      pairs = (await collectedPages(collected)).flatMap((page) => page.pair.slice().reverse()).filter((pair) => Number(pair.seqid) >= from);
      if (newest && !pairs.some((pair) => pair.seqid === newest.seqid && equalBytes(pair.localHash, newest.localHash))) throw this.replaced(newest);
    } else {
      const walk = await this.source.walk(head, { stopAtId: newest?.localHash }, keep);
      if (newest && !walk.reachedStop) throw this.replaced(newest);
      pairs = walk.pairs;
    }

    // The page that holds the copy's newest pair is read again, but its older pairs the copy has: neither copied nor counted.
    // Except a message the copy has only inside its old head (embedded there, core/page.ts DEFAULT_EMBED)
    // that the source's pages now reference instead: its block is copied, though not counted as new.
    let moved: RemoteLog_Pair[] = [];
    if (newest && head.info && mirroredHead?.info) {
      const embeddedInCopy = new Set(mirroredHead.pair.filter((pair) => pair.data.length > 0).map((pair) => toHex(pair.localHash)));
      moved = pairs.filter((pair) => Number(pair.seqid) <= Number(newest.seqid) && pair.data.length === 0 && !pair.redacted && embeddedInCopy.has(toHex(pair.localHash)));
      pairs = pairs.filter((pair) => Number(pair.seqid) > Number(newest.seqid));
    }
    if (moved.length > 0) await this.target.putBlocks((await this.source.readMessages(moved)).data, pending);
    let messages = 0;
    for (let i = 0; i < pairs.length; ) {
      // Embedded messages are checked too: the copy must hold nothing a receiver would refuse. At most
      // FETCH_BYTES of messages a round, whatever their sizes: 4,096 of 1 MiB were 4 GiB held at once.
      const read = await this.source.readMessages(pairs.slice(i, i + this.batchSize), undefined, null, FETCH_BYTES);
      i += read.taken;
      await this.target.putBlocks(read.data.filter((_, j) => read.pairs[j].data.length === 0), pending);
      messages += read.pairs.length;
    }
    // Pages after their messages and before the head, so that nothing the target's name reaches is missing.
    // The pages the copy's head links to were stored before that head was, so they are not copied again,
    // nor reported as copied. The copy's head page itself is NOT among them: a head lives in the NS, and
    // becomes a block of the CAS only when a newer head is published, which is this copy now.
    const held = new Set<string>();
    if (mirroredHead) {
      if (mirroredHead.tail.length > 0) held.add(toHex(mirroredHead.tail));
      for (const skip of mirroredHead.info?.skips ?? []) held.add(toHex(skip.address));
    }
    const pages = [...pageBytes.entries()].filter(([key]) => !held.has(key)).map(([, bytes]) => bytes);
    await this.target.putBlocks(pages, pending);
    return { pages: pages.length, messages };
  }

  private replaced(newest: RemoteLog_Pair): RemoteLogError {
    return RemoteLogError.conflict(
      `name ${JSON.stringify(this.name)} at ${this.source.remote.nsUrl} no longer holds message ${toHex(newest.localHash)}, the newest the mirror at ${this.target.nsUrl} has: the log was replaced`,
    );
  }
}
