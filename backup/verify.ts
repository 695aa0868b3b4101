import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Remote } from "../actors/remote.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressOf, addressText, equalBytes, toHex } from "../core/hash.js";
import { isKeyName, verifyNameRecord } from "../core/names.js";
import { decodePage, verifyPairData } from "../core/page.js";
import { checkMessages, verifyLink, type ReadPack } from "./pack-format.js";
import { readPack } from "./pack-chain.js";
import type { PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

/** One missing or corrupt object, by its CID (or name) and what is wrong with it. */
export interface Fault {
  object: string;
  code: string;
  problem: string;
}

export interface VerifyReport {
  kind: "backup" | "log";
  head: string;
  ok: boolean;
  faults: Fault[];
  /** Packs (backup) or pages (log) checked. */
  objects: number;
  messages: number;
  /** Bytes read and checked. */
  bytes: number;
  readData: boolean;
  ms: number;
}

function faultOf(object: string, err: unknown): Fault {
  if (isRemoteLogError(err)) return { object, code: err.code, problem: err.message };
  throw err;
}

/**
 * Checks a pack chain from head: each pack is present, hashes to its CID, has a sound header and
 * links to the previous one with contiguous seqs, down to seq 0 (the structure, which needs every
 * pack's bytes since the link is inside them); with readData also every message (decodes, distinct
 * ids, last_id). Stops at the first pack it cannot read, since the rest of the chain hangs off it;
 * every fault found is in the report, none is thrown.
 */
export async function verifyPackChain(store: PackStore, head: Uint8Array, options: { readData?: boolean; progress?: Progress } = {}): Promise<VerifyReport> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  const faults: Fault[] = [];
  const seen = new Set<string>();
  let newer: ReadPack | undefined;
  let address = head;
  let objects = 0;
  let messages = 0;
  let bytes = 0;
  for (;;) {
    let pack: ReadPack;
    try {
      pack = await readPack(store, address, newer);
      if (newer) verifyLink(newer, pack);
    } catch (err) {
      faults.push(faultOf(addressText(address), err));
      break;
    }
    if (!newer) progress.start("packs", pack.lastSeq + 1);
    objects++;
    messages += pack.count;
    bytes += pack.size;
    if (options.readData) {
      try {
        checkMessages(pack, seen);
      } catch (err) {
        faults.push(faultOf(addressText(address), err));
      }
    }
    progress.advance(pack.count);
    if (pack.previous.length === 0) break;
    newer = pack;
    address = pack.previous;
  }
  progress.stop();
  return { kind: "backup", head: addressText(head), ok: faults.length === 0, faults, objects, messages, bytes, readData: options.readData ?? false, ms: Math.round(performance.now() - started) };
}

/**
 * Checks a remote log by name: the head's record (key names), then every page back to the first,
 * each against the address that named it, with its pairs well formed, its seqids contiguous when the
 * pages carry them, and every skip link naming a page of the chain with the number and first seqid it
 * says. That is the structure, and it reads pages only. With readData every message is fetched (or
 * taken from its page) and checked against H2 and H1. A page that cannot be read ends the walk; every
 * fault found is in the report.
 */
export async function verifyRemoteLog(
  remote: Pick<Remote, "fetchName" | "getBlock" | "getBlocks" | "nsUrl">,
  name: string,
  options: { readData?: boolean; progress?: Progress; maxPages?: number } = {},
): Promise<VerifyReport> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  const maxPages = options.maxPages ?? 10_000_000;
  const faults: Fault[] = [];
  const entry = await remote.fetchName(name);
  if (!entry) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} has no log at ${remote.nsUrl}`);
  const headAddress = addressOf(entry.content);
  const headText = `head of ${JSON.stringify(name)} (${addressText(headAddress)})`;
  if (isKeyName(name)) {
    try {
      await verifyNameRecord(name, entry.record, entry.content);
    } catch (err) {
      faults.push(faultOf(`record of ${name}`, err));
    }
  }
  // Address → (number, first seqid) of every page walked, to check skip links against.
  const pages = new Map<string, { number?: bigint; firstSeqid?: bigint }>();
  let messages = 0;
  let page: RemoteLog;
  try {
    page = decodePage(entry.content, headText, ErrorCodes.DATA_LOSS);
  } catch (err) {
    faults.push(faultOf(headText, err));
    return report();
  }
  const skips: { from: string; address: Uint8Array; number: bigint; firstSeqid: bigint }[] = [];
  const pairs: RemoteLog_Pair[] = [];
  let address = headAddress;
  let where = headText;
  let bytes = entry.content.length;
  let objects = 0;
  let expectFirst: bigint | undefined;
  progress.start("pages", 0);
  for (;;) {
    objects++;
    progress.advance(1);
    pages.set(toHex(address), { number: page.info?.number, firstSeqid: page.info?.firstSeqid });
    for (const skip of page.info?.skips ?? []) skips.push({ from: where, address: skip.address, number: skip.number, firstSeqid: skip.firstSeqid });
    if (page.info && expectFirst !== undefined && page.info.firstSeqid + BigInt(page.pair.length) !== expectFirst) {
      faults.push({ object: where, code: ErrorCodes.DATA_LOSS, problem: `${where} holds seqids ${page.info.firstSeqid}.. for ${page.pair.length} pairs, but the page after it starts at ${expectFirst}` });
    }
    expectFirst = page.info?.firstSeqid;
    for (const pair of page.pair) pairs.push(pair);
    if (page.tail.length === 0) break;
    if (pages.has(toHex(page.tail))) {
      faults.push({ object: where, code: ErrorCodes.DATA_LOSS, problem: `page chain loops: ${where} points back to ${addressText(page.tail)}` });
      break;
    }
    if (objects >= maxPages) {
      faults.push({ object: where, code: ErrorCodes.DATA_LOSS, problem: `page chain is longer than ${maxPages} pages` });
      break;
    }
    address = page.tail;
    where = `page ${addressText(address)}`;
    try {
      const bytesRead = await remote.getBlock(address);
      if (!equalBytes(addressOf(bytesRead), address)) throw RemoteLogError.dataLoss(`${where} does not hash to its address`);
      bytes += bytesRead.length;
      page = decodePage(bytesRead, where, ErrorCodes.DATA_LOSS);
    } catch (err) {
      faults.push(faultOf(where, err));
      break;
    }
  }
  if (expectFirst !== undefined && expectFirst !== 0n && faults.length === 0) {
    faults.push({ object: where, code: ErrorCodes.DATA_LOSS, problem: `the first page starts at seqid ${expectFirst}, not 0` });
  }
  for (const skip of skips) {
    const target = pages.get(toHex(skip.address));
    if (!target) {
      faults.push({ object: addressText(skip.address), code: ErrorCodes.DATA_LOSS, problem: `${skip.from} has a skip link to page ${addressText(skip.address)}, which is not in its chain` });
    } else if (target.number !== undefined && (target.number !== skip.number || target.firstSeqid !== skip.firstSeqid)) {
      faults.push({ object: addressText(skip.address), code: ErrorCodes.DATA_LOSS, problem: `${skip.from} says page ${addressText(skip.address)} is number ${skip.number} from seqid ${skip.firstSeqid}; it is number ${target.number} from ${target.firstSeqid}` });
    }
  }
  progress.stop();
  if (options.readData) {
    progress.start("messages", pairs.length);
    const batch = 4096;
    for (let i = 0; i < pairs.length; i += batch) {
      // A redacted pair has no message to check; decodePage checked that it carries none.
      const chunk = pairs.slice(i, i + batch).filter((pair) => !pair.redacted);
      const missing = chunk.filter((pair) => pair.data.length === 0);
      const fetched = await fetchAllowingMissing(remote, missing.map((pair) => pair.remoteHash));
      let next = 0;
      for (const pair of chunk) {
        const data = pair.data.length > 0 ? pair.data : fetched[next++];
        const object = addressText(pair.remoteHash);
        if (data === undefined) {
          faults.push({ object, code: ErrorCodes.NOT_FOUND, problem: `message ${toHex(pair.localHash)} (${object}) is missing from the CAS` });
          continue;
        }
        try {
          verifyPairData(pair, data, `message ${object}`);
          bytes += data.length;
          messages++;
        } catch (err) {
          faults.push(faultOf(object, err));
        }
      }
      progress.advance(chunk.length);
    }
    progress.stop();
  } else {
    messages = pairs.length;
  }
  return report();

  function report(): VerifyReport {
    return { kind: "log", head: addressText(headAddress), ok: faults.length === 0, faults, objects: pages.size, messages, bytes, readData: options.readData ?? false, ms: Math.round(performance.now() - started) };
  }
}

/** Blocks in order, undefined for a missing one (one by one when a batch names a missing block). */
async function fetchAllowingMissing(remote: Pick<Remote, "getBlocks" | "getBlock">, addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
  if (addresses.length === 0) return [];
  try {
    return await remote.getBlocks(addresses);
  } catch (err) {
    if (!isRemoteLogError(err, ErrorCodes.NOT_FOUND) && !isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw err;
  }
  const out: (Uint8Array | undefined)[] = [];
  for (const address of addresses) {
    try {
      out.push(await remote.getBlock(address));
    } catch (err) {
      if (isRemoteLogError(err, ErrorCodes.NOT_FOUND)) out.push(undefined);
      else if (isRemoteLogError(err, ErrorCodes.DATA_LOSS)) out.push(new Uint8Array(0)); // checked below: it will not hash to its address
      else throw err;
    }
  }
  return out;
}
