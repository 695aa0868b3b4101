import { open, type FileHandle } from "node:fs/promises";
import { resolve } from "node:path";
import type { Checkpoint, CheckpointStore } from "../core/checkpoint-store.js";
import { RemoteLogError } from "../core/errors.js";
import { ioError, requireDirOf, userPathError } from "../stores/file/atomic.js";
import { LockFile } from "../stores/file/lock-file.js";

/*
 * `receive --out FILE`: exactly once into a file the receiver owns.
 *
 * Each batch goes: append the lines, fdatasync the file, then save the checkpoint with the file's new
 * length (atomically, as every checkpoint). At start the file is cut back to the length the checkpoint
 * recorded. A crash at any point therefore leaves one of:
 *   - lines (whole or torn) past the recorded length whose checkpoint was never saved: cut at start,
 *     and the receiver, whose checkpoint is still before them, delivers them again;
 *   - the new checkpoint with its length: the file holds exactly its lines, fsynced before it.
 * We cut back rather than roll forward (reading the last lines' seqs and moving the checkpoint up to
 * them) because the checkpoint holds more than a position (the signed record's sequence floor, the
 * redaction count) that a line does not carry; cutting needs nothing but the length, and only ever
 * removes lines that are delivered again at once. Only this writer cuts, only past what its own
 * checkpoint recorded, and only lines it could have written there (rising seqs from its checkpoint's):
 * anything else past it was put there by someone else and is CONFLICT, and a file shorter than
 * recorded was changed by someone else and is DATA_LOSS.
 */

/** The out file, opened for appending, with the checkpoints that record its length. */
export class OutFile implements CheckpointStore {
  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    private readonly store: CheckpointStore,
    private length: number,
    private readonly lock: LockFile,
  ) {}

  /**
   * Opens (creating) file for name's lines, cuts it back to the length name's checkpoint recorded, and
   * records its length when the checkpoint has none yet (so that a crash before the first saved batch
   * cuts back to where this run began). Returns the file and how many bytes were cut. Throws CONFLICT
   * when the checkpoint was kept for another file, FILE holds bytes past what it recorded that are not
   * this receiver's lines, or another receiver is writing FILE (FILE.lock),
   * DATA_LOSS when the file is shorter than recorded, INVALID_ARGUMENT when fromSeq (receive
   * --from-seq) is below the seqs FILE already holds, INTERNAL on an I/O failure.
   */
  static async open(file: string, name: string, store: CheckpointStore, fromSeq?: number): Promise<{ out: OutFile; cut: number }> {
    const path = resolve(file);
    await requireDirOf(path, "--out file");
    // Two writers of one file would each cut the other's lines.
    const lock = await LockFile.acquire(`${path}.lock`, `--out ${path}`);
    let handle: FileHandle;
    try {
      handle = await open(path, "a+");
    } catch (err) {
      await lock.release();
      throw userPathError(`cannot open --out ${path}`, err, path);
    }
    try {
      const checkpoint = await store.load(name);
      let size = (await handle.stat()).size;
      if (checkpoint?.out === undefined) {
        // Nothing of this file is ours yet: what it holds stays, and our lines start after it, on a
        // line of their own (the first was glued onto a last line that had no newline).
        if (size > 0) {
          const last = Buffer.alloc(1);
          await handle.read(last, 0, 1, size - 1);
          if (last[0] !== 0x0a) {
            await handle.write("\n");
            size += 1;
          }
        }
        await handle.datasync();
        await store.save(name, { ...(checkpoint ?? { delivered: 0, lastId: new Uint8Array(0) }), out: { file: path, length: size } });
        return { out: new OutFile(handle, path, store, size, lock), cut: 0 };
      }
      if (checkpoint.out.file !== path) {
        throw RemoteLogError.conflict(`the checkpoint of name ${JSON.stringify(name)} was kept with --out ${checkpoint.out.file}, not ${path}; use that file or another --state`, { file: path, name });
      }
      // A seek back would append lines FILE holds already: exactly once is what FILE is for, so the
      // seek is refused rather than its lines skipped, which would leave the user waiting for them.
      if (fromSeq !== undefined && fromSeq < checkpoint.delivered) {
        throw RemoteLogError.invalidArgument(
          `--out ${path} already holds name ${JSON.stringify(name)}'s lines up to seq ${checkpoint.delivered - 1}, and --out writes each once: ` +
            `--from-seq ${fromSeq} would append seqs ${fromSeq}..${checkpoint.delivered - 1} again. Leave out --from-seq to go on from seq ${checkpoint.delivered}, ` +
            `or give another --out FILE and --state DIR to read from seq ${fromSeq}`,
        );
      }
      const recorded = checkpoint.out.length;
      if (size < recorded) {
        throw RemoteLogError.dataLoss(`--out ${path} is ${size} bytes, shorter than the ${recorded} bytes already delivered into it: it was cut or replaced by something else`, undefined, { file: path, offset: size, name });
      }
      if (size > recorded) {
        // Only lines this receiver wrote past its checkpoint are cut (they come again at once); bytes
        // anyone else put there (another name or --state writing to FILE, a line added by hand) would
        // be lost, so they stop the run instead.
        const foreign = await notOwnTail(handle, recorded, size, checkpoint.delivered);
        if (foreign) {
          throw RemoteLogError.conflict(
            `--out ${path} holds ${size - recorded} bytes past the ${recorded} that name ${JSON.stringify(name)}'s checkpoint recorded, and they are not lines this receiver wrote ` +
              `(byte ${foreign.offset}: ${foreign.why}): something else appended them, such as another name or --state writing to the same file, or an edit. ` +
              `Nothing was cut. Move those bytes out of ${path}, or give each name its own --out FILE`,
            { file: path, offset: foreign.offset, name },
          );
        }
        await handle.truncate(recorded);
        await handle.datasync();
      }
      return { out: new OutFile(handle, path, store, recorded, lock), cut: size - recorded };
    } catch (err) {
      await handle.close().catch(() => {});
      await lock.release();
      throw err;
    }
  }

  /** Appends text and makes it durable; the next save records the new length. */
  async append(text: string): Promise<void> {
    const bytes = Buffer.from(text, "utf8");
    try {
      let done = 0;
      while (done < bytes.length) done += (await this.handle.write(bytes, done, bytes.length - done)).bytesWritten;
      await this.handle.datasync();
    } catch (err) {
      throw ioError(`cannot append to --out ${this.path}`, err, this.path);
    }
    this.length += bytes.length;
  }

  async load(name: string): Promise<Checkpoint | undefined> {
    return this.store.load(name);
  }

  /** Saves the checkpoint with the file's length now, which covers every line appended before. */
  async save(name: string, checkpoint: Checkpoint): Promise<void> {
    await this.store.save(name, { ...checkpoint, out: { file: this.path, length: this.length } });
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
    await this.lock.release();
  }
}

/** What a line this receiver writes to --out starts with (cli/format.ts deliveryLine without a name). */
const LINE_START = '{"seq":';

/**
 * Where bytes [from, to) of an --out file stop being what a receiver whose checkpoint stood at
 * delivered could have appended before a crash: whole lines with rising seqs from delivered on, each
 * with its id, then at most the start of one more. Undefined when all of them are.
 */
async function notOwnTail(handle: FileHandle, from: number, to: number, delivered: number): Promise<{ offset: number; why: string } | undefined> {
  const chunk = Buffer.alloc(1 << 20);
  let line = Buffer.alloc(0);
  let lineAt = from;
  let lastSeq = delivered - 1;
  for (let at = from; at < to; ) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, to - at), at);
    if (bytesRead === 0) break;
    let pending = Buffer.concat([line, chunk.subarray(0, bytesRead)]);
    at += bytesRead;
    for (let end = pending.indexOf(0x0a); end !== -1; end = pending.indexOf(0x0a)) {
      const why = notOwnLine(pending.subarray(0, end).toString("utf8"), lastSeq);
      if (typeof why === "string") return { offset: lineAt, why };
      lastSeq = why;
      lineAt += end + 1;
      pending = pending.subarray(end + 1);
    }
    line = pending;
  }
  // A torn last line: any start of one of ours.
  const torn = line.toString("utf8");
  if (line.length > 0 && !(torn.startsWith(LINE_START) || LINE_START.startsWith(torn))) return { offset: lineAt, why: "an unfinished line that is not a delivery line" };
  return undefined;
}

/** The line's seq when it is a delivery line that may follow one of seq lastSeq; else why not. */
function notOwnLine(text: string, lastSeq: number): number | string {
  if (!text.startsWith(LINE_START)) return "a line that is not a delivery line";
  let line: { seq?: unknown; id?: unknown };
  try {
    line = JSON.parse(text) as typeof line;
  } catch {
    return "a line that is not JSON";
  }
  if (typeof line.seq !== "number" || !Number.isSafeInteger(line.seq) || typeof line.id !== "string" || !/^[0-9a-f]{64}$/.test(line.id)) return "a line without a seq and id";
  if (line.seq <= lastSeq) return `seq ${line.seq}, where this receiver's lines go on from seq ${lastSeq + 1}`;
  return line.seq;
}
