/**
 * The receiver's checkpoint port: per name, how many messages were delivered and the id of the last.
 * Every backend passes test/contract/checkpoint-store.contract.ts.
 */
export interface Checkpoint {
  /** Messages delivered so far; the next one delivered gets this seq. */
  delivered: number;
  /** H1 of the last delivered message; empty when delivered is 0. */
  lastId: Uint8Array;
  /**
   * For a signed name, the highest record sequence accepted so far, so that an NS serving an older
   * head (a rollback) is caught. Absent for unsigned names and before the first signed head.
   */
  sequence?: bigint;
  /**
   * For a log with page info, the redaction count of the last head synced, so that a later head with
   * more redactions sends the receiver back for tombstones of messages it delivered. Absent: 0.
   */
  redactions?: number;
}

export interface CheckpointStore {
  /** The saved checkpoint of a name, or undefined when there is none. */
  load(name: string): Promise<Checkpoint | undefined>;
  /** Replaces the checkpoint of a name atomically and durably: after a crash, load returns the old or the new one whole. */
  save(name: string, checkpoint: Checkpoint): Promise<void>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}
