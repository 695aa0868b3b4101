import { RemoteLogError } from "../core/errors.js";
import { addressText, decodeMessage, messageId } from "../core/hash.js";
import { DEFAULT_PACK_SIZE, deflateBody, encodePack, splitIntoPacks } from "./pack-format.js";
import { readPack } from "./pack-chain.js";
import type { PackStore } from "./pack-store.js";
import type { LogSource } from "./source.js";
import { silentProgress, type Progress } from "./progress.js";

export interface BackupOptions {
  source: LogSource;
  target: PackStore;
  /** Largest pack in bytes; default DEFAULT_PACK_SIZE (2 MiB). */
  packSize?: number;
  /** Deflate pack bodies where that saves space (default); false stores every body as it is. */
  compress?: boolean;
  progress?: Progress;
}

export interface BackupSummary {
  /** The head pack's CID (base32), after this backup. */
  head: string;
  /** The head before it, if there was one. */
  previous?: string;
  logName: string;
  /** Messages in the whole backup, and new in this run. */
  messages: number;
  added: number;
  /** Packs written by this run and their total size. */
  packs: number;
  bytes: number;
  ms: number;
}

/**
 * One backup run: reads the previous head from the target, reads from the source only the messages
 * after the last one it holds, lays them out in packs chained onto it, stores the packs, and moves
 * the head last. Packs are deterministic, so a run killed anywhere leaves the previous head (and its
 * chain) intact, and the next run writes the same packs again (a store skips those it has) and moves
 * the head. CONFLICT when the source is another log than the one backed up there, or the head moved
 * meanwhile.
 */
export async function runBackup(options: BackupOptions): Promise<BackupSummary> {
  const started = performance.now();
  const { source, target } = options;
  const progress = options.progress ?? silentProgress;
  const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
  const previousHead = await target.readHead();
  const previous = previousHead ? await readPack(target, previousHead.pack) : undefined;
  if (previous && previous.logName !== source.logName) {
    throw RemoteLogError.conflict(`${target.where} holds a backup of log ${JSON.stringify(previous.logName)}, not of ${JSON.stringify(source.logName)}`);
  }
  const read = await source.readSince(previous && { lastSeq: previous.lastSeq, lastId: previous.lastId, sequence: previous.logHead?.sequence });
  const summary = (head: Uint8Array | undefined, packs: number, bytes: number): BackupSummary => ({
    head: head ? addressText(head) : "",
    previous: previous && addressText(previous.address),
    logName: source.logName,
    messages: read.firstSeq + read.messages.length,
    added: read.messages.length,
    packs,
    bytes,
    ms: Math.round(performance.now() - started),
  });
  if (read.messages.length === 0) return summary(previous?.address, 0, 0);

  const runs = splitIntoPacks(read.messages, packSize, source.logName);
  progress.start("packs", runs.length);
  // Bodies deflate on the thread pool, all at once; headers chain one after the other, since each
  // names the CID of the pack before it.
  const compress = options.compress ?? true;
  const bodies = runs.map((run) => (compress ? deflateBody(run.map((i) => read.messages[i])) : Promise.resolve(undefined)));
  bodies.forEach((body) => body.catch(() => {})); // awaited in order below
  let link = previous?.address ?? new Uint8Array(0);
  let bytes = 0;
  const writes: Promise<void>[] = [];
  for (let r = 0; r < runs.length; r++) {
    const run = runs[r];
    const messages = run.map((i) => read.messages[i]);
    const firstSeq = read.firstSeq + run[0];
    const lastSeq = firstSeq + run.length - 1;
    // Only the last pack's last id is at hand without hashing; the others' come from their messages.
    const lastId = run[run.length - 1] === read.messages.length - 1 ? read.lastId : undefined;
    const pack = encodePack(
      { logName: source.logName, firstSeq, lastSeq, count: run.length, previous: link, logHead: read.logHead, lastId: lastId ?? idOf(messages[messages.length - 1]) },
      messages,
      compress ? await bodies[r] : undefined,
    );
    // The next pack is laid out while this one is written, at most two writes in flight; the head
    // moves only once all are stored, so a crash at any point leaves the previous backup as it was.
    if (writes.length >= 2) await writes.shift();
    const write = target.put([pack]);
    write.catch(() => {}); // awaited below
    writes.push(write);
    link = pack.address;
    bytes += pack.bytes.length;
    progress.advance(1);
  }
  await Promise.all(writes);
  progress.stop();
  await target.writeHead({ pack: link, logName: source.logName, lastSeq: read.firstSeq + read.messages.length - 1 }, previousHead);
  return summary(link, runs.length, bytes);
}

function idOf(message: Uint8Array): Uint8Array {
  return messageId(decodeMessage(message));
}
