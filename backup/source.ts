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

/** Messages a source hands over at once: the next in log order. */
export interface SourceChunk {
  /** Encoded vac.mvds.Messages, oldest first, exactly as the log holds them. */
  messages: Uint8Array[];
  /** The id of the last of them. */
  lastId: Uint8Array;
}

export interface SourceRead {
  /** Seq of the first message chunks gives. */
  firstSeq: number;
  /** How many messages chunks will give, at most (a remote log's tombstones are left out): for progress. */
  expected: number;
  /**
   * The messages after `after`, in log order, a chunk at a time as they are read (and, from a remote
   * log, checked), so that a backup holds a few packs' worth and not the log. Iterated once; a fault
   * found on the way (DATA_LOSS naming the message) is thrown from it. None when there is nothing new.
   */
  chunks: AsyncIterable<SourceChunk>;
  /** The remote-log head read, for a remote source. */
  logHead?: { page: Uint8Array; sequence: bigint };
}

/** A log to back up. */
export interface LogSource {
  readonly logName: string;
  /** The flag that gives the source another log name, where it has one (a local log's --log-name). */
  readonly logNameFlag?: string;
  /** Messages after `after` (all of them without it). CONFLICT when the log no longer holds `after`. */
  readSince(after: BackedUpTo | undefined): Promise<SourceRead>;
  close(): Promise<void>;
}
