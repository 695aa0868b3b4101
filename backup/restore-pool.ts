import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { RemoteLogError, type ErrorCode } from "../core/errors.js";
import type { EncodedRecords } from "./log-file.js";
import type { ReadPackHeader } from "./pack-format.js";
import { layOutPack, wholeBuffer } from "./restore-layout.js";
import type { LayoutRequest, LayoutResponse } from "./restore-worker.js";

/** A pack of a restore, as its walk left it. */
export interface PackToLayOut {
  /** Its header (and address) as the walk read it: the pack read whole must agree (layOutPack). */
  header: ReadPackHeader;
  /** Its bytes, when the walk read it whole; else they are read (start's read) when its turn nears. */
  bytes?: Uint8Array;
}

/** A pack to lay out: its bytes (being read) until a thread claims it, then its records (or its failure). */
interface Layout {
  pack: PackToLayOut;
  bytes?: Promise<Uint8Array>;
  records?: Promise<EncodedRecords>;
  done: boolean;
}

/** A restore thread: whether it has loaded its code, and how many packs it holds. */
interface Thread {
  worker: Worker;
  ready: boolean;
  holding: number;
  /** Why it died, when it did. */
  broken?: Error;
}

/**
 * Packs a loaded thread holds at once: the one it lays out and the next. The caller's thread hands a
 * pack over only between two of its own, so a thread that held one would wait idle for that. A
 * thread still loading holds one, which it starts on as soon as it has loaded.
 */
const HELD_PER_THREAD = 2;

/**
 * The threads a restore lays its packs out on (restore-worker.ts): a restore costs about 2.5 µs of CPU
 * a message (hashing, inflating, decoding, the id and CRC of each record), more than one thread can do
 * in half of restic's time. A thread costs ~55 ms of CPU to start (loading its code), so there is none
 * for the caller's own core, and none at all on one core or without a compiled worker script (running
 * from the TypeScript sources, as unit tests do).
 *
 * Packs are claimed in chain order, each by whichever thread is free first: the caller's, when it waits
 * for a pack, or a thread that holds fewer than HELD_PER_THREAD. Dealt in turns instead, a thread's
 * first packs waited for it to load (~85 ms of a 440 ms restore) while the caller, done with its own,
 * waited for them. At most window packs from the one asked for are read, claimed or laid out, so a
 * chain of any length is restored in bounded memory.
 */
export class LayoutPool {
  private readonly threads: Thread[] = [];
  private readonly waiting = new Map<number, { resolve: (records: EncodedRecords) => void; reject: (err: Error) => void }>();
  private readonly layouts: Layout[] = [];
  /** The first pack no thread has claimed. */
  private unclaimed = 0;
  /** The pack the caller asks for now (records). */
  private asked = 0;
  private nextId = 0;
  private closed?: Promise<void>;

  private constructor(
    private readonly read: (address: Uint8Array) => Promise<Uint8Array>,
    script: URL | undefined,
    threads: number,
  ) {
    if (script) for (let i = 0; i < threads; i++) this.addThread(script);
  }

  /**
   * Starts the threads, which load their code while the caller walks the chain. read: a pack's bytes,
   * for a pack scheduled without them.
   */
  static start(read: (address: Uint8Array) => Promise<Uint8Array>): LayoutPool {
    const script = new URL("./restore-worker.js", import.meta.url);
    const threads = availableParallelism() - 1;
    return new LayoutPool(read, threads >= 1 && existsSync(fileURLToPath(script)) ? script : undefined, threads);
  }

  /** Packs from the one asked for that may be read, claimed or laid out: at most this many packs' bytes and records are held. */
  private get window(): number {
    return (HELD_PER_THREAD + 1) * (this.threads.length + 1);
  }

  /** Takes the chain's packs, in the order they will be asked for (records(0), records(1), …). Bytes may be moved to a thread. */
  schedule(packs: PackToLayOut[]): void {
    for (const pack of packs) this.layouts.push({ pack, done: false });
    this.feed();
  }

  /**
   * Pack index's records, laid out by layOutPack; its DATA_LOSS when it fails, or the failure to read
   * it. Ask in order. While a thread's pack is not ready, this thread lays out the next unclaimed ones.
   */
  async records(index: number): Promise<EncodedRecords> {
    this.asked = index;
    this.feed();
    const layout = this.layouts[index];
    while (!layout.done && this.claimable()) {
      await this.layOutHere(this.layouts[this.unclaimed++]);
      // Lets the threads' messages in (loaded, a pack laid out), which hand them the next packs,
      // before this thread claims another. Even after index's own layout: the caller's await of a
      // done pack runs no event loop, and a thread that loaded meanwhile would be given nothing.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const records = layout.records!;
    this.layouts[index] = { pack: layout.pack, done: true }; // its records are the caller's now
    return records;
  }

  /** Stops the threads; safe to call again (it returns the same promise). */
  close(): Promise<void> {
    this.closed ??= Promise.all(this.threads.map((thread) => thread.worker.terminate())).then(() => {});
    return this.closed;
  }

  private claimable(): boolean {
    return this.unclaimed < this.layouts.length && this.unclaimed < this.asked + this.window;
  }

  /** Starts reading the packs of the window, and hands the next unclaimed ones to every thread that holds fewer than it may. */
  private feed(): void {
    for (let i = this.unclaimed; i < Math.min(this.layouts.length, this.asked + this.window); i++) this.bytesOf(this.layouts[i]);
    for (const thread of this.threads) {
      while (!thread.broken && thread.holding < (thread.ready ? HELD_PER_THREAD : 1) && this.claimable()) this.send(thread, this.layouts[this.unclaimed++]);
    }
  }

  /** A pack's bytes: the walk's, or read now (once). */
  private bytesOf(layout: Layout): Promise<Uint8Array> {
    if (!layout.bytes) {
      const { pack } = layout;
      layout.bytes = pack.bytes ? Promise.resolve(pack.bytes) : this.read(pack.header.address);
      layout.bytes.catch(() => {}); // reported as the pack's records, when asked for
      pack.bytes = undefined;
    }
    return layout.bytes;
  }

  private async layOutHere(layout: Layout): Promise<void> {
    try {
      const bytes = await this.bytesOf(layout);
      layout.bytes = undefined;
      layout.records = Promise.resolve(layOutPack(bytes, layout.pack.header, false));
    } catch (err) {
      layout.records = Promise.reject(err);
      layout.records.catch(() => {}); // awaited when asked for, or not at all when an older pack fails first
    }
    layout.done = true;
  }

  private send(thread: Thread, layout: Layout): void {
    thread.holding++;
    const sent = this.bytesOf(layout).then(
      (bytes) =>
        new Promise<EncodedRecords>((resolve, reject) => {
          if (thread.broken) return reject(thread.broken); // it died while the pack was read
          const whole = wholeBuffer(bytes);
          const id = this.nextId++;
          const request: LayoutRequest = { id, bytes: whole, header: layout.pack.header };
          this.waiting.set(id, { resolve, reject });
          thread.worker.postMessage(request, [whole.buffer as ArrayBuffer]);
        }),
      (err: unknown) => {
        // Never sent: the thread holds one pack fewer.
        thread.holding--;
        this.feed();
        throw err;
      },
    );
    layout.bytes = undefined;
    layout.records = sent.finally(() => (layout.done = true));
    layout.records.catch(() => {}); // awaited when asked for, or not at all when an older pack fails first
  }

  private addThread(script: URL): void {
    // Not the parent's node flags: some (--input-type, -e) are refused by workers or mean nothing to one.
    const thread: Thread = { worker: new Worker(script, { execArgv: [] }), ready: false, holding: 0 };
    thread.worker.on("message", (response: LayoutResponse) => {
      if ("ready" in response) thread.ready = true;
      else {
        thread.holding--;
        const waiter = this.waiting.get(response.id);
        this.waiting.delete(response.id);
        if ("error" in response) {
          const { code, text, details } = response.error;
          waiter?.reject(code ? new RemoteLogError(code as ErrorCode, text, { details }) : RemoteLogError.internal(`restore thread: ${text}`));
        } else waiter?.resolve({ bytes: response.bytes, ids: response.ids });
      }
      this.feed();
    });
    // A thread that dies fails every pack a thread holds, and so the restore; it is given no more.
    const fail = (err: Error) => {
      const broken = RemoteLogError.internal(`a restore thread failed: ${err.message}`, err);
      thread.broken ??= broken;
      for (const waiter of this.waiting.values()) waiter.reject(broken);
      this.waiting.clear();
    };
    thread.worker.on("error", fail);
    thread.worker.on("exit", (code) => code !== 0 && fail(new Error(`it exited with ${code}`)));
    this.threads.push(thread);
  }
}
