import { ownerMismatch, type ClaimResult, type LocalLog, type LocalLogEntry, type LogOwner } from "../../core/local-log.js";
import { decodeMessage, messageId, toHex } from "../../core/hash.js";

export class MemoryLocalLog implements LocalLog {
  private readonly entries: LocalLogEntry[] = [];
  private readonly seqs = new Map<string, number>();
  private recordedOwner: LogOwner | undefined;

  get length(): number {
    return this.entries.length;
  }

  get owner(): LogOwner | undefined {
    return this.recordedOwner;
  }

  async claim(owner: LogOwner): Promise<ClaimResult> {
    if (this.recordedOwner) {
      const mismatch = ownerMismatch("memory local log", this.recordedOwner, owner);
      if (mismatch) throw mismatch;
      return "same";
    }
    this.recordedOwner = { ...owner };
    return this.entries.length > 0 ? "adopted" : "new";
  }

  async append(messages: Uint8Array[]): Promise<LocalLogEntry[]> {
    const appended: LocalLogEntry[] = [];
    // Every message is decoded before any is kept: a bad one in a batch appends nothing.
    const ids = messages.map((data) => messageId(decodeMessage(data)));
    for (let i = 0; i < messages.length; i++) {
      const data = messages[i];
      const id = ids[i];
      const key = toHex(id);
      if (this.seqs.has(key)) continue;
      const entry = { seq: this.entries.length, id, data: data.slice() };
      this.seqs.set(key, entry.seq);
      this.entries.push(entry);
      appended.push(entry);
    }
    return appended;
  }

  async read(from: number, to: number): Promise<LocalLogEntry[]> {
    return this.entries.slice(Math.max(0, from), Math.max(0, to));
  }

  seqOf(id: Uint8Array): number | undefined {
    return this.seqs.get(toHex(id));
  }

  async close(): Promise<void> {}
}
