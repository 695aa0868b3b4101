import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import type { CheckpointStore, Checkpoint } from "../core/checkpoint-store.js";
import { RemoteLogError } from "../core/errors.js";
import { checkWholeNumber } from "../core/options.js";
import { equalBytes, toHex } from "../core/hash.js";
import { FETCH_BYTES, LogReader, NOT_FETCHED, TOMBSTONE, verifierForRead, type CheckedMessage, type PairVerifier } from "../core/log-reader.js";
import type { LogReadRemote, NameHead } from "../core/log-remote.js";
import { sharedVerifier } from "#verify-pool";
import { nextTurn } from "../core/turn.js";

/** One message (or tombstone) delivered, with its seq in the log and its MVDS id (H1). */
export interface Delivery {
  seq: number;
  id: Uint8Array;
  /** H2; empty for a tombstone. */
  address: Uint8Array;
  /** The checked message; absent for a tombstone. */
  message?: Message;
  /**
   * A tombstone: the message with this seq and id was removed from the log (remotelog redact), and a
   * consumer that holds it must drop it. Comes in order like any delivery, or, for a message
   * delivered before it was redacted, with its old seq ahead of the new deliveries.
   */
  redacted?: true;
}

/** Takes a batch, oldest first. The checkpoint moves past the batch only once this resolves. */
export type Deliver = (batch: Delivery[]) => Promise<void>;

export interface ReceiverOptions {
  name: string;
  remote: LogReadRemote;
  checkpoints: CheckpointStore;
  /** Messages per delivered batch, and so per checkpoint; default 1024. Messages are fetched FETCH_BATCHES batches a call. */
  batchSize?: number;
  /**
   * How far fetches run ahead of delivery, in batches. Default: by the remote's round trip
   * (LogReadRemote.roundTripMs, aheadFor), 8 on a fast link and more as it slows, so that the window
   * holds a round trip's worth of messages without holding more memory than that needs.
   */
  concurrency?: number;
  /** Messages fetched during the walk, before delivery can start; default 16,384 (the pages held). */
  prefetchPairs?: number;
  /**
   * Pages of an indexed log held in memory at once, at most (default HOLD_PAGES); the others are read
   * again as delivery reaches them, so that a sync of any length runs in bounded memory.
   */
  holdPages?: number;
  maxPages?: number;
  /** Whether the name is signed and its head record must verify; default: whether the name is a key name. */
  signed?: boolean;
  /**
   * Threads that check messages, used for every sync; null: none. Default: the shared pool (none on two
   * cores or fewer, or in a browser), for a sync of THREADS_FROM_MESSAGES or more only.
   */
  verifyPool?: PairVerifier | null;
  /**
   * Deliver from this seqid on, whatever the checkpoint says (the next sync only; later ones go on
   * from there). Needs a log with seqids. No tombstone of a seq below it is delivered, then or later,
   * unless the checkpoint had delivered that seq before the seek.
   */
  fromSeq?: number;
  /**
   * A fromSeq past the end of the log: wait for the log to reach it (true: sync delivers nothing and
   * stores nothing until it does) or throw OUT_OF_RANGE (default). Either way no checkpoint names a
   * seq the log does not have.
   */
  waitForSeq?: boolean;
}

/**
 * INVALID_ARGUMENT, naming the option, for a count the receiver cannot work with: a fromSeq of -1 or
 * "1" was taken as it was, delivered every seq shifted (or as a string) and saved a checkpoint that
 * stopped the receiver for good; a batchSize of 0 failed deep inside as a TypeError.
 */
export function checkReceiverOptions(options: Pick<ReceiverOptions, "batchSize" | "concurrency" | "prefetchPairs" | "holdPages" | "maxPages" | "fromSeq">): void {
  checkWholeNumber("batchSize", options.batchSize, 1);
  checkWholeNumber("concurrency", options.concurrency, 1);
  checkWholeNumber("prefetchPairs", options.prefetchPairs, 0);
  checkWholeNumber("holdPages", options.holdPages, 1);
  checkWholeNumber("maxPages", options.maxPages, 1);
  checkWholeNumber("fromSeq", options.fromSeq, 0);
}

/** What one sync delivered, and where the receiver stands after it. */
export interface SyncResult {
  delivered: number;
  /** Pages read, head included (0 when the name does not exist yet). */
  pages: number;
  /** Messages delivered by all syncs so far, which is the next seq. */
  total: number;
  /** The verified record sequence of the head, for a signed name. */
  sequence?: bigint;
  /** False when the name has no remote log yet. */
  found: boolean;
}

/**
 * Bob: reads a name, walks pages back only as far as the last message it delivered, fetches what is
 * missing in batches (embedded data needs no fetch), checks H2 and H1 of every message, and delivers
 * oldest first. The checkpoint is saved after each delivered batch (while the next is delivered), so a
 * crash re-delivers at most the last two batches, and every delivery carries its seq and id so a
 * consumer can drop repeats.
 */
export class Receiver {
  readonly name: string;
  private readonly reader: LogReader;
  private readonly checkpoints: CheckpointStore;
  private readonly batchSize: number;
  /** The concurrency asked for, if any; else each sync sets concurrency by the remote's round trip (aheadFor). */
  private readonly fixedConcurrency?: number;
  private readonly source: LogReadRemote;
  private concurrency: number;
  private readonly prefetchPairs: number;
  /** Messages per fetch call, at most (FETCH_BATCHES batches). */
  private readonly fetchSize: number;
  private readonly holdPages: number;
  private fromSeq?: number;
  private readonly waitForSeq: boolean;
  /** ReceiverOptions.verifyPool as given: each sync's verifier, or (undefined) the shared pool's for a long sync. */
  private readonly verifyPool?: PairVerifier | null;
  /** The version of the last head synced, so that an older pushed head is never taken for news. */
  private lastVersion = 0n;

  constructor(options: ReceiverOptions) {
    checkReceiverOptions(options);
    this.name = options.name;
    this.checkpoints = options.checkpoints;
    this.batchSize = options.batchSize ?? 1024;
    this.fetchSize = FETCH_BATCHES * this.batchSize;
    this.fixedConcurrency = options.concurrency;
    this.source = options.remote;
    this.concurrency = options.concurrency ?? MIN_AHEAD;
    this.prefetchPairs = options.prefetchPairs ?? 256 * HOLD_PAGES;
    this.holdPages = options.holdPages ?? HOLD_PAGES;
    this.fromSeq = options.fromSeq;
    this.waitForSeq = options.waitForSeq ?? false;
    this.verifyPool = options.verifyPool;
    // Each sync hands its messages' checks the verifier it chose.
    this.reader = new LogReader(options.remote, options.name, { signed: options.signed, maxPages: options.maxPages });
  }

  /**
   * Delivers what the name's head holds beyond the checkpoint. pushed is a head the NS pushed (Watch),
   * used instead of fetching one when it is newer than the last head synced. signal, when given,
   * cancels the sync's calls (a follower stopped while a server is wedged). A message that cannot be
   * delivered (NOT_FOUND: its block is not stored; DATA_LOSS: the CAS holds it damaged, or it does not
   * check out) ends the sync after every message before it is delivered and checkpointed, with an error
   * whose details name the name, its seq and (for a block the CAS could not give) its address; the next
   * sync starts there. Other failures (UNAVAILABLE) are thrown as they come.
   */
  async sync(deliver: Deliver, pushed?: NameHead, signal?: AbortSignal): Promise<SyncResult> {
    const reader = signal && this.source.withSignal ? new LogReader(this.source.withSignal(signal), this.name, { signed: this.reader.signed, maxPages: this.reader.maxPages }) : this.reader;
    const stored = await this.checkpoints.load(this.name);
    let checkpoint: Checkpoint = stored ?? { delivered: 0, lastId: EMPTY };
    // A seek replaces where the receiver stands, but keeps the rollback floor: the name's heads are
    // no more trustworthy for starting elsewhere. A seek back (or to where it stands) goes on with the
    // run of seqs delivered before it; one past that run starts a new one at fromSeq, below which it
    // delivered nothing: looking back for redactions there printed tombstones of messages it never
    // had, ahead of seq fromSeq.
    if (this.fromSeq !== undefined) {
      const from = stored !== undefined && this.fromSeq <= stored.delivered ? Math.min(stored.from ?? 0, this.fromSeq) : this.fromSeq;
      checkpoint = { ...checkpoint, delivered: this.fromSeq, lastId: EMPTY, from };
    }
    const from = checkpoint.from ?? 0;
    // A signed name's head is trusted only once its record verifies for the name and binds this very
    // page, and only if it is not older than a head accepted before; every older page and message is
    // then checked by its hash.
    const entry = pushed && pushed.version > this.lastVersion ? pushed : undefined;
    const opened = await reader.open({ floor: checkpoint.sequence, entry });
    if (!opened) return { delivered: 0, pages: 0, total: checkpoint.delivered, found: false };
    const { entry: current, page: head, sequence } = opened;
    const end = head.info ? Number(head.info.firstSeqid) + head.info.count : undefined;
    if (this.fromSeq !== undefined && end !== undefined && this.fromSeq > end) {
      if (this.waitForSeq) return { delivered: 0, pages: 1, total: checkpoint.delivered, found: true, sequence };
      throw RemoteLogError.outOfRange(`name ${JSON.stringify(this.name)} holds seqs below ${end}; seq ${this.fromSeq} is past its end (nothing was stored)`, { name: this.name, seq: this.fromSeq });
    }

    // While the pages are being found, a few fetches of messages at a time: they use the round trips
    // the page rounds wait on, but more of them queued the page rounds behind megabytes of messages
    // at the server, and nothing is delivered before the last round (bench/README.md, session 5).
    const limit = new FetchLimiter(Math.min(PLANNING_FETCHES, this.concurrency));
    let planned = false;
    // The round trip is timed while the pages are found (a round trip at least) and taken when it
    // comes, never waited for: a follow delivery would wait a round trip for it. Not on a sync woken by a
    // pushed head, which is one of many small ones over a window already sized.
    if (!entry && this.fixedConcurrency === undefined) {
      this.source.roundTripMs?.().then(
        (ms) => {
          if (ms === undefined) return;
          this.concurrency = aheadFor(ms);
          if (planned) limit.setCapacity(this.concurrency);
        },
        () => {},
      );
    }
    // Messages are checked as soon as they arrive, so that checking overlaps the fetches. Units that
    // start together share one fetch call; the oldest waiting start first, as delivery needs them.
    // The shared pool's threads check a long catch-up only: a short one is over before they pay back.
    const toFetch = end === undefined ? undefined : end - checkpoint.delivered;
    const verifier = this.verifyPool === undefined ? verifierForRead(sharedVerifier(), toFetch) : this.verifyPool;
    // Threads load their code while the pages are found, not while the first messages wait.
    verifier?.start?.();
    // Fetched within FETCH_BYTES: the messages past it are NOT_FETCHED, asked for again when delivery
    // gets to them (see the loop below).
    const fetchChecked = async (pairs: RemoteLog_Pair[], data: (Uint8Array | typeof NOT_FETCHED)[]): Promise<UnitMessages> => {
      const cut = data.indexOf(NOT_FETCHED);
      if (cut === -1) return reader.checkMessagesLater(pairs, data as Uint8Array[], verifier);
      const checked = await reader.checkMessagesLater(pairs.slice(0, cut), data.slice(0, cut) as Uint8Array[], verifier);
      return (i) => (i < cut ? checked(i) : NOT_FETCHED);
    };
    const startFetch = (units: Unit[]) => {
      const waiting = units.filter((unit) => !unit.checked && unit.pairs.length > 0);
      if (waiting.length === 0) return;
      const pairs = waiting.length === 1 ? waiting[0].pairs : waiting.flatMap((unit) => unit.pairs);
      const checked = limit.run(waiting[0].rank, () => reader.messageDataUpTo(pairs, FETCH_BYTES)).then((data) => fetchChecked(pairs, data));
      let at = 0;
      for (const unit of waiting) {
        const from = at;
        at += unit.pairs.length;
        unit.checked = waiting.length === 1 ? checked : checked.then((all) => (i: number) => all(from + i));
        unit.checked.catch(() => {}); // awaited in order below; this only keeps an early failure from being unhandled
      }
    };
    const { units, pages, ensure } = head.info ? await this.planIndexed(reader, head, checkpoint, startFetch) : await this.planByWalk(reader, head, checkpoint, startFetch);
    limit.setCapacity(this.concurrency);
    planned = true;
    const redactions = head.info ? Number(head.info.redactions) : undefined;
    const seen = checkpoint.redactions ?? 0;
    const save = (delivered: number, lastId: Uint8Array) => this.checkpoints.save(this.name, withState({ delivered, lastId, ...(from > 0 ? { from } : {}) }, sequence, redactions));
    // Redactions since the last sync may have removed messages delivered before: their tombstones go
    // out first, and the checkpoint remembers the count once they are out.
    if (redactions !== undefined && redactions > seen && checkpoint.delivered > from) {
      const tombstones = await this.tombstonesBefore(reader, head, from, checkpoint.delivered, seen);
      if (tombstones.length > 0) await deliver(tombstones);
    }

    let seq = checkpoint.delivered;
    let batch: Delivery[] = [];
    // The batch's message bytes: a batch is delivered at batchSize messages or FETCH_BYTES, whichever
    // comes first. Each message is a view into its fetch's answer, which it keeps alive: 1,024 of 900 KB
    // held a gigabyte until they went out.
    let batchBytes = 0;
    let lastId = checkpoint.lastId;
    let delivered = 0;
    // A batch's checkpoint is saved while the next batch is delivered: a durable save (a file written,
    // synced and renamed) waited on after every batch held a `receive` process idle for 0.1-0.35 s a
    // 100k catch-up. Each save starts once its batch is delivered (so a store that records the output
    // with it, --out's, records exactly that batch's), after the save before it has finished; the last
    // is waited for before sync returns. A crash can then deliver the last two batches again, not one.
    let saving: Promise<void> = Promise.resolve();
    // A save is a few trips through libuv's threads, each taken up only when this thread turns to I/O:
    // made while the next batch was delivered in one stretch, each of a 100k catch-up's 98 saves took
    // ~8 ms for ~1 ms of work, and the flushes after waited 120-140 ms in all for the rest (47-96 ms
    // with a turn every SAVE_TURN_EVERY messages while one is under way).
    let saved = true;
    const flush = async () => {
      if (batch.length === 0) return;
      await deliver(batch);
      lastId = batch[batch.length - 1].id;
      batch = [];
      batchBytes = 0;
      await saving;
      saving = save(seq, lastId);
      saved = false;
      // A failure is thrown where it is waited for, by the next flush or the end of the sync.
      saving.then(
        () => (saved = true),
        () => (saved = true),
      );
    };
    try {
      for (let u = 0; u < units.length; u++) {
        await ensure?.(u, (this.concurrency + 1) * this.batchSize);
        this.fetchAhead(units as Unit[], u, startFetch);
        const { pairs } = units[u]!;
        if (pairs.length === 0) continue;
        let checked = await units[u]!.checked!;
        // Delivered units need not stay in memory: a long log is held a window at a time.
        units[u] = DELIVERED;
        for (let i = 0; i < pairs.length; i++) {
          const pair = pairs[i];
          let message = checked(i);
          if (message === NOT_FETCHED) {
            // Past its fetch's budget: the rest of this unit, one budget at a time, ahead of every fetch
            // waiting (they wait on delivery, which waits on this).
            const from = i;
            const rest = pairs.slice(from);
            const more = await reader.messageDataUpTo(rest, FETCH_BYTES).then((data) => fetchChecked(rest, data));
            checked = (j) => more(j - from);
            message = checked(i);
            // messageDataUpTo brings the first message or throws: never met, but the type does not know it.
            if (message === NOT_FETCHED) throw RemoteLogError.internal(`name ${JSON.stringify(this.name)} seq ${seq}: a fetch of ${rest.length} messages brought none`);
          }
          if (message instanceof RemoteLogError) {
            // Every message before the faulty one is delivered, and its checkpoint saved: the next sync
            // starts at the fault (a block the CAS lacks or holds damaged, narrowed to it by
            // LogReader.messageData, or a message that does not check out) and fails the same way.
            await flush();
            throw this.reader.messageFault(message, seq);
          }
          if (message === TOMBSTONE) batch.push({ seq, id: pair.localHash, address: pair.remoteHash, redacted: true });
          else {
            batch.push({ seq, id: pair.localHash, address: pair.remoteHash, message });
            batchBytes += message.body.length;
          }
          seq++;
          delivered++;
          if (batch.length >= this.batchSize || batchBytes >= FETCH_BYTES) await flush();
          else if (!saved && (delivered & (SAVE_TURN_EVERY - 1)) === 0) await nextTurn();
        }
      }
      await flush();
    } catch (err) {
      // The checkpoint of what was delivered is still saved (or fails) before the sync does.
      await saving.catch(() => {});
      throw err;
    }
    await saving;
    // A newer head with nothing new (a republished record) still raises the floor for rollbacks, and a
    // seek with nothing to deliver yet is still where the next sync starts.
    if (delivered === 0 && ((sequence !== undefined && sequence !== checkpoint.sequence) || this.fromSeq !== undefined || (redactions ?? 0) !== seen)) {
      await save(seq, lastId);
    }
    this.fromSeq = undefined;
    this.lastVersion = current.version;
    return { delivered, pages, total: seq, found: true, sequence };
  }

  /**
   * Keeps about concurrency + 1 batches of messages being fetched ahead of delivery, in calls of up
   * to fetchSize, starting neighbouring units that are not fetched yet together. A group smaller than
   * a call waits for the window to reach more units, unless delivery needs it now or it ends the log:
   * as the window slides it gains a page at a time, and a call a page (256 messages) cost four times
   * the calls.
   */
  private fetchAhead(units: Unit[], from: number, startFetch: (units: Unit[]) => void): void {
    let ahead = 0;
    let group: Unit[] = [];
    let groupPairs = 0;
    let u = from;
    for (; u < units.length && ahead < (this.concurrency + 1) * this.batchSize; u++) {
      const unit = units[u];
      if (!unit) break; // not read yet: beyond the window
      ahead += unit.pairs.length;
      if (unit.checked || unit.pairs.length === 0) continue;
      group.push(unit);
      groupPairs += unit.pairs.length;
      if (groupPairs >= this.fetchSize) {
        startFetch(group);
        group = [];
        groupPairs = 0;
      }
    }
    if (group.length > 0 && (group[0] === units[from] || u >= units.length)) startFetch(group);
  }

  /**
   * An indexed log (its pages carry seqids and skip links): the pages from the checkpoint on are
   * collected a round of parallel fetches at a time rather than one per round trip, and the messages
   * of the oldest (those held, up to prefetchPairs) are fetched and checked as their pages arrive. The
   * collection holds at most holdPages pages; the others are read again a window at a time as
   * delivery reaches them (ensure), so that memory follows the window and not the log. The pair
   * before the checkpoint must be the message delivered last, or the log was replaced.
   */
  private async planIndexed(reader: LogReader, head: RemoteLog, checkpoint: Checkpoint, startFetch: (units: Unit[]) => void): Promise<Plan> {
    const from = checkpoint.delivered;
    const continues = from > 0 && checkpoint.lastId.length > 0;
    const end = Number(head.info!.firstSeqid) + head.info!.count;
    if (continues && end < from) throw this.replaced(checkpoint);
    const byNumber = new Map<number, Unit>();
    let prefetched = 0;
    const unitOf = (page: RemoteLog, number: number): Unit => ({ pairs: freshPairs(page, from), rank: number });
    // Pages arrive a few at a time, as each is fetched once its link is known: their messages are
    // fetched in calls of about fetchSize, gathered across arrivals. What is gathered when the
    // collection ends is started by fetchAhead, as delivery reaches it.
    let group: Unit[] = [];
    let groupPairs = 0;
    const collected = await reader.collect(head, continues ? from - 1 : from, {
      holdPages: this.holdPages,
      // Pages not held are read again whole as delivery reaches them: here only their links are kept,
      // where decoding each pair as well cost a 100k catch-up 327 of its 391 pages decoded twice.
      tellUnheld: false,
      onPages: (got) => {
        if (prefetched >= this.prefetchPairs) return;
        // Oldest first.
        const units = got
          .filter(({ held }) => held)
          .sort((a, b) => a.number - b.number)
          .map(({ number, page }) => {
            const unit = unitOf(page, number);
            byNumber.set(number, unit);
            return unit;
          });
        for (const unit of units) {
          if (prefetched >= this.prefetchPairs) break;
          group.push(unit);
          groupPairs += unit.pairs.length;
          prefetched += unit.pairs.length;
          if (groupPairs >= this.fetchSize || prefetched >= this.prefetchPairs) {
            startFetch(group);
            group = [];
            groupPairs = 0;
          }
        }
      },
    });
    const { first, last } = collected;
    if (continues) {
      const [oldest] = await collected.take([first]);
      const before = oldest.pair.find((pair) => Number(pair.seqid) === from - 1);
      if (!before || !equalBytes(before.localHash, checkpoint.lastId)) throw this.replaced(checkpoint);
      if (!byNumber.has(first)) byNumber.set(first, unitOf(oldest, first));
    }
    // A page whose unit was made while collecting need not be held as well.
    for (const number of byNumber.keys()) collected.drop(number);
    const units: (Unit | undefined)[] = new Array(last - first + 1);
    for (const [number, unit] of byNumber) if (number >= first) units[number - first] = unit;
    byNumber.clear();
    // The pages of units not read yet are read again a chunk at a time: the units delivery needs next
    // (those holding `pairs` messages from u) are waited for, and those one such window further are
    // read in the background, so that a long log costs round trips of a chunk each, hidden behind
    // delivery, rather than one per page as the window slides.
    const chunkPages = Math.max(1, Math.floor(this.holdPages / 4));
    // The read under way of each unit being read.
    const reading = new Map<number, Promise<void>>();
    const readFrom = (k: number): void => {
      const missing: number[] = [];
      for (; k < units.length && missing.length < chunkPages; k++) if (!units[k] && !reading.has(k)) missing.push(k);
      const read = collected.take(missing.map((k) => first + k)).then((pages) => missing.forEach((k, i) => (units[k] ??= unitOf(pages[i], first + k))));
      // Also keeps a failure from being unhandled before delivery needs (and awaits) these units; a
      // unit whose read failed is read again when next needed.
      const settled = () => missing.forEach((k) => reading.delete(k));
      read.then(settled, settled);
      for (const k of missing) reading.set(k, read);
    };
    const ensure = async (u: number, pairs: number) => {
      for (;;) {
        // Every unit within two windows of u is read or being read, several chunks at once: one
        // chunk at a time held a catch-up at 20 ms to a chunk's messages a round trip.
        let ahead = 0;
        let unread = -1;
        let readAhead = 0;
        for (let k = u; k < units.length && ahead < 2 * pairs; k++) {
          if (!units[k]) {
            if (unread === -1) unread = k;
            if (!reading.has(k)) readFrom(k);
          } else if (unread === -1) {
            readAhead += collected.count(first + k);
          }
          ahead += collected.count(first + k);
        }
        // Delivery waits only for what it needs next.
        if (unread === -1 || readAhead >= pairs) return;
        await reading.get(unread);
      }
    };
    return { units, pages: collected.fetched + 1, ensure };
  }

  /**
   * A log without page info (a draft sender's): pages come newest first but messages go out oldest
   * first, so nothing can be delivered before the walk ends. Fetching starts during the walk instead,
   * a unit of pages of about fetchSize messages at a time (one call per page cost more than the
   * data), up to prefetchPairs messages held in memory; the rest is fetched, a few units ahead,
   * while delivering.
   */
  private async planByWalk(reader: LogReader, head: RemoteLog, checkpoint: Checkpoint, startFetch: (units: Unit[]) => void): Promise<Plan> {
    if (checkpoint.delivered > 0 && checkpoint.lastId.length === 0) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(this.name)} has no seqids (its pages carry no page info), so it cannot be read from seq ${checkpoint.delivered}`);
    }
    const units: Unit[] = [];
    let prefetched = 0;
    let gathering: RemoteLog_Pair[] = []; // newest first, as the walk finds them
    const closeUnit = () => {
      if (gathering.length === 0) return;
      // Made newest first: an older unit ranks lower, and is fetched first.
      const unit = { pairs: gathering.reverse(), rank: -units.length };
      gathering = [];
      units.push(unit);
      if (prefetched < this.prefetchPairs) {
        prefetched += unit.pairs.length;
        startFetch([unit]);
      }
    };
    const walk = await reader.walk(head, {
      stopAtId: checkpoint.delivered > 0 ? checkpoint.lastId : undefined,
      onPage: (pairs) => {
        for (const pair of pairs) gathering.push(pair);
        if (gathering.length >= this.fetchSize) closeUnit();
      },
    });
    closeUnit();
    if (checkpoint.delivered > 0 && !walk.reachedStop) throw this.replaced(checkpoint);
    return { units: units.reverse(), pages: walk.pages };
  }

  /** The name no longer holds the message delivered last: its log was replaced by another. */
  private replaced(checkpoint: Checkpoint): RemoteLogError {
    return RemoteLogError.conflict(
      `name ${JSON.stringify(this.name)} no longer holds message ${toHex(checkpoint.lastId)} (seq ${checkpoint.delivered - 1}), the last one delivered: its log was replaced`,
      { name: this.name, seq: checkpoint.delivered - 1 },
    );
  }

  /**
   * The tombstones of messages from seqid `from` up to `before` that redactions after the first `seen`
   * made: a redaction rewrites the pages from its message's up to the head, each with the new count, so
   * the walk back from the head ends at the first page whose count is not above seen.
   */
  private async tombstonesBefore(reader: LogReader, head: RemoteLog, from: number, before: number, seen: number): Promise<Delivery[]> {
    const tombstones: Delivery[] = [];
    await reader.walk(head, {
      takeWhile: (page) => page.info !== undefined && Number(page.info.redactions) > seen,
      onPage: (pairs) => {
        for (const pair of pairs) if (pair.redacted && Number(pair.seqid) >= from && Number(pair.seqid) < before) tombstones.push({ seq: Number(pair.seqid), id: pair.localHash, address: pair.remoteHash, redacted: true });
      },
    });
    return tombstones.sort((a, b) => a.seq - b.seq);
  }

}

const EMPTY = new Uint8Array(0);

/**
 * While a checkpoint is being saved, the messages delivered between two turns given to I/O (a power of
 * two), so that the save's few steps are done before the next batch is: 16 turns a default batch.
 */
const SAVE_TURN_EVERY = 64;

/** Pairs to deliver, oldest first (a page's, or a walk's chunk), and their checked messages once fetching has started. */
interface Unit {
  pairs: RemoteLog_Pair[];
  /** Lower for units delivered earlier: waiting fetches start in this order. */
  rank: number;
  /** Its messages, checked, each made when taken (LogReader.checkMessagesLater). */
  checked?: Promise<UnitMessages>;
}

/** A unit's messages by index: checked, or NOT_FETCHED past what its fetch's budget let come. */
type UnitMessages = (index: number) => CheckedMessage | typeof NOT_FETCHED;

/** A page's pairs from seqid from on, oldest first. */
function freshPairs(page: RemoteLog, from: number): RemoteLog_Pair[] {
  const pairs: RemoteLog_Pair[] = [];
  for (let k = page.pair.length - 1; k >= 0; k--) if (Number(page.pair[k].seqid) >= from) pairs.push(page.pair[k]);
  return pairs;
}

interface Plan {
  /** In delivery order; undefined for a unit whose page is not read yet (see ensure). */
  units: (Unit | undefined)[];
  /** Pages read, head included. */
  pages: number;
  /** Reads the units from u on that hold about `pairs` messages, where they are not read yet. */
  ensure?: (u: number, pairs: number) => Promise<void>;
}

/**
 * Pages a sync's collection holds at most: 16,384 messages in pages of 256. Held pages outlive the
 * young generation, and with 256 of them (and 65,536 messages prefetched, 16 calls in flight) a 1M
 * `receive` peaked at 331-405 MB, against 281-282 MB with these (bench/README.md, session 5).
 */
export const HOLD_PAGES = 64;

/** What a delivered unit becomes, so that its pairs and messages can go. */
const DELIVERED: Unit = { pairs: [], rank: 0 };

function withState(checkpoint: Checkpoint, sequence: bigint | undefined, redactions: number | undefined): Checkpoint {
  return { ...checkpoint, ...(sequence === undefined ? {} : { sequence }), ...(redactions ? { redactions } : {}) };
}

/** Fetches of messages in flight while a sync is still finding its pages (see sync). */
const PLANNING_FETCHES = 4;

/** Batches fetched ahead of delivery on a fast link, and at most on a slow one (see aheadFor). */
const MIN_AHEAD = 8;
const MAX_AHEAD = 32;

/**
 * Batches to fetch ahead of delivery over a round trip of roundTripMs: 8, and one more
 * for every 1.25 ms of round trip (24 at 20 ms), up to 32. The window must hold a round trip's worth
 * of messages or the connection idles between answers: at 20 ms, 8 batches held a 100k catch-up to
 * 1,174 ms at the median and 16 took it to 1,060 (bench/README.md, session 9). Since a receiver checks
 * its messages on its own thread (session 10), each answer holds that thread longer: a warm 100k
 * catch-up at 20 ms took 996-1,049 ms with 16, 798-879 with 24 and 783-854 with 32. On loopback, 16
 * only cost memory: a 1M `receive` peaked at 240-288 MB against 214-219 with 8, no faster. The round
 * trip is a PING's, not a call's: a cold process's first call took 14-19 ms on loopback.
 */
export function aheadFor(roundTripMs: number): number {
  return Math.min(MAX_AHEAD, MIN_AHEAD + Math.floor(Math.max(0, roundTripMs) / 1.25));
}

/**
 * Batches a fetch call asks for (4,096 messages by default; Remote splits larger calls): each call costs
 * a server ~0.5 ms and the client ~0.4 ms besides its blocks (a GetMany of 4,096 took a server 3.0-3.2 us
 * a block, of 1,024 4.0-6.6 us). A 1M `receive` took 10.6-10.7 s of CPU in calls of 4,096 against
 * 11.0-12.4 s in calls of 1,024, at the same peak RSS. How far fetches run ahead is still counted in
 * batches (concurrency, aheadFor), so memory stays where it was.
 */
const FETCH_BATCHES = 4;

/**
 * Runs at most capacity tasks at once; of those waiting, the one of lowest rank starts first (the
 * oldest messages, which delivery needs first, whatever order their pages arrived in).
 */
class FetchLimiter {
  private running = 0;
  private readonly waiting: { rank: number; start: () => void }[] = [];

  constructor(private capacity: number) {}

  /** A larger capacity starts waiting tasks at once. */
  setCapacity(capacity: number): void {
    this.capacity = capacity;
    this.startWaiting();
  }

  run<T>(rank: number, task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.running++;
        // A task that throws before its first await fails its own promise, and frees its place.
        Promise.resolve()
          .then(task)
          .then(resolve, reject)
          .finally(() => {
            this.running--;
            this.startWaiting();
          });
      };
      if (this.running < this.capacity) start();
      else this.waiting.push({ rank, start });
    });
  }

  private startWaiting(): void {
    while (this.running < this.capacity && this.waiting.length > 0) {
      let best = 0;
      for (let i = 1; i < this.waiting.length; i++) if (this.waiting[i].rank < this.waiting[best].rank) best = i;
      this.waiting.splice(best, 1)[0].start();
    }
  }
}
