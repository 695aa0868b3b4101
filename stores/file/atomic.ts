import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
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

/**
 * Files opened for writing with O_DSYNC: each write returns once its bytes (and the file's new size)
 * are on disk, as a write and an fdatasync would, in one call and so one thread-pool round trip instead
 * of two. Where the platform has no O_DSYNC (Windows), 0: the writer calls datasync itself.
 */
export const SYNCED_WRITES = constants.O_DSYNC ?? 0;

/** Writes all of bytes at position, however many calls the platform takes. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Replaces path with bytes atomically and durably. dir, when given, is path's directory held open
 * (a store that writes there often). Throws INTERNAL on an I/O failure (disk full, permissions).
 *
 * Each step is a round trip to libuv's thread pool, and a small pack (every publish writes one) took
 * eight of them: open, write, fdatasync, close, rename, and the directory's open, fsync and close. Here
 * the write is synced (SYNCED_WRITES), the close runs beside the rename (the bytes are on disk by then),
 * and a held directory needs only its fsync: four.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array, dir?: SyncedDir): Promise<void> {
  const tmp = tmpPathFor(path);
  try {
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | SYNCED_WRITES);
    try {
      await writeAll(handle, bytes, 0);
      // fdatasync also flushes the size of a new file, which is all the metadata a reader needs.
      if (SYNCED_WRITES === 0) await handle.datasync();
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
    const [closed, renamed] = await Promise.allSettled([handle.close(), rename(tmp, path)]);
    if (renamed.status === "rejected") throw renamed.reason;
    if (closed.status === "rejected") throw closed.reason;
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw ioError(`cannot write ${path}`, err, path);
  }
  await (dir ? dir.sync() : fsyncDir(dirname(path)));
}

/**
 * Makes a directory's entries (created, renamed, removed files) durable. Windows cannot open a
 * directory for fsync and journals renames itself, so there it is a no-op.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const held = await SyncedDir.open(dir);
  try {
    await held.sync();
  } finally {
    await held.close();
  }
}

/**
 * A directory held open, so that making its entries durable is one fsync, not an open, an fsync and a
 * close. fsync of a directory flushes its entries as they are when it runs, however long ago it was
 * opened. On Windows (see fsyncDir) it holds nothing and sync does nothing.
 */
export class SyncedDir {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle | undefined,
  ) {}

  /** Throws INTERNAL when dir cannot be opened. */
  static async open(dir: string): Promise<SyncedDir> {
    if (process.platform === "win32") return new SyncedDir(dir, undefined);
    try {
      return new SyncedDir(dir, await open(dir, "r"));
    } catch (err) {
      throw ioError(`cannot fsync directory ${dir}`, err, dir);
    }
  }

  /** Throws INTERNAL on an I/O failure. */
  async sync(): Promise<void> {
    try {
      await this.handle?.sync();
    } catch (err) {
      throw ioError(`cannot fsync directory ${this.path}`, err, this.path);
    }
  }

  async close(): Promise<void> {
    await this.handle?.close().catch(() => {});
  }
}

/** One SyncedDir of a SharedDir and the writes using it now. */
interface DirLease {
  dir: Promise<SyncedDir>;
  users: number;
  closing?: Promise<void>;
}

/**
 * A directory held open (SyncedDir) for every write that fsyncs it, opened when the first needs it. A
 * write that fails lets the handle go, since the directory may have been removed (and made again)
 * under the writer, and the next write opens it afresh. A handle let go closes only once the writes
 * still using it are done: closing it at once broke the fsync of a write running beside the failed
 * one (EBADF), an INTERNAL error on a write that had nothing wrong with it. Once released (the writer
 * is closing), each write still to come opens the directory for itself and closes it after.
 */
export class SharedDir {
  /** The handle writes take now; one that is not (or no longer) here has been let go. */
  private lease?: DirLease;
  private released = false;

  constructor(readonly path: string) {}

  /** Runs write with the directory held open. Throws what write throws, or INTERNAL when the directory cannot be opened. */
  async use<T>(write: (dir: SyncedDir) => Promise<T>): Promise<T> {
    const lease = this.lease ?? { dir: SyncedDir.open(this.path), users: 0 };
    if (!this.released) this.lease = lease;
    lease.users++;
    try {
      return await write(await lease.dir);
    } catch (err) {
      this.letGo(lease);
      throw err;
    } finally {
      lease.users--;
      this.closeIfUnused(lease);
      // The last write of a handle let go has closed it when it returns.
      if (lease.closing) await lease.closing;
    }
  }

  /** Lets the handle go: it closes now, or once the writes using it are done, which this does not wait for. */
  async release(): Promise<void> {
    this.released = true;
    const lease = this.lease;
    if (lease === undefined) return;
    this.letGo(lease);
    await lease.closing;
  }

  private letGo(lease: DirLease): void {
    if (this.lease === lease) this.lease = undefined;
    this.closeIfUnused(lease);
  }

  private closeIfUnused(lease: DirLease): void {
    if (this.lease !== lease && lease.users === 0) lease.closing ??= lease.dir.then((dir) => dir.close(), () => {});
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
    // Every caller runs at open, where errors go to the operator (a verb's --data FILE, say).
    throw userPathError(`cannot create directory ${dir}`, err, dir);
  }
  if (first === undefined) return;
  // Every directory from dir up to the first one created is new, and so is its entry in its parent.
  for (let created = dir; ; created = dirname(created)) {
    await fsyncDir(dirname(created));
    if (created === first || dirname(created) === created) break;
  }
}

/**
 * Removes the `.tmp` files in dir that a killed writer of ours left: those named by tmpPathFor() with
 * the pid of a process that is gone. Returns the names removed. A live writer's file in progress is
 * left alone, so opening a store while another process writes to it does not break that write; and so
 * is every other file, `.tmp` or not, since dir may be the user's (`--state .`): none of our writers
 * ever named a file any other way.
 */
export async function removeLeftoverTmp(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    const pid = /\.(\d+)-[0-9a-f]+\.tmp$/.exec(name)?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    try {
      await unlink(join(dir, name));
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(`cannot remove leftover ${join(dir, name)}`, err, join(dir, name));
    }
  }
  if (removed.length > 0) await fsyncDir(dir);
  return removed;
}

/**
 * Removes what writers of path that were killed left beside it: siblings named
 * `<path><marker><pid>-<hex><suffix>` (tmpPathFor's temporary files, a restore's building directory)
 * whose pid is no live process, files or directories with all they hold. A kill skips a writer's own
 * clean-up, and each retry left one more, as big as what it was writing, until one failed for want of
 * space. A live process's are left alone, so that a run beside another does not break it; and nothing
 * else is touched, since path's directory may be the user's. Returns the paths removed.
 */
export async function removeKilledSiblings(path: string, marker: string, suffix = ""): Promise<string[]> {
  const target = path.replace(/\/+$/, "");
  const dir = dirname(target);
  const prefix = `${basename(target)}${marker}`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return []; // nothing beside it to remove; the writer says what is wrong with the place
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(suffix)) continue;
    const pid = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length, name.length - suffix.length))?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    const leftover = join(dir, name);
    await rm(leftover, { recursive: true, force: true }).catch((err: unknown) => {
      throw ioError(`cannot remove ${leftover}, left by a process that was killed`, err, leftover);
    });
    removed.push(leftover);
  }
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

/** Open flag that makes the open of a FIFO return at once instead of waiting for its other end; none on Windows. */
const NON_BLOCKING = process.platform === "win32" ? 0 : constants.O_NONBLOCK;

/**
 * Opens path with flags, non-blocking, and refuses anything but a regular file with INVALID_ARGUMENT
 * "<what> <path> is not a regular file: it is a FIFO" (a directory, a device, a socket), details.file.
 * A FIFO given by mistake (mkfifo, a process substitution) is refused, where a plain open waited for a
 * writer forever. O_NONBLOCK changes nothing for a regular file. An error of the open itself (ENOENT,
 * EACCES, EISDIR for a directory opened to write) is thrown as it is, for the caller to name.
 */
export async function openRegularFile(path: string, flags: number, what: string): Promise<FileHandle> {
  const handle = await open(path, flags | NON_BLOCKING);
  let info: Stats;
  try {
    info = await handle.stat();
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  if (info.isFile()) return handle;
  await handle.close().catch(() => {});
  throw RemoteLogError.invalidArgument(`${what} ${path} is not a regular file: it is ${kindOf(info)}`, undefined, { file: path });
}

/** The whole of the regular file at path: openRegularFile's refusals, then its bytes. */
export async function readRegularFile(path: string, what: string): Promise<Buffer> {
  const handle = await openRegularFile(path, constants.O_RDONLY, what);
  try {
    return await handle.readFile();
  } finally {
    await handle.close().catch(() => {});
  }
}

function kindOf(info: Stats): string {
  if (info.isFIFO()) return "a FIFO";
  if (info.isDirectory()) return "a directory";
  if (info.isSocket()) return "a socket";
  if (info.isCharacterDevice() || info.isBlockDevice()) return "a device";
  return "something other than a file";
}

/** Whether anything is at path (false when it cannot be looked at). */
export function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Whether path is a directory (false when it is missing, a file, or cannot be looked at). */
export function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (info) => info.isDirectory(),
    () => false,
  );
}

/**
 * Whether a and b name the same file or directory however they are spelled (dir/., a symlink to it, a
 * bind mount): the same device and inode when both can be looked at, else the same absolute path.
 */
export async function isSamePath(a: string, b: string): Promise<boolean> {
  const [infoA, infoB] = await Promise.all([a, b].map((path) => stat(path, { bigint: true }).catch(() => undefined)));
  if (infoA && infoB) return infoA.dev === infoB.dev && infoA.ino === infoB.ino;
  return resolve(a) === resolve(b);
}

/**
 * For a file the user named to be written (an export's CAR, receive's --out): NOT_FOUND when the
 * directory it is to go in does not exist, INVALID_ARGUMENT when that is not a directory. Checked
 * first, so that the mistake is said as such rather than as a failure of some temporary file or lock.
 */
export async function requireDirOf(path: string, what: string): Promise<void> {
  const dir = dirname(path);
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw RemoteLogError.notFound(`cannot write ${what} ${path}: its directory ${dir} does not exist`, { file: path });
  if (!info.isDirectory()) throw RemoteLogError.invalidArgument(`cannot write ${what} ${path}: ${dir} is not a directory`, undefined, { file: path });
}

/**
 * ioError for a path under a directory the user named (a verb's --data, --state, --from, --to):
 * INVALID_ARGUMENT when a file stands where a directory must be (ENOTDIR, or EEXIST from mkdir) or a
 * directory where a file must be (EISDIR), the user's mistake rather than the machine's. For errors that go to the operator only: the message
 * names the path.
 */
export function userPathError(what: string, err: unknown, file?: string): RemoteLogError {
  const code = (err as NodeJS.ErrnoException).code;
  const details = file === undefined ? undefined : { file };
  if (code === "ENOTDIR" || code === "EEXIST") return RemoteLogError.invalidArgument(`${what}: a file is where a directory must be (${code})`, err, details);
  if (code === "EISDIR") return RemoteLogError.invalidArgument(`${what}: a directory is where a file must be (${code})`, err, details);
  if (isDenied(code)) return RemoteLogError.permissionDenied(`${what}: ${(err as Error).message}`, details);
  return ioError(what, err, file);
}

/** The errno codes of a system refusing access to a path: the user's to fix, not a bug. */
function isDenied(code: string | undefined): boolean {
  return code === "EACCES" || code === "EPERM" || code === "EROFS";
}

/**
 * A failed write to a directory of the user's own (a receiver's state, a sender's data) as the user
 * should read it: PERMISSION_DENIED when the system refused access (EACCES, EPERM, EROFS), as when the
 * directory is created, where it was INTERNAL, "a bug"; anything else as it is. Never for a server's
 * store, whose errors go to remote clients.
 */
export function ownPathError(err: unknown): unknown {
  if (!anyCause(err, (cause) => isDenied(cause.code))) return err;
  return isRemoteLogError(err) ? RemoteLogError.permissionDenied(err.text, err.details) : RemoteLogError.permissionDenied((err as Error).message);
}

/** Whether err, or an error it wraps (`cause`, up to 5 deep: our wrapping of a system error), passes test. */
function anyCause(err: unknown, test: (cause: NodeJS.ErrnoException) => boolean): boolean {
  for (let cause = err, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (test(cause)) return true;
  }
  return false;
}

/**
 * Wraps a raw I/O failure as INTERNAL with what was being done, and the file or directory it was
 * done to as details.file when given; our own errors pass through unchanged.
 */
export function ioError(what: string, err: unknown, file?: string): RemoteLogError {
  if (isRemoteLogError(err)) return err;
  // Node's own messages already start with the errno code ("ENOSPC: no space left on device, write").
  return RemoteLogError.internal(`${what}: ${err instanceof Error ? err.message : String(err)}`, err, file === undefined ? undefined : { file });
}

/**
 * Whether a failure is a full disk or an exhausted quota (ENOSPC, EDQUOT), looking through our own
 * wrapping (`cause`). LevelDB reports it only as text ("IO error: …: No space left on device"), so
 * its message is looked at too.
 */
export function isOutOfSpace(err: unknown): boolean {
  return anyCause(err, (cause) => cause.code === "ENOSPC" || cause.code === "EDQUOT" || /No space left on device|Disk quota exceeded/i.test(cause.message));
}

/**
 * Whether a failure is the process (EMFILE) or the system (ENFILE) out of file descriptors, looking
 * through our own wrapping (`cause`).
 */
export function isOutOfDescriptors(err: unknown): boolean {
  return anyCause(err, (cause) => cause.code === "EMFILE" || cause.code === "ENFILE");
}

/**
 * What a server's store throws when its disk is full: TOO_LARGE, which clients get as
 * ResourceExhausted, with no path in the message (it goes to remote clients). Nothing was stored.
 */
export function serverOutOfSpace(what: string, err: unknown): RemoteLogError {
  return new RemoteLogError("TOO_LARGE", `server out of space: ${what}`, { cause: err, details: { limit: "disk space" } });
}
