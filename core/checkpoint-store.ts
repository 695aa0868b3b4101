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
  /**
   * The first seq of the run of seqs delivered up to `delivered`, when a seek (fromSeq) started it past
   * 0: no seq below it was delivered, so no tombstone of one is due. Absent: 0.
   */
  from?: number;
  /**
   * For `receive --out FILE`: the file the delivered lines go to and its length once the lines of this
   * checkpoint were in it (fsynced). At start the receiver cuts the file back to this length, so the
   * file and the checkpoint never disagree after a crash. Absent when lines go to stdout.
   */
  out?: { file: string; length: number };
}

/**
 * Where a receiver keeps its checkpoints: MemoryCheckpointStore, FileCheckpointStore, or any store of
 * the app's that passes the contract suite. A store may throw DATA_LOSS for a checkpoint it cannot
 * read back, and INTERNAL on an I/O failure; any error it throws stops the receiver's sync before the
 * batch it was saving counts as delivered.
 */
export interface CheckpointStore {
  /** The saved checkpoint of a name, or undefined when there is none. Idempotent; reads only. */
  load(name: string): Promise<Checkpoint | undefined>;
  /**
   * Replaces the checkpoint of a name atomically and durably: after a crash, load returns the old or
   * the new one whole. Idempotent: saving the same checkpoint again changes nothing.
   */
  save(name: string, checkpoint: Checkpoint): Promise<void>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}

/**
 * Checkpoints kept in memory as well as in the store: every sync of every name starts by loading its
 * checkpoint, and reading a file per poll was an eighth of a many-name receiver's CPU. Saves still go
 * to the store first, so what is on disk is never behind what was delivered. Assumes, as the receiver
 * does anyway, that no other process moves these checkpoints meanwhile.
 */
export class WriteThroughCheckpoints implements CheckpointStore {
  private readonly cache = new Map<string, Checkpoint | undefined>();

  constructor(private readonly store: CheckpointStore) {}

  async load(name: string): Promise<Checkpoint | undefined> {
    if (!this.cache.has(name)) this.cache.set(name, await this.store.load(name));
    const checkpoint = this.cache.get(name);
    return checkpoint && { ...checkpoint, lastId: checkpoint.lastId.slice() };
  }

  async save(name: string, checkpoint: Checkpoint): Promise<void> {
    // Dropped first, so that a failed save makes the next load read the store again.
    this.cache.delete(name);
    await this.store.save(name, checkpoint);
    this.cache.set(name, { ...checkpoint, lastId: checkpoint.lastId.slice() });
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
