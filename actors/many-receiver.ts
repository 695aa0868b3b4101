import { WriteThroughCheckpoints, type CheckpointStore } from "../core/checkpoint-store.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { Receiver, type Delivery, type ReceiverOptions } from "./receiver.js";
import { POLL_MS, PUSHED_POLL_MAX_MS, PUSHED_POLL_MS, refusedWatchDelayMs } from "./head-watch.js";
import { WatchUnsupportedError, backoffDelayMs, fromConnectError, sleep, type Remote } from "./remote.js";

/**
 * Takes a batch of one name's log, oldest first; that name's checkpoint moves past the batch once this
 * resolves. Batches of different names may be delivered at the same time; batches of one name never are.
 * A rejection stops the whole run (the output is gone for every name), and run() rejects with it.
 */
export type ManyDeliver = (name: string, batch: Delivery[]) => Promise<void>;

export interface ManyReceiverOptions {
  /** The names to read; each at most once (INVALID_ARGUMENT otherwise). */
  names: readonly string[];
  /** With watchNames, a following run is woken by the NS's notes instead of waiting for each poll. */
  remote: ReceiverOptions["remote"] & Partial<Pick<Remote, "watchNames">>;
  /** One store for every name: it keeps a checkpoint per name, and together they are the frontier. */
  checkpoints: CheckpointStore;
  /** Names synced at once; default 16. */
  concurrency?: number;
  /** Messages per delivered batch and per checkpoint; default 1024. */
  batchSize?: number;
  /** Messages one name's sync fetches during its walk; default 4096. */
  prefetchPairs?: number;
  /** Fetch calls in flight per name; default 2. */
  fetchConcurrency?: number;
  maxPages?: number;
}

export interface ManyReceiverEvents {
  /**
   * A sync of a name failed. retry.inMs says when the name is tried again, and is absent when it is
   * not (a run without follow gave up on it). retry.repeated: the name's previous failure had the same
   * message, so a caller can say each cause once.
   */
  failed?(name: string, error: RemoteLogError, retry: { inMs?: number; attempt: number; repeated: boolean }): void;
  /** A name synced again after failing. */
  recovered?(name: string, failures: number): void;
  /** With follow: the name has no remote log yet. Said once, until it has one. */
  missing?(name: string): void;
  /**
   * With follow: the NS refused a stream watching names (TOO_LARGE: one of its limits), so
   * they are only polled until a later try is taken. Said once a stream.
   */
  watchRefused?(names: number, error: RemoteLogError): void;
  /**
   * With follow: the NS stopped watching name on its stream, to make room for another client
   * address's watches, so it is polled until a stream watching it again is granted. Said for the
   * first name let go on each stream (more may follow).
   */
  watchLetGo?(name: string): void;
}

export interface ManyRunOptions {
  /** Keep polling every name; otherwise sync each once. */
  follow?: boolean;
  /**
   * With follow, the time between the end of a name's sync and the start of its next poll; default
   * PUSHED_POLL_MS (30 s) while WatchMany notes wake names, POLL_MS (500 ms) when the NS cannot push.
   */
  intervalMs?: number;
  /**
   * While WatchMany notes wake names, the longest time between two polls of a name. Each poll of a name
   * that finds nothing the notes had not brought doubles its interval, from intervalMs up to this; one
   * that finds what no note announced sets it back to intervalMs. Default PUSHED_POLL_MAX_MS (8 min),
   * or intervalMs itself when intervalMs is given (a fixed interval). Without pushes the interval is fixed.
   */
  maxIntervalMs?: number;
  /** Stops the run: no new sync starts, the ones in flight finish, then run() resolves. */
  signal?: AbortSignal;
  /**
   * Without follow, how long after the start a name whose service is unreachable is still retried;
   * default 60 s, 0 forever. With follow, every failing name is retried for as long as the run lasts.
   */
  retryForMs?: number;
  events?: ManyReceiverEvents;
}

export interface ManyRunResult {
  /** Names whose last sync failed, with why. Without follow, these are the names not read. */
  failed: { name: string; error: RemoteLogError }[];
  /** Without follow: names never synced because the run was stopped first. */
  unread: string[];
  /** Messages delivered by this run, over all names. */
  delivered: number;
}

interface NameState {
  receiver: Receiver;
  failures: number;
  lastError?: string;
  missing: boolean;
  done: boolean;
  /** Waiting for its next poll or retry. */
  timer?: NodeJS.Timeout;
  syncing: boolean;
  /** Updated while syncing: synced again as soon as this sync ends. */
  dirty: boolean;
  /** The sync in flight, or the next one, was started by the name's poll timer (not a note or a retry). */
  polled: boolean;
  /** Polls in a row, behind pushes, that found nothing new: each doubles the time to the next. */
  quietPolls: number;
  /** Its watch was refused (one of the NS's limits): polled at the first interval, not doubled, until a stream is granted. */
  unpushed: boolean;
}

/** Names per WatchMany stream: one stream's request stays well under a megabyte even with long names. */
const WATCH_NAMES_PER_STREAM = 1000;

/** A failure of the caller's deliver, kept apart from the failures of a name's log. */
class DeliveryFailure extends Error {}

/**
 * A checkpoint the store could not save (a full disk, a read-only one): not one name's fault, and
 * retried as one it re-delivered the name's last batches at every retry, for ever. The run stops, as
 * it does when delivery fails.
 */
class CheckpointFailure extends Error {}

/**
 * One receiver following many names: a Receiver per name, all sharing one Remote (one HTTP/2
 * connection per service) and one checkpoint store. At most `concurrency` names sync at once, each
 * holding at most its own prefetch, so memory is bounded by the limit, not by the number of names.
 * Each log is delivered in order (a name is never synced twice at once); logs interleave freely.
 * A name that fails is retried with backoff without holding back the others.
 */
export class ManyReceiver {
  readonly names: readonly string[];
  readonly concurrency: number;
  private readonly receivers: Receiver[];
  private readonly remote: ManyReceiverOptions["remote"];

  constructor(options: ManyReceiverOptions) {
    this.remote = options.remote;
    const seen = new Set<string>();
    for (const name of options.names) {
      if (seen.has(name)) throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} is given twice; each name is read once`);
      seen.add(name);
    }
    this.names = [...options.names];
    this.concurrency = options.concurrency ?? 16;
    const store = new WriteThroughCheckpoints(options.checkpoints);
    const checkpoints: CheckpointStore = {
      load: (name) => store.load(name),
      save: (name, checkpoint) =>
        store.save(name, checkpoint).catch((err: unknown) => {
          throw new CheckpointFailure("checkpoint not saved", { cause: err });
        }),
      close: () => store.close(),
    };
    // Many names in flight each hold their prefetch at once, so each gets far less than a lone
    // receiver's 16,384: the sum, not one log, is what has to fit in memory.
    this.receivers = this.names.map(
      (name) =>
        new Receiver({
          name,
          remote: options.remote,
          checkpoints,
          batchSize: options.batchSize,
          prefetchPairs: options.prefetchPairs ?? 4096,
          concurrency: options.fetchConcurrency ?? 2,
          maxPages: options.maxPages,
        }),
    );
  }

  /**
   * Keeps WatchMany streams open over all names (WATCH_NAMES_PER_STREAM a stream), reopening a broken
   * one with backoff, until signal aborts or the NS turns out not to push. Polling goes on meanwhile,
   * so a broken stream costs latency, never messages.
   */
  private async watch(
    watchNames: NonNullable<ManyReceiverOptions["remote"]["watchNames"]>,
    wakeAll: (names: readonly string[]) => void,
    wake: (name: string) => void,
    pushed: (names: readonly string[], granted: boolean) => void,
    unsupported: () => void,
    events: ManyReceiverEvents,
    signal: AbortSignal,
  ): Promise<void> {
    const chunks: string[][] = [];
    for (let i = 0; i < this.names.length; i += WATCH_NAMES_PER_STREAM) chunks.push(this.names.slice(i, i + WATCH_NAMES_PER_STREAM));
    await Promise.all(
      chunks.map(async (names) => {
        // Names the NS let go of on the open stream (to make room for another address's watches):
        // polled, as refused names are, until a stream that watches them again is granted.
        const letGo = new Set<string>();
        for (let attempt = 1, reopened = false, refused = false, refusalSaid = false, unpushed = false; !signal.aborted; reopened = true) {
          try {
            const notes = watchNames(names, signal)[Symbol.asyncIterator]();
            // The first next() sends the request. Notes start from when a stream opens, so after a
            // break the names are synced once the new stream is asked for: with a long poll, an update
            // made while the stream was down would otherwise wait for it, and an NS gone away is said
            // by each name. Not after a refusal, which no stream came before: every retry then synced
            // every name (a Fetch each) every 5 s, for ever where the NS refuses the watch by its
            // per-client limit. They are synced again once the stream watches (its watching note).
            const first = notes.next();
            if (reopened && !refused) wakeAll(names);
            refused = false;
            for (let note = await first, granted = false; !note.done; note = await notes.next()) {
              attempt = 1;
              // A stream is granted: it watches every one of names, those refused or let go before too.
              if (!granted) {
                granted = true;
                if (unpushed || letGo.size > 0) pushed(names, true);
                unpushed = false;
                letGo.clear();
              }
              if (note.value.watching) {
                // A sync that read its head before this (the first ones too) may have missed an update
                // made meanwhile, which no note will tell of: each name is synced again (one in flight
                // once it ends), while names not yet synced cost nothing.
                wakeAll(names);
              } else if (note.value.letGo) {
                if (letGo.size === 0) events.watchLetGo?.(note.value.name);
                letGo.add(note.value.name);
                pushed([note.value.name], false);
              } else wake(note.value.name);
            }
          } catch (err) {
            if (err instanceof WatchUnsupportedError) return unsupported();
            // ResourceExhausted on the wire: one of the NS's limits (max-watches-per-address, say).
            refused = isRemoteLogError(err, ErrorCodes.TOO_LARGE);
            if (refused && !refusalSaid) events.watchRefused?.(names.length, err as RemoteLogError);
            refusalSaid ||= refused;
            if (refused && !unpushed) {
              unpushed = true;
              pushed(names, false);
            }
          }
          await sleep(refused ? refusedWatchDelayMs(attempt++) : backoffDelayMs(attempt++), signal);
        }
      }),
    );
  }

  /** Syncs every name once, or keeps following them all; one run at a time. See ManyRunOptions. */
  run(deliver: ManyDeliver, options: ManyRunOptions = {}): Promise<ManyRunResult> {
    const follow = options.follow ?? false;
    // Pushes make a long poll safe, and one that keeps finding nothing longer still: 1,000 idle names
    // then cost almost nothing (bench/many-names.bench.ts), while a poll that finds what no note said
    // (notes lost on the way) brings the name back to the first interval.
    let pushes = follow && this.remote.watchNames !== undefined;
    const firstPollMs = () => options.intervalMs ?? (pushes ? PUSHED_POLL_MS : POLL_MS);
    const maxPollMs = options.maxIntervalMs ?? options.intervalMs ?? PUSHED_POLL_MAX_MS;
    // A name whose watch was refused learns of news only by polling: no longer than the first interval.
    const pollMs = (state: NameState) => (pushes && !state.unpushed ? pollDelayMs(firstPollMs(), maxPollMs, state.quietPolls) : firstPollMs());
    const retryForMs = options.retryForMs ?? 60_000;
    const events = options.events ?? {};
    const signal = options.signal;
    const started = Date.now();
    const states: NameState[] = this.receivers.map((receiver) => ({ receiver, failures: 0, missing: false, done: false, syncing: false, dirty: false, polled: false, quietPolls: 0, unpushed: false }));
    const byName = new Map(states.map((state) => [state.receiver.name, state]));
    // Names due for a sync, first come first served; a name waiting for its next poll or retry sits
    // in a timer instead, so a name is never queued twice and never synced twice at once.
    const ready: NameState[] = [...states];
    const timers = new Set<NodeJS.Timeout>();
    const failed = new Map<string, RemoteLogError>();
    let inFlight = 0;
    let stopped = false;
    let fatal: { error: unknown } | undefined;
    let delivered = 0;

    return new Promise<ManyRunResult>((resolve, reject) => {
      const watching = new AbortController();
      const settle = () => {
        if (inFlight > 0 || (!stopped && (ready.length > 0 || timers.size > 0))) return;
        signal?.removeEventListener("abort", stop);
        if (fatal) return reject(fatal.error);
        resolve({
          failed: [...failed].map(([name, error]) => ({ name, error })),
          unread: follow ? [] : states.filter((s) => !s.done && !failed.has(s.receiver.name)).map((s) => s.receiver.name),
          delivered,
        });
      };
      function stop() {
        stopped = true;
        watching.abort();
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        ready.length = 0;
        settle();
      }
      const later = (state: NameState, delayMs: number, poll: boolean) => {
        // A sync that ends after the stop must not leave a timer behind to keep the process up.
        if (stopped) return;
        const timer = setTimeout(() => {
          timers.delete(timer);
          state.timer = undefined;
          state.polled = poll;
          ready.push(state);
          pump();
        }, delayMs);
        timers.add(timer);
        state.timer = timer;
      };
      // A note from the NS: the name is synced now rather than at its next poll.
      const wake = (state: NameState) => {
        if (stopped) return;
        if (state.syncing) state.dirty = true;
        else if (state.timer) {
          clearTimeout(state.timer);
          timers.delete(state.timer);
          state.timer = undefined;
          state.polled = false;
          ready.push(state);
          pump();
        }
      };
      const giveUp = (state: NameState, error: RemoteLogError) => {
        failed.set(state.receiver.name, error);
        state.done = true;
      };

      const syncOne = async (state: NameState) => {
        const name = state.receiver.name;
        state.syncing = true;
        state.dirty = false;
        try {
          const result = await state.receiver.sync(async (batch) => {
            if (fatal) throw new DeliveryFailure("delivery stopped");
            try {
              await deliver(name, batch);
            } catch (err) {
              fatal ??= { error: err };
              throw new DeliveryFailure("delivery failed", { cause: err });
            }
            delivered += batch.length;
          });
          // A name with no log yet does not "read again" once its server is back: it is still waited for.
          if (state.failures > 0 && result.found) events.recovered?.(name, state.failures);
          state.failures = 0;
          state.lastError = undefined;
          failed.delete(name);
          if (!result.found && !follow) {
            const error = RemoteLogError.notFound(`name ${JSON.stringify(name)} has no remote log yet`);
            giveUp(state, error);
            return events.failed?.(name, error, { attempt: 1, repeated: false });
          }
          if (!result.found && !state.missing) events.missing?.(name);
          state.missing = !result.found;
          if (follow) {
            if (pushes) state.quietPolls = quietPollsAfter(state.quietPolls, { polled: state.polled, delivered: result.delivered, notedDuring: state.dirty });
            later(state, state.dirty ? 0 : pollMs(state), !state.dirty);
          } else state.done = true;
        } catch (err) {
          if (err instanceof DeliveryFailure) return stop();
          if (err instanceof CheckpointFailure) {
            fatal ??= { error: err.cause };
            return stop();
          }
          const error = err instanceof RemoteLogError ? err : fromConnectError(err, `name ${JSON.stringify(name)}`);
          state.failures++;
          const repeated = state.lastError === error.message;
          state.lastError = error.message;
          const delayMs = backoffMs(error, state.failures, firstPollMs());
          const retry = follow || (error.code === ErrorCodes.UNAVAILABLE && (retryForMs === 0 || Date.now() - started + delayMs <= retryForMs));
          failed.set(name, error);
          if (retry) later(state, delayMs, false);
          else giveUp(state, error);
          events.failed?.(name, error, { inMs: retry ? delayMs : undefined, attempt: state.failures, repeated });
        } finally {
          state.syncing = false;
        }
      };

      const pump = () => {
        while (!stopped && inFlight < this.concurrency && ready.length > 0) {
          const state = ready.shift()!;
          inFlight++;
          void syncOne(state).finally(() => {
            inFlight--;
            pump();
          });
        }
        settle();
      };

      if (signal?.aborted) return stop();
      signal?.addEventListener("abort", stop, { once: true });
      // Every name waiting for its poll is synced now: what notes it may have missed, it catches up on.
      const wakeAll = (names: readonly string[]) => names.forEach((name) => wake(byName.get(name)!));
      const unsupported = () => {
        pushes = false;
        wakeAll(this.names);
      };
      // Refused names wait no longer than the first interval for their next poll (their doubled wait
      // was up to 8 minutes); granted again, they go back to doubling from there.
      const pushed = (names: readonly string[], granted: boolean) => {
        for (const name of names) {
          const state = byName.get(name)!;
          state.unpushed = !granted;
          state.quietPolls = 0;
          if (!granted && state.timer) {
            clearTimeout(state.timer);
            timers.delete(state.timer);
            state.timer = undefined;
            later(state, firstPollMs(), true);
          }
        }
      };
      if (follow && this.remote.watchNames) void this.watch(this.remote.watchNames.bind(this.remote), wakeAll, (name) => {
        const state = byName.get(name);
        if (state) wake(state);
      }, pushed, unsupported, events, watching.signal);
      pump();
    });
  }
}

/**
 * A followed name's count of quiet polls after a sync. Only a sync its poll timer started counts: one
 * that found nothing adds one, one that found messages no note announced (notes lost on the way) starts
 * again from none. A note that came during the poll's sync announced the news, even if the poll got it
 * first. Syncs woken by notes or retries leave the count as it is.
 */
export function quietPollsAfter(quietPolls: number, sync: { polled: boolean; delivered: number; notedDuring: boolean }): number {
  if (!sync.polled) return quietPolls;
  if (sync.delivered > 0 && !sync.notedDuring) return 0;
  return Math.min(quietPolls + 1, 30); // 2 ** 30 intervals is past any cap
}

/** The wait for a poll after quietPolls polls in a row found nothing: doubling from firstMs, at most maxMs. */
export function pollDelayMs(firstMs: number, maxMs: number, quietPolls: number): number {
  return Math.max(firstMs, Math.min(firstMs * 2 ** quietPolls, maxMs));
}

/**
 * When to try a failed name again. An unreachable service comes back by itself and should be noticed
 * soon, so it is retried as withRetry does (100 ms doubling to 5 s); a bad head or a broken chain waits
 * for its writer or its NS to mend it, so it is polled ever less often, down to once a minute.
 */
function backoffMs(error: RemoteLogError, failures: number, intervalMs: number): number {
  const [first, cap] = error.code === ErrorCodes.UNAVAILABLE ? [100, 5_000] : [Math.max(intervalMs, 1_000), 60_000];
  return Math.round(backoffDelayMs(failures, first, cap));
}
