import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { WatchUnsupportedError } from "../core/log-remote.js";

/** A note of WatchMany (remotelog.v1.NameWatchService), as Remote.watchNames hands it out. */
export interface NameNote {
  name: string;
  version: bigint;
  letGo: boolean;
  /**
   * The NS watches every name of the stream from here on (WatchManyRequest.confirm): heads read after
   * this note miss no update. name is empty. It comes once, first; an NS that predates it never sends it.
   */
  watching: boolean;
}

/** Opens a WatchMany stream over names, until signal aborts (Remote.watchNames). */
export type OpenNameNotes = (names: string[], signal: AbortSignal) => AsyncIterable<NameNote>;

/** One name's place on a SharedNameWatch: woken by each note of the name. */
export interface NameWaiter {
  /**
   * Resolves once a note of the name came since the last call (at once if one did), or the stream was
   * opened again (a note may have come in between); returns when signal aborts. Throws what ended the
   * stream, or WatchUnsupportedError when the NS let the name go.
   */
  wait(signal: AbortSignal): Promise<void>;
  leave(): void;
}

class Waiter implements NameWaiter {
  private woken = false;
  private failure?: unknown;
  private resume?: () => void;

  constructor(private readonly leaving: (waiter: Waiter) => void) {}

  wake(): void {
    this.woken = true;
    this.resume?.();
  }

  fail(error: unknown): void {
    this.failure ??= error;
    this.resume?.();
  }

  async wait(signal: AbortSignal): Promise<void> {
    if (!this.woken && this.failure === undefined && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.resume = undefined;
          resolve();
        };
        this.resume = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    if (this.failure !== undefined && !signal.aborted) throw this.failure;
    this.woken = false;
  }

  leave(): void {
    this.leaving(this);
  }
}

/**
 * The watches of many names on one WatchMany stream, for a remote that can hold few streams open: a
 * page over http://, where the browser gives a host six connections and each Watch holds one. The
 * stream is opened again over the new set of names whenever a name joins or leaves (once for all the
 * changes of one turn), and every waiter is woken once the NS says the new stream watches (or, from
 * an NS that cannot say, when it is asked for), to read its head again: a note sent while no stream
 * was open is not lost, only read by a Fetch.
 */
export class SharedNameWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private stream?: AbortController;
  private reopening = false;
  /** The NS says when a stream watches (NameNote.watching): waiters are woken then, not when it is asked for. */
  private confirms = false;
  /** A stream was open before: notes may have come while none was. */
  private reopened = false;

  constructor(
    private readonly open: OpenNameNotes,
    private readonly nsUrl: string,
  ) {}

  join(name: string): NameWaiter {
    const waiter = new Waiter((leaving) => {
      const set = this.waiters.get(name);
      if (!set?.delete(leaving)) return;
      if (set.size === 0) {
        this.waiters.delete(name);
        this.reopen();
      }
    });
    const set = this.waiters.get(name);
    if (set) set.add(waiter);
    else {
      this.waiters.set(name, new Set([waiter]));
      this.reopen();
    }
    return waiter;
  }

  private reopen(): void {
    if (this.reopening) return;
    this.reopening = true;
    queueMicrotask(() => {
      this.reopening = false;
      this.stream?.abort();
      this.stream = undefined;
      const names = [...this.waiters.keys()];
      if (names.length === 0) return;
      const stream = new AbortController();
      this.stream = stream;
      void this.read(names, stream);
    });
  }

  private async read(names: string[], stream: AbortController): Promise<void> {
    let ended: unknown;
    try {
      const notes = this.open(names, stream.signal);
      const wakeAll = () => names.forEach((name) => this.waiters.get(name)?.forEach((waiter) => waiter.wake()));
      // A head read before the NS watches may miss an update made meanwhile, which no note will tell of;
      // from an NS that cannot say when it watches, a stream's heads are read again as it is asked for.
      if (this.reopened && !this.confirms) wakeAll();
      this.reopened = true;
      for await (const note of notes) {
        if (note.watching) {
          this.confirms = true;
          wakeAll();
          continue;
        }
        for (const waiter of this.waiters.get(note.name) ?? []) {
          if (note.letGo) waiter.fail(new WatchUnsupportedError(this.nsUrl, `the NS let go of the watch of ${JSON.stringify(note.name)} to make room for other clients`));
          else waiter.wake();
        }
      }
      ended = new RemoteLogError(ErrorCodes.UNAVAILABLE, `NS ${this.nsUrl} ended its WatchMany stream`);
    } catch (err) {
      ended = err;
    }
    if (stream.signal.aborted || this.stream !== stream) return;
    // Each waiter's watch ends with it, and its follower opens it again after a pause (HeadWatch).
    this.stream = undefined;
    for (const set of this.waiters.values()) for (const waiter of set) waiter.fail(ended);
  }
}
