import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RemoteLogError, type ErrorCode } from "../core/errors.js";
import type { EncodedRecords } from "./log-file.js";
import { layOutPack, wholeBuffer } from "./restore-layout.js";
import type { LayoutRequest, LayoutResponse } from "./restore-worker.js";

/** A pack being laid out: done once its records (or its failure) are at hand. */
export interface Layout {
  done: boolean;
  records(): Promise<EncodedRecords>;
}

interface OwnLayout extends Layout {
  bytes?: Uint8Array;
  address: Uint8Array;
}

/**
 * The threads a restore lays its packs out on (restore-worker.ts): a restore costs about 3 µs of CPU a
 * message (hashing, inflating, decoding, the id and CRC of each record), more than one thread can do in
 * half of restic's time. Packs are shared round the calling thread and one thread per other core, the
 * caller taking its share when it comes to it. A thread costs ~50 ms of CPU to start (loading its
 * code), so there is none for the caller's own core, and none at all on one core or without a compiled
 * worker script (running from the TypeScript sources, as unit tests do).
 */
export class LayoutPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (records: EncodedRecords) => void; reject: (err: Error) => void }>();
  /** The packs kept for the caller's thread, oldest first. */
  private readonly own: OwnLayout[] = [];
  private nextId = 0;
  private scheduled = 0;
  private broken?: Error;

  private constructor(script: URL | undefined, threads: number) {
    if (script) for (let i = 0; i < threads; i++) this.addWorker(script);
  }

  /** Starts the threads, which load their code while the caller reads the chain. */
  static start(): LayoutPool {
    const script = new URL("./restore-worker.js", import.meta.url);
    const threads = availableParallelism() - 1;
    return new LayoutPool(threads >= 1 && existsSync(fileURLToPath(script)) ? script : undefined, threads);
  }

  /**
   * Takes the next pack: starts laying it out (layOutPack) on a thread, or keeps it for the caller's
   * thread (layOutOwn). Schedule packs in the order they are wanted. bytes may be detached by the call
   * (moved to a thread).
   */
  schedule(bytes: Uint8Array, address: Uint8Array): Layout {
    const lane = this.scheduled++ % (this.workers.length + 1);
    if (lane === this.workers.length) {
      const layout: OwnLayout = { done: false, records: () => this.layOutOwn(layout), bytes, address };
      this.own.push(layout);
      return layout;
    }
    const layout: Layout = { done: false, records: () => sent };
    const sent = this.send(this.workers[lane], bytes, address).finally(() => (layout.done = true));
    sent.catch(() => {}); // awaited when asked for, or not at all when an older pack fails first
    return layout;
  }

  /**
   * Lays out the caller's next pack (oldest first) on this thread; false when none is left. The
   * caller does its share while it waits for a thread's pack; a pack that fails keeps its DATA_LOSS
   * for when it is asked for.
   */
  layOutNext(): boolean {
    const layout = this.own.find((own) => !own.done);
    if (!layout) return false;
    let records: Promise<EncodedRecords>;
    try {
      records = Promise.resolve(layOutPack(layout.bytes!, layout.address));
    } catch (err) {
      records = Promise.reject(err);
      records.catch(() => {});
    }
    layout.done = true;
    layout.bytes = undefined;
    layout.records = () => records;
    return true;
  }

  private layOutOwn(layout: OwnLayout): Promise<EncodedRecords> {
    while (!layout.done) this.layOutNext();
    return layout.records();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private send(worker: Worker, bytes: Uint8Array, address: Uint8Array): Promise<EncodedRecords> {
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    const owned = wholeBuffer(bytes);
    const request: LayoutRequest = { id, bytes: owned, address };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage(request, [owned.buffer as ArrayBuffer]);
    });
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
      } else waiter.resolve({ bytes: response.bytes, idOffsets: response.idOffsets });
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
