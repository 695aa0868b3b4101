import { refillFromRemote } from "../actors/log-refill.js";
import { withRetry, type RetryOptions } from "../actors/remote.js";
import { ErrorCodes, RemoteLogError } from "../core/errors.js";
import { ownerMismatch } from "../core/local-log.js";
import type { LogRemote } from "../core/log-remote.js";
import { readOwner } from "../stores/file/local-log.js";
import { repairLocalLog, type RepairOptions, type RepairReport } from "../stores/file/log-repair.js";

export type { RepairReport, SetAside } from "../stores/file/log-repair.js";

/** What repairLog salvages, and from where it refills. */
export interface RepairLogOptions {
  /** The sender's local log directory (Sender.open's data). A sender holding it open makes this CONFLICT: close it first. */
  data: string;
  /**
   * The service the log is published to. Given, messages larger than its CAS takes are set aside as
   * well (what a Sender's TOO_LARGE with details.seq asks for), and with fromRemote the lost ones refilled.
   */
  remote?: Pick<LogRemote, "casLimits" | "fetchName" | "getBlock" | "getBlocks">;
  /** Refill the messages the local log lost from the log's own remote log (needs remote). Default false. */
  fromRemote?: boolean;
  /** The remote log to refill from; default the name the data directory records as its owner. */
  name?: string;
  /** Refuse a remote chain longer than this many pages. Default unbounded. */
  maxPages?: number;
  /** How the calls to remote are retried while it cannot be reached (withRetry); default once each, no retry. */
  retry?: RetryOptions;
  /**
   * Work the repair out and report it (report.dryRun; report.writes and report.removes name the files it
   * would write and remove), writing nothing in data: no lock, no copy, no log, no mark. Default false.
   */
  dryRun?: boolean;
}

/** What repairLog did: the store's report, and for a refill the name and the redacted messages that could not be refilled. */
export interface RepairLogReport extends RepairReport {
  /** The remote log refilled from, with fromRemote. */
  name?: string;
  /** Messages the remote log holds redacted that the local log lacks, so could not be refilled, with fromRemote. */
  redactedNotRefilled?: number;
}

/**
 * `const report = await repairLog({ data: "./alice", remote })`
 *
 * Salvages a sender's local log on purpose, as `remotelog repair` does, where a Sender and the
 * read-only verbs refuse a damaged one: keeps every whole, checksummed record; sets aside damaged
 * byte ranges, a torn append, repeated ids and, given remote, messages larger than its CAS takes;
 * with fromRemote, refills what the log lost from its own remote log, checking every page, record and
 * message. Everything set aside, the old log.bin and the published marks are copied to
 * `<data>/repair-<time>/` first (report.savedIn), and the published marks move to where their last
 * message now is. A healthy log is left alone (report.changed is false), so it is safe to repeat.
 * With dryRun, the same report of the same work, and nothing written.
 *
 * Throws CONFLICT while a sender holds the log (not with dryRun, which takes no lock), or when name is not the one the directory records;
 * NOT_FOUND when data holds no local log; INVALID_ARGUMENT for fromRemote without remote, or without a
 * name where the directory records none; UNAVAILABLE when remote cannot be reached (after retry);
 * DATA_LOSS or PERMISSION_DENIED when the remote log does not check out, and then nothing is changed.
 */
export async function repairLog(options: RepairLogOptions): Promise<RepairLogReport> {
  const { data, remote, fromRemote = false } = options;
  if (fromRemote && !remote) throw RemoteLogError.invalidArgument("a refill from the remote log (fromRemote) needs the remote");
  const owner = await readOwner(data);
  const name = options.name ?? owner?.name;
  if (fromRemote) {
    if (!name) throw new RemoteLogError(ErrorCodes.INVALID_ARGUMENT, `${data} records no owner: say which remote log to refill from (name)`, { details: { file: data } });
    const mismatch = owner && options.name ? ownerMismatch(`local log ${data}`, owner, { name: options.name, key: owner.key }) : undefined;
    if (mismatch) throw mismatch;
  }
  const retried = <T>(call: () => Promise<T>): Promise<T> => (options.retry ? withRetry(call, options.retry) : call());
  const repair: RepairOptions = { dryRun: options.dryRun };
  if (remote) {
    const limit = (await retried(() => remote.casLimits?.() ?? Promise.resolve(undefined)))?.maxBlockBytes;
    if (limit !== undefined) {
      repair.reject = (message) => (message.data.length > limit ? `${message.data.length} bytes, over the CAS's block limit of ${limit}: it can never be published` : undefined);
    }
  }
  let redacted = 0;
  if (remote && fromRemote) {
    repair.rebuild = async (kept) => {
      const refill = await retried(() => refillFromRemote(remote, name!, kept, { maxPages: options.maxPages }));
      redacted = refill.redacted;
      return refill;
    };
  }
  const report = await repairLocalLog(data, repair);
  return fromRemote ? { ...report, name, redactedNotRefilled: redacted } : report;
}
