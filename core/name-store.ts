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
 * CONFLICT when version, a signed update's (its record's sequence), is not above droppedAt, the version
 * the operator dropped the name at (NameStore.droppedAt): that record, and every older one, is public,
 * and whoever kept it could otherwise publish it again and bring the name back, reaching pages gc has
 * since removed. The one check of it, for the stores' puts (nextVersion) and for the NS before it
 * touches anything (core/name-checks.ts applySignedUpdate).
 */
export function checkNotDropped(name: string, version: bigint, droppedAt: bigint | undefined): void {
  if (droppedAt === undefined || version > droppedAt) return;
  throw RemoteLogError.conflict(
    `name ${JSON.stringify(name)} was dropped by the operator at sequence ${droppedAt}; only a newer record from its key is taken, and this one has sequence ${version}`,
    { name },
  );
}

/**
 * The version a put gives the name, or the error it fails with: shared by every backend so that they
 * agree on the checks and on the messages. droppedAt is the name's tombstone (NameStore.droppedAt), if
 * the backend keeps one: a given version must be above it too.
 */
export function nextVersion(name: string, current: bigint, options: PutOptions, droppedAt?: bigint): bigint {
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
  checkNotDropped(name, options.version, droppedAt);
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
   * the current one, so that a signed name's version is its record's sequence and never goes back,
   * and, for a name dropped with a record, than its tombstone (see drop: CONFLICT otherwise).
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
   * Forgets the name and its entry: get, list and count no longer give it, and a put makes it anew,
   * from version 1. True when it had an entry; false, changing nothing, when it had none (dropped
   * before, or never there), so that a drop can be repeated. Serialised with the name's puts; durable
   * when it resolves. Optional, the capability the operator's gc --drop-name needs (backup/gc.ts): a
   * backend that cannot forget a name (IPNS) leaves it out, and one that has it has droppedAt too.
   *
   * A name whose entry carries a record (a key name, whose version is its record's sequence) leaves a
   * tombstone, its version, durable with the drop: from then on a put with a given version at or below
   * it throws CONFLICT (checkNotDropped) and changes nothing, checked under the name's lock with the
   * put's other checks. Its last record is public, and published again it would bring the name back,
   * reaching pages gc has removed; only its key can sign a newer one. The put that makes the name anew
   * removes the tombstone (in the same write): a signed name's put has a version above it, which from
   * then on refuses every old record by itself, and which a later drop leaves as the tombstone. A put
   * without a version (an unsigned name's; the NS gives a key name's every put a version) is not
   * judged against it. A name without a record (a free-form name, which any writer may update anyway)
   * leaves none.
   */
  drop?(name: string): Promise<boolean>;
  /**
   * The name's tombstone (see drop): the version its entry, carrying a record, had when drop forgot
   * it, until a put makes the name anew; undefined for any other name. Offered with drop.
   */
  droppedAt?(name: string): Promise<bigint | undefined>;
  /** Releases files and handles. Idempotent. */
  close(): Promise<void>;
}

/** Whether a name store can list its names, as gc needs. */
export function canList<T extends NameStore>(store: T | undefined): store is T & { list(options?: ListOptions): AsyncIterable<[string, NameEntry]> } {
  return typeof store?.list === "function";
}
