import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ContentSchema, ResponseSchema, type Content, type NameUpdate, type NS, type Query, type Response } from "../gen/vac/cas/cas_pb.js";
import type { NameEntry, NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";
import { applySignedUpdate, checkName } from "../core/name-checks.js";
import { canonicalKeyName, checkFreeFormName, isKeyName } from "../core/names.js";
import { Authority, payerOf, peerOf, type Peer, type Writer } from "./auth.js";
import { HeldBytes, type BodyHolding, type HeldBytesRefusals } from "./body-budget.js";
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
  /**
   * Bytes of Watch answers (a name's content each) written to clients that have not yet taken them,
   * held at once for everyone together; past it a stream whose name moves ends TOO_LARGE.
   */
  maxWatchAnswerBytes: number;
  /** ... for one client address. */
  maxWatchAnswerBytesPerAddress: number;
}

export const defaultNsLimits: NsLimits = {
  maxContentBytes: 1 << 20,
  maxNameBytes: 512,
  maxWatchNames: 10_000,
  maxWatches: 100_000,
  maxWatchesPerAddress: 10_000,
  maxWatchesPerConnection: 10_000,
  // An honest follower takes each head as it comes: only a client that reads none of its streams
  // holds much here. Without a bound, 1,000 never-read Watch streams of a 1 MiB head held 2.2 GB.
  maxWatchAnswerBytes: 512 << 20,
  maxWatchAnswerBytesPerAddress: 64 << 20,
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
  /** Told how many watches were ended to make room in a full maxWatches for another address's. */
  onWatchesEvicted?: (watches: number) => void;
}

type WatchAnswerLimit = "max-watch-answer-bytes" | "max-watch-answer-bytes-per-address";

const WATCH_ANSWER_REFUSALS: HeldBytesRefusals<WatchAnswerLimit> = {
  limits: { total: "max-watch-answer-bytes", perAddress: "max-watch-answer-bytes-per-address" },
  alone: (most) => `a head of more than ${most} bytes is more than this server holds of Watch answers at once`,
  address: (address, held, _n, most) =>
    `Watch answers written to ${address} and not yet read hold ${held} bytes, the most it may (${most}): this stream ends; read the others, or watch fewer names (WatchMany sends no content)`,
  total: (held, _n, most) => `Watch answers written and not yet read hold ${held} bytes, the most this server holds (${most}): this stream ends; watch again later`,
};

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
  private readonly answers: HeldBytes<WatchAnswerLimit>;
  private readonly closing?: AbortSignal;
  private readonly addBlocks?: (blocks: Uint8Array[]) => Promise<unknown>;

  constructor(
    private readonly store: NameStore,
    limits: Partial<NsLimits> = {},
    options: NsOptions = {},
  ) {
    this.limits = { ...defaultNsLimits, ...limits };
    this.authority = options.authority ?? new Authority({ requireSigned: options.requireSigned });
    this.watchers = new Watchers(this.limits, options.onWatchesEvicted);
    this.answers = new HeldBytes({ total: this.limits.maxWatchAnswerBytes, perAddress: this.limits.maxWatchAnswerBytesPerAddress }, WATCH_ANSWER_REFUSALS);
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
      const newName = this.authority.countsNames && (options?.expectedVersion === 0n || (await this.store.get(name)) === undefined);
      return this.authority.paid(payerOf(writer, context), { bytes, newName }, async () => {
        if (blocks.length > 0) await this.addBlocks!(blocks);
        return await this.store.put(name, content, options);
      });
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
   * gets the newest entry rather than a queue. TOO_LARGE past a watch limit; when maxWatches is full,
   * the stream may take the room of an address that holds more, whose stream then ends with TOO_LARGE
   * (max-watches): see Watchers.makeRoom.
   */
  async *watch(request: Query, context?: HandlerContext): AsyncGenerator<Content> {
    checkName(request.name, this.limits.maxNameBytes);
    const peer = peerOf(context);
    const signal = this.streamSignal(context);
    const subscription = this.watchers.subscribe(request.name, peer, signal);
    // Each answer is counted from when it is handed over until the next is asked for, which the
    // transport does once the client has taken it (connect-node waits for "drain"), or until the
    // stream ends: a client that never reads its streams holds at most its address's share. A client
    // that goes away with an answer unread leaves that wait unresolved, and the generator is never
    // asked again nor ended: its answer and its watch are given back as it goes.
    let answer: BodyHolding | undefined;
    const onAbort = () => {
      answer?.release();
      subscription.close();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const send = (entry: NameEntry) => {
      answer = this.answers.holding(peer.address);
      answer.take(entry.content.length + entry.record.length);
      return create(ContentSchema, { data: entry.content, version: entry.version, record: entry.record });
    };
    try {
      let last = 0n;
      const current = await this.store.get(request.name);
      if (current) {
        last = current.version;
        yield send(current);
        answer?.release();
      }
      for (;;) {
        const entry = await subscription.next();
        if (!entry) return;
        if (entry.version <= last) continue;
        last = entry.version;
        yield send(entry);
        answer?.release();
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      answer?.release();
      subscription.close();
    }
  }

  /**
   * remotelog.v1.NameWatchService.WatchMany: a note for each update of any of the names, the newest
   * version per name when several come before the client takes them. Each name counts as a watcher,
   * and the stream is refused as a Watch stream is, for all its names at once. Made to give way to
   * another address's watches (Watchers.makeRoom), it lets go of as many of its names as it must, a
   * let_go note each, and goes on with the rest; it ends (evicted) only when it must give them all.
   * With confirm, a first note (watching) says when every name is watched.
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
    const letGo: string[] = [];
    let wake: (() => void) | undefined;
    let holding: Holding | undefined;
    // The watches go back as the client goes too, not only at the generator's end: one that left with
    // a note unread never has the generator asked for its next (see watch).
    const onAbort = () => {
      holding?.release();
      wake?.();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const names = new Set(request.names);
      // All or none: a stream that would pass a limit halfway is refused before it watches anything.
      const held = (holding = this.watchers.admit(peer, names.size, () => wake?.(), (gone) => {
        letGo.push(...gone);
        wake?.();
      }));
      for (const name of names) {
        held.listen(name, (entry) => {
          if ((pending.get(name) ?? 0n) < entry.version) pending.set(name, entry.version);
          wake?.();
        });
      }
      // Only now is every update noted: the client reads the heads it wants after this note.
      if (request.confirm) yield create(WatchManyResponseSchema, { watching: true });
      for (;;) {
        while (pending.size === 0 && letGo.length === 0 && !signal?.aborted && !held.evicted) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (signal?.aborted) return;
        const notes = [...pending];
        pending.clear();
        for (const [name, version] of notes) yield create(WatchManyResponseSchema, { name, version });
        // After the notes of names updated before they were let go.
        for (const name of letGo.splice(0)) yield create(WatchManyResponseSchema, { name, letGo: true });
        // Notes that came before the eviction are sent first.
        if (held.evicted) throw held.evicted;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      holding?.release();
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
  /** Throws the eviction (TOO_LARGE, max-watches) once the NS ended this watch to make room for another address's. */
  next(): Promise<NameEntry | undefined>;
  close(): void;
}

/** The watches one stream holds (a Watch stream one, a WatchMany one per name), counted until released. */
interface Holding {
  /** Calls listener with each entry stored for name until the holding is released or evicted. */
  listen(name: string, listener: (entry: NameEntry) => void): void;
  /** Stops its listeners and gives its watches back; idempotent, and a no-op after an eviction. */
  release(): void;
  /** Set once the NS ended these watches to make room for another address's: the stream ends with it. */
  readonly evicted: RemoteLogError | undefined;
}

/** A holding as its address's bookkeeping sees it, for Watchers.makeRoom to take watches from. */
interface Held {
  /** The watches it holds now. */
  readonly size: number;
  /**
   * Gives up n of its watches and returns how many it gave: a stream that can let go of some names
   * (a WatchMany) gives exactly n when it holds more; otherwise the stream ends (evicted: reason),
   * giving all it held.
   */
  give(n: number, reason: RemoteLogError): number;
}

/** The watches of one client address: how many, and the streams that hold them. */
interface AddressWatches {
  count: number;
  streams: Set<Held>;
}

/**
 * Who watches which name, in this process. Only updates that go through this service are seen, which
 * is every update when the service owns its store (the embedded NS); a backend written to from
 * elsewhere would need its own notifications.
 *
 * When the server-wide budget (maxWatches) is full, it is shared: a new stream from an address that
 * would then hold fewer watches than another address holds takes the room from the largest holders
 * (see makeRoom), so that a stranger with a few addresses cannot keep every other client's pushes out.
 */
class Watchers {
  private readonly byName = new Map<string, Set<(entry: NameEntry) => void>>();
  private count = 0;
  private readonly byAddress = new Map<string, AddressWatches>();
  private readonly byConnection = new WeakMap<object, number>();

  constructor(
    private readonly limits: Pick<NsLimits, "maxWatches" | "maxWatchesPerAddress" | "maxWatchesPerConnection">,
    private readonly onEvicted?: (watches: number) => void,
  ) {}

  /**
   * Counts n watches for a new stream of peer's, after making room for them (makeRoom). onEvict is
   * called if the NS later ends them for another address's: holding.evicted then says why. With
   * onLetGo, the stream may instead be made to let go of some of its names (those it listened to),
   * which onLetGo is given once their watches are given back. Throws TOO_LARGE naming the limit that
   * n more watches from peer would pass; nothing is ended then.
   */
  admit(peer: Peer, n: number, onEvict: () => void, onLetGo?: (names: string[]) => void): Holding {
    const { maxWatchesPerAddress, maxWatchesPerConnection } = this.limits;
    const onConnection = this.byConnection.get(peer.connection) ?? 0;
    if (onConnection + n > maxWatchesPerConnection) {
      throw RemoteLogError.tooLarge(`${onConnection} names are watched on this connection already; ${n} more is over the limit of ${maxWatchesPerConnection} per connection`, {
        limit: "max-watches-per-connection",
        value: maxWatchesPerConnection,
      });
    }
    const fromAddress = this.byAddress.get(peer.address)?.count ?? 0;
    if (fromAddress + n > maxWatchesPerAddress) {
      throw RemoteLogError.tooLarge(`${fromAddress} names are watched from ${peer.address} already; ${n} more is over the limit of ${maxWatchesPerAddress} per client address`, {
        limit: "max-watches-per-address",
        value: maxWatchesPerAddress,
      });
    }
    this.makeRoom(peer.address, n);

    let watches = this.byAddress.get(peer.address);
    if (!watches) this.byAddress.set(peer.address, (watches = { count: 0, streams: new Set() }));
    const address = watches;
    this.count += n;
    address.count += n;
    this.byConnection.set(peer.connection, onConnection + n);
    // Each name's listener's stop, in the order listened to.
    const stops = new Map<string, () => void>();
    let size = n;
    let released = false;
    let evicted: RemoteLogError | undefined;
    const giveBack = (watches: number) => {
      this.count -= watches;
      address.count -= watches;
      this.byConnection.set(peer.connection, (this.byConnection.get(peer.connection) ?? watches) - watches);
    };
    const release = () => {
      if (released) return;
      released = true;
      for (const stop of stops.values()) stop();
      giveBack(size);
      address.streams.delete(held);
      // An address's entry goes with its last stream, so one released later never finds a newer entry.
      if (address.streams.size === 0) this.byAddress.delete(peer.address);
    };
    const held: Held = {
      get size() {
        return size;
      },
      give: (watches, reason) => {
        if (released) return 0;
        if (!onLetGo || watches >= size) {
          const all = size;
          evicted = reason;
          release();
          onEvict();
          return all;
        }
        // The names listened to last go first.
        const names = [...stops.keys()].slice(-watches);
        for (const name of names) {
          stops.get(name)!();
          stops.delete(name);
        }
        size -= watches;
        giveBack(watches);
        onLetGo(names);
        return watches;
      },
    };
    address.streams.add(held);
    return {
      listen: (name, listener) => {
        if (released || stops.has(name)) return;
        let listeners = this.byName.get(name);
        if (!listeners) this.byName.set(name, (listeners = new Set()));
        const set = listeners;
        // A function of its own, so that one listener given for two streams' names is two listens.
        const own = (entry: NameEntry) => listener(entry);
        set.add(own);
        stops.set(name, () => {
          set.delete(own);
          if (set.size === 0 && this.byName.get(name) === set) this.byName.delete(name);
        });
      },
      release,
      get evicted() {
        return evicted;
      },
    };
  }

  /**
   * Makes room in maxWatches for n more watches from address, or throws TOO_LARGE (max-watches).
   *
   * A full budget is shared rather than first come, first served: room is taken from the addresses
   * that hold more than address would hold after this request, always from the largest, as if one
   * watch at a time were taken from whichever holds the most, and never below what address would then
   * hold. An address gives from its largest streams first: a WatchMany lets go of just the names it
   * must and goes on, a Watch stream (one name) ends. Taking no more than that is what
   * keeps it stable: the address that gave way, asking again, would hold more than the one it gave way
   * to, and is refused rather than taking the room back. With k addresses asking, each so ends with
   * about maxWatches/k, and a stranger's many addresses each keep no more than the next client asks
   * for. All or none: when the larger holders cannot give enough, nothing is ended.
   */
  private makeRoom(address: string, n: number): void {
    const { maxWatches } = this.limits;
    const need = this.count + n - maxWatches;
    if (need <= 0) return;
    const mine = (this.byAddress.get(address)?.count ?? 0) + n;
    const larger = [...this.byAddress].filter(([other, watches]) => other !== address && watches.count > mine).map(([, watches]) => watches);
    const spare = larger.reduce((sum, watches) => sum + watches.count - mine, 0);
    if (spare < need) {
      throw RemoteLogError.tooLarge(`${this.count} names are watched already, the most this NS serves at once, shared among client addresses: ${address} would watch ${mine}, and those watching more can give way only ${spare}`, {
        limit: "max-watches",
        value: maxWatches,
      });
    }
    // The level the largest holders come down to: with the k largest lowered to `level`, they give
    // at least need, and excess of them keep one more (taking one at a time, the last round of the
    // largest stops once need is met).
    larger.sort((a, b) => b.count - a.count);
    let top = 0;
    let level = mine;
    for (let k = 1, held = 0; k <= larger.length; k++) {
      held += larger[k - 1].count;
      const next = k < larger.length ? larger[k].count : mine;
      if (held - k * next >= need) {
        top = k;
        level = Math.floor((held - need) / k);
        break;
      }
    }
    const excess = larger.slice(0, top).reduce((sum, watches) => sum + watches.count - level, 0) - need;
    const reason = RemoteLogError.tooLarge(
      `the names watched on this stream were let go to make room for another client address's: this NS watches at most ${maxWatches} at once, shared among client addresses, and the one watching the most gives way`,
      { limit: "max-watches", value: maxWatches },
    );
    let evicted = 0;
    larger.slice(0, top).forEach((watches, i) => {
      let give = watches.count - level - (i >= top - excess ? 1 : 0);
      for (const stream of [...watches.streams].sort((a, b) => b.size - a.size)) {
        if (give <= 0) break;
        const given = stream.give(Math.min(give, stream.size), reason);
        evicted += given;
        give -= given;
      }
    });
    this.onEvicted?.(evicted);
  }

  notify(name: string, entry: NameEntry): void {
    for (const listener of this.byName.get(name) ?? []) listener(entry);
  }

  subscribe(name: string, peer: Peer, signal?: AbortSignal): Subscription {
    let latest: NameEntry | undefined;
    let wake: (() => void) | undefined;
    let closed = false;
    const holding = this.admit(peer, 1, () => wake?.());
    holding.listen(name, (entry) => {
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
        while (!latest && !closed && !holding.evicted) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (closed) return undefined;
        // A head pushed before the eviction is still sent; the stream ends at the next call.
        if (!latest) throw holding.evicted!;
        const entry = latest;
        latest = undefined;
        return entry;
      },
      close: () => {
        holding.release();
        signal?.removeEventListener("abort", onAbort);
        closed = true;
        wake?.();
      },
    };
  }
}

