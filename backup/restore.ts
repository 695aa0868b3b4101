import { randomBytes } from "node:crypto";
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText, equalBytes, toHex } from "../core/hash.js";
import { ensureDir, fsyncDir, ioError } from "../stores/file/atomic.js";
import { LockFile } from "../stores/file/lock-file.js";
import { encodeRecords, idOf, LogFileWriter } from "./log-file.js";
import type { ReadPack } from "./pack-format.js";
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
 * Rebuilds a local log from a pack chain. The chain is read and checked first (every pack's CID,
 * header and link), then the log is written beside the target, in `<to>.restoring-<pid>-<random>`
 * (backup/log-file.ts), a pack at a time, each checked as it goes (every message decodes, its id is
 * new, and a pack's last id is its header's last_id). Only a log that passed all
 * of it is moved into the target, so a corrupt or incomplete backup never touches it. A target
 * directory that holds anything is refused with CONFLICT unless force, which replaces its log (log.bin
 * and log.bin.tail-* files, under the log's lock) and leaves other files alone.
 */
export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  await checkTarget(options.to, options.force ?? false);
  // Packs hash on the thread pool while the log is written; nothing moves into the target before they all match.
  const { packs, checked } = await readChain(options.store, options.head, { progress, hashLater: true });
  const building = `${options.to.replace(/\/+$/, "")}.restoring-${process.pid}-${randomBytes(4).toString("hex")}`;
  let bytes = 0;
  try {
    const log = await LogFileWriter.create(building);
    try {
      progress.start("messages", packs[packs.length - 1].lastSeq + 1);
      for (const pack of packs) {
        let lastId: Uint8Array;
        try {
          lastId = appendPack(log, pack);
        } catch (err) {
          if (isRemoteLogError(err, ErrorCodes.INVALID_ARGUMENT) || isRemoteLogError(err, ErrorCodes.CONFLICT)) {
            throw RemoteLogError.dataLoss(`pack ${addressText(pack.address)}: ${err.message}`, err);
          }
          throw err;
        }
        if (!equalBytes(lastId, pack.lastId)) {
          throw RemoteLogError.dataLoss(`pack ${addressText(pack.address)}: its last message has id ${toHex(lastId)}, but the header says ${toHex(pack.lastId)}`);
        }
        bytes += pack.size;
        progress.advance(pack.count);
      }
      progress.stop();
    } finally {
      await log.close();
    }
    await checked;
    await checkTarget(options.to, options.force ?? false);
    if (options.force) await clearLog(options.to);
    await ensureDir(options.to);
    await rename(join(building, "log.bin"), join(options.to, "log.bin"));
    await fsyncDir(options.to);
  } finally {
    await rm(building, { recursive: true, force: true });
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

/** Appends a pack's messages and returns the last one's id. */
function appendPack(log: LogFileWriter, pack: ReadPack): Uint8Array {
  const records = encodeRecords(pack.messages, pack.firstSeq);
  log.appendEncoded([records]);
  return idOf(records, pack.messages.length - 1);
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
