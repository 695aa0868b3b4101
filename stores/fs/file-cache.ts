import { open, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import { openFilesLimit } from "../../core/descriptors.js";
import { RemoteLogError } from "../../core/errors.js";
import { ioError, isOutOfDescriptors } from "../file/atomic.js";
import { readExactly } from "./pack.js";

/**
 * Open pack files for positioned reads, reused across calls. At most `limit` idle files stay open;
 * a file in use by a read is never closed under it (it is closed once released, if over the limit).
 * When the process runs out of file descriptors, the idle files are closed, the limit halved, and the
 * open tried once more (giveBack), so a low `ulimit -n` costs reopening packs rather than failing reads.
 */
export class FileCache {
  private readonly files = new Map<string, { handle: Promise<FileHandle>; users: number }>();
  private closed = false;

  constructor(private limit: number) {}

  /** Reads length bytes at position of path. Throws DATA_LOSS (message from what()) if the file is missing or short. */
  async read(path: string, position: number, length: number, what: () => string): Promise<Buffer> {
    if (this.closed) throw RemoteLogError.internal(`content store is closed`);
    let file = this.files.get(path);
    if (file) {
      // Most recently used goes last, so eviction takes the first idle one.
      this.files.delete(path);
    } else {
      file = { handle: this.open(path), users: 0 };
      file.handle.catch(() => {});
    }
    this.files.set(path, file);
    file.users++;
    try {
      let handle: FileHandle;
      try {
        handle = await file.handle;
      } catch (err) {
        if (this.files.get(path) === file) this.files.delete(path);
        // The pack's name, not its path: this message goes to remote clients.
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw RemoteLogError.dataLoss(`block ${what()}: pack ${basename(path)} is missing`, err, { address: what(), file: path });
        throw ioError(`cannot open pack ${path}`, err, path);
      }
      try {
        return await readExactly(handle, position, length, `pack ${basename(path)} (reading block ${what()})`);
      } catch (err) {
        throw ioError(`cannot read pack ${path}`, err, path);
      }
    } finally {
      file.users--;
      await this.evict();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.evict();
  }

  /**
   * For a process out of descriptors: closes every idle file, and from then on keeps at most half as
   * many as were open, so that those given back stay free for the rest of the process (writes,
   * connections, module loads) rather than being filled with packs again. Whether any was closed:
   * only a call that finds idle files lowers the limit, as the others of the same burst, finding them
   * given back, would halve it again.
   */
  async giveBack(): Promise<boolean> {
    const idle = [...this.files.values()].some((file) => file.users === 0);
    if (idle) this.limit = Math.max(1, Math.min(this.limit, this.files.size >> 1));
    await this.evict(0);
    return idle;
  }

  private async open(path: string): Promise<FileHandle> {
    try {
      return await open(path, "r");
    } catch (err) {
      if (!isOutOfDescriptors(err)) throw err;
    }
    await this.giveBack();
    try {
      return await open(path, "r");
    } catch (err) {
      if (!isOutOfDescriptors(err)) throw err;
      // Every descriptor is in use elsewhere (connections, reads in flight): a retry later may find one.
      // The pack's name, not its path: this message goes to remote clients.
      throw RemoteLogError.unavailable(`cannot open pack ${basename(path)}: the server has too many files open`, err);
    }
  }

  /** Closes idle files (least recently used first) until at most `keep` remain, or every one once closed. */
  private async evict(keep = this.limit): Promise<void> {
    // Victims leave the map before the first await, so a read that starts meanwhile opens its own.
    let excess = this.closed ? this.files.size : this.files.size - keep;
    const victims: Promise<FileHandle>[] = [];
    for (const [path, file] of this.files) {
      if (excess <= 0) break;
      if (file.users > 0) continue;
      this.files.delete(path);
      victims.push(file.handle);
      excess--;
    }
    await Promise.all(victims.map((handle) => handle.then((h) => h.close()).catch(() => {})));
  }
}

/**
 * How many idle packs a store keeps open when not told: 1,024 (a million-message log is about 700
 * packs, and a catch-up reads its packs in order, so a cache smaller than the log reopens every pack on
 * every catch-up), but at most a quarter of this process's descriptor limit, so that connections and
 * pack writes keep the rest (under `ulimit -n 1024`, 1,024 idle packs would leave them none). 64
 * where the limit cannot be read.
 */
export function defaultOpenPacks(): number {
  const limit = openFilesLimit();
  return limit === undefined ? 64 : Math.max(8, Math.min(1024, Math.floor(limit / 4)));
}
