import { compareNames, nextVersion, type ListOptions, type NameEntry, type NameStore, type PutOptions } from "../../core/name-store.js";

export class MemoryNameStore implements NameStore {
  private readonly names = new Map<string, NameEntry>();
  /** The tombstones of names dropped with a record (NameStore.drop): the version each had. */
  private readonly dropped = new Map<string, bigint>();

  async get(name: string): Promise<NameEntry | undefined> {
    const entry = this.names.get(name);
    return entry && { content: entry.content.slice(), version: entry.version, record: entry.record.slice() };
  }

  async put(name: string, content: Uint8Array, options: PutOptions = {}): Promise<bigint> {
    const version = nextVersion(name, this.names.get(name)?.version ?? 0n, options, this.dropped.get(name));
    this.names.set(name, { content: content.slice(), version, record: options.record?.slice() ?? new Uint8Array(0) });
    // Made anew: a signed put's version is above the tombstone, and the name's version refuses the old records from now on.
    this.dropped.delete(name);
    return version;
  }

  async drop(name: string): Promise<boolean> {
    const entry = this.names.get(name);
    if (!entry) return false;
    this.names.delete(name);
    if (entry.record.length > 0) this.dropped.set(name, entry.version);
    return true;
  }

  async droppedAt(name: string): Promise<bigint | undefined> {
    return this.dropped.get(name);
  }

  async count(): Promise<number> {
    return this.names.size;
  }

  /** Every name and its entry, in the order of the names' UTF-8 bytes (as LevelDB keeps them); for gc, or a page of them. */
  async *list(options: ListOptions = {}): AsyncGenerator<[string, NameEntry]> {
    const after = options.after;
    const names = [...this.names.keys()].filter((name) => after === undefined || compareNames(name, after) > 0).sort(compareNames);
    for (const name of names.slice(0, options.limit ?? names.length)) {
      const entry = this.names.get(name);
      if (entry) yield [name, entry];
    }
  }

  async close(): Promise<void> {}
}
