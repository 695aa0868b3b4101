import type { NameEntry, NameStore } from "../../core/name-store.js";
import { RemoteLogError } from "../../core/errors.js";

export class MemoryNameStore implements NameStore {
  private readonly names = new Map<string, NameEntry>();

  async get(name: string): Promise<NameEntry | undefined> {
    const entry = this.names.get(name);
    return entry && { content: entry.content.slice(), version: entry.version, record: entry.record.slice() };
  }

  async put(name: string, content: Uint8Array, options: { expectedVersion?: bigint; record?: Uint8Array } = {}): Promise<bigint> {
    const current = this.names.get(name)?.version ?? 0n;
    if (options.expectedVersion !== undefined && options.expectedVersion !== current) {
      throw RemoteLogError.conflict(`name ${JSON.stringify(name)} is at version ${current}, not ${options.expectedVersion}`);
    }
    const version = current + 1n;
    this.names.set(name, { content: content.slice(), version, record: options.record?.slice() ?? new Uint8Array(0) });
    return version;
  }

  async close(): Promise<void> {}
}
