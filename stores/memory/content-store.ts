import type { ContentStore } from "../../core/content-store.js";
import { RemoteLogError } from "../../core/errors.js";
import { addressOf, addressText, matchesAddress, toHex } from "../../core/hash.js";

/** Blocks in a Map; for tests and for throwaway services. Still re-hashes on read, as the contract asks. */
export class MemoryContentStore implements ContentStore {
  private readonly blocks = new Map<string, Uint8Array>();

  async putMany(blocks: Uint8Array[]): Promise<Uint8Array[]> {
    return blocks.map((block) => {
      const address = addressOf(block);
      const key = toHex(address);
      if (!this.blocks.has(key)) this.blocks.set(key, block.slice());
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

  /** For tests that need a corrupt block: replaces stored bytes without re-addressing them. */
  corrupt(address: Uint8Array, bytes: Uint8Array): void {
    this.blocks.set(toHex(address), bytes);
  }

  async close(): Promise<void> {}
}
