/**
 * The NS port: a name's current content, with a version that grows by one per update.
 * Every backend (stores/<backend>/name-store.ts) passes test/contract/name-store.contract.ts.
 */
export interface NameEntry {
  content: Uint8Array;
  /** 1 after the first update, one more after each update. */
  version: bigint;
  /**
   * A signed record that vouches for content, stored and returned as given. Reserved for signed
   * names; empty until then.
   */
  record: Uint8Array;
}

export interface NameStore {
  /** The name's current entry, or undefined for a name never updated. */
  get(name: string): Promise<NameEntry | undefined>;
  /**
   * Sets the name's content and returns its new version. With expectedVersion, the update applies only
   * if the current version equals it (0n: the name must not exist); otherwise it throws CONFLICT and
   * nothing changes. Concurrent updates of one name are serialised: none is lost silently. Durable
   * when it resolves.
   */
  put(name: string, content: Uint8Array, options?: { expectedVersion?: bigint; record?: Uint8Array }): Promise<bigint>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}
