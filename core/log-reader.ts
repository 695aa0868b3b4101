import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { chainPages, collectPages, walkChain, DEFAULT_MAX_PAGES, type ChainPage, type CollectOptions, type CollectResult, type WalkOptions, type WalkResult } from "./chain.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "./errors.js";
import { DistinctAddresses } from "./distinct-addresses.js";
import { addressOf, addressText, decodeMessage, equalBytes, toHex } from "./hash.js";
import { blocksWithin, type LogReadRemote, type NameHead, type PagesWithLinked } from "./log-remote.js";
import { verifySignedHead } from "./name-checks.js";
import { isKeyName, type VerifiedRecord } from "./names.js";
import { checkBlock, decodePage, messageOfPair, pairDataChecksOut, verifyPairData, type CheckedBlock } from "./page.js";
import { nextTurn } from "./turn.js";

/*
 * The one path by which every verb reads a remote log (design/remote-log.md §9): open the head (fetch
 * the name, verify its signed record against a rollback floor, decode), walk or collect the pages
 * (every page checked by its hash, the count bounded), fetch and check the messages (H2 against the
 * bytes, H1 against the decoded message). receive, mirror, redact, backup, verify, export and inspect
 * all read through a LogReader; none fetches a page or a message any other way.
 */

export interface LogReaderOptions {
  /** Whether the name's heads must carry a valid signed record; default: whether the name is a key name. */
  signed?: boolean;
  /** Pages at most, head included; a longer chain is DATA_LOSS. Default 10,000,000. */
  maxPages?: number;
}

/**
 * Checks many messages at once off the caller's thread (actors/verify-pool.ts VerifyPool): a verdict
 * of 0 means the message checked out; anything else is checked again here, which names the fault.
 */
export interface PairVerifier {
  verify(pairs: RemoteLog_Pair[], data: Uint8Array[]): Promise<Uint8Array>;
  /** Readies the threads, where they start when first used: many checks are coming. */
  start?(): void;
}

/**
 * Makes the addresses of many blocks at once off the caller's thread (actors/verify-pool.ts
 * VerifyPool): addressOf of each, 36 bytes each, back to back; undefined when it cannot (the caller
 * makes them itself).
 */
export interface BlockAddresser {
  addresses(blocks: Uint8Array[]): Promise<Uint8Array | undefined>;
}

/** Fewer messages than this are checked on the caller's thread: handing them over would cost more. */
export const VERIFIER_MIN_MESSAGES = 256;

/**
 * Messages checked on the caller's thread between two turns of its event loop: about 2 ms of hashing.
 * A catch-up's page rounds waited behind the check of each 4,096 messages fetched meanwhile (25-38 ms
 * a round, though their answers had come): a fresh 10k catch-up took 229 ms (median) against 187 ms
 * checked in slices (bench/README.md, session 18).
 */
export const CHECK_SLICE = 512;

/**
 * Messages a read (a receiver's sync, a backup by name) must check for a verifier whose threads start
 * when first used (actors/verify-pool.ts sharedVerifier) to be used; a shorter read checks them on its
 * own thread. A thread costs its process ~55 ms of CPU to start, and checks cold for a while; each
 * message it checks then saves the caller ~2.5 µs, less the copy. On this 2-core machine, with a
 * thread: a fresh 10k catch-up 244-312 ms against 141-197 without; a 100k `receive` at 20 ms 1,500 ms
 * against 1,369 (medians of 8); a 1M `receive` 9.1 s against 9.2-9.6 (bench/README.md, session 10).
 */
export const THREADS_FROM_MESSAGES = 262_144;

/** What checks a read of `messages` messages (undefined: not known): verifier for a long one, this thread (null) for a short one or without a verifier. */
export function verifierForRead(verifier: PairVerifier | undefined, messages: number | undefined): PairVerifier | null {
  return verifier && (messages === undefined || messages >= THREADS_FROM_MESSAGES) ? verifier : null;
}

export interface OpenHeadOptions {
  /**
   * The rollback floor: the highest record sequence accepted before for this name. A signed head whose
   * record is older is CONFLICT, as is one older than the version the NS itself gives the name.
   */
  floor?: bigint;
  /** A head already in hand (pushed by the NS), checked instead of fetching one. */
  entry?: NameHead;
  /** How the head is named in errors; default `head of name "…" from NS <url>`. */
  where?: string;
  /**
   * Take an expired record (its signature and sequence still checked): for the name's own writer, who
   * publishes again to renew it, and for a mirror's own copy, whose sequence is only a floor for the
   * source's head. Readers never do.
   */
  acceptExpired?: boolean;
}

/** A head that passed every check. */
export interface OpenHead {
  entry: NameHead;
  page: RemoteLog;
  /** The head page's address (the CID its record names). */
  address: Uint8Array;
  /** The verified record's sequence, for a signed name. */
  sequence?: bigint;
  /** What the verified record says (sequence, validity, TTL, value), for a signed name. */
  record?: VerifiedRecord;
  where: string;
}

/** A checked message, a tombstone, or why it failed (for a caller that names the fault itself). */
export type CheckedMessage = Message | typeof TOMBSTONE | RemoteLogError;

export const TOMBSTONE = Symbol("tombstone");

/** What LogReader.messageDataWithin gives for a message it did not fetch: the byte budget was spent on those before it. */
export const NOT_FETCHED = Symbol("not fetched");

/**
 * Message bytes one fetch of a reader that copies or delivers them holds, at most (and the one message
 * that crosses it): LogReader.messageDataUpTo's budget for the receiver and the mirror. A writer picks
 * its messages' sizes, and fetches counted in messages alone held what they added up to: 4,096
 * messages of 1 MiB a call. Messages of up to 2 KiB never meet it.
 */
export const FETCH_BYTES = 8 << 20;

/**
 * Linked pages a collection keeps waiting, in bytes: as much as one answer of a server at its default
 * max_response_bytes carries, which holds the pages of ~100k messages.
 */
const LINKED_PAGES_BYTES = 8 << 20;

export class LogReader {
  readonly name: string;
  readonly signed: boolean;
  readonly maxPages: number;

  constructor(
    readonly remote: LogReadRemote,
    name: string,
    options: LogReaderOptions = {},
  ) {
    this.name = name;
    this.signed = options.signed ?? isKeyName(name);
    this.maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  }

  /** How errors name the head this reader fetches. */
  get where(): string {
    return `head of name ${JSON.stringify(this.name)} from NS ${this.remote.nsUrl}`;
  }

  /**
   * Fetches the name (or takes options.entry) and checks it: for a signed name, its record verifies for
   * the name, binds this very page and is not older than options.floor (verifySignedHead); then the
   * page decodes and is well formed. undefined when the name has never been updated. Throws
   * PERMISSION_DENIED, INVALID_ARGUMENT, TOO_LARGE (the record), CONFLICT (expired, a rollback),
   * DATA_LOSS (the page), each naming the head.
   */
  async open(options: OpenHeadOptions = {}): Promise<OpenHead | undefined> {
    const entry = options.entry ?? (await this.remote.fetchName(this.name));
    if (!entry) return undefined;
    return this.check(entry, options);
  }

  /** open(), NOT_FOUND naming the name and the NS when it has no log. */
  async require(options: OpenHeadOptions = {}): Promise<OpenHead> {
    const head = await this.open(options);
    if (!head) throw new RemoteLogError(ErrorCodes.NOT_FOUND, `name ${JSON.stringify(this.name)} has no log at ${this.remote.nsUrl}`, { details: { name: this.name } });
    return head;
  }

  /** The checks of open() on an entry from anywhere (a mirror's own copy, say). */
  async check(entry: NameHead, options: Omit<OpenHeadOptions, "entry"> = {}): Promise<OpenHead> {
    const where = options.where ?? this.where;
    const record = await this.checkRecord(entry, options);
    const page = this.headPage(entry, options.where);
    return { entry, page, address: addressOf(entry.content), sequence: record?.sequence, record, where };
  }

  /**
   * The page half of check(), alone: the head's page decoded (DATA_LOSS when it is not one), its record
   * not looked at. For a head this process made or checked itself (a sender's last publish) only.
   */
  headPage(entry: NameHead, where?: string): RemoteLog {
    return decodePage(entry.content, where ?? `head of name ${JSON.stringify(this.name)}`, ErrorCodes.DATA_LOSS);
  }

  /**
   * The record half of check(), alone: for a signed name, what its verified record says (undefined for an
   * unsigned reader). Throws as check() does for the record: PERMISSION_DENIED, DATA_LOSS (a malformed
   * record, or one for other content), TOO_LARGE, CONFLICT. The page itself is not decoded here.
   */
  async checkRecord(entry: NameHead, options: Omit<OpenHeadOptions, "entry"> = {}): Promise<VerifiedRecord | undefined> {
    if (!this.signed) return undefined;
    return verifySignedHead(this.name, entry.content, entry.record, options.floor, options.where ?? this.where, entry.version, options.acceptExpired ? { now: new Date(0) } : {});
  }

  /**
   * The checked bytes of the message at address if the head page embeds it, else undefined. A sender
   * embeds its newest messages in the head (core/page.ts DEFAULT_EMBED), and until they leave it they are
   * in no CAS: this is where a reader looking one up by its address finds them. DATA_LOSS naming the
   * head when the embedded bytes do not check out.
   */
  embeddedMessage(head: OpenHead, address: Uint8Array): Uint8Array | undefined {
    const pair = head.page.pair.find((candidate) => candidate.data.length > 0 && !candidate.redacted && equalBytes(candidate.remoteHash, address));
    if (!pair) return undefined;
    verifyPairData(pair, pair.data, head.where);
    return pair.data;
  }

  /** The chain's pages from the head, one at a time, each checked (core/chain.ts chainPages), at most maxPages. */
  pages(head: RemoteLog): AsyncGenerator<ChainPage> {
    return chainPages(head, (address) => this.remote.getBlock(address), this.maxPages);
  }

  /**
   * Walks back from the head (walkChain), at most maxPages. keep, when given, is told every page's
   * bytes as fetched; the walk checks them before it goes on.
   */
  walk(head: RemoteLog, options: Omit<WalkOptions, "maxPages"> = {}, keep?: (address: Uint8Array, bytes: Uint8Array) => void): Promise<WalkResult> {
    return walkChain(
      head,
      async (address) => {
        const bytes = await this.remote.getBlock(address);
        keep?.(address, bytes);
        return bytes;
      },
      { ...options, maxPages: this.maxPages },
    );
  }

  /** Collects an indexed chain's pages from fromSeqid on (collectPages), at most maxPages; keep as for walk. */
  async collect(head: RemoteLog, fromSeqid: number, options: Omit<CollectOptions, "maxPages"> = {}, keep?: (address: Uint8Array, bytes: Uint8Array) => void): Promise<CollectResult> {
    const linked = this.linkedPagesFetcher(fromSeqid);
    const fetchPages = async (addresses: Uint8Array[]) => {
      const blocks = await (linked ? linked.fetch(addresses) : this.remote.getBlocks(addresses));
      if (keep) blocks.forEach((bytes, i) => keep(addresses[i], bytes));
      return blocks;
    };
    try {
      return await collectPages(head, fromSeqid, fetchPages, { ...options, maxPages: this.maxPages });
    } finally {
      // take() reads again pages the collection did not hold, a window at a time: none of them links to
      // anything it lacks.
      linked?.stop();
    }
  }

  /**
   * A collection's page fetches with the pages they link to sent along, where the remote can
   * (getPagesWithLinked): those wait here, at most LINKED_PAGES_BYTES of them, until the collection
   * asks for them, so that it learns a chain's links in a round trip or a few rather than one for every
   * halving of the gaps. One call at a time asks for them, and only when none wait: a server sends
   * every needed page the asked ones reach, and two calls reach the same. What comes from here is
   * checked by the collection as any page is.
   */
  private linkedPagesFetcher(fromSeqid: number): { fetch(addresses: Uint8Array[]): Promise<Uint8Array[]>; stop(): void } | undefined {
    const remote = this.remote;
    if (!remote.getPagesWithLinked) return undefined;
    const waiting = new Map<string, Uint8Array>();
    let waitingBytes = 0;
    let asking = false;
    let stopped = false;
    return {
      stop: () => {
        stopped = true;
        waiting.clear();
      },
      fetch: async (addresses) => {
        const blocks: Uint8Array[] = new Array(addresses.length);
        const asked: number[] = [];
        addresses.forEach((address, i) => {
          const key = toHex(address);
          const bytes = waiting.get(key);
          if (bytes === undefined) return void asked.push(i);
          blocks[i] = bytes;
          waiting.delete(key);
          waitingBytes -= bytes.length;
        });
        if (asked.length === 0) return blocks;
        const askedFor = asked.map((i) => addresses[i]);
        let answer: PagesWithLinked;
        if (stopped || asking || waiting.size > 0) {
          answer = { blocks: await remote.getBlocks(askedFor), linked: [] };
        } else {
          asking = true;
          try {
            answer = await remote.getPagesWithLinked!(askedFor, fromSeqid, LINKED_PAGES_BYTES - waitingBytes);
          } finally {
            asking = false;
          }
        }
        asked.forEach((i, k) => (blocks[i] = answer.blocks[k]));
        for (const { address, bytes } of answer.linked) {
          const key = toHex(address);
          if (stopped || waiting.has(key) || waitingBytes + bytes.length > LINKED_PAGES_BYTES) continue;
          waiting.set(key, bytes);
          waitingBytes += bytes.length;
        }
        return blocks;
      },
    };
  }

  /**
   * The data of each pair: embedded where the page carries it, else one batched fetch for the rest; empty
   * for a tombstone. A NOT_FOUND or DATA_LOSS for the fetch is narrowed to the first block at fault
   * (blocksNarrowingFaults), which comes back as an UnreadBlock: its check fails with that fault,
   * naming the block, so a caller that stops at the first fault (a receiver, a mirror, a backup) has
   * the messages before it and can name its seq. The fetches after that block's are not made, and their
   * blocks are UnreadBlocks too. Other failures (UNAVAILABLE) are thrown.
   */
  async messageData(pairs: RemoteLog_Pair[]): Promise<Uint8Array[]> {
    return (await this.dataStoppingAtFault(pairs, Infinity)) as Uint8Array[];
  }

  /**
   * messageData, fetching messages in pair order only until maxBytes of them have come (the one that
   * crosses it included), where the remote can bound an answer's bytes (getBlocksWithin): NOT_FETCHED
   * for each after it, which the caller asks for again when it gets to them. A writer picks its
   * messages' sizes, so a fetch counted in messages alone held what they add up to: 4,096 messages of
   * 1 MiB are 4 GiB. Messages a page carries came with the page and are not counted.
   */
  messageDataUpTo(pairs: RemoteLog_Pair[], maxBytes: number): Promise<(Uint8Array | typeof NOT_FETCHED)[]> {
    return this.dataStoppingAtFault(pairs, this.remote.getBlocksWithin ? maxBytes : Infinity);
  }

  private async dataStoppingAtFault(pairs: RemoteLog_Pair[], maxBytes: number): Promise<(Uint8Array | typeof NOT_FETCHED)[]> {
    const missing: number[] = [];
    pairs.forEach((pair, i) => {
      if (pair.data.length === 0 && !pair.redacted) missing.push(i);
    });
    const data: (Uint8Array | typeof NOT_FETCHED)[] = pairs.map((pair) => pair.data);
    if (missing.length === 0) return data;
    const { remote } = this;
    // Within a budget, a block the CAS lacks comes back undefined (GetMany's allow_missing), and is the
    // fault a NOT_FOUND for the call would have been narrowed to.
    const fetch =
      maxBytes === Infinity
        ? (asked: Uint8Array[]) => remote.getBlocks(asked)
        : async (asked: Uint8Array[], budget: number) =>
            (await remote.getBlocksWithin!(asked, budget)).map((block, i) => block ?? new UnreadBlock(RemoteLogError.notFound(`block ${addressText(asked[i])} is not stored`, { address: addressText(asked[i]) })));
    const blocks = await fetchEachOnce(
      missing.map((i) => pairs[i].remoteHash),
      (addresses) => blocksNarrowingFaults(addresses, fetch, (fault) => new UnreadBlock(fault), true, maxBytes),
      NOT_FETCHED,
    );
    // A fetch within a budget brings its first message whatever its size: a caller that reads on from
    // the first NOT_FETCHED would otherwise ask for the same messages for ever.
    if (blocks[0] === NOT_FETCHED) throw RemoteLogError.internal(`name ${JSON.stringify(this.name)}: a fetch of ${missing.length} messages within ${maxBytes} bytes brought none`);
    missing.forEach((pairIndex, i) => {
      data[pairIndex] = blocks[i];
    });
    return data;
  }

  /**
   * messageData for a caller that reports every fault rather than stopping at the first (verify, the
   * explorer): undefined for a message the CAS does not hold, and empty bytes for one the CAS reports
   * damaged, which then fails its check. Other failures (UNAVAILABLE) are thrown.
   */
  async messageDataAllowingMissing(pairs: RemoteLog_Pair[]): Promise<(Uint8Array | undefined)[]> {
    return (await this.dataAllowingMissing(pairs, Infinity)) as (Uint8Array | undefined)[];
  }

  /**
   * messageDataAllowingMissing, fetching messages in pair order only until maxBytes of them have come
   * (the one that crosses it included; LogReadRemote.getBlocksWithin): NOT_FETCHED for each after it.
   * Messages a page carries came with the page and are neither counted nor ever NOT_FETCHED. For a
   * reader that shows messages of any size from anyone (the explorer), whose memory is what it fetches.
   */
  messageDataWithin(pairs: RemoteLog_Pair[], maxBytes: number): Promise<(Uint8Array | undefined | typeof NOT_FETCHED)[]> {
    return this.dataAllowingMissing(pairs, maxBytes);
  }

  private async dataAllowingMissing(pairs: RemoteLog_Pair[], maxBytes: number): Promise<(Uint8Array | undefined | typeof NOT_FETCHED)[]> {
    const missing: number[] = [];
    pairs.forEach((pair, i) => {
      if (pair.data.length === 0 && !pair.redacted) missing.push(i);
    });
    const data: (Uint8Array | undefined | typeof NOT_FETCHED)[] = pairs.map((pair) => pair.data);
    if (missing.length === 0) return data;
    const { remote } = this;
    const fetch =
      maxBytes === Infinity ? (remote.getBlocksAllowingMissing?.bind(remote) ?? ((addresses: Uint8Array[]) => remote.getBlocks(addresses))) : blocksWithin(remote);
    const fetched = await fetchEachOnce(
      missing.map((i) => pairs[i].remoteHash),
      (addresses) => blocksNarrowingFaults(addresses, fetch, (fault) => (fault.code === ErrorCodes.NOT_FOUND ? undefined : new Uint8Array(0)), false, maxBytes),
      NOT_FETCHED,
    );
    missing.forEach((pairIndex, i) => {
      data[pairIndex] = fetched[i];
    });
    return data;
  }

  /**
   * Checks each pair's data (H2, then H1), on the verifier's threads when one is given and there are
   * enough messages to be worth it, else on this thread. A failure comes back in its slot, unnamed, for
   * the caller to name by seq.
   */
  async checkMessages(pairs: RemoteLog_Pair[], data: Uint8Array[], verifier: PairVerifier | null = null): Promise<CheckedMessage[]> {
    const checked = await this.checkMessagesLater(pairs, data, verifier);
    return pairs.map((_, i) => checked(i));
  }

  /**
   * checkMessages, each message made only when asked for: all are checked now (on the threads of
   * verifier when given, else on this one), and what passed is decoded when the caller takes it. A
   * receiver takes each as it delivers it, so that a message object lives for its delivery rather than
   * from its fetch, and dies young (held from the fetch, they outlived the young generation, and
   * collecting them was the largest part of a catch-up's main thread: bench/README.md, session 7).
   */
  async checkMessagesLater(pairs: RemoteLog_Pair[], data: Uint8Array[], verifier: PairVerifier | null = null): Promise<(index: number) => CheckedMessage> {
    const faultOf = await this.faultsLater(pairs, data, verifier);
    return (i) => faultOf(i) ?? decodeMessage(data[i]);
  }

  /**
   * checkMessagesLater without the messages: undefined for each pair whose data checks out, else what
   * checkMessage gives for it (its fault, or TOMBSTONE). For a reader that keeps the bytes only (a
   * backup): each message decoded to be thrown away was a young object for the collector.
   */
  private async faultsLater(pairs: RemoteLog_Pair[], data: Uint8Array[], verifier: PairVerifier | null): Promise<(index: number) => RemoteLogError | typeof TOMBSTONE | undefined> {
    const unlessMessage = (checked: CheckedMessage) => (checked instanceof RemoteLogError || checked === TOMBSTONE ? checked : undefined);
    const repeated = repeatedBlocks(pairs, data);
    if (repeated) {
      // Each repeated block was checked once; the other pairs are checked as ever.
      const others: number[] = [];
      for (let i = 0; i < pairs.length; i++) if (!repeated.has(i)) others.push(i);
      const faultOfOther = await this.faultsLater(others.map((i) => pairs[i]), others.map((i) => data[i]), verifier);
      const otherAt = new Int32Array(pairs.length);
      others.forEach((i, at) => (otherAt[i] = at));
      return (i) => {
        const block = repeated.get(i);
        if (!block) return faultOfOther(otherAt[i]);
        // A pair whose address is not the block's (never one fetched by it) is checked whole.
        if (!equalBytes(block.address, pairs[i].remoteHash)) return unlessMessage(checkMessage(pairs[i], data[i]));
        try {
          messageOfPair(pairs[i], block);
          return undefined;
        } catch (err) {
          return err instanceof RemoteLogError ? err : RemoteLogError.dataLoss(String(err));
        }
      };
    }
    // Checked now, here or on the verifier's threads, with no message object made: one made now lived
    // until its delivery, and died old.
    const verdicts = verifier && pairs.length >= VERIFIER_MIN_MESSAGES ? await verifier.verify(pairs, data) : await messageVerdictsInTurns(pairs, data);
    // Anything that did not pass is checked again, for its error.
    return (i) => (verdicts[i] === 0 && !pairs[i].redacted ? undefined : unlessMessage(checkMessage(pairs[i], data[i])));
  }

  /**
   * The checked bytes of each pair that is not a tombstone (tombstones are left out), fetched where
   * the page does not embed them. The first that fails is DATA_LOSS naming the name and the message's
   * seq: firstSeq + its index in pairs when given, else its seqid. Checked as checkMessages checks
   * them: on verifier's threads when given. With maxBytes, only the messages that come within it
   * (messageDataUpTo): taken says how many of pairs were read, tombstones among them, for the caller to
   * read on from.
   */
  async readMessages(pairs: RemoteLog_Pair[], firstSeq?: number, verifier: PairVerifier | null = null, maxBytes = Infinity): Promise<{ pairs: RemoteLog_Pair[]; data: Uint8Array[]; taken: number }> {
    const seqs: number[] = [];
    const at: number[] = [];
    const live = pairs.filter((pair, i) => {
      if (pair.redacted) return false;
      seqs.push(firstSeq !== undefined ? firstSeq + i : Number(pair.seqid));
      at.push(i);
      return true;
    });
    const fetched = maxBytes === Infinity ? await this.messageData(live) : await this.messageDataUpTo(live, maxBytes);
    const cut = fetched.indexOf(NOT_FETCHED);
    const read = cut === -1 ? live : live.slice(0, cut);
    const data = (cut === -1 ? fetched : fetched.slice(0, cut)) as Uint8Array[];
    const faultOf = await this.faultsLater(read, data, verifier);
    for (let i = 0; i < read.length; i++) {
      const fault = faultOf(i);
      if (fault instanceof RemoteLogError) throw this.messageFault(fault, seqs[i]);
    }
    return { pairs: read, data, taken: cut === -1 ? pairs.length : at[cut] };
  }

  /** A message's failed check, naming the name and the message's seq. */
  messageFault(err: RemoteLogError, seq: number): RemoteLogError {
    return new RemoteLogError(err.code, `name ${JSON.stringify(this.name)} seq ${seq}: ${err.text}`, { cause: err, details: { ...err.details, name: this.name, seq } });
  }
}

/**
 * fetch's answer for addresses, each distinct address asked for once and its answer given to every
 * place that names it: a page may name one block in every pair, and each copy was fetched and held
 * whole (300 pairs naming one 1 MiB block were 300 MiB; a 1 MiB page holds 14,000 pairs).
 */
async function fetchEachOnce<T, U = never>(addresses: Uint8Array[], fetch: (addresses: Uint8Array[]) => Promise<T[]>, beyond?: U): Promise<(T | U)[]> {
  const distinct = new DistinctAddresses();
  const slots = new Int32Array(addresses.length);
  for (let i = 0; i < addresses.length; i++) slots[i] = distinct.slotOf(addresses[i]);
  const answers = await fetch(distinct.unique.length === addresses.length ? addresses : distinct.unique);
  if (answers.length === addresses.length) return answers;
  // A fetch within a budget answers the first (distinct) addresses only: the rest are beyond it.
  return Array.from(slots, (slot) => (slot < answers.length ? answers[slot] : (beyond as U)));
}

/**
 * The bytes LogReader.messageData gives for a block the CAS did not: none, and the fault that says why
 * (NOT_FOUND: not stored; DATA_LOSS: stored damaged), naming the block (details.address). Being empty,
 * it fails every check, on any thread; checkMessage then gives its fault rather than a hash mismatch.
 */
export class UnreadBlock extends Uint8Array {
  // slice(), map() and the like make plain bytes, not another UnreadBlock.
  static get [Symbol.species]() {
    return Uint8Array;
  }

  constructor(readonly fault: RemoteLogError) {
    super(0);
  }
}

/**
 * fetch(addresses), where a NOT_FOUND or DATA_LOSS for the whole call is narrowed down by halves to the
 * blocks it was about, each given as faultOf(its fault, naming the block). Asked again one by one, a
 * page of 14,000 pairs naming absent blocks was 14,001 calls; halving costs at most 2 calls per fault
 * for each halving, and nothing when the call succeeds. firstOnly, for a caller that stops at the first
 * fault, narrows to the first block at fault only (one or two calls a halving): the blocks after it are
 * not asked for, and each is faultOf(a fault of the same code saying so). Other failures are thrown.
 */
async function blocksNarrowingFaults<B, F>(
  addresses: Uint8Array[],
  fetch: (addresses: Uint8Array[], maxBytes: number) => Promise<B[]>,
  faultOf: (fault: RemoteLogError) => F,
  firstOnly = false,
  maxBytes = Infinity,
): Promise<(B | F)[]> {
  let first: { fault: RemoteLogError; address: string } | undefined;
  const narrow = async (addresses: Uint8Array[], budget: number): Promise<(B | F)[]> => {
    if (first && firstOnly) {
      const { fault, address } = first;
      return addresses.map((skipped) => faultOf(new RemoteLogError(fault.code, `block ${addressText(skipped)} was not asked for: block ${address} before it could not be read`, { details: { address: addressText(skipped) } })));
    }
    try {
      return await fetch(addresses, budget);
    } catch (err) {
      const notFound = isRemoteLogError(err, ErrorCodes.NOT_FOUND);
      if (!notFound && !isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw err;
      if (addresses.length === 1) {
        const fault = blockFault(err, addresses[0]);
        first ??= { fault, address: fault.details.address! };
        return [faultOf(fault)];
      }
    }
    // One half after the other: at most one call in flight, however many blocks are at fault.
    const half = addresses.length >> 1;
    const before = await narrow(addresses.slice(0, half), budget);
    // Within a budget (fetch answering a prefix), what the first half spent is not left for the second.
    const left = budget - before.reduce((sum, block) => sum + (block instanceof Uint8Array ? block.length : 0), 0);
    if (before.length < half || left <= 0) return before;
    const after = await narrow(addresses.slice(half), left);
    return before.concat(after);
  };
  return narrow(addresses, maxBytes);
}

/** A fetch's fault, narrowed to one block: the same code and text, naming the block (details.address, and the text if it did not). */
function blockFault(err: RemoteLogError, address: Uint8Array): RemoteLogError {
  const text = addressText(address);
  return new RemoteLogError(err.code, err.text.includes(text) ? err.text : `block ${text}: ${err.text}`, { cause: err, details: { ...err.details, address: text } });
}

/** Blocks smaller than this are checked for each pair that names them: hashing one costs less than looking it up. */
const REPEAT_MIN_BYTES = 4096;

/**
 * Each pair (by index) whose data is a block that other pairs of this batch name too, with that block
 * checked once (checkBlock) for all of them; undefined when there is none, as in an honest log. A page
 * may name one block in every pair, each with an id of its choosing, and fetchEachOnce gives each pair
 * the one fetched copy: checked pair by pair, 3,000 pairs naming a 1 MiB block were 3 GiB hashed, and
 * hashed again for each pair's fault. Only blocks of REPEAT_MIN_BYTES or more are looked up.
 */
function repeatedBlocks(pairs: readonly RemoteLog_Pair[], data: readonly Uint8Array[]): Map<number, CheckedBlock> | undefined {
  let firstNaming: Map<Uint8Array, number> | undefined;
  let checked: Map<Uint8Array, CheckedBlock> | undefined;
  let repeated: Map<number, CheckedBlock> | undefined;
  for (let i = 0; i < pairs.length; i++) {
    const bytes = data[i];
    if (bytes.length < REPEAT_MIN_BYTES || pairs[i].redacted) continue;
    firstNaming ??= new Map();
    const first = firstNaming.get(bytes);
    if (first === undefined) {
      firstNaming.set(bytes, i);
      continue;
    }
    checked ??= new Map();
    repeated ??= new Map();
    let block = checked.get(bytes);
    if (!block) {
      block = checkBlock(bytes, pairs[first].remoteHash);
      checked.set(bytes, block);
      repeated.set(first, block);
    }
    repeated.set(i, block);
  }
  return repeated;
}

/**
 * PairVerifier.verify's verdicts, made on the caller's thread: 0 for each message whose data checks out
 * against its pair (pairDataChecksOut), 1 for any other, a tombstone included.
 */
export function messageVerdicts(pairs: readonly VerdictPair[], data: readonly Uint8Array[]): Uint8Array {
  const verdicts = new Uint8Array(pairs.length);
  judge(pairs, data, verdicts, 0, pairs.length);
  return verdicts;
}

/** messageVerdicts, CHECK_SLICE messages a turn of the event loop, so that what arrives meanwhile is not held up. */
export async function messageVerdictsInTurns(pairs: readonly VerdictPair[], data: readonly Uint8Array[]): Promise<Uint8Array> {
  const verdicts = new Uint8Array(pairs.length);
  for (let from = 0; from < pairs.length; from += CHECK_SLICE) {
    if (from > 0) await nextTurn();
    judge(pairs, data, verdicts, from, Math.min(pairs.length, from + CHECK_SLICE));
  }
  return verdicts;
}

type VerdictPair = Pick<RemoteLog_Pair, "remoteHash" | "localHash" | "redacted">;

/** The verdicts of messages from up to (not including) to. */
function judge(pairs: readonly VerdictPair[], data: readonly Uint8Array[], verdicts: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const { remoteHash, localHash, redacted } = pairs[i];
    if (redacted || !pairDataChecksOut(data[i], remoteHash, 0, localHash, 0)) verdicts[i] = 1;
  }
}

/** One pair's data checked (H2, H1), or why not, unnamed. */
export function checkMessage(pair: RemoteLog_Pair, data: Uint8Array): CheckedMessage {
  if (pair.redacted) return TOMBSTONE;
  if (data instanceof UnreadBlock) return data.fault;
  try {
    return verifyPairData(pair, data);
  } catch (err) {
    return err instanceof RemoteLogError ? err : RemoteLogError.dataLoss(String(err));
  }
}
