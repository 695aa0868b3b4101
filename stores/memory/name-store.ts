import { nextVersion, type NameEntry, type NameStore, type PutOptions } from "../../core/name-store.js";

export class MemoryNameStore implements NameStore {
  private readonly names = new Map<string, NameEntry>();

  async get(name: string): Promise<NameEntry | undefined> {
    const entry = this.names.get(name);
    return entry && { content: entry.content.slice(), version: entry.version, record: entry.record.slice() };
  }

  async put(name: string, content: Uint8Array, options: PutOptions = {}): Promise<bigint> {
    const version = nextVersion(name, this.names.get(name)?.version ?? 0n, options);
    this.names.set(name, { content: content.slice(), version, record: options.record?.slice() ?? new Uint8Array(0) });
    return version;
  }

  async count(): Promise<number> {
    return this.names.size;
  }

  /** Every name and its entry; for gc. */
  async *list(): AsyncGenerator<[string, NameEntry]> {
    for (const [name, entry] of [...this.names]) yield [name, entry];
  }

  async close(): Promise<void> {}
}
