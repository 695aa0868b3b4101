import { create } from "@bufbuild/protobuf";
import { NameUpdateSchema, QuerySchema } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { NsService } from "../services/ns-service.js";
import { KuboApi } from "../stores/kubo/kubo-api.js";
import { KuboContentStore } from "../stores/kubo/content-store.js";
import { IpnsNameStore } from "../stores/ipns/name-store.js";
import { WatchUnsupportedError, type NameHead } from "./remote.js";

export interface KuboRemoteOptions {
  /** The Kubo RPC API, such as http://127.0.0.1:5001. */
  kuboApi: string;
  /** Longest wait for one request. Default 30 s. */
  timeoutMs?: number;
  /** Block requests in flight at once. Default 16. */
  concurrency?: number;
}

/**
 * What the sender and receiver need from a CAS and an NS (the surface of Remote), straight on a Kubo
 * node, without remotelog's services: `send --kubo-api` and `receive --kubo-api`.
 *
 * Names go through the same NsService that `serve --ns ipns` runs, over the same IpnsNameStore, so an
 * update is checked exactly as our NS checks it (signature, content binding, sequence, expected
 * version) before anything reaches the node, and signed names only: a free-form name is
 * PERMISSION_DENIED. Blocks go through KuboContentStore, which re-hashes every block it reads.
 *
 * Each call is tried once: the CLI's own retry loop (--retry-for) backs off on UNAVAILABLE. The node
 * cannot push new heads, so watchName throws WatchUnsupportedError and followers poll.
 */
/**
 * The largest block a Kubo node takes and its peers exchange: 1 MiB, Kubo's documented limit for
 * blocks put through the RPC API (and bitswap's). Kubo does not advertise it, so it is a constant.
 */
export const KUBO_MAX_BLOCK_BYTES = 1024 * 1024;

export class KuboRemote {
  readonly casUrl: string;
  readonly nsUrl: string;
  private readonly blocks: KuboContentStore;
  private readonly names: IpnsNameStore;
  private readonly ns: NsService;

  constructor(options: KuboRemoteOptions) {
    const api = new KuboApi({ url: options.kuboApi, timeoutMs: options.timeoutMs, retryForMs: 0 });
    this.casUrl = this.nsUrl = api.url;
    this.blocks = new KuboContentStore(api, { concurrency: options.concurrency });
    this.names = new IpnsNameStore(api, this.blocks);
    this.ns = new NsService(this.names, {}, { requireSigned: true });
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
    const blocks = await this.blocks.getMany(addresses);
    return blocks.map((block, i) => {
      if (block === undefined) throw RemoteLogError.notFound(`Kubo API ${this.casUrl}: block ${addressText(addresses[i])} is not stored`);
      return block;
    });
  }

  async getBlock(address: Uint8Array): Promise<Uint8Array> {
    return (await this.getBlocks([address]))[0];
  }

  /** The name's head, verified as IpnsNameStore.get does, or undefined when the node has no record for it. */
  async fetchName(name: string): Promise<NameHead | undefined> {
    try {
      const content = await this.ns.fetch(create(QuerySchema, { name }));
      return { content: content.data, version: content.version, record: content.record };
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return undefined;
      throw err;
    }
  }

  /** A conditional update: ABORTED when the name is no longer at expectedVersion (not atomic across writers; see IpnsNameStore). */
  async updateName(name: string, content: Uint8Array, expectedVersion: bigint, record?: Uint8Array): Promise<bigint> {
    const update = create(NameUpdateSchema, { name, content, expectedVersion, record: record ?? new Uint8Array(0) });
    return (await this.ns.update(update)).version;
  }

  // eslint-disable-next-line require-yield
  async *watchName(_name: string, _signal: AbortSignal): AsyncGenerator<NameHead> {
    throw new WatchUnsupportedError(this.nsUrl);
  }

  close(): void {
    void this.names.close();
  }
}
