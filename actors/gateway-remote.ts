import { CID } from "multiformats/cid";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressText, equalBytes, parseAddress } from "../core/hash.js";
import { errorCodeOfStatus } from "../core/http-status.js";
import { WatchUnsupportedError, type LogReadRemote, type NameHead } from "../core/log-remote.js";
import { isKeyName, MAX_RECORD_BYTES, verifySignedRecord } from "../core/names.js";
import { asFetchedRecordError } from "../core/name-checks.js";
import { mapBounded } from "../core/retry.js";
import { concatBytes } from "../core/bytes.js";

export interface GatewayRemoteOptions {
  /** A Trustless Gateway (https://ipfs.io, a Kubo gateway, `remotelog serve`): blocks from /ipfs/{cid}. */
  gateway: string;
  /**
   * A Delegated Routing V1 HTTP API for names (/routing/v1/ipns/{name}). Without one, names are read
   * from the gateway's /ipns/{name}?format=ipns-record.
   */
  router?: string;
  /** Longest wait for one request. Default 30 s. */
  timeoutMs?: number;
  /** Block requests in flight at once. Default 16. */
  concurrency?: number;
  /** The largest block taken; the trustless gateway spec asks clients to refuse blocks over 2 MiB. */
  maxBlockBytes?: number;
}

const RAW = "application/vnd.ipld.raw";
const IPNS_RECORD = "application/vnd.ipfs.ipns-record";
/**
 * How many times fetchName reads a name's record while each record read names a head page that is
 * gone by the time it is asked for (the name moved on meanwhile).
 */
export const HEAD_READS = 4;
/** The trustless gateway spec's block limit for clients (Block Limits). */
export const GATEWAY_MAX_BLOCK_BYTES = 2 * 1024 * 1024;

/**
 * The read side of the client port (core/log-remote.ts) over IPFS's own HTTP protocols: blocks from
 * any Trustless Gateway, names (their signed IPNS records) from the gateway or from a Delegated
 * Routing V1 router. Nothing from either is trusted: a name's record is verified with the name's key
 * before the page it names is fetched, and core/log-reader.ts checks the head, the pages and every
 * message by its hash, exactly as over Connect. Key names only (IPNS has no other kind). Read-only,
 * and nothing is pushed: watchName throws WatchUnsupportedError, so followers poll.
 */
export class GatewayRemote implements LogReadRemote {
  readonly casUrl: string;
  readonly nsUrl: string;
  private readonly names: (name: string) => string;
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly maxBlockBytes: number;
  private readonly closed = new AbortController();

  constructor(options: GatewayRemoteOptions) {
    this.casUrl = checkUrl(options.gateway, "gateway");
    this.nsUrl = options.router === undefined ? this.casUrl : checkUrl(options.router, "router");
    this.names =
      options.router === undefined
        ? (name) => `${this.casUrl}/ipns/${name}?format=ipns-record`
        : (name) => `${this.nsUrl}/routing/v1/ipns/${name}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.concurrency = options.concurrency ?? 16;
    this.maxBlockBytes = options.maxBlockBytes ?? GATEWAY_MAX_BLOCK_BYTES;
  }

  /**
   * The name's head: its signed record, verified (signature, key, expiry) before the page it names is
   * fetched, and that page. Undefined when there is no record (404, or any answer that is not a record,
   * as the routing spec says to read it).
   *
   * A server may stop serving a head page once a newer head is published (`serve` keeps heads with
   * the NS, and serves the latest 8 a name replaced for 10 s more, so this is rare against it; other
   * gateways may not): a page missing right after its record was read is a name that moved on, so
   * the record is read again, up to HEAD_READS times while it keeps changing. NOT_FOUND (details.name, address)
   * only when the same record's page is still missing; UNAVAILABLE, which follow() retries with
   * backoff, when the name moved on at every read (a sender publishing faster than one read).
   */
  async fetchName(name: string): Promise<NameHead | undefined> {
    if (!isKeyName(name)) throw RemoteLogError.invalidArgument(`${JSON.stringify(name)} is not a key name (k51…): IPNS gateways and routers hold signed names only`);
    let last: Uint8Array | undefined;
    for (let read = 1; ; read++) {
      const found = await this.fetchRecord(name);
      if (found === undefined) return undefined;
      const { record, version, address } = found;
      try {
        return { content: await this.getBlock(address), version, record };
      } catch (err) {
        if (!isRemoteLogError(err, "NOT_FOUND")) throw err;
        const cid = addressText(address);
        // The record read before, again: its page is missing, not replaced by a newer head's.
        if (last !== undefined && equalBytes(last, record)) {
          throw new RemoteLogError("NOT_FOUND", `gateway ${this.casUrl}: the head page ${cid} of name ${name} (its record from ${this.nsUrl}) is not stored`, { details: { name, address: cid }, cause: err });
        }
        if (read >= HEAD_READS) {
          throw RemoteLogError.unavailable(`name ${name} moved on ${HEAD_READS} times while its head page was read from ${this.casUrl} (the last, ${cid}, was replaced before it came); read it again once it is quieter`, err);
        }
        last = record;
      }
    }
  }

  /** The name's record, verified, and the address of the page it names; undefined without one. */
  private async fetchRecord(name: string): Promise<{ record: Uint8Array; version: bigint; address: Uint8Array } | undefined> {
    const url = this.names(name);
    const response = await this.get(url, IPNS_RECORD, `name ${name}`);
    if (response === undefined) return undefined;
    if (!(response.headers.get("content-type") ?? "").toLowerCase().startsWith(IPNS_RECORD)) {
      await response.body?.cancel();
      return undefined;
    }
    const record = await this.read(response, MAX_RECORD_BYTES, `the record of name ${name} from ${this.nsUrl}`);
    let verified: Awaited<ReturnType<typeof verifySignedRecord>>;
    try {
      verified = await verifySignedRecord(name, record);
    } catch (err) {
      throw isRemoteLogError(err) ? asFetchedRecordError(err, `the record of name ${name} from ${this.nsUrl}`, name) : err;
    }
    const { cid, sequence } = verified;
    return { record, version: sequence, address: toAddress(cid, `the record of name ${name}`) };
  }

  async getBlock(address: Uint8Array): Promise<Uint8Array> {
    const cid = addressText(address);
    const response = await this.get(`${this.casUrl}/ipfs/${cid}?format=raw`, RAW, `block ${cid}`);
    if (response === undefined) {
      throw new RemoteLogError("NOT_FOUND", `gateway ${this.casUrl}: block ${cid} is not stored`, { details: { address: cid } });
    }
    return this.read(response, this.maxBlockBytes, `block ${cid} from ${this.casUrl}`);
  }

  async getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> {
    return mapBounded(addresses, this.concurrency, (address) => this.getBlock(address));
  }

  /** A gateway is asked one block a request anyway: a missing one is its 404, in the same requests as getBlocks. */
  async getBlocksAllowingMissing(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return mapBounded(addresses, this.concurrency, (address) => this.blockOrMissing(address));
  }

  /**
   * getBlocksAllowingMissing of addresses' first blocks only, until maxBytes have come (LogReadRemote.getBlocksWithin):
   * no request starts once they have, so a budget is overrun by at most the requests then in flight
   * (concurrency of them). A receiver's fetch of 4,096 messages held them all, whatever their sizes.
   */
  getBlocksWithin(addresses: Uint8Array[], maxBytes: number): Promise<(Uint8Array | undefined)[]> {
    const blocks: (Uint8Array | undefined)[] = [];
    if (addresses.length === 0) return Promise.resolve(blocks);
    return new Promise((resolve, reject) => {
      let started = 0;
      let running = 0;
      let spent = 0;
      let failed = false;
      const startMore = () => {
        while (!failed && running < this.concurrency && started < addresses.length && spent < maxBytes) {
          const index = started++;
          running++;
          this.blockOrMissing(addresses[index]).then(
            (block) => {
              blocks[index] = block;
              spent += block?.length ?? 0;
              running--;
              // Every block started has come: they are the first ones, in order.
              if (running === 0 && (started === addresses.length || spent >= maxBytes)) resolve(blocks);
              else startMore();
            },
            (err: unknown) => {
              failed = true;
              reject(err);
            },
          );
        }
      };
      startMore();
    });
  }

  private async blockOrMissing(address: Uint8Array): Promise<Uint8Array | undefined> {
    try {
      return await this.getBlock(address);
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return undefined;
      throw err;
    }
  }

  // eslint-disable-next-line require-yield
  async *watchName(_name: string, _signal: AbortSignal): AsyncGenerator<NameHead> {
    throw new WatchUnsupportedError(this.nsUrl);
  }

  /** Aborts requests in flight. Idempotent. */
  close(): void {
    this.closed.abort();
  }

  /** A 2xx response, or undefined for 404; other statuses are errors with the code they mean. */
  private async get(url: string, accept: string, what: string): Promise<Response | undefined> {
    let response: Response;
    try {
      response = await fetch(url, { headers: { accept }, signal: AbortSignal.any([this.closed.signal, AbortSignal.timeout(this.timeoutMs)]), redirect: "follow" });
    } catch (err) {
      throw RemoteLogError.unavailable(`cannot reach ${new URL(url).origin} for ${what}: ${describe(err)}`, err);
    }
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    if (!response.ok) {
      const text = (await response.text().catch(() => "")).slice(0, 300).trim();
      throw new RemoteLogError(errorCodeOfStatus(response.status), `${new URL(url).origin} answered ${response.status} for ${what}${text ? `: ${text}` : ""}`);
    }
    return response;
  }

  /** The body, at most max bytes: TOO_LARGE past that, read no further. */
  private async read(response: Response, max: number, what: string): Promise<Uint8Array> {
    const declared = Number(response.headers.get("content-length"));
    const tooLarge = () => RemoteLogError.tooLarge(`${what} is over ${max} bytes`, { limit: "response bytes", value: max });
    if (declared > max) {
      await response.body?.cancel();
      throw tooLarge();
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body ?? []) {
        size += chunk.length;
        if (size > max) throw tooLarge();
        chunks.push(chunk);
      }
    } catch (err) {
      if (isRemoteLogError(err)) throw err;
      throw RemoteLogError.unavailable(`${what} was cut off: ${describe(err)}`, err);
    }
    if (chunks.length === 1) return chunks[0];
    return concatBytes(chunks, size);
  }
}

/** Our CAS addresses are raw CIDv1 sha2-256; a record naming anything else names no page of ours. */
function toAddress(cid: CID, what: string): Uint8Array {
  try {
    return parseAddress(cid.bytes).bytes;
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${what} points at ${cid.toString()}, which is not a remote log page (a CIDv1 raw sha2-256)`, err);
  }
}

function checkUrl(url: string, what: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http");
  } catch {
    throw RemoteLogError.invalidArgument(`the ${what} takes an http:// or https:// URL, not ${JSON.stringify(url)}`);
  }
  return url.replace(/\/+$/, "");
}

function describe(err: unknown): string {
  const cause = (err as { cause?: unknown })?.cause;
  const text = err instanceof Error ? err.message : String(err);
  return cause instanceof Error ? `${text} (${cause.message})` : text;
}
