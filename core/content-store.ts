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
  /**
   * The optional capability of sweeping: a backend that keeps blocks in packs it can list and rewrite
   * offers it, and gc (backup/gc.ts) runs only on a store that has it (canSweep). The fs backend does;
   * the memory and Kubo backends do not (Kubo collects its own unpinned blocks).
   */
  readonly sweeper?: BlockSweeper;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}

/** A garbage collection in progress (BlockSweeper.beginGc). */
export interface GcGuard {
  startedMs: number;
  /** Keys put since the collection began. */
  touched: Set<string>;
  /** Ends the collection; puts are no longer recorded. */
  end(): void;
}

/** One pack of blocks as a sweeper lists it; keys are addresses as latin1 strings. */
export interface PackListing {
  name: string;
  /** When it was written, ms since the epoch. */
  writtenMs: number;
  keys: readonly string[];
}

/**
 * What gc needs of a content store beyond the port: to record puts while it runs, to list the packs
 * and their blocks, and to rewrite a pack without its dead blocks.
 */
export interface BlockSweeper {
  /**
   * Starts a collection: from now until guard.end(), every key put, even one already stored, is
   * recorded in guard.touched, and sweepPack keeps it. CONFLICT while another collection runs.
   */
  beginGc(): GcGuard;
  /** Forgets re-puts older than ms, which no collection starting later can need. */
  forgetPutsBefore(ms: number): void;
  /** Every live pack. */
  listPacks(): PackListing[];
  /**
   * Rewrites pack `name` without the blocks that are not live and were not put at or after
   * keepPutSinceMs nor during the collection; returns what was dropped. On a failure nothing is dropped.
   * With dryRun, changes nothing and returns what it would drop now, by the same rule.
   */
  sweepPack(name: string, live: (key: string) => boolean, guard: GcGuard, keepPutSinceMs: number, options?: { dryRun?: boolean }): Promise<{ blocks: number; bytes: number }>;
}

/** Whether a content store can be swept by gc. */
export function canSweep<T extends ContentStore>(store: T | undefined): store is T & { readonly sweeper: BlockSweeper } {
  return store?.sweeper !== undefined;
}
