import { createHash } from "node:crypto";
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import type { Checkpoint, CheckpointStore } from "../../core/checkpoint-store.js";
import { RemoteLogError } from "../../core/errors.js";
import { checkPath } from "../../core/options.js";
import { fromHex, toHex } from "../../core/hash.js";
import { ensureDir, ownPathError, readRegularFile, removeLeftoverTmp, SharedDir, userPathError, writeFileAtomic } from "./atomic.js";
import { LockFile } from "./lock-file.js";
import { KeyedMutex } from "./mutex.js";

/** The JSON in each file. The name is kept so that a file can be checked against the name asked for. */
interface CheckpointFile {
  format: 1;
  name: string;
  delivered: number;
  /** Hex. */
  lastId: string;
  /** Decimal, since JSON numbers cannot hold every uint64; absent when the checkpoint has none. */
  sequence?: string;
  /** Absent when 0. */
  redactions?: number;
  /** Absent when 0. */
  from?: number;
  /** `receive --out`: the absolute path of the file and its length at this checkpoint; both or neither. */
  outFile?: string;
  outLength?: number;
}

/**
 * The receiver's durable checkpoints: one small JSON file per name, `<dir>/<sha256 hex of the name>.json`
 * (names may hold any character, file names may not), each replaced atomically on save.
 */
export class FileCheckpointStore implements CheckpointStore {
  private readonly locks = new KeyedMutex();
  private closed = false;
  /**
   * dir, held open for the fsync each save makes of it: opening and closing it for each were two more
   * trips through libuv's threads a save, and a receiver waits for each batch's save before the next
   * (a 100k catch-up with --state makes 98).
   */
  private readonly dirHeld: SharedDir;

  private constructor(
    readonly dir: string,
    private readonly readOnly: boolean,
    private readonly owner?: LockFile,
  ) {
    this.dirHeld = new SharedDir(dir);
  }

  /**
   * `const checkpoints = await FileCheckpointStore.open(dir)`: opens (creating if needed) the store in
   * dir and removes crashed writers' temporary files. Throws PERMISSION_DENIED when dir may not be
   * written, INTERNAL on another I/O failure. Idempotent.
   * With readOnly (a verb that reads only), it creates and removes nothing, and save throws INTERNAL.
   * With exclusive (a receiver's state), dir is this store's alone until close(): a LOCK file holds
   * it, and a second open is CONFLICT naming the process that holds it. Two receivers on one state
   * each cached and saved its own checkpoint of a name, and moved the other's, back too.
   */
  static async open(dir: string, options: { readOnly?: boolean; exclusive?: boolean } = {}): Promise<FileCheckpointStore> {
    // The library exports this store: "" was INTERNAL "cannot create directory : ENOENT".
    checkPath("dir", dir, "a directory");
    if (options.readOnly) return new FileCheckpointStore(dir, true);
    await ensureDir(dir);
    // An existing directory this process may not write is said now, not at the first save, after a delivery.
    await access(dir, constants.W_OK).catch((err: unknown) => {
      throw userPathError(`cannot write checkpoints in ${dir}`, err, dir);
    });
    const owner = options.exclusive ? await LockFile.acquire(join(dir, "LOCK"), `receiver state ${dir}`) : undefined;
    try {
      // Only by its holder, when there is one: another receiver's save may be under way.
      await removeLeftoverTmp(dir);
    } catch (err) {
      await owner?.release();
      throw err;
    }
    return new FileCheckpointStore(dir, false, owner);
  }

  /** The path of a name's checkpoint file. */
  pathOf(name: string): string {
    return join(this.dir, `${createHash("sha256").update(name, "utf8").digest("hex")}.json`);
  }

  /**
   * The name's checkpoint, or undefined when none was saved. Throws DATA_LOSS (details: file, name) when
   * it does not parse, belongs to another name or holds impossible values; INTERNAL on an I/O failure.
   */
  async load(name: string): Promise<Checkpoint | undefined> {
    this.checkOpen();
    const path = this.pathOf(name);
    let text: string;
    try {
      // A FIFO (or anything but a file) is refused at once: a plain read waited for a writer for ever.
      text = (await readRegularFile(path, "checkpoint")).toString("utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw userPathError(`cannot read checkpoint ${path}`, err, path);
    }
    // The file and name as fields, as the local log's damage carries them, so that an app can move the file aside without parsing the message.
    const bad = (why: string, cause?: unknown) => RemoteLogError.dataLoss(`checkpoint ${path} of name ${JSON.stringify(name)} is damaged: ${why}`, cause, { file: path, name });
    let file: CheckpointFile;
    try {
      file = JSON.parse(text) as CheckpointFile;
    } catch (err) {
      throw bad("not JSON", err);
    }
    if (file === null || typeof file !== "object" || file.format !== 1) throw bad("not a checkpoint of format 1");
    if (file.name !== name) throw bad(`it is the checkpoint of ${JSON.stringify(file.name)}`);
    if (!Number.isSafeInteger(file.delivered) || file.delivered < 0) throw bad(`delivered is ${JSON.stringify(file.delivered)}`);
    if (typeof file.lastId !== "string") throw bad("lastId is not a string");
    let lastId: Uint8Array;
    try {
      lastId = fromHex(file.lastId, "lastId");
    } catch (err) {
      throw bad("lastId is not hex", err);
    }
    const checkpoint: Checkpoint = { delivered: file.delivered, lastId };
    if (file.sequence !== undefined) {
      if (typeof file.sequence !== "string" || !/^\d{1,20}$/.test(file.sequence)) throw bad(`sequence is ${JSON.stringify(file.sequence)}`);
      checkpoint.sequence = BigInt(file.sequence);
    }
    if (file.redactions !== undefined) {
      if (!Number.isSafeInteger(file.redactions) || file.redactions < 0) throw bad(`redactions is ${JSON.stringify(file.redactions)}`);
      checkpoint.redactions = file.redactions;
    }
    if (file.from !== undefined) {
      if (!Number.isSafeInteger(file.from) || file.from < 0 || file.from > file.delivered) throw bad(`from is ${JSON.stringify(file.from)}`);
      if (file.from > 0) checkpoint.from = file.from;
    }
    if (file.outFile !== undefined || file.outLength !== undefined) {
      if (typeof file.outFile !== "string" || file.outFile.length === 0) throw bad(`outFile is ${JSON.stringify(file.outFile)}`);
      if (!Number.isSafeInteger(file.outLength) || file.outLength! < 0) throw bad(`outLength is ${JSON.stringify(file.outLength)}`);
      checkpoint.out = { file: file.outFile, length: file.outLength! };
    }
    return checkpoint;
  }

  /**
   * Replaces the name's checkpoint atomically and durably. Saves of one name apply in call order.
   * Throws INVALID_ARGUMENT for a delivered count that is not a non-negative integer, INTERNAL on an
   * I/O failure (the previous checkpoint is then still there, whole).
   */
  async save(name: string, checkpoint: Checkpoint): Promise<void> {
    this.checkOpen();
    if (this.readOnly) throw RemoteLogError.internal(`checkpoint store ${this.dir} was opened to read only`);
    if (!Number.isSafeInteger(checkpoint.delivered) || checkpoint.delivered < 0) {
      throw RemoteLogError.invalidArgument(`checkpoint of ${JSON.stringify(name)}: delivered must be a non-negative integer, not ${checkpoint.delivered}`);
    }
    // Saved, it would be a checkpoint that load calls damaged.
    if (checkpoint.from !== undefined && (!Number.isSafeInteger(checkpoint.from) || checkpoint.from < 0 || checkpoint.from > checkpoint.delivered)) {
      throw RemoteLogError.invalidArgument(`checkpoint of ${JSON.stringify(name)}: from must be a non-negative integer no greater than delivered (${checkpoint.delivered}), not ${checkpoint.from}`);
    }
    const file: CheckpointFile = { format: 1, name, delivered: checkpoint.delivered, lastId: toHex(checkpoint.lastId) };
    if (checkpoint.sequence !== undefined) file.sequence = checkpoint.sequence.toString();
    if (checkpoint.redactions) file.redactions = checkpoint.redactions;
    if (checkpoint.from) file.from = checkpoint.from;
    if (checkpoint.out !== undefined) {
      if (!Number.isSafeInteger(checkpoint.out.length) || checkpoint.out.length < 0 || checkpoint.out.file.length === 0) {
        throw RemoteLogError.invalidArgument(`checkpoint of ${JSON.stringify(name)}: out must name a file and a non-negative length`);
      }
      file.outFile = checkpoint.out.file;
      file.outLength = checkpoint.out.length;
    }
    const bytes = Buffer.from(`${JSON.stringify(file)}\n`, "utf8");
    await this.locks.run(name, async () => {
      await this.dirHeld.use((held) => writeFileAtomic(this.pathOf(name), bytes, held)).catch((err: unknown) => {
        throw ownPathError(err);
      });
    });
  }

  /** Waits for saves in progress, then lets the directory go (exclusive). Idempotent; later calls throw INTERNAL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locks.idle();
    await this.dirHeld.release();
    await this.owner?.release();
  }

  private checkOpen(): void {
    if (this.closed) throw RemoteLogError.internal(`checkpoint store ${this.dir} is closed`);
  }
}
