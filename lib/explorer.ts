import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { LogReader, NOT_FETCHED, type OpenHead } from "../core/log-reader.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressOf, addressText, matchesAddress, toHex } from "../core/hash.js";
import { WatchUnsupportedError, blocksWithin, type LogReadRemote, type LogRemote, type NameHead } from "../core/log-remote.js";
import { isKeyName, parseKeyName, peerIdOfKeyName } from "../core/names.js";
import { backoffDelayMs, sleep } from "../core/retry.js";
import { utf8OrUndefined } from "../core/text.js";

/*
 * What the live log explorer shows of a name, as plain data: the page draws it, tests check it. Read
 * through the one reader (core/log-reader.ts), never around it: the head's record is verified, every page
 * is checked against the link that named it, every message against H2 and H1. A check that fails is shown
 * where it failed (the record, a page, a message), with its code and message, and the rest of the view
 * stays: a tampered page does not take the log's other pages with it.
 */

/** A failed check or read, as the explorer shows it. */
export interface ExplorerFault {
  /** One of ErrorCodes. */
  code: string;
  message: string;
}

/** Bytes as the explorer shows them: text when they are valid UTF-8, else hex and base64. At most maxBytes are kept. */
export type BytesView =
  | { kind: "text"; text: string; length: number; truncated: boolean }
  | { kind: "binary"; hex: string; base64: string; length: number; truncated: boolean };

/** The signed record of a key name. */
export interface RecordView {
  /** ok: verified for the name's key and this head; failed: see fault; absent record on a key name is failed too. */
  status: "ok" | "failed";
  fault?: ExplorerFault;
  /** What the verified record says (absent when it failed). */
  sequence?: bigint;
  validity?: Date;
  ttlMs?: number;
  value?: string;
  /** The key the name stands for: the record must be signed by it. */
  key: { type: string; publicKey: string; peerId: string };
}

export interface SkipView {
  number: number;
  firstSeqid: number;
  address: string;
  /** ok: the linked page was shown and is that page; mismatch: it is another; unchecked: it is older than the pages shown. */
  status: "ok" | "mismatch" | "unchecked";
}

export interface MessageView {
  /** Its seqid, on a page with page info. */
  seqid?: number;
  /** H1, the MVDS message id, hex. */
  id: string;
  /** H2, the CAS address, CID text; absent for a tombstone. */
  address?: string;
  /** Carried in the page itself rather than fetched from the CAS. */
  embedded: boolean;
  /**
   * ok: H2 and H1 check out; redacted: a tombstone; missing: the CAS lacks it; failed: see fault;
   * unfetched: not fetched, the view's bytes for messages (ExploreOptions.maxMessageBytes) having gone
   * to those before it, and so neither checked nor shown.
   */
  status: "ok" | "redacted" | "missing" | "failed" | "unfetched";
  fault?: ExplorerFault;
  group?: BytesView;
  /** MVDS timestamp (Unix seconds). */
  timestamp?: number;
  body?: BytesView;
  parents?: string[];
  ephemeral?: boolean;
}

export interface PageView {
  /** CID text of the page (the head page's is the hash of the name's content). */
  address: string;
  head: boolean;
  /** ok: fetched, hashes to its link, decodes; failed: see fault (and nothing older can be reached through it). */
  status: "ok" | "failed";
  fault?: ExplorerFault;
  bytes?: number;
  /** From its page info, when it has some. */
  number?: number;
  firstSeqid?: number;
  redactions?: number;
  /** The page before it, CID text; absent on the first page. */
  tail?: string;
  skips: SkipView[];
  /** Pairs on the page: messages, with those not listed. */
  pairs: number;
  /** Newest first, as the page holds them; fewer than pairs when the view's list ended on this page or before (ExploreOptions.maxMessages). */
  messages: MessageView[];
}

export interface LogView {
  name: string;
  nsUrl: string;
  /** ok when the record, every page shown and every message on them checked out. */
  status: "ok" | "failed";
  /** The NS's version of the name. */
  version: bigint;
  /** For a key name; absent for a free-form name, whose head nobody signs. */
  record?: RecordView;
  /** The head first; at most ExploreOptions.pages, plus the failed one that ended the walk. */
  pages: PageView[];
  /** Messages in the log, from the head's page info; undefined for a log without page info. */
  length?: number;
  /** Whether older pages exist beyond those shown. */
  more: boolean;
  /**
   * Whether the walk stopped at the view's byte budget for pages (ExploreOptions.maxPageBytes) rather
   * than at the pages asked for: asking for more pages shows no more.
   */
  pageBytesSpent: boolean;
  /** Messages on the pages shown that were not fetched (status unfetched): the view's byte budget went to those before them. */
  unfetched: number;
  /** Pairs on the pages shown that are not listed at all: the view's list (ExploreOptions.maxMessages) ended before them. */
  unlisted: number;
  /** When the view was read. */
  readAt: Date;
}

export interface ExploreOptions {
  /** Pages shown, the head first. Default 8. */
  pages?: number;
  /** Bytes of a body or group kept for showing. Default 4096. */
  maxBodyBytes?: number;
  /**
   * Bytes of messages fetched from the CAS for one view at most (newest first), past the one that
   * crosses it; the rest are unfetched. Default VIEW_MESSAGE_BYTES. Messages are any size up to the
   * CAS's block limit, and a view's pages may name thousands: without a bound, one name's view could
   * take gigabytes of its reader's memory.
   */
  maxMessageBytes?: number;
  /**
   * Messages listed in one view at most, newest first; the older pairs on the pages shown are counted
   * (PageView.pairs) but not listed. Default VIEW_MESSAGES_A_PAGE for each page asked for: `send`'s
   * pages hold 256 by default, and a page may hold some 14,000 pairs, each a row to draw.
   */
  maxMessages?: number;
  /**
   * Bytes of pages read for one view at most, the head first, past the one that crosses it: the walk
   * stops there, whatever ExploreOptions.pages asks. Default VIEW_PAGE_BYTES. A page may be as large
   * as the CAS's block limit, and a view walks up to MAX_VIEW_PAGES of them.
   */
  maxPageBytes?: number;
}

/** The longest chain walked for one view, whatever is asked: a view is for reading, not for a million pages. */
export const MAX_VIEW_PAGES = 256;

/** ExploreOptions.maxMessageBytes's default. */
export const VIEW_MESSAGE_BYTES = 16 << 20;

/** ExploreOptions.maxPageBytes's default. */
export const VIEW_PAGE_BYTES = 16 << 20;

/** ExploreOptions.maxMessages's default, for each page asked for. */
export const VIEW_MESSAGES_A_PAGE = 256;

/**
 * Blocks a LogExplorer keeps between views, and their bytes (pages and messages are immutable: a live
 * update fetches only what is new): a view's worth and more at the default budget.
 */
const CACHE_BLOCKS = 4096;
const CACHE_BYTES = 32 << 20;

/** What follow() hands out: a fresh view after each pushed head, or why it could not read one (it carries on). */
export type ExplorerEvent = { view: LogView } | { fault: ExplorerFault; retryInMs: number };

/**
 * `const explorer = new LogExplorer(remote, name)`
 *
 * The explorer's reading of one name over a remote (openRemote in Node, or the browser entry's): view()
 * reads it once, follow() again after each head the NS pushes. Over one explorer, the highest record
 * sequence seen is the rollback floor, so that an NS serving an older head shows a failed record, and
 * blocks already read are kept (bounded), so that a live update fetches only what is new.
 */
export class LogExplorer {
  private readonly reader: LogReader;
  private readonly cache: CachingRemote;
  private floor?: bigint;

  constructor(
    readonly remote: LogReadRemote & Partial<Pick<LogRemote, "watchName">>,
    readonly name: string,
  ) {
    this.cache = new CachingRemote(remote);
    this.reader = new LogReader(this.cache, name, { maxPages: MAX_VIEW_PAGES + 1 });
  }

  /**
   * The name's view now, or of entry (a head in hand). Throws NOT_FOUND when the name has no log and
   * UNAVAILABLE when the NS cannot be reached; every failed check is in the view instead.
   */
  async view(options: ExploreOptions & { entry?: NameHead } = {}): Promise<LogView> {
    const entry = options.entry ?? (await this.remote.fetchName(this.name));
    if (!entry) throw new RemoteLogError(ErrorCodes.NOT_FOUND, `name ${JSON.stringify(this.name)} has no log at ${this.remote.nsUrl}`, { details: { name: this.name } });
    const wanted = Math.max(1, Math.min(options.pages ?? 8, MAX_VIEW_PAGES));
    const maxBodyBytes = options.maxBodyBytes ?? 4096;
    const readAt = new Date();
    const headAddress = addressText(addressOf(entry.content));

    const record = isKeyName(this.name) ? await this.recordView(entry) : undefined;
    const base = { name: this.name, nsUrl: this.remote.nsUrl, version: entry.version, record, readAt };
    // The head page's structure, checked as every reader checks it; its record was judged above.
    let head: OpenHead;
    try {
      head = await new LogReader(this.cache, this.name, { signed: false }).check(entry);
    } catch (err) {
      const page: PageView = { address: headAddress, head: true, status: "failed", fault: faultOf(err), bytes: entry.content.length, skips: [], pairs: 0, messages: [] };
      return { ...base, status: "failed", pages: [page], more: false, pageBytesSpent: false, unfetched: 0, unlisted: 0 };
    }

    const walked: { page: RemoteLog; address: string; bytes: number }[] = [];
    let failed: PageView | undefined;
    let more = false;
    let pageBytesSpent = false;
    let tail: Uint8Array = new Uint8Array(0);
    const maxPageBytes = options.maxPageBytes ?? VIEW_PAGE_BYTES;
    let pageBytes = 0;
    try {
      for await (const read of this.reader.pages(head.page)) {
        if (walked.length === wanted) {
          more = true;
          break;
        }
        const bytes = read.bytes?.length ?? entry.content.length;
        walked.push({ page: read.page, address: read.address ? addressText(read.address) : headAddress, bytes });
        tail = read.page.tail;
        pageBytes += bytes;
        // Stopped before the next page is fetched: its bytes are what the budget is for.
        if (pageBytes >= maxPageBytes && tail.length > 0 && walked.length < wanted) {
          more = pageBytesSpent = true;
          break;
        }
      }
    } catch (err) {
      // The page the last one links to could not be read or did not check out: shown as failed, and
      // nothing older is reachable through it.
      failed = { address: tail.length > 0 ? addressText(tail) : "", head: false, status: "failed", fault: faultOf(err), skips: [], pairs: 0, messages: [] };
    }

    const byAddress = new Map(walked.map(({ page, address }) => [address, page]));
    const allPairs = walked.flatMap(({ page }) => page.pair);
    const pairs = allPairs.slice(0, Math.max(0, options.maxMessages ?? VIEW_MESSAGES_A_PAGE * wanted));
    // Seqids mean something on pages with page info only (a draft sender's pages carry none).
    const indexed = walked.flatMap(({ page }) => page.pair.map(() => page.info !== undefined)).slice(0, pairs.length);
    const messages = await this.messageViews(pairs, indexed, maxBodyBytes, options.maxMessageBytes ?? VIEW_MESSAGE_BYTES);
    let at = 0;
    const pages: PageView[] = walked.map(({ page, address, bytes }, i) => {
      const info = page.info;
      const view: PageView = {
        address,
        head: i === 0,
        status: "ok",
        bytes,
        ...(info ? { number: Number(info.number), firstSeqid: Number(info.firstSeqid), redactions: Number(info.redactions) } : {}),
        ...(page.tail.length > 0 ? { tail: addressText(page.tail) } : {}),
        skips: (info?.skips ?? []).map((skip) => {
          const target = byAddress.get(addressText(skip.address))?.info;
          const status = target === undefined ? "unchecked" : target.number === skip.number && target.firstSeqid === skip.firstSeqid ? "ok" : "mismatch";
          return { number: Number(skip.number), firstSeqid: Number(skip.firstSeqid), address: addressText(skip.address), status };
        }),
        pairs: page.pair.length,
        messages: messages.slice(at, at + page.pair.length),
      };
      at += page.pair.length;
      return view;
    });
    if (failed) pages.push(failed);
    const ok =
      (record === undefined || record.status === "ok") &&
      pages.every((page) => page.status === "ok" && page.skips.every((skip) => skip.status !== "mismatch") && page.messages.every((m) => m.status === "ok" || m.status === "redacted" || m.status === "unfetched"));
    const headInfo = head.page.info;
    return {
      ...base,
      status: ok ? "ok" : "failed",
      pages,
      length: headInfo ? Number(headInfo.firstSeqid) + head.page.pair.length : undefined,
      more,
      pageBytesSpent,
      unfetched: messages.reduce((count, message) => count + (message.status === "unfetched" ? 1 : 0), 0),
      unlisted: allPairs.length - pairs.length,
    };
  }

  /**
   * Views of the name as it changes: the current one, then a new one after each head the NS pushes
   * (Watch), until signal aborts. An NS that cannot push is polled every pollMs. A read that fails
   * (the NS gone) is handed out as a fault, and the follow tries again after a growing pause.
   */
  async *follow(signal: AbortSignal, options: ExploreOptions & { pollMs?: number } = {}): AsyncGenerator<ExplorerEvent> {
    let failures = 0;
    let push = typeof this.remote.watchName === "function";
    while (!signal.aborted) {
      try {
        if (push) {
          for await (const entry of this.remote.watchName!(this.name, signal)) {
            failures = 0;
            yield { view: await this.view({ ...options, entry }) };
          }
          if (signal.aborted) return;
        } else {
          yield { view: await this.view(options) };
          failures = 0;
          await sleep(options.pollMs ?? 2_000, signal).catch(() => undefined);
          continue;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof WatchUnsupportedError) {
          push = false;
          continue;
        }
        const retryInMs = backoffDelayMs(failures++, 250, 5_000);
        yield { fault: faultOf(err), retryInMs };
        await sleep(retryInMs, signal).catch(() => undefined);
      }
    }
  }

  /** The record of a key name, judged as every reader judges it (LogReader.checkRecord: verifySignedHead). */
  private async recordView(entry: NameHead): Promise<RecordView> {
    const key = keyOf(this.name);
    try {
      const record = await this.reader.checkRecord(entry, { floor: this.floor });
      if (!record) throw RemoteLogError.internal("a key name's head was checked without its record");
      if (this.floor === undefined || record.sequence > this.floor) this.floor = record.sequence;
      return { status: "ok", sequence: record.sequence, validity: record.validity, ttlMs: record.ttlMs, value: record.value, key };
    } catch (err) {
      return { status: "failed", fault: faultOf(err), key };
    }
  }

  /**
   * Every pair's view, its message fetched (in batches of up to maxMessageBytes in all; a missing one
   * alone is missing) and checked.
   */
  private async messageViews(pairs: RemoteLog_Pair[], indexed: boolean[], maxBodyBytes: number, maxMessageBytes: number): Promise<MessageView[]> {
    const data = await this.reader.messageDataWithin(pairs, maxMessageBytes);
    const present = pairs.flatMap((pair, i) => (data[i] !== undefined && data[i] !== NOT_FETCHED && !pair.redacted ? [i] : []));
    const checked = await this.reader.checkMessages(
      present.map((i) => pairs[i]),
      present.map((i) => data[i] as Uint8Array),
    );
    const results = new Map(present.map((pairIndex, j) => [pairIndex, checked[j]]));
    return pairs.map((pair, i) => {
      const common = {
        ...(indexed[i] ? { seqid: Number(pair.seqid) } : {}),
        id: toHex(pair.localHash),
        ...(pair.redacted ? {} : { address: addressText(pair.remoteHash) }),
        embedded: pair.data.length > 0,
      };
      if (pair.redacted) return { ...common, status: "redacted" };
      if (data[i] === NOT_FETCHED) return { ...common, status: "unfetched" };
      const result = results.get(i);
      if (result === undefined) return { ...common, status: "missing", fault: { code: ErrorCodes.NOT_FOUND, message: `message ${common.address} is not in the CAS at ${this.remote.casUrl}` } };
      if (typeof result === "symbol") return { ...common, status: "redacted" }; // TOMBSTONE
      if (result instanceof RemoteLogError) return { ...common, status: "failed", fault: faultOf(result) };
      return {
        ...common,
        status: "ok",
        group: bytesView(result.groupId, maxBodyBytes),
        timestamp: Number(result.timestamp),
        body: bytesView(result.body, maxBodyBytes),
        parents: (result.metadata?.parents ?? []).map(toHex),
        ephemeral: result.metadata?.ephemeral ?? false,
      };
    });
  }
}

/** The key a key name stands for, as the explorer shows it. */
function keyOf(name: string): RecordView["key"] {
  const key = parseKeyName(name);
  return { type: key.type, publicKey: toHex(key.raw), peerId: peerIdOfKeyName(name) };
}

function faultOf(err: unknown): ExplorerFault {
  if (isRemoteLogError(err)) return { code: err.code, message: err.text };
  return { code: ErrorCodes.INTERNAL, message: err instanceof Error ? err.message : String(err) };
}

/** Text when the bytes are valid UTF-8 (the CLI's rule, core/text.ts), else hex and base64; at most maxBytes of them. */
export function bytesView(bytes: Uint8Array, maxBytes = 4096): BytesView {
  const truncated = bytes.length > maxBytes;
  const kept = truncated ? bytes.subarray(0, maxBytes) : bytes;
  // A cut may split a character: judged on the whole, shown up to the cut.
  if (utf8OrUndefined(bytes) !== undefined) return { kind: "text", text: new TextDecoder().decode(kept), length: bytes.length, truncated };
  return { kind: "binary", hex: toHex(kept), base64: base64(kept), length: bytes.length, truncated };
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/**
 * The remote with the blocks it returned kept (those that hash to their address, and so can never
 * change), at most CACHE_BLOCKS of them and CACHE_BYTES in all, the oldest dropped first. The reader
 * still checks every block it is given.
 */
class CachingRemote implements LogReadRemote {
  private readonly blocks = new Map<string, Uint8Array>();
  private bytes = 0;
  private readonly fetchWithin: (addresses: Uint8Array[], maxBytes: number) => Promise<(Uint8Array | undefined)[]>;

  /** Where the remote can tell which blocks it lacks: the reader then finds them in one pass. */
  readonly getBlocksAllowingMissing?: (addresses: Uint8Array[]) => Promise<(Uint8Array | undefined)[]>;

  constructor(private readonly remote: LogReadRemote) {
    const allowingMissing = remote.getBlocksAllowingMissing?.bind(remote);
    if (allowingMissing) this.getBlocksAllowingMissing = (addresses) => this.kept(addresses, allowingMissing);
    this.fetchWithin = blocksWithin(remote);
  }

  get casUrl(): string {
    return this.remote.casUrl;
  }

  get nsUrl(): string {
    return this.remote.nsUrl;
  }

  fetchName(name: string): Promise<NameHead | undefined> {
    return this.remote.fetchName(name);
  }

  async getBlock(address: Uint8Array): Promise<Uint8Array> {
    const kept = this.blocks.get(toHex(address));
    if (kept) return kept;
    const bytes = await this.remote.getBlock(address);
    this.keep(address, bytes);
    return bytes;
  }

  getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> {
    return this.kept(addresses, (wanted) => this.remote.getBlocks(wanted)) as Promise<Uint8Array[]>;
  }

  /**
   * The first blocks within maxBytes, kept ones counted as fetched ones, so that a view shows the same
   * messages whatever an earlier view left here; runs of blocks not kept are fetched within what is left.
   */
  async getBlocksWithin(addresses: Uint8Array[], maxBytes: number): Promise<(Uint8Array | undefined)[]> {
    const out: (Uint8Array | undefined)[] = [];
    let spent = 0;
    while (out.length < addresses.length && spent < maxBytes) {
      const kept = this.blocks.get(toHex(addresses[out.length]));
      if (kept) {
        out.push(kept);
        spent += kept.length;
        continue;
      }
      let end = out.length + 1;
      while (end < addresses.length && !this.blocks.has(toHex(addresses[end]))) end++;
      const wanted = addresses.slice(out.length, end);
      const fetched = await this.fetchWithin(wanted, maxBytes - spent);
      fetched.forEach((bytes, i) => {
        out.push(bytes);
        spent += bytes?.length ?? 0;
        if (bytes !== undefined) this.keep(wanted[i], bytes);
      });
      if (fetched.length < wanted.length) break;
    }
    return out;
  }

  /** The blocks kept, and the rest fetched and kept. */
  private async kept(addresses: Uint8Array[], fetch: (wanted: Uint8Array[]) => Promise<(Uint8Array | undefined)[]>): Promise<(Uint8Array | undefined)[]> {
    const out = addresses.map((address) => this.blocks.get(toHex(address)));
    const wanted = addresses.filter((_, i) => out[i] === undefined);
    if (wanted.length > 0) {
      const fetched = await fetch(wanted);
      let next = 0;
      out.forEach((bytes, i) => {
        if (bytes !== undefined) return;
        out[i] = fetched[next++];
        if (out[i] !== undefined) this.keep(addresses[i], out[i]);
      });
    }
    return out;
  }

  private keep(address: Uint8Array, bytes: Uint8Array): void {
    const key = toHex(address);
    if (bytes.length > CACHE_BYTES || this.blocks.has(key) || !matchesAddress(bytes, address)) return;
    this.blocks.set(key, bytes);
    this.bytes += bytes.length;
    for (const [oldest, dropped] of this.blocks) {
      if (this.blocks.size <= CACHE_BLOCKS && this.bytes <= CACHE_BYTES) break;
      this.blocks.delete(oldest);
      this.bytes -= dropped.length;
    }
  }
}
