import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
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

/** One WatchMany stream of a SharedNameWatch, over the names it was opened for. */
interface NotesStream {
  names: ReadonlySet<string>;
  controller: AbortController;
}

/**
 * The watches of many names on one WatchMany stream, for a remote that can hold few streams open: a
 * page over http://, where the browser gives a host six connections and each Watch holds one. The
 * stream is opened again over the new set of names whenever a name joins or leaves (once for all the
 * changes of one turn). The stream before is kept until the NS says the new one watches (its first
 * note, watching): no update goes unnoted in between, and only the waiters of names it did not watch
 * are woken then, to read their heads again. From an NS that cannot say when it watches, the stream
 * before is closed at once and every waiter is woken as the new one is asked for: a note sent while
 * no stream was open is not lost, only read by a Fetch.
 */
export class SharedNameWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** The newest stream, watching or not yet. */
  private stream?: NotesStream;
  /** The newest stream the NS said watches, while it is open: it covers its names until the next one watches. */
  private watching?: NotesStream;
  private reopening = false;
  /** The next try after a refusal that the stream before may have caused (see read). */
  private retry?: ReturnType<typeof setTimeout>;
  /** Tries left for a stream refused for a limit while the NS may still count the stream before it. */
  private retries = 0;
  /** The stream before is kept until the new one watches; not once that took the NS past a watch limit. */
  private overlap = true;
  /** The NS says when a stream watches (NameNote.watching). */
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
      clearTimeout(this.retry);
      this.retry = undefined;
      // A stream not yet watching covers nothing: the new one takes its place.
      if (this.stream !== this.watching) this.stream?.controller.abort();
      this.stream = undefined;
      const names = new Set(this.waiters.keys());
      if (names.size === 0 || !this.confirms || !this.overlap) {
        this.watching?.controller.abort();
        this.watching = undefined;
      }
      if (names.size === 0) return;
      const stream: NotesStream = { names, controller: new AbortController() };
      this.stream = stream;
      void this.read(stream);
    });
  }

  private wake(names: Iterable<string>): void {
    for (const name of names) this.waiters.get(name)?.forEach((waiter) => waiter.wake());
  }

  private async read(stream: NotesStream): Promise<void> {
    const { names, controller } = stream;
    let ended: unknown;
    try {
      const notes = this.open([...names], controller.signal);
      // A head read before the NS watches may miss an update made meanwhile, which no note will tell of;
      // from an NS that cannot say when it watches, a stream's heads are read again as it is asked for.
      if (this.reopened && !this.confirms) this.wake(names);
      this.reopened = true;
      for await (const note of notes) {
        if (note.watching) {
          this.confirms = true;
          this.retries = 0;
          const covered = this.watching?.names;
          if (this.watching !== stream) this.watching?.controller.abort();
          this.watching = stream;
          this.wake(covered ? [...names].filter((name) => !covered.has(name)) : names);
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
    if (controller.signal.aborted) return;
    const before = this.watching !== stream ? this.watching : undefined;
    if (this.stream === stream && isRemoteLogError(ended, ErrorCodes.TOO_LARGE) && (before !== undefined || this.retries > 0)) {
      // Refused for a watch limit that the stream before, still held, counts towards: that one closes,
      // and the names are asked for again without it (from now on), each read once the NS watches.
      // The NS lets go of a closed stream's watches a moment after: asked at once, it may still count
      // them, so the next tries wait 50, 100 and 200 ms before the refusal is the waiters'.
      if (before) {
        this.overlap = false;
        this.retries = 3;
        before.controller.abort();
        this.watching = undefined;
      }
      this.stream = undefined;
      this.retry = setTimeout(() => this.reopen(), 50 << (3 - this.retries--));
      return;
    }
    if (this.stream !== stream) {
      // The stream before, ended while the newest is not yet watching: that one's names are all read again once it is.
      if (this.watching === stream) this.watching = undefined;
      return;
    }
    // Each waiter's watch ends with it, and its follower opens it again after a pause (HeadWatch).
    this.stream = undefined;
    this.watching?.controller.abort();
    this.watching = undefined;
    for (const set of this.waiters.values()) for (const waiter of set) waiter.fail(ended);
  }
}
