import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { WatchUnsupportedError, type LogRemote, type NameHead } from "../core/log-remote.js";
import { applySignedUpdate, checkName, MAX_HEAD_BYTES, MAX_NAME_BYTES } from "../core/name-checks.js";
import { isKeyName } from "../core/names.js";
import { KuboApi } from "../stores/kubo/kubo-api.js";
import { KuboContentStore } from "../stores/kubo/content-store.js";
import { IpnsNameStore } from "../stores/ipns/name-store.js";

export interface KuboRemoteOptions {
  /** The Kubo RPC API, such as http://127.0.0.1:5001. */
  kuboApi: string;
  /** Longest wait for one request. Default 30 s. */
  timeoutMs?: number;
  /** Block requests in flight at once. Default 16. */
  concurrency?: number;
}

/**
 * The client port (core/log-remote.ts) straight on a Kubo node, without remotelog's services:
 * `send --kubo-api` and `receive --kubo-api`.
 *
 * Updates are checked as the embedded NS checks them (core/name-checks.ts: signature, content
 * binding, sequence, expected version) before anything reaches the node, and signed names only: a
 * free-form name is PERMISSION_DENIED. Names go through IpnsNameStore (as `serve --ns ipns` does),
 * blocks through KuboContentStore, which re-hashes every block it reads.
 *
 * Each call is tried once: the CLI's own retry loop (--retry-for) backs off on UNAVAILABLE. The node
 * cannot push new heads, so watchName throws WatchUnsupportedError and followers poll.
 */
/**
 * The largest block a Kubo node takes and its peers exchange: 1 MiB, Kubo's documented limit for
 * blocks put through the RPC API (and bitswap's). Kubo does not advertise it, so it is a constant.
 */
export const KUBO_MAX_BLOCK_BYTES = 1024 * 1024;

export class KuboRemote implements LogRemote {
  readonly casUrl: string;
  readonly nsUrl: string;
  private readonly blocks: KuboContentStore;
  private readonly names: IpnsNameStore;

  constructor(options: KuboRemoteOptions) {
    const api = new KuboApi({ url: options.kuboApi, timeoutMs: options.timeoutMs, retryForMs: 0 });
    this.casUrl = this.nsUrl = api.url;
    this.blocks = new KuboContentStore(api, { concurrency: options.concurrency });
    this.names = new IpnsNameStore(api, this.blocks);
  }

  /** The same shape as Remote.casLimits, from Kubo's documented block limit (KUBO_MAX_BLOCK_BYTES). */
  async casLimits(): Promise<{ maxBlockBytes: number }> {
    return { maxBlockBytes: KUBO_MAX_BLOCK_BYTES };
  }

  async putBlocks(blocks: Uint8Array[]): Promise<void> {
    await this.blocks.putMany(blocks);
  }

  /** Blocks in request order; a block the node lacks is NOT_FOUND naming it. */
  async getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> {
    const blocks = await this.getBlocksAllowingMissing(addresses);
    return blocks.map((block, i) => {
      if (block === undefined) {
        throw new RemoteLogError("NOT_FOUND", `Kubo API ${this.casUrl}: block ${addressText(addresses[i])} is not stored`, { details: { address: addressText(addresses[i]) } });
      }
      return block;
    });
  }

  /** Blocks in request order, undefined for each the node lacks. */
  getBlocksAllowingMissing(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return this.blocks.getMany(addresses);
  }

  async getBlock(address: Uint8Array): Promise<Uint8Array> {
    return (await this.getBlocks([address]))[0];
  }

  /** The name's head, verified as IpnsNameStore.get does, or undefined when the node has no record for it. */
  async fetchName(name: string): Promise<NameHead | undefined> {
    checkName(name, MAX_NAME_BYTES);
    try {
      return await this.names.get(name);
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return undefined;
      throw err;
    }
  }

  /** A conditional update: ABORTED when the name is no longer at expectedVersion (not atomic across writers; see IpnsNameStore). */
  async updateName(name: string, content: Uint8Array, expectedVersion: bigint, record?: Uint8Array): Promise<bigint> {
    checkName(name, MAX_NAME_BYTES);
    if (content.length > MAX_HEAD_BYTES) {
      throw RemoteLogError.tooLarge(`content of ${content.length} bytes for name ${JSON.stringify(name)} is over the limit of ${MAX_HEAD_BYTES} bytes`, {
        limit: "head bytes",
        value: MAX_HEAD_BYTES,
      });
    }
    if (!isKeyName(name)) throw RemoteLogError.permissionDenied(`name ${JSON.stringify(name)} is not a key name, and IPNS holds signed names only`);
    const { version } = await applySignedUpdate(this.names, name, content, record ?? new Uint8Array(0), expectedVersion, (options) => this.names.put(name, content, options));
    return version;
  }

  // eslint-disable-next-line require-yield
  async *watchName(_name: string, _signal: AbortSignal): AsyncGenerator<NameHead> {
    throw new WatchUnsupportedError(this.nsUrl);
  }

  close(): void {
    void this.names.close();
  }
}
