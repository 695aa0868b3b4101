import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RemoteLogError, type ErrorCode } from "../core/errors.js";
import type { EncodedRecords } from "./log-file.js";
import { layOutPack, wholeBuffer } from "./restore-layout.js";
import type { LayoutRequest, LayoutResponse } from "./restore-worker.js";

/**
 * The threads a restore lays its packs out on (restore-worker.ts): a pack at a time each, the packs
 * of a chain on every core, while the restoring thread reads the chain and writes the log. A restore
 * costs about 3 µs of CPU a message (hashing, decoding, the id and CRC of each record), more than one
 * thread can do in half of restic's time. Without a second core, or without a compiled worker script
 * (running from the TypeScript sources, as unit tests do), packs are laid out on the caller's thread.
 */
export class LayoutPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (records: EncodedRecords) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private broken?: Error;

  private constructor(
    private readonly script: URL | undefined,
    private readonly threads: number,
  ) {}

  /** A pool of up to one thread a core; threads start as packs arrive, the first at once. */
  static start(): LayoutPool {
    const script = new URL("./restore-worker.js", import.meta.url);
    const threads = availableParallelism();
    const pool = new LayoutPool(threads >= 2 && existsSync(fileURLToPath(script)) ? script : undefined, threads);
    // The first thread loads its code while the chain's first pack is read.
    if (pool.script) pool.addWorker();
    return pool;
  }

  /**
   * The pack's records, laid out by layOutPack on a thread; its DATA_LOSS when it fails. bytes may be
   * detached by the call (moved to the thread).
   */
  layOut(bytes: Uint8Array, address: Uint8Array): Promise<EncodedRecords> {
    if (!this.script) return new Promise((resolve) => resolve(layOutPack(bytes, address)));
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    if (this.workers.length < this.threads && id >= this.workers.length) this.addWorker();
    const owned = wholeBuffer(bytes);
    const request: LayoutRequest = { id, bytes: owned, address };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.workers[id % this.workers.length].postMessage(request, [owned.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private addWorker(): void {
    // Not the parent's node flags: some (--input-type, -e) are refused by workers or mean nothing to one.
    const worker = new Worker(this.script!, { execArgv: [] });
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
