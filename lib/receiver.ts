import { HeadWatch } from "../actors/head-watch.js";
import { Receiver as LogReceiver, checkReceiverOptions, type Deliver, type Delivery, type ReceiverOptions as LogReceiverOptions, type SyncResult } from "../actors/receiver.js";
import { withRetry } from "../actors/remote.js";
import { WriteThroughCheckpoints, type CheckpointStore } from "../core/checkpoint-store.js";
import { RemoteLogError } from "../core/errors.js";
import { checkPath, checkRemote, checkSignal, checkWholeNumber } from "../core/options.js";
import type { LogReadRemote, LogRemote, NameHead } from "../core/log-remote.js";
import { canonicalKeyName, checkFreeFormName, checkVouched } from "../core/names.js";
import { openCheckpoints } from "#directories";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";

export type { Deliver, Delivery, SyncResult } from "../actors/receiver.js";

/** The remote a receiver reads: fetching names and blocks, and, where the NS can push, watching. */
export type ReceiverRemote = LogReadRemote & Partial<Pick<LogRemote, "watchName">>;

/** The constructor's options: the actor's (actors/receiver.ts), with checkpoints kept in memory unless given. */
export interface ReceiverOptions extends Omit<LogReceiverOptions, "checkpoints" | "remote" | "verifyPool"> {
  remote: ReceiverRemote;
  /** Where the receiver remembers how far it got, per name. Default: in memory (a new receiver starts at seq 0). */
  checkpoints?: CheckpointStore;
}

/** How Receiver.open finds its name, remote and checkpoints. */
export interface OpenReceiverOptions {
  /** Where the log is read from (openRemote, openKubo). Not closed by Receiver.close. */
  remote: ReceiverRemote;
  /** The log's name: a key name (k51…), whose every head must carry a valid record signed by the key. */
  name: string;
  /** Also read a free-form name, whose heads nobody signs. Default false: a free-form name is refused. */
  unsigned?: boolean;
  /** A directory of checkpoints (one file per name), so that a restart goes on where the last run stopped. */
  state?: string;
  /** Any other checkpoint store (core/checkpoint-store.ts). Default, without state: in memory. */
  checkpoints?: CheckpointStore;
  /** Messages per delivered batch, and so per checkpoint. Default 1024. */
  batchSize?: number;
  /** The longest chain read, in pages; a longer one is DATA_LOSS. Default unbounded. */
  maxPages?: number;
  /** Start at this seq instead of where the checkpoint stands (the next sync only). Needs a log with seqids. */
  fromSeq?: number;
}

/** What one sync() delivered. */
export interface ReceiveResult extends SyncResult {
  /** The deliveries, oldest first, when sync was called without a callback; empty otherwise. */
  messages: Delivery[];
}

/** The shortest FollowOptions.intervalMs taken. */
export const MIN_INTERVAL_MS = 100;

/** How follow() waits and retries. */
export interface FollowOptions {
  /** Ends the iteration (it returns; nothing is thrown), as Receiver.close() does. */
  signal?: AbortSignal;
  /**
   * The longest wait between two syncs when the NS pushes nothing new, in ms. Default: 30 s while the
   * NS pushes heads (Watch), 500 ms when it cannot (the pushes carry the news; the poll only backs them
   * up, so that a thousand idle followers cost almost nothing). At least MIN_INTERVAL_MS (100 ms).
   */
  intervalMs?: number;
  /** How long an unreachable service is retried before follow() throws UNAVAILABLE, in ms, a whole number. Default 0: forever. */
  retryForMs?: number;
}

/**
 * Bob's side: reads a name's remote log, checking every head record, page and message, and delivers
 * the messages he does not have yet, oldest first, each with its seq and id.
 *
 * `const receiver = await Receiver.open({ remote, name, state: "./bob" })`, then `await receiver.sync()`
 * once, or `for await (const delivery of receiver.follow({ signal }))` to keep reading as the log grows.
 * Built on the receiver actor (actors/receiver.ts) and the one log reader (core/log-reader.ts).
 */
export class Receiver extends LogReceiver {
  private readonly remote: ReceiverRemote;
  /** What open() created, and close() releases. */
  private readonly owned: { close(): Promise<void> }[] = [];
  /** The sync() or follow() that holds the receiver now, refusing any other (see claim). */
  private running?: "sync()" | "follow()";
  private closed = false;
  /**
   * Aborted by close(): the one signal that stops the running sync() or follow(), as follow's own
   * signal does (its calls cancelled, its waits ended, no batch delivered after it).
   */
  private readonly closing = new AbortController();
  /** Stops the running sync() or follow() and resolves once nothing of it touches the checkpoints. */
  private halt?: () => Promise<void>;
  /** A sync() callback is running: close() from it cannot wait for the sync, which waits for it. */
  private inCallback = false;
  private released?: Promise<void>;

  /** For callers that bring their own checkpoint store; most want Receiver.open. */
  constructor(options: ReceiverOptions) {
    super({ ...options, checkpoints: options.checkpoints ?? new MemoryCheckpointStore() });
    this.remote = options.remote;
  }

  /**
   * `const receiver = await Receiver.open({ remote, name, state?, unsigned? })`
   *
   * Throws INVALID_ARGUMENT for a free-form name without unsigned, one that breaks the rule every NS
   * and client keep (core/names.ts freeFormNameProblem: a path separator, over 256 bytes, an invisible
   * character…; the message names the rule), a key name spelled another way
   * (the canonical k51… spelling is the name), both state and checkpoints, an option out of its range
   * (batchSize and maxPages take a whole number from 1, fromSeq from 0), a state that is not a path (an
   * empty string, say), or a state path where a file is; PERMISSION_DENIED when the state directory may not be written; INTERNAL on another I/O failure.
   * Safe to repeat: opening the same state again (after close) goes on from the same checkpoints.
   */
  static async open(options: OpenReceiverOptions): Promise<Receiver> {
    // Checked before the state directory is made, so that a refused open leaves nothing behind.
    checkRemote(options.remote);
    checkReceiverOptions(options);
    checkPath("state", options.state, "a directory");
    if (options.state !== undefined && options.checkpoints !== undefined) {
      throw RemoteLogError.invalidArgument("give state (a directory) or checkpoints (a store), not both: one of them would be ignored");
    }
    const canonical = canonicalKeyName(options.name);
    if (canonical) throw RemoteLogError.invalidArgument(`${options.name} spells key name ${canonical} another way; read ${canonical}`);
    // No NS stores such a name, so a follower would wait for it for ever.
    checkFreeFormName(options.name);
    checkVouched([options.name], options.unsigned, "pass unsigned: true to read it anyway");
    const file = options.state === undefined ? undefined : await openCheckpoints(options.state);
    // A follower loads its checkpoint on every sync; reading the file each time was on the path of every message.
    const checkpoints = file ? new WriteThroughCheckpoints(file) : options.checkpoints;
    let receiver: Receiver;
    try {
      receiver = new Receiver({ ...options, checkpoints, waitForSeq: false });
    } catch (err) {
      // The state directory is held from its open (its LOCK): let it go.
      await file?.close();
      throw err;
    }
    if (file) receiver.owned.push(checkpoints!);
    return receiver;
  }

  /**
   * `const { messages, total } = await receiver.sync()`, or `await receiver.sync(async (batch) => …)`
   *
   * Delivers what the name's head holds beyond the checkpoint, oldest first. With a callback, each
   * batch goes to it and the checkpoint moves past the batch only once it resolves (it is saved while
   * the next batch is delivered): a crash delivers at most the last two batches again (same seq and
   * id), never skips one. Without a callback, the deliveries come back in `messages` and the
   * checkpoint has moved past them already. `found` is false when the name has no remote log yet. A
   * tombstone (`redacted: true`) says a message was removed by its author.
   *
   * Throws PERMISSION_DENIED for a head whose signed record does not verify; CONFLICT (details.name)
   * for a head older than one accepted before (a rollback: the NS serves an older record, as a server
   * restored from an old backup does, until the author publishes past it), and when the log was
   * replaced (it no longer holds the message delivered last); DATA_LOSS for a page or message that
   * does not match its hash, a chain that is malformed, or a damaged checkpoint (details.file);
   * UNAVAILABLE when a service cannot be reached (nothing past the last delivered
   * batch is lost; sync again); whatever the callback throws, and then the checkpoint stays before
   * its batch. Idempotent: a second sync with nothing new delivers nothing.
   *
   * One at a time: a sync() or follow() called while another sync() or follow() of this receiver runs
   * throws ABORTED at once and delivers nothing (wait for the first, or read through one follow());
   * after close(), CONFLICT. A sync that close() stops (see close) throws the same CONFLICT, and
   * delivers no batch after close() was called.
   */
  override async sync(deliver?: Deliver, pushed?: NameHead): Promise<ReceiveResult> {
    this.claim("sync()");
    const signal = this.closing.signal;
    const guarded: Deliver | undefined =
      deliver &&
      (async (batch) => {
        if (signal.aborted) throw this.closedError("sync()");
        this.inCallback = true;
        try {
          await deliver(batch);
        } finally {
          this.inCallback = false;
        }
      });
    const syncing = this.deliverNew(guarded, pushed, signal);
    // Called from the callback, close() cannot wait for this sync (it waits for the callback); the
    // sync then closes the checkpoints itself as it ends, below.
    this.halt = () => (this.inCallback ? Promise.resolve() : syncing.then(() => undefined, () => undefined));
    try {
      return await syncing;
    } catch (err) {
      throw signal.aborted ? this.closedError("sync()", err) : err;
    } finally {
      this.running = undefined;
      this.halt = undefined;
      if (this.closed) await this.release();
    }
  }

  /** CONFLICT (details.name): the receiver is closed, what can no longer run. */
  private closedError(what: string, cause?: unknown): RemoteLogError {
    return new RemoteLogError("CONFLICT", `the receiver of name ${JSON.stringify(this.name)} is closed; open it again to ${what}`, { details: { name: this.name }, cause });
  }

  /**
   * Takes the receiver for one sync() or follow(). Two at once each started from the same checkpoint
   * and delivered every message twice. The second is refused rather than queued: a sync() called from
   * a follow() loop body, or from a sync() callback, would wait for a delivery that waits for it, a
   * silent hang where this is an error at once. ABORTED, as for a lost race: the first call finishes on
   * its own, and calling again after it is right.
   */
  private claim(what: "sync()" | "follow()"): void {
    if (this.closed) throw this.closedError(what);
    if (this.running) {
      throw RemoteLogError.aborted(`a ${this.running} of the receiver of name ${JSON.stringify(this.name)} is running; ${what} it once that one has returned`, { name: this.name });
    }
    this.running = what;
  }

  private async deliverNew(deliver: Deliver | undefined, pushed: NameHead | undefined, signal?: AbortSignal): Promise<ReceiveResult> {
    const messages: Delivery[] = [];
    const result = await super.sync(
      deliver ??
        (async (batch) => {
          if (signal?.aborted) throw this.closedError("sync()");
          for (const delivery of batch) messages.push(delivery);
        }),
      pushed,
      signal,
    );
    return { ...result, messages };
  }

  /**
   * `for await (const delivery of receiver.follow({ signal, intervalMs?, retryForMs? }))`
   *
   * Every message from the checkpoint on, oldest first, then each new one as it is published: woken
   * at once by a head the NS pushes (Watch), and syncing at least every intervalMs (a Kubo node, or a
   * stream that broke, costs latency, not messages). A name with no remote log yet is waited for. The
   * checkpoint moves past a batch once the loop asks for the message after its last one, so a message
   * the loop body was handling when the process died is delivered again; ending the loop early
   * (break, or signal) leaves the checkpoint before the unfinished batch.
   *
   * Ends when signal aborts, or when the receiver is closed (close() then waits for the sync under
   * way, and nothing more is handed out: the loop returns at its next iteration). Throws as sync() does, except that UNAVAILABLE is retried with backoff
   * for retryForMs (default forever). Holds the receiver from its first iteration until it ends: a
   * sync() or follow() of the same receiver meanwhile throws ABORTED.
   */
  async *follow(options: FollowOptions = {}): AsyncGenerator<Delivery, void, undefined> {
    this.claim("follow()");
    try {
      yield* this.followClaimed(options);
    } finally {
      this.running = undefined;
    }
  }

  private async *followClaimed(options: FollowOptions): AsyncGenerator<Delivery, void, undefined> {
    // Below this, a follower with nothing new was a busy loop of syncs (150 fetches a second at 0).
    checkWholeNumber("intervalMs", options.intervalMs, MIN_INTERVAL_MS);
    checkWholeNumber("retryForMs", options.retryForMs, 0);
    checkSignal("signal", options.signal);
    const stop = new AbortController();
    const abort = () => stop.abort();
    // The caller's signal and close() stop the loop alike.
    for (const signal of [options.signal, this.closing.signal]) {
      signal?.addEventListener("abort", abort, { once: true });
      if (signal?.aborted) stop.abort();
    }
    const watch = new HeadWatch(this.remote, this.name, stop.signal);
    let handoff: Handoff<Delivery[]> | undefined;
    let syncing: Promise<unknown> | undefined;
    let pushed: NameHead | undefined;
    // close() may come while the loop body holds a delivery (from the body, even): the generator is
    // paused at its yield, so close() does not wait for it, only for the sync under it, whose batch
    // it refuses.
    this.halt = async () => {
      handoff?.close(new Error("the receiver was closed before the end of the batch"));
      await syncing?.catch(() => {});
    };
    try {
      while (!stop.signal.aborted) {
        const batches = (handoff = new Handoff<Delivery[]>(stop.signal));
        syncing = withRetry(() => this.deliverNew((batch) => batches.put(batch), pushed, stop.signal), { timeoutMs: options.retryForMs ?? 0, signal: stop.signal }).finally(() => batches.end());
        syncing.catch(() => {}); // awaited below; this only keeps a failure meanwhile from being unhandled
        for (let taken = await batches.take(); taken; taken = await batches.take()) {
          for (const delivery of taken.value) {
            // Asked to stop part-way: the rest of the batch is not handed out, and it stays undelivered.
            if (stop.signal.aborted) return;
            yield delivery;
          }
          taken.ack();
        }
        if (stop.signal.aborted) break;
        await syncing;
        pushed = await watch.next(options.intervalMs);
      }
    } finally {
      stop.abort();
      // A batch the loop did not finish is refused, and so is any the sync offers after this, so that
      // the checkpoint stays before them.
      handoff?.close(new Error("the follower stopped before the end of the batch"));
      await syncing?.catch(() => {});
      watch.close();
      options.signal?.removeEventListener("abort", abort);
      this.closing.signal.removeEventListener("abort", abort);
      this.halt = undefined;
    }
  }

  /**
   * Stops a running sync() or follow() and waits until it no longer delivers or saves, then closes
   * the checkpoint store that Receiver.open opened (not the remote). Nothing is delivered once close()
   * is called: the running sync() throws CONFLICT (details.name), as any sync() or follow() called
   * later does; a running follow() returns at its next iteration (as when its signal aborts), so a
   * loop with no signal ends and lets the process exit. As when a follow's signal aborts, the
   * checkpoint may stay before the batch being delivered, which the receiver opened again delivers
   * again; none is skipped. Called while a sync() callback runs (from the callback, say), close()
   * returns without waiting for that callback, which the sync waits for; the sync delivers nothing
   * more and closes the store as it ends. Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    if (this.inCallback) return;
    await this.halt?.();
    await this.release();
  }

  /** Closes what open() created, once; every caller waits for the same closing. */
  private release(): Promise<void> {
    this.released ??= (async () => {
      for (const resource of this.owned.splice(0)) await resource.close();
    })();
    return this.released;
  }
}

/**
 * Hands one value at a time from a producer (the receiver's deliver callback) to a consumer (the
 * follow loop), and tells the producer when the consumer is done with it.
 */
class Handoff<T> {
  private item?: { value: T; ack: () => void; fail: (err: Error) => void };
  private ended = false;
  private closed?: Error;
  private wake?: () => void;

  private readonly onAbort = () => this.wake?.();

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  put(value: T): Promise<void> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((ack, fail) => {
      this.item = { value, ack, fail };
      this.wake?.();
    });
  }

  /** The next value, or undefined once the producer ended or the signal aborted. */
  async take(): Promise<{ value: T; ack: () => void } | undefined> {
    while (!this.item && !this.ended && !this.signal.aborted) await new Promise<void>((resolve) => (this.wake = resolve));
    this.wake = undefined;
    if (this.signal.aborted) return undefined;
    const item = this.item;
    if (!item) return undefined;
    return {
      value: item.value,
      ack: () => {
        this.item = undefined;
        item.ack();
      },
    };
  }

  /** The producer is done; a follower makes one Handoff per sync, so its listener goes too. */
  end(): void {
    this.ended = true;
    this.signal.removeEventListener("abort", this.onAbort);
    this.wake?.();
  }

  /** The consumer is gone: the value it holds, and every later one, is refused with err. */
  close(err: Error): void {
    this.closed = err;
    const item = this.item;
    this.item = undefined;
    item?.fail(err);
  }
}
