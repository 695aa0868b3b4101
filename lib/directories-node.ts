/**
 * Where Sender.open and Receiver.open keep a log and checkpoints given a directory, on Node
 * (package.json "imports" #directories): files. lib/directories-browser.ts refuses directories.
 */
import { join } from "node:path";
import { RemoteLogError } from "../core/errors.js";
import type { CheckpointStore } from "../core/checkpoint-store.js";
import { FileCheckpointStore } from "../stores/file/checkpoint-store.js";
import { isDirectory, pathExists } from "../stores/file/atomic.js";
import { FileLocalLog, LOG_FILE, PUBLISHED_DIR, publishedCount } from "../stores/file/local-log.js";

/**
 * The sender's durable local log in data, for name. Its published mark is read first: a torn tail
 * over messages published from the log is damage, which the open says (DATA_LOSS) instead of cutting
 * it and letting the next append take their seqs.
 */
export async function openLocalLog(data: string, name: string): Promise<FileLocalLog> {
  // A log is never started among a server's blocks and names: a mistyped --data would mix the two.
  if (!(await pathExists(join(data, LOG_FILE))) && ((await isDirectory(join(data, "cas"))) || (await isDirectory(join(data, "ns"))))) {
    throw RemoteLogError.invalidArgument(`${data} is the data directory of a \`remotelog serve\` (it holds cas/ or ns/), not a sender's: give the sender a --data directory of its own`);
  }
  return FileLocalLog.open(data, { acknowledged: await publishedCount(data, name) });
}

/** The sender's mark of what it has published, beside its local log in data. */
export function openPublishedMarks(data: string): Promise<CheckpointStore> {
  return FileCheckpointStore.open(join(data, PUBLISHED_DIR));
}

/** A receiver's checkpoints, one file per name in state. */
export function openCheckpoints(state: string): Promise<CheckpointStore> {
  return FileCheckpointStore.open(state, { exclusive: true });
}
