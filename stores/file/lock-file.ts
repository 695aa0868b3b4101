import { link, readFile, realpath, rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { RemoteLogError } from "../../core/errors.js";
import { ioError, isAlive, ownPathError, tmpPathFor } from "./atomic.js";

/**
 * The locks this process holds now, by real path (two spellings of one directory are one lock). A
 * lock file naming this process that is not here was released by it, though the file stayed (its
 * directory was read-only at the release): it is taken over, where this process found itself holding
 * it ("in use by … (this one)") until it exited.
 */
const heldHere = new Set<string>();

/**
 * An exclusive lock between processes: a file holding the owner's pid. It is created whole, by writing
 * a temporary file and hard-linking it to the lock path (link fails if the lock exists), so a lock
 * file is never seen empty. A lock whose pid is dead is left over from a crash and is taken over.
 *
 * Limits, on purpose: a pid reused by an unrelated live process after a reboot makes the lock look
 * held (remove the file by hand; the error says which), and it is advisory: only our own code honours it.
 */
export class LockFile {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly key: string,
  ) {}

  /**
   * Takes the lock at path for this process. Throws CONFLICT, naming what and the holder's pid, when a
   * live process (this one included) holds it; PERMISSION_DENIED when the directory may not be
   * written; INTERNAL on another I/O failure.
   */
  static async acquire(path: string, what: string): Promise<LockFile> {
    const mine = tmpPathFor(path);
    try {
      await writeFile(mine, `${process.pid}\n`);
    } catch (err) {
      throw ownPathError(ioError(`cannot create lock ${path}`, err, path));
    }
    try {
      // The directory exists now (the temporary file is in it).
      const key = join(await realpath(dirname(path)), basename(path));
      for (let attempt = 0; attempt < 10; attempt++) {
        try {
          await link(mine, path);
          heldHere.add(key);
          return new LockFile(path, key);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ownPathError(ioError(`cannot create lock ${path}`, err, path));
        }
        const holder = await readPid(path);
        if (holder === undefined) continue; // released between our link and our read: try again
        if (holder === process.pid && !heldHere.has(key)) {
          await takeOver(path, holder);
          continue;
        }
        if (isAlive(holder)) {
          throw RemoteLogError.conflict(
            `${what} is in use by process ${holder}${holder === process.pid ? " (this one)" : ""}; ` +
              `if no such process uses it, remove ${path}`,
            { file: path },
          );
        }
        await takeOver(path, holder);
      }
      throw RemoteLogError.conflict(`${what}: lock ${path} keeps changing hands; is another process starting?`, { file: path });
    } finally {
      await unlink(mine).catch(() => {});
    }
  }

  /** Removes the lock if this process still holds it. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.key);
    if ((await readPid(this.path)) === process.pid) await unlink(this.path).catch(() => {});
  }
}

async function readPid(path: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw ioError(`cannot read lock ${path}`, err, path);
  }
  const pid = Number(text.trim());
  // Not a pid we wrote: treat it as a dead holder (pid 0 is never alive) so that it can be taken over.
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
}

/**
 * Moves a dead holder's lock aside before removing it. rename is atomic, so of two processes taking
 * over at once only one moves the file; if what it moved is not the dead holder's lock (someone locked
 * in between), it puts it back.
 */
async function takeOver(path: string, deadPid: number): Promise<void> {
  const aside = tmpPathFor(`${path}.stale`);
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw ioError(`cannot take over lock ${path}`, err, path);
  }
  const moved = await readPid(aside);
  if (moved !== deadPid) await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
}
