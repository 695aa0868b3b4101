import type { RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { walkChain, DEFAULT_MAX_PAGES } from "../core/chain.js";
import type { CheckpointStore, Checkpoint } from "../core/checkpoint-store.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { decodePage, verifyPairData } from "../core/page.js";
import type { Remote } from "./remote.js";

export interface Delivery {
  seq: number;
  id: Uint8Array;
  address: Uint8Array;
  message: Message;
}

/** Takes a batch, oldest first. The checkpoint moves past the batch only once this resolves. */
export type Deliver = (batch: Delivery[]) => Promise<void>;

export interface ReceiverOptions {
  name: string;
  remote: Pick<Remote, "fetchName" | "getBlock" | "getBlocks">;
  checkpoints: CheckpointStore;
  /** Messages per delivered batch, and so per checkpoint; default 1024. */
  batchSize?: number;
  /** Batches fetched ahead of the one being delivered; default 4. */
  prefetch?: number;
  maxPages?: number;
}

export interface SyncResult {
  delivered: number;
  /** Pages read, head included (0 when the name does not exist yet). */
  pages: number;
  /** Messages delivered by all syncs so far, which is the next seq. */
  total: number;
  /** False when the name has no remote log yet. */
  found: boolean;
}

/**
 * Bob: reads a name, walks pages back only as far as the last message it delivered, fetches what is
 * missing in batches (embedded data needs no fetch), checks H2 and H1 of every message, and delivers
 * oldest first. The checkpoint is saved after each delivered batch, so a crash re-delivers at most
 * the batch in flight, and every delivery carries its seq and id so a consumer can drop repeats.
 */
export class Receiver {
  readonly name: string;
  private readonly remote: ReceiverOptions["remote"];
  private readonly checkpoints: CheckpointStore;
  private readonly batchSize: number;
  private readonly prefetch: number;
  private readonly maxPages: number;

  constructor(options: ReceiverOptions) {
    this.name = options.name;
    this.remote = options.remote;
    this.checkpoints = options.checkpoints;
    this.batchSize = options.batchSize ?? 1024;
    this.prefetch = options.prefetch ?? 4;
    this.maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  }

  async sync(deliver: Deliver): Promise<SyncResult> {
    const checkpoint: Checkpoint = (await this.checkpoints.load(this.name)) ?? { delivered: 0, lastId: new Uint8Array(0) };
    const current = await this.remote.fetchName(this.name);
    if (!current) return { delivered: 0, pages: 0, total: checkpoint.delivered, found: false };
    const head = decodePage(current.content, `head of name ${JSON.stringify(this.name)}`, ErrorCodes.DATA_LOSS);
    const walk = await walkChain(head, (address) => this.remote.getBlock(address), {
      stopAtId: checkpoint.delivered > 0 ? checkpoint.lastId : undefined,
      maxPages: this.maxPages,
    });
    if (checkpoint.delivered > 0 && !walk.reachedStop) {
      throw RemoteLogError.conflict(
        `name ${JSON.stringify(this.name)} no longer holds message ${toHex(checkpoint.lastId)} (seq ${checkpoint.delivered - 1}), the last one delivered: its log was replaced`,
      );
    }

    const batches: RemoteLog_Pair[][] = [];
    for (let i = 0; i < walk.pairs.length; i += this.batchSize) batches.push(walk.pairs.slice(i, i + this.batchSize));
    const fetched: Promise<Uint8Array[]>[] = [];
    const startFetch = (index: number) => {
      if (index < batches.length && fetched[index] === undefined) {
        fetched[index] = this.fetchData(batches[index]);
        fetched[index].catch(() => {}); // awaited in order below; this only keeps an early failure from being unhandled
      }
    };
    let seq = checkpoint.delivered;
    for (let b = 0; b < batches.length; b++) {
      for (let ahead = b; ahead <= b + this.prefetch; ahead++) startFetch(ahead);
      const data = await fetched[b];
      const batch = batches[b];
      const deliveries: Delivery[] = batch.map((pair, i) => ({
        seq: seq + i,
        id: pair.localHash,
        address: pair.remoteHash,
        message: verifyPairData(pair, data[i], `name ${JSON.stringify(this.name)} seq ${seq + i}`),
      }));
      await deliver(deliveries);
      seq += batch.length;
      await this.checkpoints.save(this.name, { delivered: seq, lastId: batch[batch.length - 1].localHash });
    }
    return { delivered: walk.pairs.length, pages: walk.pages, total: seq, found: true };
  }

  /** The data of each pair: embedded where the page carries it, else one batched fetch for the rest. */
  private async fetchData(pairs: RemoteLog_Pair[]): Promise<Uint8Array[]> {
    const missing: number[] = [];
    pairs.forEach((pair, i) => {
      if (pair.data.length === 0) missing.push(i);
    });
    const data = pairs.map((pair) => pair.data);
    if (missing.length > 0) {
      const blocks = await this.remote.getBlocks(missing.map((i) => pairs[i].remoteHash));
      missing.forEach((pairIndex, i) => {
        data[pairIndex] = blocks[i];
      });
    }
    return data;
  }
}
