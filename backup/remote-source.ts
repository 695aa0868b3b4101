import { DigestTable } from "../core/digest-table.js";
import { RemoteLogError } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { FETCH_BYTES, LogReader, verifierForRead, type PairVerifier } from "../core/log-reader.js";
import type { LogRemote } from "../core/log-remote.js";
import { checkVouched } from "../core/names.js";
import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { BackedUpTo, LogSource, SourceChunk, SourceRead } from "./source.js";

/** Message fetches (each a call's worth of pages) in flight at once while a fresh backup collects pages. */
const READS_IN_FLIGHT = 4;
/** Messages a read of consecutive pages gathers before it starts: one GetMany call (Remote's batchBlocks). */
const READ_RUN_PAIRS = 4096;
/**
 * How far past the messages handed over a read may start, in messages: reads are started oldest
 * first and only within this window, so that what waits to be handed over is bounded. Started as their
 * pages came (newest first, with linked pages), a 100,000-message backup held every message until the
 * oldest read was in (a heap of 83 MB, a seventh of its time in the garbage collector).
 */
const READ_AHEAD_MESSAGES = 8 * READ_RUN_PAIRS;

/**
 * A remote log by name, read as `receive` reads it (core/log-reader.ts): a key name's head must carry
 * a record that verifies and is not older than the one the previous backup read; the walk goes back
 * only to the last backed-up message, and every page and message is checked by its hashes (on
 * verifier's threads when given).
 */
export class RemoteLogSource implements LogSource {
  private readonly reader: LogReader;

  constructor(
    private readonly remote: LogRemote,
    readonly logName: string,
    /** verifier: threads that check the messages of a read of THREADS_FROM_MESSAGES or more (core/log-reader.ts verifierForRead). */
    private readonly options: { unsigned?: boolean; maxPages?: number; verifier?: PairVerifier } = {},
  ) {
    this.reader = new LogReader(remote, logName, { maxPages: options.maxPages });
  }

  async readSince(after: BackedUpTo | undefined): Promise<SourceRead> {
    const name = this.logName;
    checkVouched([name], this.options.unsigned, "pass --unsigned to back it up anyway");
    const opened = await this.reader.require({ floor: after?.sequence });
    const logHead = { page: opened.address, sequence: opened.sequence ?? opened.entry.version };
    // A redacted pair (a tombstone) has no message left to keep: the backup holds what the log still holds.
    const firstSeq = after ? after.lastSeq + 1 : 0;
    if (!after && opened.page.info) {
      const info = opened.page.info;
      return { firstSeq, expected: Number(info.firstSeqid) + info.count, chunks: await this.readIndexed(opened.page), logHead };
    }
    const walk = await this.reader.walk(opened.page, { stopAtId: after?.lastId });
    if (after && !walk.reachedStop) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(name)} no longer holds message ${toHex(after.lastId)}, the last one backed up: its log was replaced`);
    }
    const reader = this.reader;
    const verifier = verifierForRead(this.options.verifier, walk.pairs.length);
    const once = onceEach(name, walk.pairs.length);
    return {
      firstSeq,
      expected: walk.pairs.length,
      // A run of READ_RUN_PAIRS messages at a time, and at most FETCH_BYTES of them: read whole, the walk
      // since the last backup held every message it reached at once.
      chunks: (async function* () {
        for (let at = 0; at < walk.pairs.length; ) {
          const { pairs, data, taken } = await reader.readMessages(walk.pairs.slice(at, at + READ_RUN_PAIRS), firstSeq + at, verifier, FETCH_BYTES);
          at += taken;
          once(pairs);
          if (data.length > 0) yield { messages: data, lastId: pairs[pairs.length - 1].localHash };
        }
      })(),
      logHead,
    };
  }

  /**
   * The whole of an indexed log (its pages carry seqids and skip links), as a receiver reads it: the
   * pages are collected a round of parallel fetches at a time rather than one per round trip, and runs
   * of neighbouring pages have their messages fetched and checked as they arrive, the oldest first and
   * within READ_AHEAD_MESSAGES of what the packer has taken. Nothing is used before the collection has
   * checked the chain whole. A faulty message is DATA_LOSS naming its seqid.
   */
  private async readIndexed(head: RemoteLog): Promise<AsyncIterable<SourceChunk>> {
    const total = Number(head.info!.firstSeqid) + head.info!.count;
    const verifier = verifierForRead(this.options.verifier, total);
    // Each page's run; a run is read in one call once it starts.
    const reads = new Map<number, Run>();
    // Runs wait to be started: at most READS_IN_FLIGHT reads at once, the oldest first, and none that
    // starts READ_AHEAD_MESSAGES or more past handedOver (the first message the packer has not asked
    // past), so that neither the reads nor the messages they hold run ahead of the packing. The run
    // that starts at handedOver is always within it, so the hand-over never waits for a run that
    // cannot start.
    const waiting: Run[] = [];
    let inFlight = 0;
    let handedOver = 0;
    const startReads = () => {
      waiting.sort((a, b) => a.firstSeqid - b.firstSeqid);
      while (inFlight < READS_IN_FLIGHT && waiting.length > 0 && waiting[0].firstSeqid < handedOver + READ_AHEAD_MESSAGES) {
        const run = waiting.shift()!;
        inFlight++;
        const pairs = run.pages.flatMap(({ page }) => oldestFirst(page));
        // At most FETCH_BYTES of its messages now; the rest when the run is handed over.
        const read = this.reader.readMessages(pairs, undefined, verifier, FETCH_BYTES).then((done) => ({ ...done, rest: pairs.slice(done.taken) }));
        run.pages = [];
        run.start(read);
        // A failed read is thrown where it is handed over; the runs before it must still be read.
        const next = () => {
          inFlight--;
          startReads();
        };
        read.then(next, next);
      }
    };
    const readRun = (pages: { number: number; page: RemoteLog }[]) => {
      let start!: (read: Promise<ReadRun>) => void;
      const result = new Promise<ReadRun>((resolve) => (start = resolve));
      result.catch(() => {}); // awaited when handed over, or not at all when the collection fails
      let count = 0;
      for (const { page } of pages) count += page.info!.count;
      const run: Run = { firstSeqid: Number(pages[0].page.info!.firstSeqid), count, pages, start, result };
      for (const { number } of pages) reads.set(number, run);
      waiting.push(run);
      startReads();
    };
    // Pages arrive scattered (the first rounds follow skip links), so neighbours are gathered first:
    // a run of consecutive pages is read as one, oldest first (a read's messages are in log order),
    // once it holds READ_RUN_PAIRS messages, and whatever runs are left once every page is in. Read as
    // they came, a page or two a call, a 100,000-message backup made 340 calls of the server.
    const arrived = new Map<number, RemoteLog>();
    const readPages = (pages: { number: number; page: RemoteLog }[], all: boolean) => {
      for (const { number, page } of pages) arrived.set(number, page);
      const numbers = [...arrived.keys()].sort((a, b) => a - b);
      let run: { number: number; page: RemoteLog }[] = [];
      let runPairs = 0;
      const flush = (ready: boolean) => {
        if (run.length > 0 && ready) {
          readRun(run);
          for (const { number } of run) arrived.delete(number);
        }
        run = [];
        runPairs = 0;
      };
      for (const number of numbers) {
        if (run.length > 0 && number !== run[run.length - 1].number + 1) flush(all);
        const page = arrived.get(number)!;
        run.push({ number, page });
        runPairs += page.pair.length;
        if (runPairs >= READ_RUN_PAIRS) flush(true);
      }
      flush(all);
    };
    // The collection holds no page: each goes to readPages as it arrives, and waits there for its neighbours.
    const collected = await this.reader.collect(head, 0, { holdPages: 0, onPages: (pages) => readPages(pages, false) });
    const missing: number[] = [];
    for (let number = collected.first; number < collected.last; number++) if (!reads.has(number) && !arrived.has(number)) missing.push(number);
    const taken = missing.length > 0 ? await collected.take(missing) : [];
    const last = reads.has(collected.last) ? [] : [{ number: collected.last, page: head }];
    readPages([...missing.map((number, i) => ({ number, page: taken[i] })), ...last], true);
    // Every run is known now: the window starts at the first (a log need not start at seqid 0).
    handedOver = reads.get(collected.first)!.firstSeqid;
    startReads();
    // The chain is checked whole: the reads are handed over in log order as each completes.
    const once = onceEach(this.logName, total);
    const reader = this.reader;
    return (async function* () {
      // A read holds a run of neighbouring pages; it is taken once, at its first page. Each page lets
      // go of its read as it is passed, so that what was handed over can be collected.
      let previous: Run | undefined;
      for (let number = collected.first; number <= collected.last; number++) {
        const run = reads.get(number)!;
        reads.delete(number);
        if (run === previous) continue;
        previous = run;
        let { pairs, data, rest } = await run.result;
        for (;;) {
          once(pairs);
          if (data.length > 0) yield { messages: data, lastId: pairs[pairs.length - 1].localHash };
          if (rest.length === 0) break;
          // Past its read's budget (messages of any size): the rest of the run, a budget at a time.
          const more = await reader.readMessages(rest, undefined, verifier, FETCH_BYTES);
          ({ pairs, data } = more);
          rest = rest.slice(more.taken);
        }
        // The packer is done with it and asks for more: the reads after it may start.
        handedOver = run.firstSeqid + run.count;
        startReads();
      }
    })();
  }

  async close(): Promise<void> {
    this.remote.close();
  }
}

/** A read's messages, checked: the pairs that are not tombstones, and their bytes; rest, the run's pairs past its budget, not read yet. */
type ReadRun = { pairs: RemoteLog_Pair[]; data: Uint8Array[]; rest: RemoteLog_Pair[] };

/** Neighbouring pages read in one call (readIndexed): where it starts, its messages, and its read once started. */
interface Run {
  firstSeqid: number;
  count: number;
  pages: { number: number; page: RemoteLog }[];
  start: (read: Promise<ReadRun>) => void;
  result: Promise<ReadRun>;
}

/** A page's pairs oldest first (a page lists them newest first). */
function oldestFirst(page: RemoteLog): RemoteLog_Pair[] {
  return page.pair.toReversed();
}

/** The most messages onceEach makes room for at first (8 MiB of table); a longer log grows it as it goes. */
const ONCE_TABLE_MOST = 1 << 18;

/**
 * Checks that no message id is handed over twice in a run, and throws DATA_LOSS naming it otherwise: a
 * remote log may hold a message twice (receive delivers both), but a local log takes each id once, so a
 * backup of it passed and could never be restored. Ids of earlier runs are in packs this run does not
 * read; restore and verify --read-data check the whole chain.
 */
function onceEach(name: string, expected: number): (pairs: RemoteLog_Pair[]) => void {
  // Sized once for the messages expected (growing it twice over was 17 ms of a 100k backup), within
  // bounds: the count comes from the head, which the server serves.
  const ids = new DigestTable(Math.min(expected, ONCE_TABLE_MOST));
  return (pairs) => {
    for (const pair of pairs) {
      if (ids.addIfNew(pair.localHash) !== -1) {
        throw RemoteLogError.dataLoss(
          `name ${JSON.stringify(name)} holds message ${toHex(pair.localHash)} twice: a local log takes each message once, so a backup of it could not be restored`,
          undefined,
          { name },
        );
      }
    }
  };
}
