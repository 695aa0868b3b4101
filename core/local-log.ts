/**
 * The sender's local log port: encoded vac.mvds.Messages in append order, seq 0 first, each with its
 * H1 id. Every backend (stores/<backend>/local-log.ts) passes test/contract/local-log.contract.ts.
 */
export interface LocalLogEntry {
  seq: number;
  id: Uint8Array;
  data: Uint8Array;
}

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
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}
