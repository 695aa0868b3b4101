import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressOf, addressText, toHex } from "../core/hash.js";
import { LogReader } from "../core/log-reader.js";
import type { LogReadRemote } from "../core/log-remote.js";
import { silentProgress, type Progress } from "./progress.js";

// Apart from the pack chain's verify (verify.ts), which reads packs with zlib: this one runs in browsers too.

/** One missing or corrupt object, by its CID (or name) and what is wrong with it. */
export interface Fault {
  object: string;
  code: string;
  problem: string;
}

/** What a verify checked, and every fault it found (none thrown). */
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
  /** A remote log's: whether its head's record was checked against its key (a key name), or nothing vouches for it (a free-form name). */
  signed?: boolean;
}

export function faultOf(object: string, err: unknown): Fault {
  if (isRemoteLogError(err)) return { object, code: err.code, problem: err.message };
  throw err;
}

/**
 * Checks a remote log by name, read as every verb reads one (core/log-reader.ts): the head's record
 * (key names; not older than minSequence), then every page back to the first, each against the
 * address that named it, with its pairs well formed, at most maxPages, its seqids contiguous when the
 * pages carry them, and every skip link naming a page of the chain with the number and first seqid it
 * says. That is the structure, and it reads pages only. With readData every message is fetched (or
 * taken from its page) and checked against H2 and H1. A page that cannot be read ends the walk; every
 * fault found is in the report.
 */
export async function verifyRemoteLog(
  remote: LogReadRemote,
  name: string,
  options: { readData?: boolean; progress?: Progress; maxPages?: number; minSequence?: bigint } = {},
): Promise<VerifyReport> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  const faults: Fault[] = [];
  const reader = new LogReader(remote, name, { maxPages: options.maxPages });
  const entry = await remote.fetchName(name);
  if (!entry) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} has no log at ${remote.nsUrl}`);
  const headAddress = addressOf(entry.content);
  const headText = `head of ${JSON.stringify(name)} (${addressText(headAddress)})`;
  // Address → (number, first seqid) of every page walked, to check skip links against.
  const pages = new Map<string, { number?: bigint; firstSeqid?: bigint }>();
  // Declared before the head is checked: a head that fails returns report() at once, which reads them.
  let messages = 0;
  let bytes = entry.content.length;
  let head: RemoteLog;
  try {
    head = (await reader.check(entry, { floor: options.minSequence, where: headText })).page;
  } catch (err) {
    // A record that fails is a fault of its own (a head page that does not decode is DATA_LOSS): the
    // chain under it is checked still.
    if (!reader.signed || isRemoteLogError(err, ErrorCodes.DATA_LOSS)) {
      faults.push(faultOf(headText, err));
      return report();
    }
    faults.push(faultOf(`record of ${name}`, err));
    try {
      head = (await new LogReader(remote, name, { signed: false }).check(entry, { where: headText })).page;
    } catch (err) {
      faults.push(faultOf(headText, err));
      return report();
    }
  }
  const skips: { from: string; address: Uint8Array; number: bigint; firstSeqid: bigint }[] = [];
  const pairs: RemoteLog_Pair[] = [];
  let where = headText;
  let tail = head.tail;
  let expectFirst: bigint | undefined;
  progress.start("pages", 0);
  try {
    for await (const read of reader.pages(head)) {
      const { page } = read;
      if (read.address) where = read.where;
      tail = page.tail;
      bytes += read.bytes?.length ?? 0;
      progress.advance(1);
      pages.set(toHex(read.address ?? headAddress), { number: page.info?.number, firstSeqid: page.info?.firstSeqid });
      for (const skip of page.info?.skips ?? []) skips.push({ from: where, address: skip.address, number: skip.number, firstSeqid: skip.firstSeqid });
      if (page.info && expectFirst !== undefined && page.info.firstSeqid + BigInt(page.pair.length) !== expectFirst) {
        faults.push({ object: where, code: ErrorCodes.DATA_LOSS, problem: `${where} holds seqids ${page.info.firstSeqid}.. for ${page.pair.length} pairs, but the page after it starts at ${expectFirst}` });
      }
      expectFirst = page.info?.firstSeqid;
      for (const pair of page.pair) pairs.push(pair);
    }
  } catch (err) {
    faults.push(faultOf(isRemoteLogError(err) && err.details.limit ? where : `page ${addressText(tail)}`, err));
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
      const fetched = await reader.messageDataAllowingMissing(chunk);
      const data: Uint8Array[] = [];
      const present: RemoteLog_Pair[] = [];
      for (const [j, pair] of chunk.entries()) {
        const bytesOf = fetched[j];
        const object = addressText(pair.remoteHash);
        if (bytesOf === undefined) {
          faults.push({ object, code: ErrorCodes.NOT_FOUND, problem: `message ${toHex(pair.localHash)} (${object}) is missing from the CAS` });
          continue;
        }
        present.push(pair);
        data.push(bytesOf);
      }
      const checked = await reader.checkMessages(present, data);
      checked.forEach((result, j) => {
        const object = addressText(present[j].remoteHash);
        if (result instanceof RemoteLogError) faults.push(faultOf(object, new RemoteLogError(result.code, `message ${object}: ${result.text}`, { details: result.details })));
        else {
          bytes += data[j].length;
          messages++;
        }
      });
      progress.advance(chunk.length);
    }
    progress.stop();
  } else {
    messages = pairs.length;
  }
  return report();

  function report(): VerifyReport {
    return { kind: "log", head: addressText(headAddress), ok: faults.length === 0, faults, objects: pages.size, messages, bytes, readData: options.readData ?? false, ms: Math.round(performance.now() - started), signed: reader.signed };
  }
}
