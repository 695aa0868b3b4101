/*
 * What a backup reads: a log, from a given message on. local-source.ts reads a sender's log
 * directory, remote-source.ts a remote log by name (kept apart so that a local backup does not load
 * the network and signature code).
 */

/** Where the previous backup stopped: the last message it holds. */
export interface BackedUpTo {
  lastSeq: number;
  lastId: Uint8Array;
  /** The record sequence of the log head that backup read, for a remote source: its rollback floor. */
  sequence?: bigint;
}

export interface SourceRead {
  /** Seq of messages[0]. */
  firstSeq: number;
  /** Encoded vac.mvds.Messages after `after`, oldest first, exactly as the log holds them. */
  messages: Uint8Array[];
  /** The id of the last one (or of the last backed-up message when there is nothing new). */
  lastId: Uint8Array;
  /** The remote-log head read, for a remote source. */
  logHead?: { page: Uint8Array; sequence: bigint };
}

/** A log to back up. */
export interface LogSource {
  readonly logName: string;
  /** Messages after `after` (all of them without it). CONFLICT when the log no longer holds `after`. */
  readSince(after: BackedUpTo | undefined): Promise<SourceRead>;
  close(): Promise<void>;
}
