import { copyFile, mkdir, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Checkpoint } from "../../core/checkpoint-store.js";
import { toHex } from "../../core/hash.js";
import { ensureDir, fsyncDir, ioError, readRegularFile, removeLeftoverTmp, writeFileAtomic } from "./atomic.js";
import { FileCheckpointStore } from "./checkpoint-store.js";
import { LockFile } from "./lock-file.js";
import { HEADER_SIZE, LOG_FILE, PUBLISHED_DIR, classifyTail, damageOf, nextRecordStart, noLocalLog, recordAt, wholeButLength, writeRecord, type LogRecord } from "./local-log.js";

/*
 * `remotelog repair`: salvages a damaged local log on purpose. FileLocalLog refuses to open a damaged
 * log (it never cuts anything but a torn append); this is the one place that sets records aside, and it
 * keeps a copy of everything it sets aside, in `<dir>/repair-<time>/`:
 *
 *   log.bin                 the log as it was, whole
 *   damaged-<offset>.bin    each damaged or torn byte range, named by its offset in that log.bin
 *   set-aside-<seq>.bin     each whole message set aside (a duplicate, or one the CAS would refuse)
 *   published/              the published marks as they were
 *   report.json             what was done
 *
 * The new log.bin replaces the old one atomically, after the copies are durable, so a crash leaves
 * either log and running repair again is safe: a healthy log is left alone.
 */

/** A message of the log, by its H1 id. */
export interface RepairMessage {
  id: Uint8Array;
  data: Uint8Array;
}

export interface RepairOptions {
  /** Why a whole message must be set aside (too large for the CAS, say), or undefined to keep it. */
  reject?: (message: RepairMessage, seq: number) => string | undefined;
  /**
   * Given the messages kept, oldest first, returns the new log in order: for example with the messages
   * the sender's remote log holds and the local one lost filled in. Called only under the log's lock
   * (in a dry run, which takes none, it should write nothing either).
   */
  rebuild?: (kept: RepairMessage[]) => Promise<{ messages: RepairMessage[]; refilled: number }>;
  /** The time in the repair directory's name; default now. */
  now?: Date;
  /**
   * Work out the repair and report it, writing nothing: no lock is taken, no leftover removed, no
   * copy, log or mark written (report.dryRun, and report.writes names what would be written). Default false.
   */
  dryRun?: boolean;
}

export interface SetAside {
  /** Byte offset in the old log.bin. */
  offset: number;
  bytes: number;
  /** The seq it had (or would have had) in the old log. */
  seq: number;
  why: string;
  savedTo: string;
}

export interface RepairReport {
  dir: string;
  /** False when the log needed nothing, and nothing was written; with dryRun, whether the repair would change anything. */
  changed: boolean;
  /** Set with dryRun: nothing was written, and what this says is what a repair would do now. */
  dryRun?: boolean;
  before: number;
  /** Whole records of the old log kept, in order (the rest of `after` is refilled). */
  kept: number;
  after: number;
  setAside: SetAside[];
  /** Records kept whole but for their length field, written again with the right one. */
  mended: { offset: number; seq: number; why: string }[];
  refilled: number;
  /** Where the copies are, when changed. */
  savedIn?: string;
  /** Published marks rewritten to the new log (name, from, to; to 0 means removed). */
  marks: { name: string; from: number; to: number }[];
  /** Every file written (or, with dryRun, that would be), in order: the copies, report.json, log.bin, the marks moved. */
  writes: string[];
  /** Every file removed (or that would be): the marks whose last message is gone. */
  removes: string[];
}

/**
 * Repairs the log in dir under its lock (CONFLICT while a sender has it open): keeps every whole,
 * checksummed record once, sets aside damaged byte ranges, torn appends, repeated ids and messages
 * that options.reject names, lets options.rebuild refill, writes the new log and moves the published
 * marks to where their last message now is. NOT_FOUND when dir holds no log. With options.dryRun, the
 * same work out of the same bytes, reported and not done: nothing is written, no lock taken.
 */
export async function repairLocalLog(dir: string, options: RepairOptions = {}): Promise<RepairReport> {
  const path = join(dir, LOG_FILE);
  let bytes: Buffer;
  try {
    // Anything but a file at log.bin (a FIFO) is refused at once, not waited on.
    bytes = await readRegularFile(path, "local log");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw noLocalLog(dir);
    throw ioError(`cannot read ${path}`, err, path);
  }
  const dryRun = options.dryRun ?? false;
  // A dry run writes nothing, a lock file included; what it reads may then change under it, as a
  // sender's next append would change what the repair itself does.
  const lock = dryRun ? undefined : await LockFile.acquire(join(dir, "LOCK"), `local log ${dir}`);
  try {
    if (lock) {
      await removeLeftoverTmp(dir);
      // Read again under the lock: a sender may have appended since.
      bytes = await readRegularFile(path, "local log");
    }
    const plan = await planRepair(dir, bytes, options);
    if (dryRun || !plan.report.changed) return plan.report;
    await carryOut(plan);
    return plan.report;
  } finally {
    await lock?.release();
  }
}

/** What a repair of a log.bin of these bytes does, and its report, before anything is written. */
interface RepairPlan {
  report: RepairReport;
  bytes: Buffer;
  /** The parts set aside, each with the bytes that go to its savedTo. */
  setAside: { part: SetAsidePart; savedTo: string }[];
  /** The new log's messages, when log.bin is to be written. */
  newLog?: RepairMessage[];
  published: string;
  markFiles: string[];
  moves: MarkMove[];
}

/**
 * Works the repair out, reading only: the parts set aside and where each copy goes, the records mended,
 * the refill, the marks to move, and every file to write or remove. report.changed is false when the
 * log needs nothing; the plan then writes nothing.
 */
async function planRepair(dir: string, bytes: Buffer, options: RepairOptions): Promise<RepairPlan> {
  const path = join(dir, LOG_FILE);
  const stamp = (options.now ?? new Date()).toISOString().replace(/[:.]/g, "-");
  const savedIn = join(dir, `repair-${stamp}`);
  const { kept, setAside, mended } = salvage(bytes, options.reject);
  const rebuilt = options.rebuild ? await options.rebuild(kept.map((record) => record.message)) : { messages: kept.map((record) => record.message), refilled: 0 };
  const report: RepairReport = {
    dir,
    changed: false,
    ...(options.dryRun ? { dryRun: true } : {}),
    before: countRecords(bytes),
    kept: kept.length,
    after: rebuilt.messages.length,
    setAside: [],
    mended,
    refilled: rebuilt.refilled,
    marks: [],
    writes: [],
    removes: [],
  };
  const logChanged = setAside.length > 0 || mended.length > 0 || rebuilt.refilled > 0 || rebuilt.messages.length !== kept.length;
  // Marks are checked even when the log needs nothing: a repair that crashed after replacing the log
  // but before moving them is finished by running it again.
  const published = join(dir, PUBLISHED_DIR);
  const markFiles = (await readdir(published).catch(() => [] as string[])).filter((file) => file.endsWith(".json"));
  const moves = await planMarks(published, markFiles, rebuilt.messages, options.dryRun ?? false);
  const plan: RepairPlan = { report, bytes, setAside: [], published, markFiles, moves };
  if (!logChanged && moves.length === 0) return plan;

  report.writes.push(join(savedIn, LOG_FILE));
  for (const part of setAside) {
    const savedTo = join(savedIn, part.kind === "range" ? `damaged-${part.offset}.bin` : `set-aside-${part.seq}.bin`);
    plan.setAside.push({ part, savedTo });
    report.setAside.push({ offset: part.offset, bytes: part.bytes, seq: part.seq, why: part.why, savedTo });
    report.writes.push(savedTo);
  }
  for (const file of markFiles) report.writes.push(join(savedIn, PUBLISHED_DIR, file));
  report.writes.push(join(savedIn, "report.json"));
  if (logChanged) {
    plan.newLog = rebuilt.messages;
    report.writes.push(path);
  }
  for (const move of moves) (move.to === 0 ? report.removes : report.writes).push(move.path);
  report.changed = true;
  report.savedIn = savedIn;
  report.marks = moves.map(({ name, from, to }) => ({ name, from, to }));
  return plan;
}

/** Does what planRepair worked out, under the log's lock: the copies first, durably, then the new log, then the marks. */
async function carryOut(plan: RepairPlan): Promise<void> {
  const { report, bytes, published, markFiles } = plan;
  const savedIn = report.savedIn!;
  await mkdir(savedIn, { recursive: false }).catch((err) => {
    throw ioError(`cannot create ${savedIn}`, err, savedIn);
  });
  await writeFileAtomic(join(savedIn, LOG_FILE), bytes);
  for (const { part, savedTo } of plan.setAside) await writeFileAtomic(savedTo, bytes.subarray(part.offset, part.offset + part.bytes));
  if (markFiles.length > 0) {
    await ensureDir(join(savedIn, PUBLISHED_DIR));
    for (const file of markFiles) await copyFile(join(published, file), join(savedIn, PUBLISHED_DIR, file));
    await fsyncDir(join(savedIn, PUBLISHED_DIR));
  }
  await writeFileAtomic(join(savedIn, "report.json"), Buffer.from(`${JSON.stringify(report, null, 2)}\n`));
  await fsyncDir(report.dir);

  // The copies are durable: now the new log, then the marks that point into it.
  if (plan.newLog) await writeFileAtomic(join(report.dir, LOG_FILE), encodeRecords(plan.newLog));
  await applyMarks(published, plan.moves);
}

interface KeptRecord {
  seq: number;
  message: RepairMessage;
}

interface SetAsidePart {
  kind: "range" | "message";
  offset: number;
  bytes: number;
  seq: number;
  why: string;
}

/**
 * Splits a log.bin's bytes into the messages to keep, in order, and the parts to set aside: a damaged
 * range runs from a record that fails its check to the next offset where a whole, checksummed record
 * starts (or the end).
 */
function salvage(bytes: Uint8Array, reject: RepairOptions["reject"]): { kept: KeptRecord[]; setAside: SetAsidePart[]; mended: RepairReport["mended"] } {
  const kept: KeptRecord[] = [];
  const setAside: SetAsidePart[] = [];
  const mended: RepairReport["mended"] = [];
  const ids = new Set<string>();
  let seq = 0;
  let at = 0;
  while (at < bytes.length) {
    let record: LogRecord | "incomplete" | "bad" = recordAt(bytes, at);
    // A last record whole but for its length field (its checksum holds over all that follows its
    // header) is kept: written again, its length is right.
    if (record === "incomplete" && wholeButLength(bytes, at)) {
      mended.push({ offset: at, seq, why: damageOf(bytes, at, record) });
      record = { offset: at, end: bytes.length, id: bytes.subarray(at + 4, at + HEADER_SIZE - 4), data: bytes.subarray(at + HEADER_SIZE) };
    }
    if (typeof record === "string") {
      const next = nextRecordStart(bytes, at + 1);
      const end = next === -1 ? bytes.length : next;
      const torn = next === -1 && classifyTail(bytes, at, record) === "torn";
      setAside.push({ kind: "range", offset: at, bytes: end - at, seq, why: torn ? "a torn append (an incomplete last record)" : `damaged (${damageOf(bytes, at, record)})` });
      seq++;
      at = end;
      continue;
    }
    const key = toHex(record.id);
    const message = { id: record.id, data: record.data };
    const why = ids.has(key) ? `id ${key} is already in the log` : reject?.(message, seq);
    if (why) setAside.push({ kind: "message", offset: at, bytes: record.end - at, seq, why });
    else {
      ids.add(key);
      kept.push({ seq, message });
    }
    seq++;
    at = record.end;
  }
  return { kept, setAside, mended };
}

function countRecords(bytes: Uint8Array): number {
  let count = 0;
  for (let at = 0; at < bytes.length; ) {
    const record = recordAt(bytes, at);
    if (typeof record === "string") {
      const next = nextRecordStart(bytes, at + 1);
      if (next === -1) break;
      at = next;
    } else {
      count++;
      at = record.end;
    }
  }
  return count;
}

/** Messages as log.bin records (the format in local-log.ts), back to back. */
export function encodeRecords(messages: RepairMessage[]): Buffer {
  const bytes = Buffer.allocUnsafe(messages.reduce((sum, message) => sum + HEADER_SIZE + message.data.length, 0));
  let at = 0;
  for (const { id, data } of messages) at = writeRecord(bytes, at, id, data);
  return bytes;
}

interface MarkMove {
  name: string;
  from: number;
  /** 0: remove the mark. */
  to: number;
  mark: Checkpoint;
  /** Its file. */
  path: string;
}

/**
 * Where each published mark must point in the new log: at its last message's new place, since the mark
 * says the log's first `delivered` messages are published, which holds again up to that message. A
 * mark whose message is gone is removed (a copy is kept): the next send then compares the whole remote
 * log with the local one, which is slower but publishes nothing twice. A mark that does not parse is
 * left (and copied): the next send reports it as the checkpoint store does.
 */
async function planMarks(published: string, files: string[], messages: RepairMessage[], readOnly: boolean): Promise<MarkMove[]> {
  if (files.length === 0) return [];
  const seqs = new Map(messages.map((message, seq) => [toHex(message.id), seq]));
  // Read-only for a dry run: a writable open removes crashed writers' leftovers.
  const store = await FileCheckpointStore.open(published, { readOnly });
  const moves: MarkMove[] = [];
  try {
    for (const file of files) {
      let name: unknown;
      try {
        name = (JSON.parse(await readFile(join(published, file), "utf8")) as { name?: unknown }).name;
      } catch {
        continue;
      }
      if (typeof name !== "string" || store.pathOf(name) !== join(published, file)) continue;
      const mark = await store.load(name).catch(() => undefined);
      if (!mark) continue;
      const seq = seqs.get(toHex(mark.lastId));
      const to = seq === undefined ? 0 : seq + 1;
      if (to !== mark.delivered) moves.push({ name, from: mark.delivered, to, mark, path: store.pathOf(name) });
    }
  } finally {
    await store.close();
  }
  return moves;
}

async function applyMarks(published: string, moves: MarkMove[]): Promise<void> {
  if (moves.length === 0) return;
  const store = await FileCheckpointStore.open(published);
  try {
    for (const { name, to, mark } of moves) {
      if (to === 0) {
        await unlink(store.pathOf(name));
        await fsyncDir(published);
      } else await store.save(name, { ...mark, delivered: to });
    }
  } finally {
    await store.close();
  }
}
