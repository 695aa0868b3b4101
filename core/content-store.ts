/**
 * The CAS port: immutable blocks addressed by their binary CIDv1 (raw, sha2-256).
 * Every backend (stores/<backend>/content-store.ts) passes test/contract/content-store.contract.ts.
 */
export interface ContentStore {
  /**
   * Stores blocks and returns their addresses in the same order. Idempotent: storing a block that is
   * already there is a no-op. Durable when it resolves: a crash afterwards loses none of them. A crash
   * before it resolves may keep some, but never a torn or partial block.
   */
  putMany(blocks: Uint8Array[]): Promise<Uint8Array[]>;
  /**
   * Returns each block's bytes, or undefined for a block that is not stored. Bytes are re-hashed
   * before they are returned: a block whose bytes no longer match its address throws DATA_LOSS.
   * Addresses must already be valid (see core/hash.ts parseAddress).
   */
  getMany(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]>;
  /** Whether a block is stored, without reading or checking it. */
  has(address: Uint8Array): Promise<boolean>;
  /**
   * Distinct blocks stored and the sum of their sizes, without storage overhead: cheap and synchronous,
   * since it is read at every metrics scrape. Optional: a backend that cannot tell cheaply leaves it out.
   */
  stats?(): { blocks: number; bytes: number; quarantinedPacks?: number };
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}
