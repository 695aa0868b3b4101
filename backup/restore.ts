import { randomBytes } from "node:crypto";
import { link, readdir, rename, rm, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { ensureDir, fsyncDir, ioError, removeKilledSiblings, userPathError } from "../stores/file/atomic.js";
import { LockFile } from "../stores/file/lock-file.js";
import { LogFileWriter } from "./log-file.js";
import { fetchPack, walkChain, type WalkedPack } from "./pack-chain.js";
import { LayoutPool } from "./restore-pool.js";
import { inPackFile, type PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

export interface RestoreOptions {
  store: PackStore;
  head: Uint8Array;
  /** The local log directory to rebuild. */
  to: string;
  /** Move a non-empty `to` aside whole (moveAside) and restore into a fresh one, instead of refusing. */
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
  /** Where what `to` held was moved, when force replaced it. */
  replaced?: string;
  ms: number;
}

/** The most messages a restore makes room for at first in its duplicate check (~80 MB). */
const MAX_EXPECTED_MESSAGES = 2 << 20;

/**
 * Rebuilds a local log from a pack chain. The chain's shape is read first (every pack's header and
 * link; from a directory, only each pack's first bytes); then each pack is read whole, checked (its
 * CID, header and body; every message decodes) and laid out as log records, shared between this
 * thread and one per other core (restore-pool.ts), a few packs at a time. The log is
 * written beside the target, in `<to>.restoring-<pid>-<random>` (backup/log-file.ts; those of killed
 * restores into the same target are removed first, removeKilledSiblings), a pack at a time, oldest
 * first, each checked as it goes (every id is new; a pack's last id is its header's last_id, where it is laid out).
 * Only a log that passed all of it is moved into the target, so a corrupt or incomplete backup never
 * touches it. A target directory that holds anything is refused with CONFLICT unless force, which
 * moves it aside whole (moveAside) once the new log is built, and restores into a fresh one. The log
 * goes in by a hard link, which never replaces a file: a log.bin that appeared in the target
 * meanwhile (a sender started) is CONFLICT, not overwritten.
 */
export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  await checkTarget(options.to, options.force ?? false);
  await removeKilledSiblings(options.to, ".restoring-");
  const pool = LayoutPool.start((address) => fetchPack(options.store, address));
  const building = `${options.to.replace(/\/+$/, "")}.restoring-${process.pid}-${randomBytes(4).toString("hex")}`;
  let bytes = 0;
  let replaced: string | undefined;
  let packs: WalkedPack[];
  try {
    packs = await walkChain(options.store, options.head, progress);
    // Oldest first, as they are written; each is read whole (where the walk read only its header)
    // as its turn nears, and laid out on a thread or this one.
    pool.schedule(packs.map(({ bytes, ...header }) => ({ header, bytes })));
    for (const pack of packs) pack.bytes = undefined;
    // Sized by the headers, which are not checked yet, and the packs' sizes (their files', which a
    // sparse file can make anything), so bounded too: the duplicate check grows past it as needed.
    const packBytes = packs.reduce((sum, pack) => sum + pack.size, 0);
    const log = await LogFileWriter.create(building, Math.min(packs[packs.length - 1].lastSeq + 1, Math.ceil(packBytes / 16), MAX_EXPECTED_MESSAGES));
    try {
      progress.start("messages", packs[packs.length - 1].lastSeq + 1);
      for (const [i, pack] of packs.entries()) {
        try {
          const records = await pool.records(i);
          try {
            log.appendEncoded([records]);
          } catch (err) {
            if (isRemoteLogError(err, ErrorCodes.CONFLICT)) throw RemoteLogError.dataLoss(`pack ${addressText(pack.address)}: ${err.message}`, err, { address: addressText(pack.address) });
            throw err;
          }
        } catch (err) {
          throw inPackFile(options.store, pack.address, err);
        }
        bytes += pack.size;
        progress.advance(pack.count);
      }
      progress.stop();
      // Every pack is laid out: the threads stop while the log syncs, not after.
      pool.close().catch(() => {}); // its failure is reported where it is awaited below
    } finally {
      await log.close();
    }
    if (await checkTarget(options.to, options.force ?? false)) replaced = await moveAside(options.to);
    await ensureDir(options.to);
    await link(join(building, "log.bin"), join(options.to, "log.bin")).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw RemoteLogError.conflict(`${join(options.to, "log.bin")} appeared during the restore (a sender started?); nothing was replaced`);
      }
      throw ioError(`cannot move the restored log into ${options.to}`, err, options.to);
    });
    await fsyncDir(options.to);
  } finally {
    await pool.close();
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
    ...(replaced === undefined ? {} : { replaced }),
    ms: Math.round(performance.now() - started),
  };
}

/** Whether dir holds anything; CONFLICT when it does, unless force. */
async function checkTarget(dir: string, force: boolean): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw userPathError(`cannot read ${dir}`, err, dir);
  }
  if (names.length > 0 && !force) {
    throw RemoteLogError.conflict(`${dir} is not empty (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}); restore into an empty directory, or pass --force to move it aside and replace it`);
  }
  return names.length > 0;
}

/**
 * Moves a forced restore's target aside whole, to `<to>.replaced-<time>` beside it, and returns that
 * path. A directory's log, saved tails, published marks and owner describe one log and go together:
 * removing only the log (as force did) lost it without a copy and kept marks that made send refuse
 * the restored log as DATA_LOSS, or, from another log's backup, mixed two logs. Nothing is deleted;
 * the user removes the old directory once sure. Under the log's lock, so not while a sender has it
 * open; the lock moves with the directory and is dropped there. A kill after the rename leaves no
 * target, which the next restore fills like any missing one.
 */
async function moveAside(to: string): Promise<string> {
  const target = to.replace(/\/+$/, "");
  const aside = `${target}.replaced-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  const lock = await LockFile.acquire(join(target, "LOCK"), `local log ${target}`);
  try {
    await rename(target, aside);
  } catch (err) {
    await lock.release();
    throw ioError(`cannot move ${target} aside to ${aside}`, err, target);
  }
  await unlink(join(aside, "LOCK")).catch(() => {});
  await fsyncDir(dirname(target));
  return aside;
}
