import { verifyRemoteLog, type VerifyReport } from "../backup/verify-log.js";
import type { LogReadRemote } from "../core/log-remote.js";

export type { Fault, VerifyReport } from "../backup/verify-log.js";

/** What verifyLog reads and how far. */
export interface VerifyLogOptions {
  /** Also fetch and check every message (H2 against its bytes, H1 against the decoded message). Default false: structure only. */
  readData?: boolean;
  /** Refuse a chain longer than this many pages. Default unbounded. */
  maxPages?: number;
  /** Refuse a head whose signed record is older than this sequence (a rollback). */
  minSequence?: bigint;
}

/**
 * `const report = await verifyLog(remote, name, { readData? })`
 *
 * Checks a name's whole remote log as `remotelog verify --name` does: the head's signed record (for a
 * key name), every page's hash, tail and skip links, the seqids, and with readData every message.
 * Every fault found is in the report (`ok` is false, each fault names the object), none is thrown.
 *
 * Throws NOT_FOUND when the name has no log, UNAVAILABLE when a service cannot be reached. Idempotent;
 * reads only.
 */
export function verifyLog(remote: LogReadRemote, name: string, options: VerifyLogOptions = {}): Promise<VerifyReport> {
  return verifyRemoteLog(remote, name, options);
}
