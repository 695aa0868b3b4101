import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { RemoteLogError } from "../core/errors.js";
import { addressText, equalBytes, toHex } from "../core/hash.js";
import { ioError } from "../stores/file/atomic.js";
import { LockFile } from "../stores/file/lock-file.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { readChain } from "./pack-chain.js";
import type { PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

export interface RestoreOptions {
  store: PackStore;
  head: Uint8Array;
  /** The local log directory to rebuild. */
  to: string;
  /** Replace the log already in `to` (its log.bin and saved tails) instead of refusing. */
  force?: boolean;
  progress?: Progress;
}

export interface RestoreSummary {
  head: string;
  logName: string;
  messages: number;
  packs: number;
  bytes: number;
  to: string;
  ms: number;
}

/**
 * Rebuilds a local log from a pack chain. The whole chain is read and checked first (every pack's
 * CID, header and link, every message's id, no id twice), so a corrupt or incomplete backup is refused
 * before the target is touched. A target directory that holds anything is refused with CONFLICT unless
 * force, which replaces its log (log.bin and log.bin.tail-* files, under the log's lock) and leaves
 * other files alone. The log is written with one append per pack.
 */
export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  await checkTarget(options.to, options.force ?? false);
  const packs = await readChain(options.store, options.head, { readData: true, progress });
  if (options.force) await clearLog(options.to);
  const log = await FileLocalLog.open(options.to);
  let bytes = 0;
  try {
    if (log.length > 0) throw RemoteLogError.conflict(`${options.to} holds a log of ${log.length} messages; pass --force to replace it`);
    progress.start("messages", packs[packs.length - 1].lastSeq + 1);
    for (const pack of packs) {
      const appended = await log.append(pack.messages);
      // readChain refused duplicate ids, so every message appends at its own seq.
      if (appended.length !== pack.count || appended[0].seq !== pack.firstSeq) {
        throw RemoteLogError.internal(`pack ${addressText(pack.address)} appended ${appended.length} of ${pack.count} messages at seq ${appended[0]?.seq}`);
      }
      if (!equalBytes(appended[appended.length - 1].id, pack.lastId)) {
        throw RemoteLogError.dataLoss(`pack ${addressText(pack.address)}: last message ${toHex(appended[appended.length - 1].id)} is not ${toHex(pack.lastId)}`);
      }
      bytes += pack.size;
      progress.advance(pack.count);
    }
    progress.stop();
  } finally {
    await log.close();
  }
  const last = packs[packs.length - 1];
  return {
    head: addressText(options.head),
    logName: last.logName,
    messages: last.lastSeq + 1,
    packs: packs.length,
    bytes,
    to: options.to,
    ms: Math.round(performance.now() - started),
  };
}

async function checkTarget(dir: string, force: boolean): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw ioError(`cannot read ${dir}`, err);
  }
  if (names.length > 0 && !force) {
    throw RemoteLogError.conflict(`${dir} is not empty (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}); restore into an empty directory, or pass --force to replace the log in it`);
  }
}

/** Removes the log in dir, holding its lock so that no sender has it open meanwhile. */
async function clearLog(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const lock = await LockFile.acquire(join(dir, "LOCK"), `local log ${dir}`);
  try {
    for (const name of names) {
      if (name === "log.bin" || name.startsWith("log.bin.tail-")) await rm(join(dir, name), { force: true });
    }
  } finally {
    await lock.release();
  }
}
