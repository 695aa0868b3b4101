import type { RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { walkChain, DEFAULT_MAX_PAGES } from "../core/chain.js";
import type { CheckpointStore, Checkpoint } from "../core/checkpoint-store.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { isKeyName, verifyNameRecord, type VerifiedRecord } from "../core/names.js";
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
  remote: Pick<Remote, "fetchName" | "getBlock" | "getBlocks" | "nsUrl">;
  checkpoints: CheckpointStore;
  /** Messages per delivered batch, and so per checkpoint, and about how many are fetched per call; default 1024. */
  batchSize?: number;
  /** Fetch calls in flight at once; default 4. */
  concurrency?: number;
  /** Messages fetched during the walk, before delivery can start; default 65536. */
  prefetchPairs?: number;
  maxPages?: number;
  /** Whether the name is signed and its head record must verify; default: whether the name is a key name. */
  signed?: boolean;
}

export interface SyncResult {
  delivered: number;
  /** Pages read, head included (0 when the name does not exist yet). */
  pages: number;
  /** Messages delivered by all syncs so far, which is the next seq. */
  total: number;
  /** The verified record sequence of the head, for a signed name. */
  sequence?: bigint;
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
  private readonly concurrency: number;
  private readonly prefetchPairs: number;
  private readonly maxPages: number;
  private readonly signed: boolean;
  private readonly nsUrl: string;

  constructor(options: ReceiverOptions) {
    this.name = options.name;
    this.remote = options.remote;
    this.checkpoints = options.checkpoints;
    this.batchSize = options.batchSize ?? 1024;
    this.concurrency = options.concurrency ?? 4;
    this.prefetchPairs = options.prefetchPairs ?? 65_536;
    this.maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
    this.signed = options.signed ?? isKeyName(options.name);
    this.nsUrl = options.remote.nsUrl;
  }

  async sync(deliver: Deliver): Promise<SyncResult> {
    const checkpoint: Checkpoint = (await this.checkpoints.load(this.name)) ?? { delivered: 0, lastId: new Uint8Array(0) };
    const current = await this.remote.fetchName(this.name);
    if (!current) return { delivered: 0, pages: 0, total: checkpoint.delivered, found: false };
    // A signed name's head is trusted only once its record verifies for the name and binds this very
    // page, and only if it is not older than a head accepted before; every older page and message is
    // then checked by its hash.
    const sequence = this.signed ? await this.verifyHead(current.content, current.record, checkpoint.sequence) : undefined;
    const head = decodePage(current.content, `head of name ${JSON.stringify(this.name)}`, ErrorCodes.DATA_LOSS);

    // Pages come newest first but messages go out oldest first, so nothing can be delivered before the
    // walk ends. Fetching starts during the walk instead, a chunk of pages of about batchSize messages
    // at a time (one call per page cost more than the data), up to prefetchPairs messages held in
    // memory; the rest is fetched, a few chunks ahead, while delivering.
    const chunks: { pairs: RemoteLog_Pair[]; checked?: Promise<Checked[]> }[] = [];
    const limit = limiter(this.concurrency);
    let prefetched = 0;
    // Messages are checked as soon as they arrive, so that checking overlaps the walk and the fetches.
    const startFetch = (chunk: (typeof chunks)[number]) => {
      if (chunk.checked) return;
      chunk.checked = limit(() => this.fetchData(chunk.pairs)).then((data) => chunk.pairs.map((pair, i) => check(pair, data[i])));
      chunk.checked.catch(() => {}); // awaited in order below; this only keeps an early failure from being unhandled
    };
    let gathering: RemoteLog_Pair[] = []; // newest first, as the walk finds them
    const closeChunk = () => {
      if (gathering.length === 0) return;
      const chunk = { pairs: gathering.reverse() };
      gathering = [];
      chunks.push(chunk);
      if (prefetched < this.prefetchPairs) {
        prefetched += chunk.pairs.length;
        startFetch(chunk);
      }
    };
    const walk = await walkChain(head, (address) => this.remote.getBlock(address), {
      stopAtId: checkpoint.delivered > 0 ? checkpoint.lastId : undefined,
      maxPages: this.maxPages,
      onPage: (pairs) => {
        for (const pair of pairs) gathering.push(pair);
        if (gathering.length >= this.batchSize) closeChunk();
      },
    });
    closeChunk();
    if (checkpoint.delivered > 0 && !walk.reachedStop) {
      throw RemoteLogError.conflict(
        `name ${JSON.stringify(this.name)} no longer holds message ${toHex(checkpoint.lastId)} (seq ${checkpoint.delivered - 1}), the last one delivered: its log was replaced`,
      );
    }

    chunks.reverse();
    let seq = checkpoint.delivered;
    let batch: Delivery[] = [];
    let lastId = checkpoint.lastId;
    const flush = async () => {
      if (batch.length === 0) return;
      await deliver(batch);
      lastId = batch[batch.length - 1].id;
      await this.checkpoints.save(this.name, withSequence({ delivered: seq, lastId }, sequence));
      batch = [];
    };
    for (let c = 0; c < chunks.length; c++) {
      for (let ahead = c; ahead < Math.min(chunks.length, c + this.concurrency + 1); ahead++) startFetch(chunks[ahead]);
      const { pairs } = chunks[c];
      const checked = await chunks[c].checked!;
      chunks[c].checked = undefined; // delivered chunks need not stay in memory
      for (let i = 0; i < pairs.length; i++) {
        const pair = pairs[i];
        const message = checked[i];
        if (message instanceof Error) throw RemoteLogError.dataLoss(`name ${JSON.stringify(this.name)} seq ${seq}: ${message.message.replace(/^DATA_LOSS: (message: )?/, "")}`, message);
        batch.push({ seq, id: pair.localHash, address: pair.remoteHash, message });
        seq++;
        if (batch.length >= this.batchSize) await flush();
      }
    }
    await flush();
    // A newer head with nothing new (a republished record) still raises the floor for rollbacks.
    if (walk.pairs.length === 0 && sequence !== undefined && sequence !== checkpoint.sequence) {
      await this.checkpoints.save(this.name, withSequence({ delivered: seq, lastId }, sequence));
    }
    return { delivered: walk.pairs.length, pages: walk.pages, total: seq, found: true, sequence };
  }

  /** Checks a signed head; returns its sequence. */
  private async verifyHead(content: Uint8Array, record: Uint8Array, accepted: bigint | undefined): Promise<bigint> {
    const where = `head of name ${JSON.stringify(this.name)} from NS ${this.nsUrl}`;
    if (record.length === 0) throw RemoteLogError.permissionDenied(`${where} comes without a signed record, and the name is a key`);
    let verified: VerifiedRecord;
    try {
      verified = await verifyNameRecord(this.name, record, content);
    } catch (err) {
      throw err instanceof RemoteLogError ? new RemoteLogError(err.code, `${where}: ${err.message.replace(/^[A-Z_]+: /, "")}`, { cause: err }) : err;
    }
    if (accepted !== undefined && verified.sequence < accepted) {
      throw RemoteLogError.conflict(`${where} is a rollback: its record has sequence ${verified.sequence}, and sequence ${accepted} was accepted before`);
    }
    return verified.sequence;
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

function withSequence(checkpoint: Checkpoint, sequence: bigint | undefined): Checkpoint {
  return sequence === undefined ? checkpoint : { ...checkpoint, sequence };
}

/** A checked message, or why it failed (thrown at delivery, once its seq is known). */
type Checked = Message | RemoteLogError;

function check(pair: RemoteLog_Pair, data: Uint8Array): Checked {
  try {
    return verifyPairData(pair, data, "message");
  } catch (err) {
    return err instanceof RemoteLogError ? err : RemoteLogError.dataLoss(String(err));
  }
}

/** Runs at most n of the given tasks at once, in the order they were handed in. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
