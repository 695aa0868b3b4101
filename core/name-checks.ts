import { checkNotDropped, type NameEntry, type NameStore, type PutOptions } from "./name-store.js";
import { RemoteLogError, isRemoteLogError } from "./errors.js";
import { equalBytes } from "./hash.js";
import { verifyNameRecord, type VerifiedRecord } from "./names.js";

/*
 * The checks of signed names, in one place: an NS judging an update (services/ns-service.ts NsService,
 * actors/kubo-remote.ts KuboRemote), and a reader judging a head it fetched (core/log-reader.ts).
 */

// Controls (C0, DEL, C1) make names that print alike but differ, and break log lines. Unpaired
// surrogates have no UTF-8 form, and U+FFFD is what bytes that were not UTF-8 on the wire decode to:
// either way the name the client meant is unknown.
const FORBIDDEN_IN_NAMES = /[\p{Cc}\p{Cs}\uFFFD]/u;

/**
 * The one check of a name's spelling, for Update and Fetch alike (a key name's record is checked by
 * update). INVALID_ARGUMENT for an empty name, a name over maxNameBytes
 * of UTF-8, or one holding control characters or unpaired surrogates.
 */
export function checkName(name: string, maxNameBytes: number): void {
  if (name.length === 0) throw RemoteLogError.invalidArgument("name is empty");
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > maxNameBytes) {
    throw RemoteLogError.invalidArgument(`name of ${bytes} bytes is over the limit of ${maxNameBytes} bytes: ${JSON.stringify(name.slice(0, 64))}…`);
  }
  if (FORBIDDEN_IN_NAMES.test(name)) {
    throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} holds control characters or bytes that are not UTF-8`);
  }
}

/**
 * Judges a verified record's sequence against the name's stored entry: throws ABORTED when the name
 * is not at expectedVersion, CONFLICT when the update must not apply (stale, replayed, sequence 0, or
 * the name's own sequence with other bytes), returns the current version when it is the stored update
 * itself (a republish, which changes nothing), and undefined when it is newer and should be stored.
 */
export function checkSequence(
  name: string,
  sequence: bigint,
  current: NameEntry | undefined,
  content: Uint8Array,
  record: Uint8Array,
  expectedVersion: bigint | undefined,
): bigint | undefined {
  const version = current?.version ?? 0n;
  if (expectedVersion !== undefined && expectedVersion !== version) {
    throw RemoteLogError.aborted(`name ${name} is at version ${version}, not ${expectedVersion}`, { name });
  }
  if (sequence < version) {
    throw RemoteLogError.conflict(`record for name ${name} has sequence ${sequence}, older than the name's version ${version}: stale or replayed`, { name });
  }
  if (sequence > version) return undefined;
  if (current === undefined) {
    throw RemoteLogError.conflict(`record for name ${name} has sequence 0; a key name's first record has sequence 1 or more`, { name });
  }
  if (equalBytes(current.record, record) && equalBytes(current.content, content)) return version;
  throw RemoteLogError.conflict(`record for name ${name} has sequence ${sequence}, the name's version, but not the stored record and content`, { name });
}

/**
 * Applies an update of a key name to store, after every check: a record signed by the name's key for
 * exactly this content (verifyNameRecord), whose sequence becomes the name's version (checkSequence).
 * A lost race is judged again against the winner, so that two publishers of the same record both
 * succeed and a loser gets the precise reason. A name the operator dropped takes only a sequence above
 * its tombstone (NameStore.droppedAt; CONFLICT otherwise), judged here before put, so that nothing goes
 * in first, and by the store's put again under its lock. put stores the entry (the store's put, plus
 * whatever must go in first). Returns the name's version.
 */
export async function applySignedUpdate(
  store: Pick<NameStore, "get" | "droppedAt">,
  name: string,
  content: Uint8Array,
  record: Uint8Array,
  expectedVersion: bigint | undefined,
  put: (options: PutOptions) => Promise<bigint>,
): Promise<{ version: bigint; stored: boolean }> {
  if (record.length === 0) throw RemoteLogError.permissionDenied(`name ${name} is a key name, and the update carries no signed record`);
  const { sequence } = await verifyNameRecord(name, record, content, { update: true });
  const current = await store.get(name);
  const unchanged = checkSequence(name, sequence, current, content, record, expectedVersion);
  if (unchanged !== undefined) return { version: unchanged, stored: false };
  // Only a name with no entry has a tombstone: read for it alone, a first publish.
  if (current === undefined) checkNotDropped(name, sequence, await store.droppedAt?.(name));
  try {
    const version = await put({ record, version: sequence, ...(expectedVersion !== undefined ? { expectedVersion } : {}) });
    return { version, stored: true };
  } catch (err) {
    if (!isRemoteLogError(err, "ABORTED")) throw err;
    const again = checkSequence(name, sequence, await store.get(name), content, record, expectedVersion);
    if (again !== undefined) return { version: again, stored: false };
    throw err;
  }
}

/**
 * Checks a head a reader fetched for a key name: its record verifies for the name and binds this very
 * page, and its sequence is not below floor, the highest sequence the reader accepted before, nor below
 * the version the NS itself gives the name (an NS serving an older record than it says it holds).
 * Returns what the verified record says (sequence, validity, TTL, value). Errors name the head by where;
 * options.now is the time expiry is judged at.
 */
export async function verifySignedHead(
  name: string,
  content: Uint8Array,
  record: Uint8Array,
  floor: bigint | undefined,
  where: string,
  claimedVersion?: bigint,
  options: { now?: Date } = {},
): Promise<VerifiedRecord> {
  if (record.length === 0) throw new RemoteLogError("PERMISSION_DENIED", `${where} comes without a signed record, and the name is a key`, { details: { name } });
  let verified: VerifiedRecord;
  try {
    verified = await verifyNameRecord(name, record, content, options);
  } catch (err) {
    throw err instanceof RemoteLogError ? asFetchedRecordError(err, where, name) : err;
  }
  if (floor !== undefined && verified.sequence < floor) {
    throw RemoteLogError.conflict(`${where} is a rollback: its record has sequence ${verified.sequence}, and sequence ${floor} was accepted before`, { name });
  }
  if (claimedVersion !== undefined && claimedVersion > 0n && verified.sequence < claimedVersion) {
    throw RemoteLogError.conflict(`${where} is a rollback: its record has sequence ${verified.sequence}, and the NS says the name is at version ${claimedVersion}`, { name });
  }
  return verified;
}

/**
 * A record check's failure as a reader reports it, naming where the record came from. What is an
 * invalid argument in an update (a malformed record, or one that names other content) is, in a head a
 * reader fetched, data the server holds or sent damaged: DATA_LOSS, as for a page that does not match
 * its hash. A bad signature stays PERMISSION_DENIED, an expired record CONFLICT.
 */
export function asFetchedRecordError(err: RemoteLogError, where: string, name: string): RemoteLogError {
  const code = err.code === "INVALID_ARGUMENT" ? "DATA_LOSS" : err.code;
  return new RemoteLogError(code, `${where}: ${err.text}`, { cause: err, details: { ...err.details, name } });
}

/** The longest name an NS takes by default, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 512;
/** The largest head (a name's content) an NS takes by default. */
export const MAX_HEAD_BYTES = 1 << 20;
