/**
 * Sender.open's data and Receiver.open's state in a browser (package.json "imports" #directories,
 * "browser" condition): a page has no directories, so both are refused; leave them out (the log and
 * checkpoints are then kept in memory) or give a Receiver any CheckpointStore. lib/directories-node.ts
 * keeps them in files on Node.
 */
import type { CheckpointStore } from "../core/checkpoint-store.js";
import { RemoteLogError } from "../core/errors.js";
import type { LocalLog } from "../core/local-log.js";

function noDirectories(what: string, dir: string): Error {
  return RemoteLogError.invalidArgument(`${what} ${JSON.stringify(dir)}: a browser has no directories; leave ${what} out to keep it in memory`);
}

export function openLocalLog(data: string, _name: string): Promise<LocalLog> {
  return Promise.reject(noDirectories("data", data));
}

export function openPublishedMarks(data: string): Promise<CheckpointStore> {
  return Promise.reject(noDirectories("data", data));
}

export function openCheckpoints(state: string): Promise<CheckpointStore> {
  return Promise.reject(noDirectories("state", state));
}
