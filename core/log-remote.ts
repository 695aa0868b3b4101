import { RemoteLogError, ErrorCodes } from "./errors.js";

/**
 * The client port: a CAS and an NS as every actor and verb sees them, whatever carries them. Remote
 * (actors/remote.ts, Connect to remotelog's services) and KuboRemote (actors/kubo-remote.ts, a Kubo
 * node's RPC API) implement it, and both pass test/contract/remote.contract.ts.
 */

/** A name's current entry as the NS serves it. Nothing in it is trusted before core/log-reader.ts checks it. */
export interface NameHead {
  content: Uint8Array;
  /** The NS's version of the name; for a key name, its record's sequence. */
  version: bigint;
  /** The signed record beside the content; empty for unsigned names. */
  record: Uint8Array;
}

/** What a reader needs: fetching a name and blocks. */
export interface LogReadRemote {
  /** Where the CAS and the NS are, for messages. */
  readonly casUrl: string;
  readonly nsUrl: string;
  /** The name's head, or undefined when the name has never been updated. */
  fetchName(name: string): Promise<NameHead | undefined>;
  /** One block; NOT_FOUND naming it when the CAS lacks it. The caller checks the bytes against the address. */
  getBlock(address: Uint8Array): Promise<Uint8Array>;
  /** Blocks in request order; a missing block is NOT_FOUND naming it. */
  getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]>;
  /**
   * getBlocks with undefined for each block the CAS lacks, in the calls getBlocks would make: a reader
   * that reports what is missing (verify, the explorer) learns it from one pass, where a NOT_FOUND for
   * a batch told it only that something in it was missing. Other faults are thrown as by getBlocks.
   */
  getBlocksAllowingMissing?(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]>;
  /**
   * getBlocksAllowingMissing of addresses' first blocks only, as many as come within maxBytes (the
   * first whatever its size): shorter than addresses when the budget ran out. A reader with a byte
   * budget (the explorer's view of a name whose messages may be of any size) then fetches about what
   * it keeps, where the CAS can bound an answer (remotelog.v1 GetMany's max_bytes). Without it,
   * blocksWithin fetches a few blocks at a time.
   */
  getBlocksWithin?(addresses: Uint8Array[], maxBytes: number): Promise<(Uint8Array | undefined)[]>;
  /**
   * getBlocks of a chain's pages, with the pages they link to that a reader from fromSeqid needs sent
   * along, at most maxLinkedBytes of them, where the CAS can (remotelog.v1 GetMany's linked_pages): a
   * collection of pages then takes one round trip, not one for every halving of the gaps it knows. The
   * linked pages are unchecked claims, like any block: the collection checks each against the link
   * that names it. A CAS that sends none is no fault.
   */
  getPagesWithLinked?(addresses: Uint8Array[], fromSeqid: number, maxLinkedBytes: number): Promise<PagesWithLinked>;
  /**
   * The network round trip to the CAS in ms, without server work in it (an HTTP/2 PING), if the
   * remote can tell: a receiver fetches further ahead over a longer one.
   */
  roundTripMs?(): Promise<number | undefined>;
  /**
   * This remote for reading, each call cancelled when signal aborts: a follower stopped while the
   * server is wedged ends at once, where its call waited out the idle limit (30 s). Without it, a
   * stopped reader's calls run to their end.
   */
  withSignal?(signal: AbortSignal): LogReadRemote;
}

/** Blocks asked for at once by blocksWithin over a remote that cannot bound an answer's bytes: what a budget may be overrun by. */
export const BLOCKS_A_ROUND_WITHOUT_BOUND = 16;

/**
 * remote.getBlocksWithin, or over a remote without it, its blocks fetched BLOCKS_A_ROUND_WITHOUT_BOUND
 * at a time (undefined for a missing one where the remote can tell) until maxBytes have come.
 */
export function blocksWithin(remote: LogReadRemote): (addresses: Uint8Array[], maxBytes: number) => Promise<(Uint8Array | undefined)[]> {
  if (remote.getBlocksWithin) return remote.getBlocksWithin.bind(remote);
  const fetch = remote.getBlocksAllowingMissing?.bind(remote) ?? ((addresses: Uint8Array[]) => remote.getBlocks(addresses));
  return async (addresses, maxBytes) => {
    const blocks: (Uint8Array | undefined)[] = [];
    let spent = 0;
    while (blocks.length < addresses.length && spent < maxBytes) {
      for (const block of await fetch(addresses.slice(blocks.length, blocks.length + BLOCKS_A_ROUND_WITHOUT_BOUND))) {
        blocks.push(block);
        spent += block?.length ?? 0;
      }
    }
    return blocks;
  };
}

/** What getPagesWithLinked returns: the blocks asked for, in order, and the linked pages sent along. */
export interface PagesWithLinked {
  blocks: Uint8Array[];
  linked: { address: Uint8Array; bytes: Uint8Array }[];
}

/** What a CAS says it takes; fields it does not advertise are absent. */
export interface CasLimits {
  /** The largest block it stores, and so the largest message a sender can publish. */
  maxBlockBytes: number;
  maxBatchBlocks?: number;
  maxResponseBytes?: number;
}

/** The signed update blocks are sent ahead of (remotelog.v1.AddManyRequest.pending). */
export interface PendingUpdate {
  name: string;
  content: Uint8Array;
  record: Uint8Array;
}

/** One page of the names an NS holds (NameLister.listNames). */
export interface NamePage {
  names: { name: string; version: bigint }[];
  /** Pass as `after` for the next page; undefined at the end. */
  next?: string;
}

/** An NS that may let its names be listed (remotelog.v1.NameListService; `serve` offers it with its explorer). */
export interface NameLister {
  /**
   * The names after options.after (in UTF-8 byte order), at most options.limit and never more than the
   * server's page size; undefined from an NS that does not list its names (turned off, or without the
   * service). UNAVAILABLE when it cannot be reached. Reads only.
   */
  listNames(options?: { after?: string; limit?: number }): Promise<NamePage | undefined>;
}

/** The whole client port: reading, writing and, where the NS can push, watching. */
export interface LogRemote extends LogReadRemote {
  /**
   * The CAS's limits, or undefined from a CAS that does not advertise them (the draft's). Absent from
   * a client that cannot ask. UNAVAILABLE when the CAS cannot be reached, or has not answered within
   * options.timeoutMs (default: the client's own limits). Idempotent.
   */
  casLimits?(options?: { timeoutMs?: number }): Promise<CasLimits | undefined>;
  /**
   * Stores blocks; idempotent. pending, the signed update that will name them, lets a server that takes
   * blocks from signed writers only (serve --require-signed) accept them; a backend may ignore it.
   */
  putBlocks(blocks: Uint8Array[], pending?: PendingUpdate): Promise<void>;
  /**
   * A conditional update: applies only if the name is at expectedVersion (0n: it must not exist), or
   * throws ABORTED. A key name's update carries its signed record; returns the name's new version.
   */
  updateName(name: string, content: Uint8Array, expectedVersion: bigint, record?: Uint8Array): Promise<bigint>;
  /**
   * The name's heads as the NS pushes them, the current one first, until signal aborts. An NS that
   * cannot push throws WatchUnsupportedError (core/log-remote.ts), and followers poll instead.
   */
  watchName(name: string, signal: AbortSignal): AsyncGenerator<NameHead>;
  /** Releases connections. Idempotent. */
  close(): void;
}

/** An NS without the Watch RPC (a client of the draft's NS, a Kubo node): followers poll it instead. */
export class WatchUnsupportedError extends RemoteLogError {
  /** why: what keeps the NS from pushing to this client; by default, that it has no Watch RPC. */
  constructor(nsUrl: string, why = "no Watch RPC") {
    super(ErrorCodes.INTERNAL, `NS ${nsUrl} cannot push heads (${why})`);
  }
}
