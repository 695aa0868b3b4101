import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isRemoteLogError, RemoteLogError } from "../../core/errors.js";

/**
 * Durable file helpers shared by the file-based stores. A file is replaced the way Litestream and git
 * do it: write a temporary file beside it, fsync it, rename it over the target, fsync the directory.
 * A crash at any point leaves either the old file or the new one, plus perhaps a `.tmp` leftover that
 * removeLeftoverTmp() cleans up at the next open.
 */

export const TMP_SUFFIX = ".tmp";

/**
 * A temporary name beside path that no other writer can pick: it carries the writer's pid (so that a
 * later open can tell a crashed writer's leftover from a live writer's file in progress) and random bytes
 * (so that concurrent writers in one process do not collide).
 */
export function tmpPathFor(path: string): string {
  return `${path}.${process.pid}-${randomBytes(6).toString("hex")}${TMP_SUFFIX}`;
}

/** Replaces path with bytes atomically and durably. Throws INTERNAL on an I/O failure (disk full, permissions). */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tmpPathFor(path);
  try {
    const handle = await open(tmp, "wx");
    try {
      await handle.writeFile(bytes);
      // fdatasync also flushes the size of a new file, which is all the metadata a reader needs.
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw ioError(`cannot write ${path}`, err);
  }
  await fsyncDir(dirname(path));
}

/**
 * Makes a directory's entries (created, renamed, removed files) durable. Windows cannot open a
 * directory for fsync and journals renames itself, so there it is a no-op.
 */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw ioError(`cannot fsync directory ${dir}`, err);
  }
}

/**
 * Creates dir and any missing parents, durably: each new directory's entry is fsynced in its parent,
 * so a store created just before a crash is still found after it. Throws INTERNAL on an I/O failure.
 */
export async function ensureDir(dir: string): Promise<void> {
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true });
  } catch (err) {
    throw ioError(`cannot create ${dir}`, err);
  }
  if (first === undefined) return;
  // Every directory from dir up to the first one created is new, and so is its entry in its parent.
  for (let created = dir; ; created = dirname(created)) {
    await fsyncDir(dirname(created));
    if (created === first || dirname(created) === created) break;
  }
}

/**
 * Removes the `.tmp` files in dir that no live process is writing: those named by tmpPathFor() with
 * the pid of a dead process, and any other `.tmp` file, which none of our writers makes. Returns the
 * names removed. A live writer's file in progress is left alone, so opening a store while another
 * process writes to it does not break that write.
 */
export async function removeLeftoverTmp(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (!name.endsWith(TMP_SUFFIX)) continue;
    const pid = /\.(\d+)-[0-9a-f]+\.tmp$/.exec(name)?.[1];
    if (pid !== undefined && isAlive(Number(pid))) continue;
    try {
      await unlink(join(dir, name));
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(`cannot remove leftover ${join(dir, name)}`, err);
    }
  }
  if (removed.length > 0) await fsyncDir(dir);
  return removed;
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Wraps a raw I/O failure as INTERNAL with what was being done; our own errors pass through unchanged. */
export function ioError(what: string, err: unknown): RemoteLogError {
  if (isRemoteLogError(err)) return err;
  // Node's own messages already start with the errno code ("ENOSPC: no space left on device, write").
  return RemoteLogError.internal(`${what}: ${err instanceof Error ? err.message : String(err)}`, err);
}

/**
 * Whether a failure is a full disk or an exhausted quota (ENOSPC, EDQUOT), looking through our own
 * wrapping (`cause`). LevelDB reports it only as text ("IO error: …: No space left on device"), so
 * its message is looked at too.
 */
export function isOutOfSpace(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
    if (/No space left on device|Disk quota exceeded/i.test(e.message)) return true;
  }
  return false;
}

/**
 * What a server's store throws when its disk is full: TOO_LARGE, which clients get as
 * ResourceExhausted, with no path in the message (it goes to remote clients). Nothing was stored.
 */
export function serverOutOfSpace(what: string, err: unknown): RemoteLogError {
  return new RemoteLogError("TOO_LARGE", `server out of space: ${what}`, { cause: err, details: { limit: "disk space" } });
}
