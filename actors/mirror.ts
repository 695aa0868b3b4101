import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { collectPages, walkChain, DEFAULT_MAX_PAGES } from "../core/chain.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { addressOf, equalBytes, toHex } from "../core/hash.js";
import { isKeyName } from "../core/names.js";
import { decodePage, verifyPairData } from "../core/page.js";
import { verifySignedHead } from "./receiver.js";
import { LostRace, retryLostRaces, type NameHead, type Remote } from "./remote.js";

export interface MirrorOptions {
  name: string;
  /** Where the log is read from. */
  source: Pick<Remote, "fetchName" | "getBlock" | "getBlocks" | "nsUrl" | "casUrl">;
  /** Where the copy goes: its CAS gets every page and message block, its NS the very same head and record. */
  target: Pick<Remote, "fetchName" | "putBlocks" | "updateName" | "nsUrl" | "casUrl">;
  /** Whether heads must carry a valid signed record; default: whether the name is a key name. */
  signed?: boolean;
  maxPages?: number;
  /** Messages fetched, checked and stored per step; default 4096. */
  batchSize?: number;
}

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
  private readonly source: MirrorOptions["source"];
  private readonly target: MirrorOptions["target"];
  private readonly signed: boolean;
  private readonly maxPages: number;
  private readonly batchSize: number;

  constructor(options: MirrorOptions) {
    this.name = options.name;
    this.source = options.source;
    this.target = options.target;
    this.signed = options.signed ?? isKeyName(options.name);
    this.maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
    this.batchSize = options.batchSize ?? 4096;
  }

  /** Copies the source's current head and whatever it needs; a lost race with another mirror is retried. */
  async sync(): Promise<MirrorResult> {
    return retryLostRaces(5, () => this.syncOnce());
  }

  private async syncOnce(): Promise<MirrorResult> {
    const source = await this.source.fetchName(this.name);
    if (!source) return { found: false, updated: false, pages: 0, messages: 0 };
    const mirrored = await this.target.fetchName(this.name);
    if (mirrored && equalBytes(mirrored.content, source.content) && equalBytes(mirrored.record, source.record)) {
      return { found: true, updated: false, pages: 0, messages: 0 };
    }
    const where = `head of name ${JSON.stringify(this.name)} from NS ${this.source.nsUrl}`;
    let sequence: bigint | undefined;
    if (this.signed) {
      const targetSequence = mirrored ? await verifySignedHead(this.name, mirrored.content, mirrored.record, undefined, `head of name ${JSON.stringify(this.name)} on the mirror NS ${this.target.nsUrl}`) : undefined;
      sequence = await verifySignedHead(this.name, source.content, source.record, targetSequence, where);
    }
    const head = decodePage(source.content, where, ErrorCodes.DATA_LOSS);
    const copied = await this.copyChain(head, mirrored);
    try {
      await this.target.updateName(this.name, source.content, mirrored?.version ?? 0n, this.signed ? source.record : undefined);
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
  private async copyChain(head: RemoteLog, mirrored: NameHead | undefined): Promise<{ pages: number; messages: number }> {
    const mirroredHead = mirrored ? decodePage(mirrored.content, `head of name ${JSON.stringify(this.name)} on the mirror NS ${this.target.nsUrl}`, ErrorCodes.DATA_LOSS) : undefined;
    const newest = mirroredHead?.pair[0];
    const pageBytes = new Map<string, Uint8Array>();
    const keep = (address: Uint8Array, bytes: Uint8Array) => {
      pageBytes.set(toHex(address), bytes);
      return bytes;
    };
    let pairs: RemoteLog_Pair[];
    if (head.info && (!mirroredHead || mirroredHead.info)) {
      const from = mirroredHead ? Number(mirroredHead.info!.firstSeqid) : 0;
      const collected = await collectPages(
        head,
        from,
        async (addresses) => (await this.source.getBlocks(addresses)).map((bytes, i) => keep(addresses[i], bytes)),
        { maxPages: this.maxPages },
      );
      pairs = collected.pages.flatMap((page) => page.pair.slice().reverse()).filter((pair) => Number(pair.seqid) >= from);
      if (newest && !pairs.some((pair) => pair.seqid === newest.seqid && equalBytes(pair.localHash, newest.localHash))) throw this.replaced(newest);
    } else {
      const walk = await walkChain(head, async (address) => keep(address, await this.source.getBlock(address)), {
        stopAtId: newest?.localHash,
        maxPages: this.maxPages,
      });
      if (newest && !walk.reachedStop) throw this.replaced(newest);
      pairs = walk.pairs;
    }

    // The page that holds the copy's newest pair is read again, but its older pairs the copy has: neither copied nor counted.
    if (newest && head.info && mirroredHead?.info) pairs = pairs.filter((pair) => Number(pair.seqid) > Number(newest.seqid));
    let messages = 0;
    for (let i = 0; i < pairs.length; i += this.batchSize) {
      const batch = pairs.slice(i, i + this.batchSize).filter((pair) => !pair.redacted);
      const missing = batch.filter((pair) => pair.data.length === 0);
      const fetched = missing.length > 0 ? await this.source.getBlocks(missing.map((pair) => pair.remoteHash)) : [];
      const blocks: Uint8Array[] = [];
      missing.forEach((pair, j) => {
        verifyPairData(pair, fetched[j], `message ${toHex(pair.localHash)} from CAS ${this.source.casUrl}`);
        blocks.push(fetched[j]);
      });
      // Embedded messages are checked too: the copy must hold nothing a receiver would refuse.
      for (const pair of batch) if (pair.data.length > 0) verifyPairData(pair, pair.data, `message ${toHex(pair.localHash)} embedded in a page`);
      await this.target.putBlocks(blocks);
      messages += batch.length;
    }
    // Pages after their messages and before the head, so that nothing the target's name reaches is missing.
    // Those the copy's head already is, or links to, it holds: they are not copied, nor reported as copied.
    const held = new Set<string>();
    if (mirrored && mirroredHead) {
      held.add(toHex(addressOf(mirrored.content)));
      if (mirroredHead.tail.length > 0) held.add(toHex(mirroredHead.tail));
      for (const skip of mirroredHead.info?.skips ?? []) held.add(toHex(skip.address));
    }
    const pages = [...pageBytes.entries()].filter(([key]) => !held.has(key)).map(([, bytes]) => bytes);
    await this.target.putBlocks(pages);
    return { pages: pages.length, messages };
  }

  private replaced(newest: RemoteLog_Pair): RemoteLogError {
    return RemoteLogError.conflict(
      `name ${JSON.stringify(this.name)} at ${this.source.nsUrl} no longer holds message ${toHex(newest.localHash)}, the newest the mirror at ${this.target.nsUrl} has: the log was replaced`,
    );
  }
}
