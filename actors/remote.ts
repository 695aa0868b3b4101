import { Code, ConnectError, createClient, type CallOptions, type Client, type Transport } from "@connectrpc/connect";
import { openTransport, type OpenTransport, type TransportOptions } from "#transport";
import { CAS, NS } from "../gen/vac/cas/cas_pb.js";
import { create, type DescMethodUnary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { AddManyRequestSchema, BlockService, GetManyRequestSchema, type GetManyResponse } from "../gen/remotelog/v1/blocks_pb.js";
import { NameListService, NameWatchService } from "../gen/remotelog/v1/names_pb.js";
import { ServerInfoService } from "../gen/remotelog/v1/info_pb.js";
import { errorCodeOf } from "../core/connect-codes.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { repeatedBytesUnknown } from "../core/page.js";
import { backoffDelayMs, mapBounded, sleep, withRetry as retry, type RetryOptions } from "../core/retry.js";
import { SharedNameWatch, type NameNote } from "./shared-name-watch.js";
import { WatchUnsupportedError, type LogReadRemote, type LogRemote, type NameHead, type NameLister, type NamePage, type PagesWithLinked, type PendingUpdate } from "../core/log-remote.js";

export type { NameHead, LogRemote, LogReadRemote } from "../core/log-remote.js";
export { WatchUnsupportedError } from "../core/log-remote.js";

/** Blocks sent with a name update in one call at most; more go to the CAS first, in batches. */
const ONE_CALL_BYTES = 1 << 20;

/**
 * BlockService with AddMany's response read as an empty message: a writer never uses the ids it sends
 * back (it computed them), and decoding 10,000 of them into a list was the largest frame of a cold
 * `send` process's profile (0.2-0.4 s, protobuf-es's list code running unoptimised). It asks for none
 * (omit_ids); from a server that sends them anyway they are skipped as unknown fields, which cost
 * 10-20 ms a 10k publish in a process not yet warm.
 */
const addManyIdsUnread = { ...BlockService.method.addMany, output: EmptySchema } as unknown as DescMethodUnary;
const BlockAdds = { ...BlockService, methods: [addManyIdsUnread], method: { addMany: addManyIdsUnread } } as unknown as typeof BlockService;

/** The reverse of services/connect-errors.ts: a remote failure as one of our codes, naming the service. */
export function fromConnectError(err: unknown, where: string): RemoteLogError {
  if (err instanceof RemoteLogError) return err;
  const connectError = ConnectError.from(err);
  // Nothing answers this call at the URL (an HTTP 404, or a server without the method): the URL is
  // wrong, or the server is not one of ours; it was INTERNAL, "a bug".
  if (connectError.code === Code.Unimplemented) {
    return RemoteLogError.invalidArgument(`${where}: no such service at this URL (${connectError.rawMessage || "unimplemented"}): is it a remotelog server's URL, with the right path?`, err);
  }
  const notOurs = notAnsweredAsOurs(connectError);
  if (notOurs !== undefined) {
    return RemoteLogError.invalidArgument(`${where}: the URL did not answer as a remotelog server does (${notOurs}): is it a remotelog server's URL, with the right path?`, err);
  }
  // An https:// URL of a server that speaks plain HTTP: its answer is no TLS record. Retrying cannot
  // help, and OpenSSL's own text ("ssl3_get_record:wrong version number") said nothing of the URL.
  if (causeCodes(connectError).includes("ERR_SSL_WRONG_VERSION_NUMBER")) {
    return RemoteLogError.invalidArgument(`${where}: the server answered without TLS: is it an http:// URL rather than https://?`, err);
  }
  const code = failedOnTheWay(connectError) ? ErrorCodes.UNAVAILABLE : (errorCodeOf[connectError.code] ?? ErrorCodes.INTERNAL);
  return new RemoteLogError(code, `${where}: ${connectError.rawMessage || Code[connectError.code]}`, { cause: err });
}

/**
 * What showed that an answer came from something other than a remotelog server, which connect reports
 * as Unknown or Internal (a bug, to our codes): a redirect or another HTTP status connect gives no
 * code of its own (a 502, 503, 504 or 429 from a proxy stays Unavailable, and is retried), a 200 of
 * another content type (a captive portal's HTML), or bytes that do not parse as the answer. undefined
 * for any other error.
 */
function notAnsweredAsOurs(err: ConnectError): string | undefined {
  if (err.code !== Code.Unknown && err.code !== Code.Internal) return undefined;
  const status = /^HTTP ([1-4]\d\d)$/.exec(err.rawMessage);
  if (status) {
    const location = err.metadata.get("location");
    return status[1].startsWith("3") ? `HTTP ${status[1]}, a redirect${location ? ` to ${location}` : ""}` : `HTTP ${status[1]}`;
  }
  if (err.rawMessage.startsWith("unsupported content type ")) return `HTTP 200 with ${err.rawMessage}`;
  if (/^parse (binary|json):/.test(err.rawMessage)) return `its answer does not parse: ${err.rawMessage}`;
  return undefined;
}

/** The Node error codes (ECONNRESET, ERR_SSL_…) along err's chain of causes: the client's own failures carry them. */
function causeCodes(err: Error): string[] {
  const codes: string[] = [];
  for (let cause: unknown = err.cause; cause instanceof Error; cause = cause.cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === "string") codes.push(code);
  }
  return codes;
}

/**
 * Whether a call failed on the way (a connection reset, a stream the server refused or cut as it went
 * down) rather than in an answer the server sent: such a call is worth retrying, and its code says
 * nothing about the request. connect-node reports a reset connection as Aborted and a cut stream as
 * Canceled or Internal; only an Aborted the server sent is a lost race (ABORTED).
 */
function failedOnTheWay(err: ConnectError): boolean {
  if (err.code !== Code.Internal && err.code !== Code.Aborted && err.code !== Code.Canceled) return false;
  // Errors decoded from a server's answer carry no cause; the client's own failures carry the Node error.
  if (causeCodes(err).length > 0) return true;
  // A stream the server refused (it was shutting down) or reset was never answered.
  return /NGHTTP2_REFUSED_STREAM|ECONNRESET|ECONNREFUSED|^http\/2 stream closed with error code/.test(err.rawMessage);
}

export { bearer } from "./connect-auth.js";

export interface RemoteOptions extends TransportOptions {
  casUrl: string;
  nsUrl: string;
  /** Blocks per AddMany/GetMany call. */
  batchBlocks?: number;
  /** Request bytes per AddMany call, kept well under the server's read limit. */
  batchBytes?: number;
  /** Batch calls in flight at once. */
  concurrency?: number;
}

/**
 * The CAS and NS as the actors see them, over Connect: on Node, HTTP/2 with one connection per service,
 * multiplexed; in a browser, the page's fetch (the #transport import picks; a caller may bring its own
 * transports). Blocks move in batches; errors come back as RemoteLogErrors naming the service.
 */
export class Remote implements LogRemote, NameLister {
  readonly casUrl: string;
  readonly nsUrl: string;
  private readonly cas: Client<typeof CAS>;
  private readonly blocks: Client<typeof BlockService>;
  private readonly blockAdds: Client<typeof BlockService>;
  private readonly ns: Client<typeof NS>;
  private readonly nameWatch: Client<typeof NameWatchService>;
  private readonly nameList: Client<typeof NameListService>;
  private readonly casInfo: Client<typeof ServerInfoService>;
  /** The transports this Remote opened, the CAS's first when it opened one. */
  private readonly opened: OpenTransport[] = [];
  private readonly batchBlocks: number;
  private readonly batchBytes: number;
  private readonly concurrency: number;
  /**
   * Whether the CAS transport is one this Remote opened, and so encodes binary: block and address lists
   * then go out pre-encoded (repeatedBytesUnknown), which a JSON transport would leave out.
   */
  private readonly binaryCas: boolean;
  /** Streams this Remote holds open at once at most (a page's over http://: OpenTransport.maxStreams), the shared WatchMany one among them; undefined, no bound. */
  private readonly maxWatches?: number;
  private liveWatches = 0;
  /** The watches past maxWatches - 1, on one WatchMany stream; made when first needed. */
  private sharedWatch?: SharedNameWatch;

  constructor(options: RemoteOptions & { casTransport?: Transport; nsTransport?: Transport }) {
    this.casUrl = options.casUrl;
    this.nsUrl = options.nsUrl;
    const casTransport = options.casTransport ?? this.transport(options.casUrl, options);
    const nsTransport = options.nsTransport ?? (options.nsUrl === options.casUrl ? casTransport : this.transport(options.nsUrl, options));
    // The opened NS transport is the last one opened (the CAS's when they are one).
    if (options.nsTransport === undefined) this.maxWatches = this.opened[this.opened.length - 1]?.maxStreams;
    this.cas = createClient(CAS, casTransport);
    this.blocks = createClient(BlockService, casTransport);
    this.blockAdds = createClient(BlockAdds, casTransport);
    this.ns = createClient(NS, nsTransport);
    this.nameWatch = createClient(NameWatchService, nsTransport);
    this.nameList = createClient(NameListService, nsTransport);
    this.casInfo = createClient(ServerInfoService, casTransport);
    this.batchBlocks = options.batchBlocks ?? 4096;
    this.batchBytes = options.batchBytes ?? 8 << 20;
    this.concurrency = options.concurrency ?? 4;
    this.binaryCas = options.casTransport === undefined;
  }

  /**
   * A CAS request whose repeated bytes field (number fieldNo, named key) holds list: pre-encoded where
   * the transport is binary. Made here rather than by the client, which would drop $unknown from an init.
   */
  private withBytes<Desc extends typeof AddManyRequestSchema | typeof GetManyRequestSchema>(schema: Desc, init: MessageInitShape<Desc>, key: "blocks" | "ids", list: Uint8Array[]): MessageShape<Desc> {
    const request = create(schema, this.binaryCas ? init : { ...init, [key]: list });
    if (this.binaryCas) request.$unknown = repeatedBytesUnknown(1, list);
    return request as MessageShape<Desc>;
  }

  private transport(baseUrl: string, options: TransportOptions): Transport {
    const opened = openTransport(baseUrl, { token: options.token, ca: options.ca, idleTimeoutMs: options.idleTimeoutMs, readMaxBytes: options.readMaxBytes });
    this.opened.push(opened);
    return opened.transport;
  }

  /** The round trip to the CAS (an HTTP/2 PING on its open connection), when this Remote opened it and can tell. */
  async roundTripMs(): Promise<number | undefined> {
    return this.binaryCas ? this.opened[0].roundTripMs?.() : undefined;
  }

  /**
   * The CAS's advertised limits, or undefined from a server that does not advertise them (a draft
   * CAS, an older remotelog): callers then learn a limit only from a refusal. UNAVAILABLE when no
   * answer came within options.timeoutMs: the call is cancelled then.
   */
  async casLimits(options: { timeoutMs?: number } = {}): Promise<{ maxBlockBytes: number; maxBatchBlocks: number; maxResponseBytes: number } | undefined> {
    try {
      const limits = await this.casInfo.getLimits({}, { timeoutMs: options.timeoutMs });
      return { maxBlockBytes: Number(limits.maxBlockBytes), maxBatchBlocks: limits.maxBatchBlocks, maxResponseBytes: Number(limits.maxResponseBytes) };
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unimplemented) return undefined;
      throw fromConnectError(err, `CAS ${this.casUrl} GetLimits`);
    }
  }

  /**
   * Stores blocks in batches; idempotent, so a retry after a crash costs only bandwidth. pending, the
   * signed update that will name them, lets a server that takes blocks from signed writers only
   * (serve --require-signed) accept them without a token.
   */
  async putBlocks(blocks: Uint8Array[], pending?: PendingUpdate): Promise<void> {
    const batches: Uint8Array[][] = [];
    let batch: Uint8Array[] = [];
    let bytes = 0;
    for (const block of blocks) {
      if (batch.length > 0 && (batch.length >= this.batchBlocks || bytes + block.length > this.batchBytes)) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(block);
      bytes += block.length + 8;
    }
    if (batch.length > 0) batches.push(batch);
    await mapBounded(batches, this.concurrency, async (blocks) => {
      try {
        await this.blockAdds.addMany(this.withBytes(AddManyRequestSchema, { pending, omitIds: true }, "blocks", blocks));
      } catch (err) {
        throw fromConnectError(err, `CAS ${this.casUrl} AddMany`);
      }
    });
  }

  /**
   * Fetches blocks in request order; a missing block is NOT_FOUND naming it. A server caps the bytes
   * of one response (max_response_bytes): it then returns the first blocks only, and the rest are
   * asked for again.
   */
  getBlocks(addresses: Uint8Array[], call?: CallOptions): Promise<Uint8Array[]> {
    return this.fetchBlocks(addresses, false, call) as Promise<Uint8Array[]>;
  }

  /** getBlocks with undefined for each block the CAS lacks (GetMany's allow_missing), in the same calls. */
  getBlocksAllowingMissing(addresses: Uint8Array[], call?: CallOptions): Promise<(Uint8Array | undefined)[]> {
    return this.fetchBlocks(addresses, true, call);
  }

  /**
   * getBlocksAllowingMissing of addresses' first blocks only, as many as come within maxBytes (and the
   * first whatever its size; LogReadRemote.getBlocksWithin): one GetMany after another, each asking for
   * no more than the budget has left (max_bytes). A server older than max_bytes answers up to its own
   * cap, which is then what the budget may be overrun by.
   */
  async getBlocksWithin(addresses: Uint8Array[], maxBytes: number, call?: CallOptions): Promise<(Uint8Array | undefined)[]> {
    const blocks: (Uint8Array | undefined)[] = [];
    let spent = 0;
    try {
      while (blocks.length < addresses.length && spent < maxBytes) {
        const answered = await this.getManyPrefix(addresses.slice(blocks.length, blocks.length + this.batchBlocks), true, call, BigInt(Math.ceil(maxBytes - spent)));
        for (const block of answered) {
          blocks.push(block);
          spent += block?.length ?? 0;
        }
      }
      return blocks;
    } catch (err) {
      throw fromConnectError(err, `CAS ${this.casUrl} GetMany`);
    }
  }

  private async fetchBlocks(addresses: Uint8Array[], allowMissing: boolean, call?: CallOptions): Promise<(Uint8Array | undefined)[]> {
    const batches: Uint8Array[][] = [];
    for (let i = 0; i < addresses.length; i += this.batchBlocks) batches.push(addresses.slice(i, i + this.batchBlocks));
    const results = await mapBounded(batches, this.concurrency, async (ids) => {
      const blocks: (Uint8Array | undefined)[] = [];
      try {
        while (blocks.length < ids.length) {
          for (const block of await this.getManyPrefix(blocks.length === 0 ? ids : ids.slice(blocks.length), allowMissing, call)) blocks.push(block);
        }
        return blocks;
      } catch (err) {
        throw fromConnectError(err, `CAS ${this.casUrl} GetMany`);
      }
    });
    return results.flat();
  }

  /** One GetMany with partial_ok: the blocks of the first ids, at least one, undefined for each the CAS lacks (with allowMissing). */
  private async getManyPrefix(ids: Uint8Array[], allowMissing: boolean, call?: CallOptions, maxBytes = 0n): Promise<(Uint8Array | undefined)[]> {
    const response = await this.blocks.getMany(this.withBytes(GetManyRequestSchema, { partialOk: true, allowMissing, maxBytes }, "ids", ids), call);
    // An answer is the first blocks asked for, at least one (else we would ask forever) and no more
    // than asked: a block too many would shift every later block, and every later batch, onto the
    // wrong address, and the hash check would then blame an intact block of another batch.
    if (response.blocks.length === 0 || response.blocks.length > ids.length) {
      throw RemoteLogError.internal(`CAS ${this.casUrl} GetMany of ${ids.length} blocks returned ${response.blocks.length === 0 ? "none" : response.blocks.length}`);
    }
    const blocks: (Uint8Array | undefined)[] = response.blocks;
    // Indexes into this call's ids; a missing block's slot holds empty bytes, which a stored empty block also is.
    for (const index of response.missing) {
      if (index >= response.blocks.length) throw RemoteLogError.internal(`CAS ${this.casUrl} GetMany of ${ids.length} blocks named block ${index} missing of ${response.blocks.length} returned`);
      // Not asked to allow missing blocks, an honest CAS fails the call NOT_FOUND instead: the same
      // fault, naming the block, which the reader narrows to its seq. An undefined slot here reached
      // callers promised bytes (INTERNAL: a TypeError).
      if (!allowMissing) throw this.notStored(ids[index]);
      blocks[index] = undefined;
    }
    return blocks;
  }

  /** A block the CAS says it lacks, as an honest CAS's NOT_FOUND for it reads here (services/block-service.ts). */
  private notStored(address: Uint8Array): RemoteLogError {
    const text = addressText(address);
    return RemoteLogError.notFound(`CAS ${this.casUrl} GetMany: block ${text} is not stored`, { address: text });
  }

  /**
   * One GetMany of pages with linked_pages (LogReadRemote.getPagesWithLinked): a server that caps the
   * answer before the last page asked sends no linked pages, and the rest are fetched as getBlocks does.
   */
  async getPagesWithLinked(addresses: Uint8Array[], fromSeqid: number, maxLinkedBytes: number, call?: CallOptions): Promise<PagesWithLinked> {
    if (addresses.length === 0 || addresses.length > this.batchBlocks) return { blocks: await this.getBlocks(addresses, call), linked: [] };
    let response: GetManyResponse;
    try {
      const linkedPages = { fromSeqid: BigInt(fromSeqid), maxBytes: BigInt(Math.max(0, Math.floor(maxLinkedBytes))) };
      response = await this.blocks.getMany(this.withBytes(GetManyRequestSchema, { partialOk: true, linkedPages }, "ids", addresses), call);
    } catch (err) {
      throw fromConnectError(err, `CAS ${this.casUrl} GetMany`);
    }
    const blocks = response.blocks;
    // No missing block was allowed: as in getManyPrefix, one named is NOT_FOUND.
    const missing = blocks.length <= addresses.length ? response.missing.find((index) => index < blocks.length) : undefined;
    if (missing !== undefined) throw this.notStored(addresses[missing]);
    if (blocks.length === 0 || blocks.length > addresses.length || response.missing.length > 0) {
      throw RemoteLogError.internal(`CAS ${this.casUrl} GetMany of ${addresses.length} blocks returned ${blocks.length === 0 ? "none" : `${blocks.length}, ${response.missing.length} missing`}`);
    }
    if (response.linked.length !== response.linkedIds.length) {
      throw RemoteLogError.internal(`CAS ${this.casUrl} GetMany sent ${response.linked.length} linked pages and ${response.linkedIds.length} addresses for them`);
    }
    const rest = blocks.length < addresses.length ? await this.getBlocks(addresses.slice(blocks.length), call) : [];
    return { blocks: rest.length === 0 ? blocks : [...blocks, ...rest], linked: response.linked.map((bytes, i) => ({ address: response.linkedIds[i], bytes })) };
  }

  async getBlock(address: Uint8Array, call?: CallOptions): Promise<Uint8Array> {
    try {
      return (await this.cas.get({ id: address }, call)).data;
    } catch (err) {
      throw fromConnectError(err, `CAS ${this.casUrl} Get ${addressText(address)}`);
    }
  }

  /** The name's head, or undefined when the name has never been updated. */
  async fetchName(name: string, call?: CallOptions): Promise<NameHead | undefined> {
    try {
      const content = await this.ns.fetch({ name }, call);
      return { content: content.data, version: content.version, record: content.record };
    } catch (err) {
      const error = fromConnectError(err, `NS ${this.nsUrl} Fetch ${JSON.stringify(name)}`);
      if (error.code === ErrorCodes.NOT_FOUND) return undefined;
      throw error;
    }
  }

  /** This remote for reading, its calls cancelled when signal aborts (LogReadRemote.withSignal). */
  withSignal(signal: AbortSignal): LogReadRemote {
    // Each call under a signal of its own, and one listener on signal while any runs: a sync has tens
    // of calls in flight, and a listener each on a receiver's long-lived signal passed Node's limit of
    // 10 (a MaxListenersExceededWarning on a CLI's stderr).
    const live = new Set<AbortController>();
    const abortAll = () => {
      for (const each of live) each.abort(signal.reason);
    };
    const run = async <T>(call: (options: CallOptions) => Promise<T>): Promise<T> => {
      const own = new AbortController();
      if (signal.aborted) own.abort(signal.reason);
      else if (live.size === 0) signal.addEventListener("abort", abortAll, { once: true });
      live.add(own);
      try {
        return await call({ signal: own.signal });
      } finally {
        live.delete(own);
        if (live.size === 0) signal.removeEventListener("abort", abortAll);
      }
    };
    return {
      casUrl: this.casUrl,
      nsUrl: this.nsUrl,
      fetchName: (name) => run((call) => this.fetchName(name, call)),
      getBlock: (address) => run((call) => this.getBlock(address, call)),
      getBlocks: (addresses) => run((call) => this.getBlocks(addresses, call)),
      getBlocksAllowingMissing: (addresses) => run((call) => this.getBlocksAllowingMissing(addresses, call)),
      getBlocksWithin: (addresses, maxBytes) => run((call) => this.getBlocksWithin(addresses, maxBytes, call)),
      getPagesWithLinked: (addresses, fromSeqid, maxLinkedBytes) => run((call) => this.getPagesWithLinked(addresses, fromSeqid, maxLinkedBytes, call)),
      roundTripMs: () => this.roundTripMs(),
    };
  }

  /**
   * The name's heads as the NS pushes them: the current one, then each new one. Ends when signal
   * aborts; throws as fetchName does, and WatchUnsupportedError from an NS that cannot push. Past
   * maxWatches - 1 streams (a page over http://), through the one WatchMany stream (watchShared).
   */
  async *watchName(name: string, signal: AbortSignal): AsyncGenerator<NameHead> {
    // One stream of the few is kept for WatchMany, which carries the watches of every name past the rest.
    if (this.maxWatches !== undefined && this.liveWatches >= this.maxWatches - 1) {
      yield* this.watchShared(name, signal);
      return;
    }
    this.liveWatches++;
    try {
      for await (const content of this.ns.watch({ name }, { signal })) {
        yield { content: content.data, version: content.version, record: content.record };
      }
    } catch (err) {
      if (signal.aborted) return;
      if (ConnectError.from(err).code === Code.Unimplemented) throw new WatchUnsupportedError(this.nsUrl);
      throw fromConnectError(err, `NS ${this.nsUrl} Watch ${JSON.stringify(name)}`);
    } finally {
      this.liveWatches--;
    }
  }

  /**
   * watchName's heads through the one WatchMany stream of this remote's shared watch: the current head,
   * then the head again after each note of a new version. Throws WatchUnsupportedError from an NS
   * without WatchMany (the follower then polls, HeadWatch) or when the NS lets the name go.
   */
  private async *watchShared(name: string, signal: AbortSignal): AsyncGenerator<NameHead> {
    this.sharedWatch ??= new SharedNameWatch((names, notesSignal) => this.watchNames(names, notesSignal), this.nsUrl);
    const waiter = this.sharedWatch.join(name);
    try {
      let version: bigint | undefined;
      while (!signal.aborted) {
        const head = await this.fetchName(name, { signal });
        if (head && head.version !== version) {
          version = head.version;
          yield head;
        }
        await waiter.wait(signal);
      }
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    } finally {
      waiter.leave();
    }
  }

  /**
   * Notes of updates to any of names (remotelog.v1.NameWatchService), from now until signal aborts;
   * WatchUnsupportedError from an NS without the service. A note with letGo says the NS no longer
   * watches that name on this stream (it made room for another client address's watches). The first
   * note, watching, says when the NS watches them all: heads read after it miss no update (never sent
   * by an NS that predates it).
   */
  async *watchNames(names: string[], signal: AbortSignal): AsyncGenerator<NameNote> {
    try {
      for await (const note of this.nameWatch.watchMany({ names, confirm: true }, { signal })) {
        yield { name: note.name, version: note.version, letGo: note.letGo, watching: note.watching };
      }
    } catch (err) {
      if (signal.aborted) return;
      if (ConnectError.from(err).code === Code.Unimplemented) throw new WatchUnsupportedError(this.nsUrl);
      throw fromConnectError(err, `NS ${this.nsUrl} WatchMany of ${names.length} names`);
    }
  }

  /** A page of the NS's names (remotelog.v1.NameListService); undefined from an NS that does not list them. */
  async listNames(options: { after?: string; limit?: number } = {}): Promise<NamePage | undefined> {
    try {
      const page = await this.nameList.listNames({ after: options.after ?? "", limit: options.limit ?? 0 });
      return { names: page.names.map(({ name, version }) => ({ name, version })), next: page.next === "" ? undefined : page.next };
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unimplemented) return undefined;
      throw fromConnectError(err, `NS ${this.nsUrl} ListNames`);
    }
  }

  /** A conditional update: ABORTED when the name is no longer at expectedVersion. */
  async updateName(name: string, content: Uint8Array, expectedVersion: bigint, record?: Uint8Array): Promise<bigint> {
    try {
      return (await this.ns.update({ name, content, expectedVersion, record })).version;
    } catch (err) {
      throw fromConnectError(err, `NS ${this.nsUrl} Update ${JSON.stringify(name)}`);
    }
  }

  /**
   * Stores blocks, then updates the name (conditionally, as updateName). When one server holds both
   * the CAS and the NS and the blocks are few, both go in one call (NameUpdate.blocks): a publish of a
   * message is then one round trip.
   */
  async updateNameWithBlocks(name: string, content: Uint8Array, expectedVersion: bigint, record: Uint8Array | undefined, blocks: Uint8Array[]): Promise<bigint> {
    const bytes = blocks.reduce((sum, block) => sum + block.length, 0);
    if (blocks.length === 0 || this.casUrl !== this.nsUrl || bytes > ONE_CALL_BYTES || blocks.length > this.batchBlocks) {
      // Sent ahead of the update with it attached, so that a server taking signed writers only accepts them.
      await this.putBlocks(blocks, record ? { name, content, record } : undefined);
      return this.updateName(name, content, expectedVersion, record);
    }
    try {
      return (await this.ns.update({ name, content, expectedVersion, record, blocks })).version;
    } catch (err) {
      throw fromConnectError(err, `NS ${this.nsUrl} Update ${JSON.stringify(name)} with ${blocks.length} blocks`);
    }
  }

  close(): void {
    for (const opened of this.opened) opened.close();
  }
}

/** A conditional update lost to another writer of the name; the operation starts again from the new head. */
export class LostRace extends Error {
  constructor(override readonly cause: RemoteLogError) {
    super(cause.message);
  }
}

/**
 * Runs fn, again while it throws LostRace, at most attempts times, pausing a little longer each time
 * (with jitter): a writer that starts again at once loses again to one that is publishing a burst.
 * The last loss is ABORTED saying that what gave up, and why.
 */
export async function retryLostRaces<T>(attempts: number, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof LostRace)) throw err;
      if (attempt >= attempts) {
        throw RemoteLogError.aborted(
          `${what} gave up after losing ${attempts} races in a row to another writer of the name, whose updates came first; run it again when that writer is quieter (last: ${err.cause.text})`,
          err.cause.details,
        );
      }
      await sleep(backoffDelayMs(attempt, 20, 1_000));
    }
  }
}

export { backoffDelayMs, mapBounded, sleep, type RetryOptions } from "../core/retry.js";

/**
 * `await withRetry(() => sender.publish(), { timeoutMs: 60_000, signal? })`
 *
 * Retries fn while it fails with UNAVAILABLE (a service down or restarting), backing off from 100 ms
 * to 5 s with jitter (core/retry.ts); errors from the Connect clients count by their Connect code.
 * Throws fn's first other error as it is, and UNAVAILABLE once timeoutMs (0: never) would pass or
 * signal aborts; once signal has aborted fn is not called again, and a signal aborted already
 * means fn is never called. Only as idempotent as fn: use it on calls that are safe to repeat.
 */
export function withRetry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  return retry(fn, { toError: (err) => fromConnectError(err, "call"), ...options });
}
