import type { Checkpoint, CheckpointStore } from "../../core/checkpoint-store.js";

/**
 * `new MemoryCheckpointStore()`: checkpoints held in memory, gone with the process, so a new receiver
 * starts at seq 0. Throws nothing; every method is idempotent.
 */
export class MemoryCheckpointStore implements CheckpointStore {
  private readonly checkpoints = new Map<string, Checkpoint>();

  async load(name: string): Promise<Checkpoint | undefined> {
    const checkpoint = this.checkpoints.get(name);
    return checkpoint && copy(checkpoint);
  }

  async save(name: string, checkpoint: Checkpoint): Promise<void> {
    this.checkpoints.set(name, copy(checkpoint));
  }

  async close(): Promise<void> {}
}

function copy(checkpoint: Checkpoint): Checkpoint {
  const { delivered, lastId, sequence, redactions, from, out } = checkpoint;
  return { delivered, lastId: lastId.slice(), ...(sequence === undefined ? {} : { sequence }), ...(redactions ? { redactions } : {}), ...(from ? { from } : {}), ...(out ? { out: { ...out } } : {}) };
}
