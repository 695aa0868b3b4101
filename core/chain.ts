import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, ErrorCodes } from "./errors.js";
import { addressText, equalBytes, matchesAddress, toHex } from "./hash.js";
import { decodePage, decodePageLinks, type PageLinks } from "./page.js";

/** Fetches a page's bytes from a CAS. The walk checks them against the address itself. */
export type PageFetcher = (address: Uint8Array) => Promise<Uint8Array>;

export interface WalkOptions {
  /** Stop before returning this message and everything older (the last one already delivered). */
  stopAtId?: Uint8Array;
  /** Pages at most, head included; a longer chain is DATA_LOSS, never a hang. */
  maxPages?: number;
  /**
   * Told each page taken, with its pairs newer than stopAtId (newest first), as soon as the page is
   * read, so that a caller can start fetching messages while the walk goes on. Returning false ends
   * the walk after this page.
   */
  onPage?: (pairsNewestFirst: RemoteLog_Pair[], page: RemoteLog) => boolean | void;
  /** Takes pages, the head first, only while this holds: the walk ends before the first page it fails for. */
  takeWhile?: (page: RemoteLog) => boolean;
}

export interface WalkResult {
  /** Pairs newer than stopAtId, oldest first. */
  pairs: RemoteLog_Pair[];
  /** Pages read, head included. */
  pages: number;
  /** Whether stopAtId was found (always true when none was given and the first page was reached). */
  reachedStop: boolean;
}

export const DEFAULT_MAX_PAGES = 10_000_000;

/** One page of a chain as chainPages reads it. */
export interface ChainPage {
  page: RemoteLog;
  /** Its address and bytes as fetched; absent for the head, which the NS holds. */
  address?: Uint8Array;
  bytes?: Uint8Array;
  /** Where it is, for errors: "head page" or "page <cid>". */
  where: string;
}

/**
 * Throws DATA_LOSS unless a page fetched by following a link is the page that link promised: one with
 * page info, of the link's number and first seqid. Without this a chain's pages could all claim to be
 * page 1 and the chain run on far past the page 0 they point to.
 */
function checkPromised(links: PageLinks, where: string, number: bigint, firstSeqid: bigint): void {
  if (!links.info || links.info.number !== number || links.info.firstSeqid !== firstSeqid) {
    throw RemoteLogError.dataLoss(`${where} is not the page its link promised (number ${number}, from seqid ${firstSeqid})`);
  }
}

/**
 * The pages of a chain, the head first, each fetched only when the one before has been taken. Every
 * fetched page must hash to the tail that named it, decode, and be the page that tail's link promised
 * (checkPromised) when the page before has page info; a tail seen twice is a loop, and more than
 * maxPages pages (head included) a chain too long. All are DATA_LOSS, thrown when reached.
 */
export async function* chainPages(head: RemoteLog, fetchPage: PageFetcher, maxPages: number = DEFAULT_MAX_PAGES): AsyncGenerator<ChainPage> {
  const seen = new Set<string>();
  let current: ChainPage = { page: head, where: "head page" };
  for (let pages = 1; ; pages++) {
    yield current;
    const { page, where } = current;
    if (page.tail.length === 0) return;
    const key = toHex(page.tail);
    if (seen.has(key)) throw RemoteLogError.dataLoss(`page chain loops: ${where} points back to page ${addressText(page.tail)}`, undefined, { address: addressText(page.tail) });
    seen.add(key);
    if (pages >= maxPages) throw RemoteLogError.dataLoss(`page chain is longer than ${maxPages} pages (at ${where})`, undefined, { limit: "pages", value: maxPages });
    const address = page.tail;
    const bytes = await fetchPage(address);
    const next = `page ${addressText(address)}`;
    if (!matchesAddress(bytes, address)) throw RemoteLogError.dataLoss(`${next} does not hash to its address`, undefined, { address: addressText(address) });
    const decoded = decodePage(bytes, next, ErrorCodes.DATA_LOSS);
    // decodePage made a page with info link its tail first; a page without info (a draft chain) promises nothing.
    const link = page.info?.skips[0];
    if (link) checkPromised(decoded, next, link.number, link.firstSeqid);
    current = { page: decoded, address, bytes, where: next };
  }
}

/**
 * Walks a chain from its head towards the first page, only as far as stopAtId (chainPages: every page
 * checked, loops and chains over maxPages refused).
 */
export async function walkChain(head: RemoteLog, fetchPage: PageFetcher, options: WalkOptions = {}): Promise<WalkResult> {
  const stopAt = options.stopAtId;
  const newestFirst: RemoteLog_Pair[] = [];
  let pages = 0;
  for await (const { page } of chainPages(head, fetchPage, options.maxPages)) {
    if (options.takeWhile && !options.takeWhile(page)) break;
    pages++;
    const stop = stopAt ? page.pair.findIndex((pair) => equalBytes(pair.localHash, stopAt)) : -1;
    const fresh = stop === -1 ? page.pair : page.pair.slice(0, stop);
    const more = options.onPage?.(fresh, page);
    for (const pair of fresh) newestFirst.push(pair);
    if (stop !== -1) return { pairs: newestFirst.reverse(), pages, reachedStop: true };
    if (more === false) return { pairs: newestFirst.reverse(), pages, reachedStop: false };
  }
  return { pairs: newestFirst.reverse(), pages: Math.max(pages, 1), reachedStop: stopAt === undefined };
}

/** Page calls under way from which collectPages makes only full calls (pagesPerCall pages). */
const FULL_CALLS_FROM = 8;

/** Fetches many pages' bytes at once, in the order asked. The collection checks them against their addresses. */
export type PagesFetcher = (addresses: Uint8Array[]) => Promise<Uint8Array[]>;

export interface CollectOptions {
  /** Pages at most, head included. */
  maxPages?: number;
  /** Pages per fetch call at most; the pages learned from one arrival go out at once. Default 16. */
  pagesPerCall?: number;
  /**
   * Told the pages of each fetch call as soon as they are checked against their links, so that a
   * caller can start on their messages while the collection goes on; `held` says whether the
   * collection keeps the page for take(). The chain as a whole is checked only at the end: nothing may
   * be delivered from them before collectPages resolves.
   */
  onPages?: (pages: { number: number; page: RemoteLog; held: boolean }[]) => void;
  /**
   * Whether onPages is told the pages the collection does not hold (default true). When false, those
   * pages are checked as fully as any (core/page.ts decodePageLinks) without building their pairs,
   * for a caller that reads them again whole when it needs them (a receiver, a window at a time).
   */
  tellUnheld?: boolean;
  /**
   * Decoded pages kept at most: the oldest needed ones. The others are dropped once their links are
   * learned, and take() fetches them again (checked again against their links), so that a chain of any
   * length is collected in memory bounded by this. Default: every page.
   */
  holdPages?: number;
}

export interface CollectResult {
  /** The number of the oldest page collected: the one holding fromSeqid. */
  first: number;
  /** The head's number: pages first..last are collected, head included. */
  last: number;
  /** Pages fetched (the head is not). */
  fetched: number;
  /** The longest run of fetches one after another (each learned from the one before): round trips, at the least. */
  rounds: number;
  /** How many pairs page `number` (first..last) holds, from its page info. */
  count(number: number): number;
  /**
   * Pages by number (each first..last), in the order asked: a held page is handed over and no longer
   * held, the others fetched again in one call and checked against their links. DATA_LOSS as for the
   * collection.
   */
  take(numbers: number[]): Promise<RemoteLog[]>;
  /** Forgets a held page the caller no longer needs. */
  drop(number: number): void;
}

/** Every page of a collection, oldest first, head last (all held by default, so nothing is fetched again). */
export function collectedPages(collected: CollectResult): Promise<RemoteLog[]> {
  const numbers: number[] = [];
  for (let number = collected.first; number <= collected.last; number++) numbers.push(number);
  return collected.take(numbers);
}

/**
 * Collects the pages of an indexed chain (its head has page info) that hold fromSeqid and every seqid
 * after it, following skip links, so that a page 2^k back is one hop away: every page that may be
 * needed is fetched as soon as a page fetched before links it, and its links are learned as it
 * arrives. A chain of n pages is about log2(n) fetches deep, and seeking to any seqid as many.
 *
 * Links are claims until checked: every page must hash to its address and have the number and first
 * seqid its linker said, and the collected pages must form one chain, each page's tail naming the
 * page before and its first seqid following that page's last. So the result is exactly what a walk
 * by tails would have read. Anything else is DATA_LOSS.
 *
 * Only what the chain check needs is kept of every page (its tail, first seqid and count); the pages
 * themselves are held up to options.holdPages, the oldest needed first, and the rest fetched again
 * when taken.
 */
export async function collectPages(head: RemoteLog, fromSeqid: number, fetchPages: PagesFetcher, options: CollectOptions = {}): Promise<CollectResult> {
  if (!head.info) throw RemoteLogError.invalidArgument("the head page has no page info: its log has no seqids");
  const maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  const perCall = options.pagesPerCall ?? 16;
  const holdPages = options.holdPages ?? Infinity;
  const headNumber = Number(head.info.number);
  const known = new Map<number, { address: Uint8Array; firstSeqid: bigint }>();
  /** What the chain check needs of each page fetched. */
  const fetched = new Map<number, { tail: Uint8Array; firstSeqid: bigint; count: number }>();
  const held = new Map<number, RemoteLog>();
  const from = BigInt(fromSeqid);
  /** The newest page known to start at or before fromSeqid (see lowest). */
  let newestBefore = 0;
  // `depth` is how many fetches, one after another, brought a page's link: rounds counts the deepest.
  // A page linked for the first time waits in `unfetched` until launched (if it is still needed then).
  const depth = new Map<number, number>();
  const unfetched = new Set<number>();
  /** The links of a page that linkDepth fetches one after another brought: checked against the others, and new ones queued. */
  const learn = (page: PageLinks, where: string, linkDepth: number) => {
    for (const skip of page.info!.skips) {
      const number = Number(skip.number);
      const before = known.get(number);
      if (before && (!equalBytes(before.address, skip.address) || before.firstSeqid !== skip.firstSeqid)) {
        throw RemoteLogError.dataLoss(`${where} links page ${number} as ${addressText(skip.address)}, and another page linked it as ${addressText(before.address)}`);
      }
      // A copy: the link is a view of its page's fetch answer, and a view kept for the whole sync kept
      // every answer of the collection in memory with it (78 MB after a GC, for 1M messages).
      if (!before) known.set(number, { address: skip.address.slice(), firstSeqid: skip.firstSeqid });
      if (skip.firstSeqid <= from && number > newestBefore) newestBefore = number;
      if (!fetched.has(number) && !depth.has(number)) {
        depth.set(number, linkDepth);
        unfetched.add(number);
      }
    }
  };
  learn(head, "head page", 1);
  let rounds = 0;
  // The oldest page needed: the newest one known to start at or before fromSeqid. Page 0 starts at 0
  // and is linked from every page, so there always is one. It only rises as more links are learned,
  // so a page below it is never needed, and the pages held are those from it up.
  const lowest = () => (head.info!.firstSeqid <= from ? headNumber : newestBefore);
  const tellUnheld = options.tellUnheld ?? true;
  // Each page checked against its address and its link; decoded whole where whole(number) says, else
  // only its tail and info are kept (links), after the same checks.
  const fetchChecked = async (numbers: number[], whole: (number: number) => boolean): Promise<{ links: PageLinks; page?: RemoteLog }[]> => {
    const addresses = numbers.map((number) => known.get(number)!.address);
    const blocks = await fetchPages(addresses);
    return numbers.map((number, j) => {
      const where = `page ${addressText(addresses[j])}`;
      if (!matchesAddress(blocks[j], addresses[j])) throw RemoteLogError.dataLoss(`${where} does not hash to its address`);
      const page = whole(number) ? decodePage(blocks[j], where, ErrorCodes.DATA_LOSS) : undefined;
      const links = page ?? decodePageLinks(blocks[j], where, ErrorCodes.DATA_LOSS);
      checkPromised(links, where, BigInt(number), known.get(number)!.firstSeqid);
      return { links, page };
    });
  };
  let floor = lowest();
  // Each page is fetched as soon as its link is learned and it may be needed, in calls of up to
  // perCall pages, rather than in rounds that each wait for their slowest call: a round held the
  // pages it revealed until every other call of the round was answered (bench/README.md, session 7).
  let inFlight = 0;
  let callsInFlight = 0;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown) => {
      failed = true;
      reject(err);
    };
    const launch = () => {
      const wanted: number[] = [];
      for (const number of unfetched) {
        // The floor only rises: a page below it is never needed.
        if (number >= floor) wanted.push(number);
        unfetched.delete(number);
      }
      if (wanted.length === 0) {
        if (inFlight === 0) resolve();
        return;
      }
      // With many calls under way, a call of a few pages waits for the next answer, which brings
      // more links to fill it: as early in the chain's depth, with a third fewer calls for 1M
      // messages (bench/collect-clock.bench.ts).
      if (wanted.length < perCall && callsInFlight >= FULL_CALLS_FROM) {
        for (const number of wanted) unfetched.add(number);
        return;
      }
      if (fetched.size + inFlight + wanted.length + 1 > maxPages) return fail(RemoteLogError.dataLoss(`page chain is longer than ${maxPages} pages`));
      wanted.sort((a, b) => b - a);
      for (let i = 0; i < wanted.length; i += perCall) {
        const numbers = wanted.slice(i, i + perCall);
        inFlight += numbers.length;
        callsInFlight++;
        const callDepth = Math.max(...numbers.map((number) => depth.get(number)!));
        rounds = Math.max(rounds, callDepth);
        const keep = (number: number) => number >= floor && number < floor + holdPages;
        fetchChecked(numbers, (number) => tellUnheld || keep(number)).then(
          (pages) => {
            if (failed) return;
            inFlight -= numbers.length;
            callsInFlight--;
            try {
              const got: { number: number; page: RemoteLog; held: boolean }[] = [];
              numbers.forEach((number, j) => {
                const { links, page } = pages[j];
                fetched.set(number, { tail: links.tail.slice(), firstSeqid: links.info!.firstSeqid, count: links.info!.count });
                learn(links, `page ${number}`, callDepth + 1);
                // A page decoded only for its links is not held, even if the floor has risen since to bring it into the window.
                const isHeld = page !== undefined && keep(number);
                if (isHeld) held.set(number, page);
                if (page) got.push({ number, page, held: isHeld });
              });
              floor = lowest();
              for (const number of held.keys()) if (number < floor || number >= floor + holdPages) held.delete(number);
              options.onPages?.(got);
              launch();
            } catch (err) {
              fail(err);
            }
          },
          (err) => {
            if (!failed) fail(err);
          },
        );
      }
    };
    launch();
  });
  const headMeta = { tail: head.tail, firstSeqid: head.info.firstSeqid, count: head.info.count };
  const meta = (number: number) => (number === headNumber ? headMeta : fetched.get(number)!);
  for (let number = floor + 1; number <= headNumber; number++) {
    const before = meta(number - 1);
    const page = meta(number);
    if (!equalBytes(page.tail, known.get(number - 1)!.address)) throw RemoteLogError.dataLoss(`page ${number}'s tail is not page ${number - 1}`);
    if (page.firstSeqid !== before.firstSeqid + BigInt(before.count)) {
      throw RemoteLogError.dataLoss(`page ${number} starts at seqid ${page.firstSeqid}, and page ${number - 1} ends before ${before.firstSeqid + BigInt(before.count)}`);
    }
  }
  return {
    first: floor,
    last: headNumber,
    fetched: fetched.size,
    rounds,
    count: (number) => meta(number).count,
    take: async (numbers) => {
      const pages: (RemoteLog | undefined)[] = numbers.map((number) => {
        if (number === headNumber) return head;
        const page = held.get(number);
        held.delete(number);
        return page;
      });
      const missing = numbers.filter((_, i) => pages[i] === undefined);
      if (missing.length > 0) {
        const again = await fetchChecked(missing, () => true);
        let k = 0;
        pages.forEach((page, i) => {
          if (page === undefined) pages[i] = again[k++].page;
        });
      }
      return pages as RemoteLog[];
    },
    drop: (number) => void held.delete(number),
  };
}
