import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ContentSchema, ResponseSchema, type Content, type NameUpdate, type NS, type Query, type Response } from "../gen/vac/cas/cas_pb.js";
import type { NameEntry, NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";
import { applySignedUpdate, checkName } from "../core/name-checks.js";
import { canonicalKeyName, checkFreeFormName, isKeyName } from "../core/names.js";
import { Authority, peerOf, type Peer, type Writer } from "./auth.js";
import { WatchManyResponseSchema, type WatchManyRequest, type WatchManyResponse } from "../gen/remotelog/v1/names_pb.js";

export interface NsLimits {
  /** The largest content one name may point at, in bytes. */
  maxContentBytes: number;
  /** The longest name, in UTF-8 bytes. */
  maxNameBytes: number;
  /** The most names one WatchMany stream may watch. */
  maxWatchNames: number;
  /** Names watched at once (a Watch stream is one, a WatchMany one per name), by everyone together. */
  maxWatches: number;
  /** ... from one client address. */
  maxWatchesPerAddress: number;
  /** ... on one connection. */
  maxWatchesPerConnection: number;
}

export const defaultNsLimits: NsLimits = {
  maxContentBytes: 1 << 20,
  maxNameBytes: 512,
  maxWatchNames: 10_000,
  maxWatches: 100_000,
  maxWatchesPerAddress: 10_000,
  maxWatchesPerConnection: 10_000,
};

export interface NsOptions {
  /** Who may write; an open one when absent. */
  authority?: Authority;
  /** Shorthand for an authority that takes signed updates only (no tokens, no quotas). */
  requireSigned?: boolean;
  /** Aborted when the server starts closing: open Watch streams end, so they do not hold it open. */
  closing?: AbortSignal;
  /**
   * Stores an update's blocks in the CAS served beside this NS, with the CAS's own checks and limits;
   * absent when there is none, and updates that carry blocks are then refused.
   */
  addBlocks?: (blocks: Uint8Array[]) => Promise<unknown>;
}

/**
 * The draft's `vac.cas.NS` over a NameStore, with remotelog's versions: every update returns the
 * name's new version, and an update carrying expected_version applies only if the name is at it.
 *
 * A key name (k51…, design/remote-log.md §5) is updated only with an IPNS record signed by its key
 * for exactly that content; the record's sequence becomes the name's version, so versions never go
 * back, and the record is stored beside the content for receivers to check again. Everything is
 * checked before the store is touched: a refused update changes nothing.
 *
 * Throws RemoteLogError:
 * - INVALID_ARGUMENT: a name that checkName refuses; a record on a name that is not a key name; a
 *   record that is malformed or points at other content than the update's (see verifyNameRecord);
 * - TOO_LARGE: content over maxContentBytes, a record over MAX_RECORD_BYTES;
 * - PERMISSION_DENIED: a key name without a record, a record whose signature does not verify with the
 *   name's key, a key the authority does not allow, an unsigned name without a write token on a
 *   closed server (services/auth.ts);
 * - INVALID_ARGUMENT also for a free-form name that breaks core/names.ts freeFormNameProblem;
 * - CONFLICT: expected_version is not the name's version; the record expired; its sequence is below
 *   the name's version (stale or replayed), or equal to it with other content or record bytes;
 * - NOT_FOUND (Fetch): a name that was never updated.
 */
export class NsService implements ServiceImpl<typeof NS> {
  private readonly limits: NsLimits;
  private readonly authority: Authority;
  private readonly watchers: Watchers;
  private readonly closing?: AbortSignal;
  private readonly addBlocks?: (blocks: Uint8Array[]) => Promise<unknown>;

  constructor(
    private readonly store: NameStore,
    limits: Partial<NsLimits> = {},
    options: NsOptions = {},
  ) {
    this.limits = { ...defaultNsLimits, ...limits };
    this.authority = options.authority ?? new Authority({ requireSigned: options.requireSigned });
    this.watchers = new Watchers(this.limits);
    this.closing = options.closing;
    this.addBlocks = options.addBlocks;
  }

  async update(request: NameUpdate, context?: HandlerContext): Promise<Response> {
    const { name, content, record, expectedVersion, blocks } = request;
    if (blocks.length > 0 && !this.addBlocks) {
      throw RemoteLogError.conflict(`this NS has no CAS beside it to store the update's ${blocks.length} blocks; store them with the CAS first`);
    }
    // The blocks go in after every check of the update itself and before the name moves, so that no
    // reader of the name meets a block that is not stored yet. They and a new name count against the
    // writer's quotas, given back if the update then fails.
    const put = async (writer: Writer, options: Parameters<NameStore["put"]>[2]) => {
      const bytes = blocks.reduce((sum, block) => sum + block.length, 0);
      // Only a quota of names needs to know whether the name is new: otherwise no extra read.
      const isNew = this.authority.countsNames && (options?.expectedVersion === 0n || (await this.store.get(name)) === undefined);
      this.authority.chargeBytes(writer, bytes);
      try {
        if (isNew) this.authority.chargeName(writer);
      } catch (err) {
        this.authority.refundBytes(writer, bytes);
        throw err;
      }
      try {
        await this.authority.persist();
        if (blocks.length > 0) await this.addBlocks!(blocks);
        return await this.store.put(name, content, options);
      } catch (err) {
        this.authority.refundBytes(writer, bytes);
        if (isNew) this.authority.refundName(writer);
        throw err;
      }
    };
    checkName(name, this.limits.maxNameBytes);
    if (content.length > this.limits.maxContentBytes) {
      throw RemoteLogError.tooLarge(
        `content of ${content.length} bytes for name ${JSON.stringify(name)} is over the limit of ${this.limits.maxContentBytes} bytes`,
      );
    }
    if (!isKeyName(name)) {
      // Another spelling of a key name would be a second, unsigned name for the same key.
      const canonical = canonicalKeyName(name);
      if (canonical) throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} spells key name ${canonical} another way; use ${canonical}`);
      if (record.length > 0) {
        throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} is not a key name (k51…), so it cannot carry a signed record`);
      }
      checkFreeFormName(name);
      const writer = this.authority.tokenWriter(context, `update of unsigned name ${JSON.stringify(name)}`);
      const version = await put(writer, expectedVersion !== undefined ? { expectedVersion } : {});
      this.watchers.notify(name, { content, version, record });
      return create(ResponseSchema, { version });
    }

    const writer = this.authority.keyWriter(name);
    const { version, stored } = await applySignedUpdate(this.store, name, content, record, expectedVersion, (options) => put(writer, options));
    if (stored) this.watchers.notify(name, { content, version, record });
    return create(ResponseSchema, { version });
  }

  /**
   * Streams the name's current entry, if any, then each newer one this service stores, until the
   * client goes away. Subscribes before reading, so no update in between is missed; a slow watcher
   * gets the newest entry rather than a queue. TOO_LARGE past maxWatchers streams at once.
   */
  async *watch(request: Query, context?: HandlerContext): AsyncGenerator<Content> {
    checkName(request.name, this.limits.maxNameBytes);
    const subscription = this.watchers.subscribe(request.name, peerOf(context), this.streamSignal(context));
    try {
      let last = 0n;
      const current = await this.store.get(request.name);
      if (current) {
        last = current.version;
        yield create(ContentSchema, { data: current.content, version: current.version, record: current.record });
      }
      for (;;) {
        const entry = await subscription.next();
        if (!entry) return;
        if (entry.version <= last) continue;
        last = entry.version;
        yield create(ContentSchema, { data: entry.content, version: entry.version, record: entry.record });
      }
    } finally {
      subscription.close();
    }
  }

  /**
   * remotelog.v1.NameWatchService.WatchMany: a note for each update of any of the names, the newest
   * version per name when several come before the client takes them. Each name counts as a watcher.
   */
  async *watchMany(request: WatchManyRequest, context?: HandlerContext): AsyncGenerator<WatchManyResponse> {
    if (request.names.length > this.limits.maxWatchNames) {
      throw RemoteLogError.tooLarge(`${request.names.length} names in one WatchMany is over the limit of ${this.limits.maxWatchNames}`, {
        limit: "max-watch-names",
        value: this.limits.maxWatchNames,
      });
    }
    const peer = peerOf(context);
    request.names.forEach((name) => checkName(name, this.limits.maxNameBytes));
    const signal = this.streamSignal(context);
    const pending = new Map<string, bigint>();
    let wake: (() => void) | undefined;
    const unlisten: (() => void)[] = [];
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const names = new Set(request.names);
      // All or none: a stream that would pass a limit halfway is refused before it watches anything.
      this.watchers.checkRoom(peer, names.size);
      for (const name of names) {
        unlisten.push(
          this.watchers.listen(name, peer, (entry) => {
            if ((pending.get(name) ?? 0n) < entry.version) pending.set(name, entry.version);
            wake?.();
          }),
        );
      }
      for (;;) {
        while (pending.size === 0 && !signal?.aborted) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (signal?.aborted) return;
        const notes = [...pending];
        pending.clear();
        for (const [name, version] of notes) yield create(WatchManyResponseSchema, { name, version });
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      for (const stop of unlisten) stop();
    }
  }

  /** Ends a stream when its client goes away or the server starts closing. */
  private streamSignal(context: HandlerContext | undefined): AbortSignal | undefined {
    const signals = [context?.signal, this.closing].filter((signal): signal is AbortSignal => signal !== undefined);
    return signals.length > 0 ? AbortSignal.any(signals) : undefined;
  }

  async fetch(request: Query, _context?: HandlerContext): Promise<Content> {
    checkName(request.name, this.limits.maxNameBytes);
    const entry = await this.store.get(request.name);
    if (entry === undefined) throw RemoteLogError.notFound(`name ${JSON.stringify(request.name)} has never been updated`);
    return create(ContentSchema, { data: entry.content, version: entry.version, record: entry.record });
  }
}

export { checkName };

/** One Watch stream's view of its name: the newest entry not yet taken, or undefined once closed. */
interface Subscription {
  next(): Promise<NameEntry | undefined>;
  close(): void;
}

/**
 * Who watches which name, in this process. Only updates that go through this service are seen, which
 * is every update when the service owns its store (the embedded NS); a backend written to from
 * elsewhere would need its own notifications.
 */
class Watchers {
  private readonly byName = new Map<string, Set<(entry: NameEntry) => void>>();
  private count = 0;
  private readonly byAddress = new Map<string, number>();
  private readonly byConnection = new WeakMap<object, number>();

  constructor(private readonly limits: Pick<NsLimits, "maxWatches" | "maxWatchesPerAddress" | "maxWatchesPerConnection">) {}

  /** TOO_LARGE naming the limit that n more watches from peer would pass. */
  checkRoom(peer: Peer, n: number): void {
    const { maxWatches, maxWatchesPerAddress, maxWatchesPerConnection } = this.limits;
    const onConnection = this.byConnection.get(peer.connection) ?? 0;
    if (onConnection + n > maxWatchesPerConnection) {
      throw RemoteLogError.tooLarge(`${onConnection} names are watched on this connection already; ${n} more is over the limit of ${maxWatchesPerConnection} per connection`, {
        limit: "max-watches-per-connection",
        value: maxWatchesPerConnection,
      });
    }
    const fromAddress = this.byAddress.get(peer.address) ?? 0;
    if (fromAddress + n > maxWatchesPerAddress) {
      throw RemoteLogError.tooLarge(`${fromAddress} names are watched from ${peer.address} already; ${n} more is over the limit of ${maxWatchesPerAddress} per client address`, {
        limit: "max-watches-per-address",
        value: maxWatchesPerAddress,
      });
    }
    if (this.count + n > maxWatches) {
      throw RemoteLogError.tooLarge(`${this.count} names are watched already, the most this NS serves at once`, { limit: "max-watches", value: maxWatches });
    }
  }

  notify(name: string, entry: NameEntry): void {
    for (const listener of this.byName.get(name) ?? []) listener(entry);
  }

  /** Calls listener with each entry stored for name until the returned function is called. */
  listen(name: string, peer: Peer, listener: (entry: NameEntry) => void): () => void {
    this.checkRoom(peer, 1);
    this.count++;
    this.byAddress.set(peer.address, (this.byAddress.get(peer.address) ?? 0) + 1);
    this.byConnection.set(peer.connection, (this.byConnection.get(peer.connection) ?? 0) + 1);
    let listeners = this.byName.get(name);
    if (!listeners) this.byName.set(name, (listeners = new Set()));
    const set = listeners;
    // A function of its own, so that one listener given for two names is two listens.
    const own = (entry: NameEntry) => listener(entry);
    set.add(own);
    return () => {
      if (!set.delete(own)) return;
      this.count--;
      const fromAddress = (this.byAddress.get(peer.address) ?? 1) - 1;
      if (fromAddress === 0) this.byAddress.delete(peer.address);
      else this.byAddress.set(peer.address, fromAddress);
      this.byConnection.set(peer.connection, (this.byConnection.get(peer.connection) ?? 1) - 1);
      if (set.size === 0) this.byName.delete(name);
    };
  }

  subscribe(name: string, peer: Peer, signal?: AbortSignal): Subscription {
    let latest: NameEntry | undefined;
    let wake: (() => void) | undefined;
    let closed = false;
    const unlisten = this.listen(name, peer, (entry) => {
      if (!latest || entry.version > latest.version) latest = entry;
      wake?.();
    });
    const onAbort = () => {
      closed = true;
      wake?.();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) closed = true;
    return {
      next: async () => {
        while (!latest && !closed) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (closed) return undefined;
        const entry = latest;
        latest = undefined;
        return entry;
      },
      close: () => {
        unlisten();
        signal?.removeEventListener("abort", onAbort);
        closed = true;
        wake?.();
      },
    };
  }
}
