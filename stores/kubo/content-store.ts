import { CID } from "multiformats/cid";
import type { ContentStore } from "../../core/content-store.js";
import { RemoteLogError, isRemoteLogError } from "../../core/errors.js";
import { addressOf, addressText, equalBytes, matchesAddress, validateAddress } from "../../core/hash.js";
import { mapBounded } from "../../core/retry.js";
import { KuboApi, type KuboApiOptions } from "./kubo-api.js";

export interface KuboContentStoreOptions extends KuboApiOptions {
  /** Requests in flight at once, per putMany or getMany call. Default 16. */
  concurrency?: number;
}

/*
 * Kubo's `block put` takes the codec as `cid-codec` since 0.13 and as the deprecated `format` before;
 * js-ipfs knows only `format`. Both say raw, which Kubo accepts together. CIDv1 and sha2-256 are
 * Kubo's defaults for raw blocks and are asked for explicitly anyway: the CID it returns must be ours.
 */
const PUT_OPTIONS = { format: "raw", cidCodec: "raw", mhtype: "sha2-256", version: 1 as const, pin: true };
// Our blocks live on this node, pinned: a block it does not hold is missing, not something to look
// for on the network (an online Kubo would search the DHT until the timeout).
const OFFLINE = { offline: true };

/**
 * The CAS on a Kubo node, through its RPC API (design/remote-log.md §7). Blocks go in with `block put`
 * (raw codec, CIDv1, sha2-256) and are pinned, so Kubo's garbage collector keeps them; they come back
 * with `block get`, and every block read is hashed again here, whatever the node says.
 *
 * Each block is one request; a call's requests run `concurrency` at a time. A node that is down, slow
 * or overloaded is retried with backoff for `retryForMs`, then UNAVAILABLE naming the URL.
 *
 * Throws RemoteLogError: DATA_LOSS when the node answers a put with another CID than the block's (the
 * block is refused: something between us and the node, or the node, changed it) or returns bytes
 * that do not hash to the block asked for; INVALID_ARGUMENT for an address that is not ours;
 * UNAVAILABLE as above; INTERNAL for anything else the node refuses, with its message.
 *
 * No stats(): counting pinned blocks means listing every pin, far too slow for each metrics scrape.
 */
export class KuboContentStore implements ContentStore {
  private readonly concurrency: number;

  constructor(
    readonly api: KuboApi,
    options: { concurrency?: number } = {},
  ) {
    this.concurrency = options.concurrency ?? 16;
  }

  /** A store on the node at options.url; checks that the node answers (retrying as configured). */
  static async open(options: KuboContentStoreOptions): Promise<KuboContentStore> {
    const api = new KuboApi(options);
    try {
      await api.call("version", (signal) => api.client.version({ signal }));
    } catch (err) {
      api.close();
      throw err;
    }
    return new KuboContentStore(api, options);
  }

  get url(): string {
    return this.api.url;
  }

  async putMany(blocks: Uint8Array[]): Promise<Uint8Array[]> {
    const addresses = blocks.map((block) => addressOf(block));
    const unique = new Map<string, number>();
    addresses.forEach((address, i) => {
      const key = Buffer.from(address).toString("base64");
      if (!unique.has(key)) unique.set(key, i);
    });
    await mapBounded([...unique.values()], this.concurrency, async (i) => {
      const address = addresses[i];
      const what = `block/put ${addressText(address)}`;
      const cid = await this.api.call(what, (signal) => this.api.client.block.put(blocks[i], { ...PUT_OPTIONS, signal }));
      if (!equalBytes(cid.bytes, address)) {
        throw RemoteLogError.dataLoss(
          `Kubo API ${this.api.url} ${what}: the node stored the block as ${cid.toString()}, not as its CID ${addressText(address)}; refused`,
        );
      }
    });
    return addresses;
  }

  async getMany(addresses: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    for (const address of addresses) validateAddress(address);
    const unique = new Map<string, number>();
    const slots = addresses.map((address, i) => {
      const key = Buffer.from(address).toString("base64");
      if (!unique.has(key)) unique.set(key, i);
      return unique.get(key)!;
    });
    const fetched = new Map<number, Uint8Array | undefined>();
    await mapBounded([...unique.values()], this.concurrency, async (i) => {
      fetched.set(i, await this.getOne(addresses[i]));
    });
    return slots.map((i) => fetched.get(i));
  }

  private async getOne(address: Uint8Array): Promise<Uint8Array | undefined> {
    const what = `block/get ${addressText(address)}`;
    let bytes: Uint8Array;
    try {
      bytes = await this.api.call(what, (signal) => this.api.client.block.get(CID.decode(address), { ...OFFLINE, signal }));
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return undefined;
      throw err;
    }
    if (!matchesAddress(bytes, address)) {
      throw RemoteLogError.dataLoss(`Kubo API ${this.api.url} ${what}: the node returned ${bytes.length} bytes that do not hash to the block's CID`);
    }
    return bytes;
  }

  async has(address: Uint8Array): Promise<boolean> {
    validateAddress(address);
    try {
      await this.api.call(`block/stat ${addressText(address)}`, (signal) => this.api.client.block.stat(CID.decode(address), { ...OFFLINE, signal }));
      return true;
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.api.close();
  }
}
