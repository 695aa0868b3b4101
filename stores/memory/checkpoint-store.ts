import type { Checkpoint, CheckpointStore } from "../../core/checkpoint-store.js";

export class MemoryCheckpointStore implements CheckpointStore {
  private readonly checkpoints = new Map<string, Checkpoint>();

  async load(name: string): Promise<Checkpoint | undefined> {
    const checkpoint = this.checkpoints.get(name);
    return checkpoint && { delivered: checkpoint.delivered, lastId: checkpoint.lastId.slice() };
  }

  async save(name: string, checkpoint: Checkpoint): Promise<void> {
    this.checkpoints.set(name, { delivered: checkpoint.delivered, lastId: checkpoint.lastId.slice() });
  }

  async close(): Promise<void> {}
}
