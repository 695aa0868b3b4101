import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, ErrorCodes } from "./errors.js";
import { addressText, equalBytes, matchesAddress, toHex } from "./hash.js";
import { decodePage } from "./page.js";

/** Fetches a page's bytes from a CAS. The walk checks them against the address itself. */
export type PageFetcher = (address: Uint8Array) => Promise<Uint8Array>;

export interface WalkOptions {
  /** Stop before returning this message and everything older (the last one already delivered). */
  stopAtId?: Uint8Array;
  /** Pages at most, head included; a longer chain is DATA_LOSS, never a hang. */
  maxPages?: number;
  /**
   * Told each page's pairs newer than stopAtId (newest first) as soon as the page is read, so that a
   * caller can start fetching messages while the walk goes on.
   */
  onPage?: (pairsNewestFirst: RemoteLog_Pair[]) => void;
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

/**
 * Walks a chain from its head towards the first page, only as far as stopAtId. Every fetched page must
 * hash to the tail that named it; a tail seen twice is a loop. Both are DATA_LOSS.
 */
export async function walkChain(head: RemoteLog, fetchPage: PageFetcher, options: WalkOptions = {}): Promise<WalkResult> {
  const maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  const stopAt = options.stopAtId;
  const newestFirst: RemoteLog_Pair[] = [];
  const seen = new Set<string>();
  let page = head;
  let pages = 1;
  let where = "head page";
  for (;;) {
    const stop = stopAt ? page.pair.findIndex((pair) => equalBytes(pair.localHash, stopAt)) : -1;
    const fresh = stop === -1 ? page.pair : page.pair.slice(0, stop);
    if (fresh.length > 0) options.onPage?.(fresh);
    for (const pair of fresh) newestFirst.push(pair);
    if (stop !== -1) return { pairs: newestFirst.reverse(), pages, reachedStop: true };
    if (page.tail.length === 0) break;
    const key = toHex(page.tail);
    if (seen.has(key)) throw RemoteLogError.dataLoss(`page chain loops: ${where} points back to page ${addressText(page.tail)}`);
    seen.add(key);
    if (pages >= maxPages) throw RemoteLogError.dataLoss(`page chain is longer than ${maxPages} pages (at ${where})`);
    const address = page.tail;
    const bytes = await fetchPage(address);
    where = `page ${addressText(address)}`;
    if (!matchesAddress(bytes, address)) throw RemoteLogError.dataLoss(`${where} does not hash to its address`);
    page = decodePage(bytes, where, ErrorCodes.DATA_LOSS);
    pages++;
  }
  return { pairs: newestFirst.reverse(), pages, reachedStop: stopAt === undefined };
}
