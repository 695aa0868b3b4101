import { RemoteLogError } from "./errors.js";

/**
 * The sender's local log port: encoded vac.mvds.Messages in append order, seq 0 first, each with its
 * H1 id. Every backend (stores/<backend>/local-log.ts) passes test/contract/local-log.contract.ts.
 */
export interface LocalLogEntry {
  seq: number;
  id: Uint8Array;
  data: Uint8Array;
}

/**
 * Whom a log belongs to: the name it is published under and, for a signed name, the name of the key
 * that signs it. A log published under two names would hand one author's messages to another.
 */
export interface LogOwner {
  name: string;
  /** The signing key's name (k51…); absent for an unsigned, free-form name. */
  key?: string;
}

/**
 * What claim() found: "new" (the log had no owner and no messages), "adopted" (it had messages but
 * no recorded owner, as logs made before owners were recorded), or "same" (already this owner's).
 */
export type ClaimResult = "new" | "adopted" | "same";

/**
 * The local log port: a sender's durable, append-only list of encoded MVDS messages, each with its
 * seq and id. FileLocalLog (stores/file) and MemoryLocalLog (stores/memory) implement it.
 */
export interface LocalLog {
  /** How many messages the log holds. */
  readonly length: number;
  /**
   * Appends encoded messages, computing their ids, and resolves only once they are durable. A message
   * whose id is already in the log is skipped (MVDS ids name messages), so appending is idempotent.
   * Returns the entries actually appended. All or nothing: a message that does not decode
   * (INVALID_ARGUMENT) appends none of the batch.
   */
  append(messages: Uint8Array[]): Promise<LocalLogEntry[]>;
  /** Entries with from <= seq < to, in order. Callers must not modify the bytes they are given. */
  read(from: number, to: number): Promise<LocalLogEntry[]>;
  /** The seq of the message with this id, or undefined. */
  seqOf(id: Uint8Array): number | undefined;
  /** The recorded owner, or undefined before the first claim. */
  readonly owner: LogOwner | undefined;
  /**
   * Records owner as the log's owner on first use, durably, and says what it found. Throws CONFLICT
   * (details.name: the recorded name) when the log belongs to another name or key; nothing changes then.
   */
  claim(owner: LogOwner): Promise<ClaimResult>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}

/** The CONFLICT for a claim by another owner than the recorded one, or undefined when they are the same; where names the log. */
export function ownerMismatch(where: string, recorded: LogOwner, claimed: LogOwner): RemoteLogError | undefined {
  if (recorded.name === claimed.name && recorded.key === claimed.key) return undefined;
  const describe = (owner: LogOwner) => `name ${JSON.stringify(owner.name)}${owner.key ? ` (key ${owner.key})` : " (unsigned)"}`;
  return RemoteLogError.conflict(
    `${where} belongs to ${describe(recorded)}, not to ${describe(claimed)}: a log is published under one name only; give each name its own data directory`,
    { name: recorded.name },
  );
}
