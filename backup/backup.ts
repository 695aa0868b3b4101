import { ErrorCodes, RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressText, decodeMessage, messageId } from "../core/hash.js";
import { DEFAULT_PACK_SIZE, deflateBody, encodePack, packCutter } from "./pack-format.js";
import { readPack, walkChain } from "./pack-chain.js";
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
  /** Move the head onto the packs stored so far at least this often while the run goes on (HEAD_EVERY_MS). */
  headEveryMs?: number;
  progress?: Progress;
}

/**
 * A run moves the head onto what it has stored at least this often. A pack no head reaches is garbage
 * to a gc of the store once it is older than the gc's grace (1 h by default): a run that moved the head
 * only at its end lost its first packs to a routine gc when it ran longer than that, then moved the head
 * onto the broken chain and succeeded. A head each minute also lets a killed run resume from there.
 */
export const HEAD_EVERY_MS = 60_000;

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
 * the head onto the packs stored, at least every headEveryMs and last at the end. Packs are
 * deterministic, so a run killed anywhere leaves a head whose chain is whole, and the next run goes on
 * from it, writing the same packs again (a store skips those it has). CONFLICT when the source is
 * another log than the one backed up there, or the head moved meanwhile.
 */
export async function runBackup(options: BackupOptions): Promise<BackupSummary> {
  const started = performance.now();
  const { source, target } = options;
  const progress = options.progress ?? silentProgress;
  const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
  const previousHead = await target.readHead();
  const headEveryMs = options.headEveryMs ?? HEAD_EVERY_MS;
  /** The head as this run last left it. */
  let head = previousHead;
  let headMovedAt = performance.now();
  const previous = previousHead ? await readPack(target, previousHead.pack) : undefined;
  if (previous && previous.logName !== source.logName) {
    // A local log is named by its directory unless --log-name says otherwise: one restored or moved into
    // another directory is the same log under another name.
    const hint = source.logNameFlag ? `; if this is that log in another directory (restored or moved), give ${source.logNameFlag} ${JSON.stringify(previous.logName)}` : "";
    throw RemoteLogError.conflict(`${target.where} holds a backup of log ${JSON.stringify(previous.logName)}, not of ${JSON.stringify(source.logName)}${hint}`);
  }
  // A pack added to a chain that lacks an older one (deleted, or damaged) could never be restored, and
  // the run said it was backed up. Where the store reads packs' first bytes (a directory), walking the
  // chain's headers costs ~4 KiB a pack; from a CAS it would fetch every pack whole at every run.
  if (previousHead && target.readStart) {
    await walkChain(target, previousHead.pack).catch((err: unknown) => {
      if (!isRemoteLogError(err, ErrorCodes.NOT_FOUND) && !isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw err;
      throw new RemoteLogError(
        err.code,
        `the backup in ${target.where} is broken, so nothing was added to it: ${err.text}. \`remotelog verify --from ${target.where}\` says what else is wrong; to start a new chain, back up into an empty directory`,
        { cause: err, details: err.details },
      );
    });
  }
  const read = await source.readSince(previous && { lastSeq: previous.lastSeq, lastId: previous.lastId, sequence: previous.logHead?.sequence });
  const logName = source.logName;
  const compress = options.compress ?? true;
  const cutter = packCutter(packSize, logName);

  // Packs are cut as the source hands the messages over, each where the next message no longer fits
  // (packCutter, splitIntoPacks' cut, so the same messages make the same packs), and only a few are held at once:
  // reading the whole log first held all of it, which the collector copied on every scavenge.
  let link = previous?.address ?? new Uint8Array(0);
  let seq = read.firstSeq;
  let packs = 0;
  let bytes = 0;
  let run: Uint8Array[] = [];
  /** The id of run's last message, when the source named it (the last of a chunk): others are hashed. */
  let runLastId: Uint8Array | undefined;
  // Bodies deflate on the thread pool, a few packs ahead; headers chain one after the other, since each
  // names the CID of the pack before it.
  const sealed: { messages: Uint8Array[]; firstSeq: number; lastId?: Uint8Array; body: Promise<Uint8Array | undefined> }[] = [];
  /** Puts in flight, oldest first, with the pack each stores. */
  const writes: { done: Promise<void>; address: Uint8Array; lastSeq: number }[] = [];
  /** Waits for the oldest put; then, when the head is due to move, moves it there (all older are stored). */
  const settleOldest = async () => {
    const { done, address, lastSeq } = writes.shift()!;
    await done;
    if (performance.now() - headMovedAt < headEveryMs) return;
    head = await target.writeHead({ pack: address, logName, lastSeq }, head);
    headMovedAt = performance.now();
  };
  const seal = () => {
    const body = compress ? deflateBody(run) : Promise.resolve(undefined);
    body.catch(() => {}); // awaited in order by writeOldest
    sealed.push({ messages: run, firstSeq: seq - run.length, lastId: runLastId, body });
    run = [];
  };
  const writeOldest = async () => {
    const { messages, firstSeq, lastId, body } = sealed.shift()!;
    const count = messages.length;
    const pack = encodePack(
      { logName, firstSeq, lastSeq: firstSeq + count - 1, count, previous: link, logHead: read.logHead, lastId: lastId ?? idOf(messages[count - 1]) },
      messages,
      await body,
    );
    // The next pack is laid out while this one is written, at most two writes in flight; the head
    // moves only once all are stored, so a crash at any point leaves the previous backup as it was.
    if (writes.length >= 2) await settleOldest();
    const write = target.put([pack]);
    write.catch(() => {}); // awaited by settleOldest
    writes.push({ done: write, address: pack.address, lastSeq: firstSeq + count - 1 });
    link = pack.address;
    bytes += pack.bytes.length;
    packs++;
    progress.advance(count);
  };
  if (read.expected > 0) progress.start("messages", read.expected);
  for await (const chunk of read.chunks) {
    const messages = chunk.messages;
    for (let i = 0; i < messages.length; i++) {
      if (cutter.startsPack(messages[i])) {
        seal();
        while (sealed.length > PACKS_AHEAD) await writeOldest();
      }
      run.push(messages[i]);
      runLastId = i === messages.length - 1 ? chunk.lastId : undefined;
      seq++;
    }
  }
  if (run.length > 0) seal();
  while (sealed.length > 0) await writeOldest();
  await Promise.all(writes.map((write) => write.done));
  progress.stop();
  const summary = (head: Uint8Array | undefined): BackupSummary => ({
    head: head ? addressText(head) : "",
    previous: previous && addressText(previous.address),
    logName,
    messages: seq,
    added: seq - read.firstSeq,
    packs,
    bytes,
    ms: Math.round(performance.now() - started),
  });
  if (packs === 0) return summary(previous?.address);
  await target.writeHead({ pack: link, logName, lastSeq: seq - 1 }, head);
  return summary(link);
}

/** Packs sealed (their bodies deflating) ahead of the one being laid out. */
const PACKS_AHEAD = 4;

function idOf(message: Uint8Array): Uint8Array {
  return messageId(decodeMessage(message));
}
