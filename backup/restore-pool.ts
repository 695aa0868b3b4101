import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RemoteLogError, type ErrorCode } from "../core/errors.js";
import type { EncodedRecords } from "./log-file.js";
import { layOutPack, wholeBuffer } from "./restore-layout.js";
import type { LayoutRequest, LayoutResponse } from "./restore-worker.js";

/** A pack to lay out: its bytes until they are sent or laid out, then its records (or its failure). */
interface Layout {
  address: Uint8Array;
  /** Which worker lays it out, or -1 for the caller's thread. */
  worker: number;
  bytes?: Uint8Array;
  records?: Promise<EncodedRecords>;
  done: boolean;
}

/**
 * The threads a restore lays its packs out on (restore-worker.ts): a restore costs about 2.5 µs of CPU
 * a message (hashing, inflating, decoding, the id and CRC of each record), more than one thread can do
 * in half of restic's time. Packs are shared round the calling thread and one thread per other core,
 * the caller doing its share while it waits for a thread's. A thread costs ~55 ms of CPU to start
 * (loading its code), so there is none for the caller's own core, and none at all on one core or
 * without a compiled worker script (running from the TypeScript sources, as unit tests do).
 */
export class LayoutPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (records: EncodedRecords) => void; reject: (err: Error) => void }>();
  private readonly layouts: Layout[] = [];
  private nextId = 0;
  private broken?: Error;
  private closed?: Promise<void>;

  private constructor(script: URL | undefined, threads: number) {
    if (script) for (let i = 0; i < threads; i++) this.addWorker(script);
  }

  /** Starts the threads, which load their code while the caller reads the chain. */
  static start(): LayoutPool {
    const script = new URL("./restore-worker.js", import.meta.url);
    const threads = availableParallelism() - 1;
    return new LayoutPool(threads >= 1 && existsSync(fileURLToPath(script)) ? script : undefined, threads);
  }

  /** Packs laid out ahead of the one asked for, so that at most this many packs' records wait in memory. */
  private get window(): number {
    return 2 * (this.workers.length + 1);
  }

  /**
   * Takes the chain's packs, in the order they will be asked for (records(0), records(1), …), and
   * shares them round the threads and this one. A lone pack stays here: a thread would only add its
   * start-up. The bytes may be moved to a thread.
   */
  schedule(packs: { bytes: Uint8Array; address: Uint8Array }[]): void {
    const lanes = packs.length > 1 ? this.workers.length + 1 : 1;
    for (const { bytes, address } of packs) {
      const lane = this.layouts.length % lanes;
      const layout: Layout = { address, bytes, worker: lane === lanes - 1 ? -1 : lane, done: false };
      this.layouts.push(layout);
      // The first window's go to their threads at once; later ones as the caller asks (records).
      if (layout.worker >= 0 && this.layouts.length <= this.window) this.send(layout);
    }
  }

  /**
   * Pack index's records, laid out by layOutPack; its DATA_LOSS when it fails. Ask in order. While a
   * thread's pack is not ready, this thread lays out its own next ones (within the window).
   */
  async records(index: number): Promise<EncodedRecords> {
    const end = Math.min(this.layouts.length, index + this.window);
    for (let i = index; i < end; i++) if (this.layouts[i].worker >= 0 && this.layouts[i].bytes) this.send(this.layouts[i]);
    const layout = this.layouts[index];
    for (let own = index; !layout.done; ) {
      while (own < end && (this.layouts[own].worker >= 0 || this.layouts[own].done)) own++;
      if (own === end) break;
      this.layOutHere(this.layouts[own]);
      // Lets a thread's answer in before the next one of ours.
      if (!layout.done) await new Promise((resolve) => setImmediate(resolve));
    }
    const records = layout.records!;
    this.layouts[index] = { address: layout.address, worker: layout.worker, done: true }; // its records are the caller's now
    return records;
  }

  /** Stops the threads; safe to call again (it returns the same promise). */
  close(): Promise<void> {
    this.closed ??= Promise.all(this.workers.map((worker) => worker.terminate())).then(() => {});
    return this.closed;
  }

  private layOutHere(layout: Layout): void {
    try {
      layout.records = Promise.resolve(layOutPack(layout.bytes!, layout.address));
    } catch (err) {
      layout.records = Promise.reject(err);
      layout.records.catch(() => {}); // awaited when asked for, or not at all when an older pack fails first
    }
    layout.bytes = undefined;
    layout.done = true;
  }

  private send(layout: Layout): void {
    const bytes = wholeBuffer(layout.bytes!);
    layout.bytes = undefined;
    const id = this.nextId++;
    const request: LayoutRequest = { id, bytes, address: layout.address };
    const sent = new Promise<EncodedRecords>((resolve, reject) => {
      if (this.broken) return reject(this.broken);
      this.waiting.set(id, { resolve, reject });
      this.workers[layout.worker].postMessage(request, [bytes.buffer as ArrayBuffer]);
    });
    layout.records = sent.finally(() => (layout.done = true));
    layout.records.catch(() => {}); // awaited when asked for, or not at all when an older pack fails first
  }

  private addWorker(script: URL): void {
    // Not the parent's node flags: some (--input-type, -e) are refused by workers or mean nothing to one.
    const worker = new Worker(script, { execArgv: [] });
    worker.on("message", (response: LayoutResponse) => {
      const waiter = this.waiting.get(response.id);
      this.waiting.delete(response.id);
      if (!waiter) return;
      if ("error" in response) {
        const { code, text, details } = response.error;
        waiter.reject(code ? new RemoteLogError(code as ErrorCode, text, { details }) : RemoteLogError.internal(`restore thread: ${text}`));
      } else waiter.resolve({ bytes: response.bytes, ids: response.ids });
    });
    // A thread that dies takes its packs with it: every open request fails, and so does the restore.
    const fail = (err: Error) => {
      this.broken ??= RemoteLogError.internal(`a restore thread failed: ${err.message}`, err);
      for (const waiter of this.waiting.values()) waiter.reject(this.broken);
      this.waiting.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => code !== 0 && fail(new Error(`it exited with ${code}`)));
    this.workers.push(worker);
  }
}
