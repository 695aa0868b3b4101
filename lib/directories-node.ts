/**
 * Where Sender.open and Receiver.open keep a log and checkpoints given a directory, on Node
 * (package.json "imports" #directories): files. lib/directories-browser.ts refuses directories.
 */
import { join } from "node:path";
import type { CheckpointStore } from "../core/checkpoint-store.js";
import type { LocalLog } from "../core/local-log.js";
import { FileCheckpointStore } from "../stores/file/checkpoint-store.js";
import { FileLocalLog } from "../stores/file/local-log.js";

/** The sender's durable local log in data. */
export function openLocalLog(data: string): Promise<LocalLog> {
  return FileLocalLog.open(data);
}

/** The sender's mark of what it has published, beside its local log in data. */
export function openPublishedMarks(data: string): Promise<CheckpointStore> {
  return FileCheckpointStore.open(join(data, "published"));
}

/** A receiver's checkpoints, one file per name in state. */
export function openCheckpoints(state: string): Promise<CheckpointStore> {
  return FileCheckpointStore.open(state);
}
