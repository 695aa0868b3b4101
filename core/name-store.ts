import { RemoteLogError } from "./errors.js";

/**
 * The NS port: a name's current content, with a version that grows by one per update.
 * Every backend (stores/<backend>/name-store.ts) passes test/contract/name-store.contract.ts.
 */
export interface NameEntry {
  content: Uint8Array;
  /** 1 after the first update, one more after each update. */
  version: bigint;
  /**
   * The signed record that vouches for content (for a key name, its IPNS record), stored and returned
   * as given; empty for a free-form name. The store does not check it: NsService does, before put.
   */
  record: Uint8Array;
}

export interface PutOptions {
  /** Apply only if the name is at this version (0n: the name must not exist yet). */
  expectedVersion?: bigint;
  /** Stored beside content; empty if not given. */
  record?: Uint8Array;
  /** The new version, instead of current + 1; must be greater than the current one. */
  version?: bigint;
}

/** The largest version a store keeps (the wire's and LevelDB's uint64). */
export const MAX_VERSION = (1n << 64n) - 1n;

/**
 * The version a put gives the name, or the error it fails with: shared by every backend so that they
 * agree on the checks and on the messages.
 */
export function nextVersion(name: string, current: bigint, options: PutOptions): bigint {
  if (options.expectedVersion !== undefined && options.expectedVersion !== current) {
    throw RemoteLogError.aborted(`name ${JSON.stringify(name)} is at version ${current}, not ${options.expectedVersion}`, { name });
  }
  if (options.version === undefined) {
    if (current >= MAX_VERSION) throw RemoteLogError.conflict(`name ${JSON.stringify(name)} is at the last version, ${current}`);
    return current + 1n;
  }
  if (options.version < 1n || options.version > MAX_VERSION) {
    throw RemoteLogError.invalidArgument(`version ${options.version} of name ${JSON.stringify(name)} is not in 1..2^64-1`);
  }
  if (options.version <= current) {
    throw RemoteLogError.aborted(`name ${JSON.stringify(name)} is at version ${current}; version ${options.version} is not newer`, { name });
  }
  return options.version;
}

/** A page of NameStore.list. */
export interface ListOptions {
  /** Only names after this one (in UTF-8 byte order); from the first when absent. */
  after?: string;
  /** At most this many names. */
  limit?: number;
}

/** Whether name a sorts before name b as their UTF-8 bytes do (the order list() gives). */
export function compareNames(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

export interface NameStore {
  /** The name's current entry, or undefined for a name never updated. */
  get(name: string): Promise<NameEntry | undefined>;
  /**
   * Sets the name's content (and record, empty if not given) and returns its new version: `version`
   * when given, else the current version + 1. With expectedVersion, the update applies only if the
   * current version equals it (0n: the name must not exist). A given `version` must be greater than
   * the current one, so that a signed name's version is its record's sequence and never goes back.
   * Either check failing throws CONFLICT, naming the name and the versions, and changes nothing; a
   * `version` outside 1..2^64-1 throws INVALID_ARGUMENT. Concurrent updates of one name are
   * serialised: none is lost silently. Durable when it resolves.
   */
  put(name: string, content: Uint8Array, options?: PutOptions): Promise<bigint>;
  /**
   * How many names have an entry. Optional, and may read every name (LevelNameStore does): read at
   * each metrics scrape, not on any request's path.
   */
  count?(): Promise<number>;
  /**
   * Every name and its entry, in the order of the names' UTF-8 bytes. Optional, the capability gc needs
   * to find its roots (canList): a backend that cannot list its names (IPNS) leaves it out. With
   * options, only the names after options.after, and at most options.limit of them: a page of a
   * listing, which reads that page and no more.
   */
  list?(options?: ListOptions): AsyncIterable<[string, NameEntry]>;
  /**
   * Forgets the name and its entry: get and list no longer give it, and a put makes it anew, from
   * version 1. True when it had an entry. Serialised with the name's puts; durable when it resolves.
   * Optional, the capability the operator's gc --drop-name needs (backup/gc.ts): a backend that cannot
   * forget a name (IPNS) leaves it out.
   */
  drop?(name: string): Promise<boolean>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}

/** Whether a name store can list its names, as gc needs. */
export function canList<T extends NameStore>(store: T | undefined): store is T & { list(options?: ListOptions): AsyncIterable<[string, NameEntry]> } {
  return typeof store?.list === "function";
}
