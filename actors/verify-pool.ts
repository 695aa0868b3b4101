import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { messageVerdicts, type BlockAddresser, type PairVerifier } from "../core/log-reader.js";
import type { VerifyRequest, VerifyResponse } from "./verify-worker.js";


/**
 * Threads that check fetched messages for a receiver, so that hashing (two SHA-256 per message, most
 * of a catch-up's CPU) runs beside fetching and delivering instead of between them. A verdict of 0
 * means the message checked out; anything else is checked again by the caller, which names the fault.
 * An idle pool never keeps a process alive.
 */
export class VerifyPool implements PairVerifier, BlockAddresser {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, (verdicts: Uint8Array) => void>();
  /** Requests each worker has yet to answer: a worker is ref'd only while it has some. */
  private readonly pending: number[];
  private nextId = 0;
  private turn = 0;
  private broken?: Error;

  private constructor(script: URL, threads: number) {
    this.pending = new Array<number>(threads).fill(0);
    this.workers = Array.from({ length: threads }, (_, index) => {
      // Not the parent's node flags: some (--input-type, -e) are refused by workers or mean nothing to one.
      const worker = new Worker(script, { execArgv: [] });
      worker.on("message", (response: VerifyResponse) => {
        if (--this.pending[index] === 0) worker.unref();
        const resolve = this.waiting.get(response.id);
        this.waiting.delete(response.id);
        resolve?.(response.verdicts);
      });
      // A worker that dies takes its verdicts with it: every open request is answered "check it
      // yourself", and the pool is not used again.
      worker.on("error", (err) => this.fail(err));
      worker.on("exit", (code) => code !== 0 && this.fail(new Error(`verify worker exited with ${code}`)));
      // Idle, a worker must not keep the process alive; busy, it must, or a process whose only work
      // left is a verdict would exit without it. Unref'd after the listeners: adding one refs it again.
      worker.unref();
      return worker;
    });
  }

  /**
   * The shared pool: a thread for each core past the second, up to two. Undefined on two cores or
   * fewer, or without a compiled worker script (running from TypeScript sources, as unit tests do).
   * On two cores the thread had no core of its own: it shared one with whatever else ran (on this
   * 2-core machine, the server), and a 1M `send` took 10.5-12.2 s with it against 10.0-11.1 s
   * without, a 100k `receive` at 20 ms 1,500 ms against 1,369 (medians of 8), a 1M `receive` 9.1 s
   * against 9.2-9.6 (bench/README.md, session 10).
   */
  static shared(): VerifyPool | undefined {
    if (sharedPool !== undefined) return sharedPool || undefined;
    sharedPool = VerifyPool.start(Math.min(2, availableParallelism() - 2)) ?? false;
    return sharedPool || undefined;
  }

  /** A pool of its own with this many threads, or undefined for none or without a compiled worker script. */
  static start(threads: number): VerifyPool | undefined {
    const script = new URL("./verify-worker.js", import.meta.url);
    return threads >= 1 && existsSync(fileURLToPath(script)) ? new VerifyPool(script, threads) : undefined;
  }

  /** Threads the shared pool runs: none until something first needs it. */
  static runningThreads(): number {
    return sharedPool ? sharedPool.workers.length : 0;
  }

  /** Verdicts for the messages (data[i] checked against pairs[i]); all 1s if the pool has failed. */
  verify(pairs: { remoteHash: Uint8Array; localHash: Uint8Array }[], data: Uint8Array[]): Promise<Uint8Array> {
    if (this.broken) return Promise.resolve(new Uint8Array(pairs.length).fill(1));
    const remote = new Uint8Array(36 * pairs.length);
    const local = new Uint8Array(32 * pairs.length);
    for (let i = 0; i < pairs.length; i++) {
      // A pair whose hashes have other lengths fails in the worker, and is checked again by the caller.
      if (pairs[i].remoteHash.length === 36) remote.set(pairs[i].remoteHash, 36 * i);
      if (pairs[i].localHash.length === 32) local.set(pairs[i].localHash, 32 * i);
    }
    return this.post(data, { remote, local }, [remote.buffer, local.buffer]);
  }

  /**
   * The address of each block (addressOf), 36 bytes each, back to back: a sender's blocks, hashed
   * here while its thread appends them. Undefined if the pool has failed: the caller addresses them.
   */
  async addresses(blocks: Uint8Array[]): Promise<Uint8Array | undefined> {
    if (this.broken) return undefined;
    const addresses = await this.post(blocks, {}, []);
    return addresses.length === 36 * blocks.length ? addresses : undefined;
  }

  /** Sends data (with the hashes to check it against, if any) to the next worker; its answer. */
  private post(data: Uint8Array[], hashes: Pick<VerifyRequest, "remote" | "local">, transfer: ArrayBuffer[]): Promise<Uint8Array> {
    const spans = new Uint32Array(2 * data.length);
    transfer.push(spans.buffer);
    // Messages of one GetMany answer (or of one send's group) are views of its one buffer: that buffer
    // goes to the worker as it is, copied whole by postMessage, where copying each message into a new
    // one cost the main thread more than checking it there would. Anything else is gathered.
    let bytes = oneBuffer(data);
    if (bytes) {
      for (let i = 0; i < data.length; i++) {
        spans[2 * i] = data[i].byteOffset;
        spans[2 * i + 1] = data[i].byteOffset + data[i].length;
      }
    } else {
      let size = 0;
      for (const item of data) size += item.length;
      const gathered = new Uint8Array(size);
      let at = 0;
      for (let i = 0; i < data.length; i++) {
        gathered.set(data[i], at);
        spans[2 * i] = at;
        spans[2 * i + 1] = at += data[i].length;
      }
      bytes = gathered;
      transfer.push(gathered.buffer);
    }
    const id = this.nextId++;
    const request: VerifyRequest = { id, bytes, spans, ...hashes };
    const index = this.turn++ % this.workers.length;
    const worker = this.workers[index];
    if (this.pending[index]++ === 0) worker.ref();
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      worker.postMessage(request, transfer);
    });
  }

  private fail(err: Error): void {
    this.broken ??= err;
    for (const [id, resolve] of this.waiting) {
      this.waiting.delete(id);
      resolve(new Uint8Array(0));
    }
  }
}

let sharedPool: VerifyPool | false | undefined;

/**
 * The shared pool as a verifier whose threads start when it is first asked to check (a receiver or a
 * backup asks only for a long read: core/log-reader.ts verifierForRead), checking on the caller's
 * thread where there is no pool.
 */
const sharedLazily: PairVerifier = {
  verify: (pairs, data) => VerifyPool.shared()?.verify(pairs, data) ?? Promise.resolve(messageVerdicts(pairs, data)),
  start: () => void VerifyPool.shared(),
};

/**
 * The verifier a receiver uses unless told otherwise (package.json "imports" #verify-pool): the shared
 * pool of threads, started when first used; none in a browser (actors/verify-pool-browser.ts).
 */
export function sharedVerifier(): PairVerifier | undefined {
  return sharedLazily;
}

/** The addresser a sender uses unless told otherwise (#verify-pool): the same shared pool; none in a browser. */
export function sharedAddresser(): BlockAddresser | undefined {
  return VerifyPool.shared();
}

/**
 * The whole of the one ArrayBuffer every item is a view of, when there is one and it holds little
 * besides them (a GetMany answer holds its blocks and a few bytes of framing each); else undefined.
 */
function oneBuffer(data: Uint8Array[]): Uint8Array | undefined {
  if (data.length === 0) return undefined;
  const buffer = data[0].buffer;
  if (!(buffer instanceof ArrayBuffer)) return undefined;
  let size = 0;
  for (const item of data) {
    if (item.buffer !== buffer) return undefined;
    size += item.length;
  }
  // A view of a pooled or larger buffer would send all of it.
  if (buffer.byteLength > 2 * size + 4096) return undefined;
  return new Uint8Array(buffer);
}
