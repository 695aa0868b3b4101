import { createWriter, estimateHeaderLength, blockLength } from "@ipld/car/buffer-writer";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import type { ContentStore } from "../../core/content-store.js";
import { RemoteLogError, isRemoteLogError } from "../../core/errors.js";
import { addressOf, addressText, equalBytes, matchesAddress, validateAddress } from "../../core/hash.js";
import { mapBounded } from "../../core/retry.js";
import { KuboApi, kuboHttpStatus, type KuboApiOptions } from "./kubo-api.js";

export interface KuboContentStoreOptions extends KuboApiOptions {
  /** Requests in flight at once, per putMany or getMany call. Default 16. */
  concurrency?: number;
  /**
   * How blocks go in: `car` (one `dag import` per batch, the default) or `block` (one `block put` per
   * block, what a node without `dag import` gets anyway).
   */
  put?: KuboPutMode;
}

export type KuboPutMode = "car" | "block";

/*
 * A batch goes in as CARs of at most this many blocks and bytes: one request each, small enough that a
 * node answers well within one request's timeout (js-ipfs pins each root in turn, ~1 ms apiece), large
 * enough that the request, not the node, stops mattering.
 */
const CAR_MAX_BLOCKS = 1024;
const CAR_MAX_BYTES = 4 * 1024 * 1024;
// CARs in flight at once per putMany: the node writes and pins them; more would only queue there.
const CAR_CONCURRENCY = 2;

/*
 * Kubo's `block put` takes the codec as `cid-codec` since 0.13 and as the deprecated `format` before;
 * js-ipfs knows only `format`. Both say raw, which Kubo accepts together. CIDv1 and sha2-256 are
 * Kubo's defaults for raw blocks and are asked for explicitly anyway: the CID it returns must be ours.
 */
const PUT_OPTIONS = { format: "raw", cidCodec: "raw", mhtype: "sha2-256", version: 1 as const, pin: true };
/** putUnder's root, without dag import: pinned afterwards, recursively. */
const ROOT_PUT_OPTIONS = { format: "dag-cbor", cidCodec: "dag-cbor", mhtype: "sha2-256", version: 1 as const, pin: false };
// Our blocks live on this node, pinned: a block it does not hold is missing, not something to look
// for on the network (an online Kubo would search the DHT until the timeout).
const OFFLINE = { offline: true };

/**
 * The CAS on a Kubo node, through its RPC API (design/remote-log.md §7). Blocks go in pinned, so Kubo's
 * garbage collector keeps them, as raw CIDv1 sha2-256 blocks; they come back with `block get`, and
 * every block read is hashed again here, whatever the node says.
 *
 * A putMany of two blocks or more goes in as CARs through `dag import` (Kubo 0.5 and later, js-ipfs;
 * Kubo checks each block against its CID as it reads the CAR). Each CAR's one root is a batch block
 * (dag-cbor, a list of links to the CAR's blocks), which the import pins recursively: one pin keeps
 * every block of the batch from the node's garbage collector, where a pin per block cost js-ipfs as
 * much as a `block put` each. A lone block goes in by `block put` with its own pin (so that unpinning
 * it undoes it: the IPNS name store unpins a replaced head). A node that does not serve `dag import`
 * (HTTP 404 or 405 for the command) is told once, and from then on gets one `block put` per block, as
 * does a store opened with `put: "block"`. Reads are one `block get` per block (the RPC API has no
 * batched read of raw blocks), `concurrency` in flight on kept-alive connections. A node that is
 * down, slow or overloaded is retried with backoff for `retryForMs`, then UNAVAILABLE naming the URL.
 *
 * Throws RemoteLogError: DATA_LOSS when the node answers a `block put` with another CID than the
 * block's (the block is refused: something between us and the node, or the node, changed it) or
 * returns bytes that do not hash to the block asked for; INVALID_ARGUMENT for an address that is not
 * ours; UNAVAILABLE as above; INTERNAL for anything else the node refuses, with its message, and for a
 * `dag import` that does not pin its batch block.
 *
 * No stats(): counting pinned blocks means listing every pin, far too slow for each metrics scrape.
 */
export class KuboContentStore implements ContentStore {
  private readonly concurrency: number;
  /** How putMany sends blocks: "car" until the node turns out not to serve `dag import`. */
  private putMode: KuboPutMode;

  constructor(
    readonly api: KuboApi,
    options: { concurrency?: number; put?: KuboPutMode } = {},
  ) {
    this.concurrency = options.concurrency ?? 16;
    this.putMode = options.put ?? "car";
  }

  /** How the next putMany sends its blocks: "block" once the node said it has no `dag import`. */
  get putPath(): KuboPutMode {
    return this.putMode;
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
    const indexes = [...unique.values()];
    // A lone block (a head page, say) goes in with its own pin, which the IPNS name store undoes when
    // the head is replaced; a batch goes in under one batch pin.
    if (this.putMode === "car" && indexes.length > 1) {
      const imported = await mapBounded(carBatches(indexes, blocks), CAR_CONCURRENCY, (batch) => this.importBatch(batch, blocks, addresses));
      if (imported.every(Boolean)) return addresses;
      // Safe to repeat: a block the node took already is put and pinned again, which changes nothing.
      this.putMode = "block";
    }
    await mapBounded(indexes, this.concurrency, (i) => this.putRaw(blocks[i], addresses[i], true));
    return addresses;
  }

  /** One raw block by `block put`, pinned or not; DATA_LOSS when the node answers another CID than address. */
  private async putRaw(block: Uint8Array, address: Uint8Array, pin: boolean): Promise<void> {
    const what = `block/put ${addressText(address)}`;
    const cid = await this.api.call(what, (signal) => this.api.client.block.put(block, { ...PUT_OPTIONS, pin, signal }));
    if (!equalBytes(cid.bytes, address)) {
      throw RemoteLogError.dataLoss(`Kubo API ${this.api.url} ${what}: the node stored the block as ${cid.toString()}, not as its CID ${addressText(address)}; refused`);
    }
  }

  /**
   * One CAR of the blocks at indexes under a batch block, through `dag import` with its root pinned
   * (and so every block it links). False, with nothing stored, when the node does not serve the command.
   */
  private async importBatch(indexes: number[], blocks: Uint8Array[], addresses: Uint8Array[]): Promise<boolean> {
    const car = await encodeBatchCar(
      indexes.map((i) => addresses[i]),
      indexes.map((i) => blocks[i]),
    );
    return this.importCar(car, `${indexes.length} blocks under batch ${car.root.toString()}`);
  }

  /** A CAR through `dag import`, its root pinned; false, with nothing stored, when the node does not serve the command. */
  private async importCar(car: { root: CID; bytes: Uint8Array }, what: string): Promise<boolean> {
    what = `dag/import of ${what}`;
    const answered = await this.api.call(what, async (signal) => {
      const roots = new Map<string, string>();
      try {
        for await (const { root } of this.api.client.dag.import([car.bytes], { pinRoots: true, signal })) roots.set(root.cid.toString(), root.pinErrorMsg ?? "");
      } catch (err) {
        const status = kuboHttpStatus(err);
        if (status === 404 || status === 405) return undefined;
        throw err;
      }
      return roots;
    });
    if (answered === undefined) return false;
    const pinError = answered.get(car.root.toString());
    if (pinError === undefined || pinError !== "") {
      throw RemoteLogError.internal(`Kubo API ${this.api.url} ${what}: the node did not pin the batch${pinError ? `: ${pinError}` : " (no answer for its root)"}`);
    }
    return true;
  }

  /**
   * Stores block pinned under a root of owner's own (underRoot: dag-cbor, owner and a link to the
   * block), recursively. Kubo counts no pins: a block two owners pinned directly (two names whose heads
   * are the same page) lost its one pin to whichever unpinned it first, and the node's garbage
   * collector then took the other's head. Pinned so, each owner's unpinUnder takes its own root only,
   * and the block stays while any root, batch or other pin still reaches it.
   */
  async putUnder(owner: string, block: Uint8Array): Promise<void> {
    const address = addressOf(block);
    const root = await underRoot(owner, address);
    const what = `head ${addressText(address)} under ${root.cid.toString()}`;
    if (this.putMode === "car") {
      const car = await encodeCar(root, [address], [block]);
      if (await this.importCar(car, what)) return;
      this.putMode = "block";
    }
    // Without dag import: both blocks in unpinned, then the root pinned recursively, which fails (and so
    // does the put, to be repeated) if the node collected the block in between.
    await this.putRaw(block, address, false);
    await this.api.call(`block/put ${root.cid.toString()}`, (signal) => this.api.client.block.put(root.bytes, { ...ROOT_PUT_OPTIONS, signal }));
    await this.api.call(`pin/add ${root.cid.toString()}`, (signal) => this.api.client.pin.add(root.cid, { recursive: true, signal }));
  }

  /** Takes away the root putUnder(owner, the block at address) pinned; best effort, as a pin already gone is nothing to take. */
  async unpinUnder(owner: string, address: Uint8Array): Promise<void> {
    const { cid } = await underRoot(owner, address);
    await this.api.call(`pin/rm ${cid.toString()}`, (signal) => this.api.client.pin.rm(cid, { signal })).catch(() => {
      // Not pinned (a head pinned before roots of their own, or unpinned already), or the node failed: one pin too many at worst.
    });
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
      bytes = await this.api.call(what, (signal) => this.api.rawPost("block/get", [addressText(address)], { offline: "true" }, signal));
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

/** The indexes in runs that make CARs of at most CAR_MAX_BLOCKS blocks and about CAR_MAX_BYTES. */
function carBatches(indexes: number[], blocks: Uint8Array[]): number[][] {
  const batches: number[][] = [];
  let batch: number[] = [];
  let bytes = 0;
  for (const i of indexes) {
    if (batch.length > 0 && (batch.length >= CAR_MAX_BLOCKS || bytes + blocks[i].length > CAR_MAX_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(i);
    bytes += blocks[i].length;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * A CARv1 of the blocks at addresses and, first, its root: a batch block, dag-cbor, that lists a link
 * to each of them, so that pinning the root recursively pins them all. The batch block is small (about
 * 40 bytes a link: 41 KB for CAR_MAX_BLOCKS), far under a node's block limit.
 */
export async function encodeBatchCar(addresses: Uint8Array[], blocks: Uint8Array[]): Promise<{ root: CID; bytes: Uint8Array }> {
  const rootBytes = dagCbor.encode(addresses.map((address) => CID.decode(address)));
  return encodeCar({ cid: CID.createV1(dagCbor.code, await sha256.digest(rootBytes)), bytes: rootBytes }, addresses, blocks);
}

/**
 * The root putUnder pins for owner's block at address: dag-cbor { owner, block: link }, a CID of its
 * own for each owner of the same block.
 */
export async function underRoot(owner: string, address: Uint8Array): Promise<{ cid: CID; bytes: Uint8Array }> {
  const bytes = dagCbor.encode({ owner, block: CID.decode(address) });
  return { cid: CID.createV1(dagCbor.code, await sha256.digest(bytes)), bytes };
}

/** A CARv1 of root (first) and the blocks at addresses. */
function encodeCar(root: { cid: CID; bytes: Uint8Array }, addresses: Uint8Array[], blocks: Uint8Array[]): { root: CID; bytes: Uint8Array } {
  const cids = addresses.map((address) => CID.decode(address));
  const headerSize = estimateHeaderLength(1, root.cid.bytes.length);
  let size = headerSize + blockLength({ cid: root.cid, bytes: root.bytes });
  cids.forEach((cid, i) => (size += blockLength({ cid, bytes: blocks[i] })));
  const writer = createWriter(new ArrayBuffer(size), { roots: [root.cid], headerSize });
  writer.write({ cid: root.cid, bytes: root.bytes });
  cids.forEach((cid, i) => writer.write({ cid, bytes: blocks[i] }));
  return { root: root.cid, bytes: writer.close({ resize: true }) };
}
