import type { ContentStore } from "../../core/content-store.js";
import { RemoteLogError } from "../../core/errors.js";
import { addressOf, addressText, matchesAddress, toHex } from "../../core/hash.js";

/** Blocks in a Map; for tests and for throwaway services. Still re-hashes on read, as the contract asks. */
export class MemoryContentStore implements ContentStore {
  private readonly blocks = new Map<string, Uint8Array>();
  private bytes = 0;

  async putMany(blocks: Uint8Array[]): Promise<Uint8Array[]> {
    return blocks.map((block) => {
      const address = addressOf(block);
      const key = toHex(address);
      if (!this.blocks.has(key)) {
        this.blocks.set(key, block.slice());
        this.bytes += block.length;
      }
      return address;
    });
  }

  async getMany(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return addresses.map((address) => {
      const block = this.blocks.get(toHex(address));
      if (block && !matchesAddress(block, address)) throw RemoteLogError.dataLoss(`block ${addressText(address)} does not match its address`);
      return block;
    });
  }

  async has(address: Uint8Array): Promise<boolean> {
    return this.blocks.has(toHex(address));
  }

  /** Distinct blocks and the sum of their sizes as stored (corrupt() may change a size). */
  stats(): { blocks: number; bytes: number } {
    return { blocks: this.blocks.size, bytes: this.bytes };
  }

  /** For tests that need a corrupt block: replaces stored bytes without re-addressing them. */
  corrupt(address: Uint8Array, bytes: Uint8Array): void {
    const key = toHex(address);
    this.bytes += bytes.length - (this.blocks.get(key)?.length ?? 0);
    this.blocks.set(key, bytes);
  }

  async close(): Promise<void> {}
}
