import { HeadWatch } from "../actors/head-watch.js";
import { withRetry, type NameHead, type Remote } from "../actors/remote.js";
import { RemoteLogError } from "../core/errors.js";
import type { RetryOptions } from "../core/retry.js";
import { stoppedError, stoppingSignal, type Io } from "./command.js";

/** How long a service that has never answered is tried before giving up, unless --retry-for says otherwise. */
export const FIRST_CONTACT_MS = 3_000;
/** Without a terminal, a retry that goes on is said again at most this often. */
const STATUS_EVERY_MS = 5_000;

/**
 * The retry policy and status line of a verb that talks to the services (send, receive, mirror). A
 * service that never answered (a wrong port, say) is given up on after about 3 s; once it has answered,
 * an outage is retried for --retry-for (default 60 s, or forever when following). Either way an explicit
 * --retry-for wins. While retrying, one status line says why: updated in place on a terminal, and
 * written again every few seconds otherwise, so a log shows it without filling up.
 */
export class RetryStatus {
  private reached = false;
  private firstAttempt: number | undefined;
  private showing = false;
  private lastWritten = 0;
  private lastText = "";
  private lastCause = "";

  constructor(
    private readonly io: Io,
    private readonly verb: string,
    /** --retry-for, in seconds, when given; 0 is forever. */
    private readonly retryForSeconds: number | undefined,
    /** Once reached, how long an outage is retried without --retry-for, in seconds (0: forever). */
    private readonly defaultSeconds: number,
  ) {}

  /**
   * Options for one withRetry call. The budget is judged at each failure, so a long call (a backup)
   * that reached its services after it began gets the reached budget for an outage that comes later.
   */
  options(): Pick<RetryOptions, "timeoutMs" | "onRetry" | "signal"> {
    const firstAttempt = (this.firstAttempt ??= Date.now());
    const timeoutMs = (failingSince: number) => {
      if (this.retryForSeconds !== undefined) return this.retryForSeconds * 1000;
      if (this.reached) return this.defaultSeconds * 1000;
      // The first-contact budget counts from the verb's first attempt, across calls (send's background publish and its last one).
      return Math.max(1, FIRST_CONTACT_MS - (failingSince - firstAttempt));
    };
    return { timeoutMs, signal: this.io.signal, onRetry: (err, delay) => this.retrying(err.message, delay) };
  }

  /**
   * A verb whose services fail after they answered (a catch-up cut off halfway) stays at the budget of
   * services that answered; set as soon as any call is answered (answering), not only once a whole
   * sync is done: a first catch-up cut off after thousands of messages had the first-contact budget, ~3 s
   * from its first attempt, and ended at its first failure.
   */
  static forFollow(io: Io, verb: string, retryForSeconds: number | undefined, follow: boolean): RetryStatus {
    return new RetryStatus(io, verb, retryForSeconds, follow ? 0 : 60);
  }

  /** Called when a call was answered: from now on an outage is retried for the reached budget. Says nothing; succeeded() does. */
  answered(): void {
    this.reached = true;
  }

  /** Called after a call succeeded: the services answer, and a status line in place is ended. */
  succeeded(say = true): void {
    this.reached = true;
    if (this.lastText && say) this.write(`services reachable again`, true);
    else this.done();
    this.lastText = "";
    this.lastCause = "";
  }

  /** Ends a status line left in place on a terminal before the verb prints its error. */
  done(): void {
    if (this.showing) this.io.stderr.write("\n");
    this.showing = false;
  }

  private retrying(cause: string, delayMs: number): void {
    const hint = this.reached || this.retryForSeconds !== undefined ? "" : ` (giving up after ${FIRST_CONTACT_MS / 1000} s; --retry-for SECONDS waits longer)`;
    const text = `${cause}; retrying, next in ${(delayMs / 1000).toFixed(1)} s${hint}`;
    const now = Date.now();
    const isTty = (this.io.stderr as { isTTY?: boolean }).isTTY === true;
    // On a terminal the line is redrawn on every attempt; elsewhere a new cause, or a few seconds, makes a new line.
    if (isTty || cause !== this.lastCause || now - this.lastWritten >= STATUS_EVERY_MS) this.write(text, false);
    this.lastText = text;
    this.lastCause = cause;
  }

  private write(text: string, final: boolean): void {
    const isTty = (this.io.stderr as { isTTY?: boolean }).isTTY === true;
    const line = `remotelog ${this.verb}: ${text}`;
    if (isTty) {
      this.io.stderr.write(`\r\x1b[K${line}${final ? "\n" : ""}`);
      this.showing = !final;
    } else this.io.stderr.write(`${line}\n`);
    this.lastWritten = Date.now();
  }
}

/** The calls of a remote that, once one is answered, show its services answer (answering). */
const ANSWERED_CALLS = ["fetchName", "getBlock", "getBlocks", "getBlocksAllowingMissing", "getBlocksWithin", "getPagesWithLinked", "putBlocks", "updateName", "updateNameWithBlocks"] as const;

/**
 * remote, each of its calls that is answered telling status (RetryStatus.answered), so that an outage
 * that comes after the services first answered is retried for the reached budget (60 s, or forever
 * when following), whichever call of a sync it cuts. Its other calls, and its withSignal (which calls
 * these on it), are remote's.
 */
export function answering<T extends object>(remote: T, status: Pick<RetryStatus, "answered">): T {
  const wrapped = Object.create(remote) as Record<string, unknown>;
  for (const method of ANSWERED_CALLS) {
    const call = (remote as Record<string, unknown>)[method];
    if (typeof call !== "function") continue;
    wrapped[method] = async (...args: unknown[]) => {
      const result: unknown = await (call as (...args: unknown[]) => Promise<unknown>).apply(remote, args);
      status.answered();
      return result;
    };
  }
  return wrapped as T;
}

export interface FollowOptions<R extends { found: boolean }> {
  /** The verb, for messages on stderr ("remotelog <verb>: …"). */
  verb: string;
  io: Io;
  name: string;
  /** The NS whose pushed heads wake a follower. */
  ns: Pick<Remote, "watchName">;
  follow: boolean;
  /** With follow, the poll interval; default: HeadWatch.pollMs (30 s while the NS pushes, 500 ms when it cannot). */
  intervalMs?: number;
  /**
   * How long an unreachable service is retried (RetryStatus.forFollow): --retry-for, else about 3 s
   * until it first answers, then 60 s once, forever when following. The verb's remote is answering(remote,
   * status), so that any call answered counts.
   */
  status: RetryStatus;
  /** Without follow, the NOT_FOUND message for a name that has no remote log. */
  notFound: string;
  /** What a stop by a signal before the work was done leaves, said with it (receive: where the checkpoint stands). */
  stopped?: string;
  /** Says on stderr when the services answer again after retries. */
  sayRecovered?: boolean;
  /**
   * One sync of the name, from the head the NS pushed when there is one; its calls cancelled when
   * signal (the verb's io.signal) aborts.
   */
  sync: (pushed: NameHead | undefined, signal: AbortSignal) => Promise<R>;
}

/**
 * Syncs one name once, or with follow, again as soon as its NS pushes a new head and at least every
 * interval (the poll catches what a broken stream or an NS without Watch would miss). An unreachable
 * service is retried with backoff and said once per cause; a name with no remote log is NOT_FOUND, or,
 * following, said once and waited for.
 */
export async function followName<R extends { found: boolean }>(options: FollowOptions<R>): Promise<void> {
  const { verb, io, name } = options;
  const status = options.status;
  const watch = options.follow
    ? new HeadWatch(options.ns, name, io.signal, (error) => io.stderr.write(`remotelog ${verb}: the NS refused to push updates of ${JSON.stringify(name)} (${error.message}); it is polled instead, and the watch asked for again now and then\n`))
    : undefined;
  let warnedMissing = false;
  let pushed: NameHead | undefined;
  try {
    for (;;) {
      let result: R;
      try {
        result = await withRetry(() => options.sync(pushed, io.signal), status.options());
      } catch (err) {
        if (!io.signal.aborted) throw err;
        // The signal cancelled the sync's calls, or its wait for the next attempt: whatever they failed
        // with is the stop's doing. A follower ends as it does between syncs; a verb stopped before its
        // work was done says so (130 or 143). Waiting on a call that never ended, it went on until main's
        // grace of 5 s ran out.
        const signal = stoppingSignal(io.signal);
        if (options.follow || signal === undefined) break;
        throw stoppedError(signal, `${verb} of ${JSON.stringify(name)} ended before it was done, its calls in progress cancelled${options.stopped ? `; ${options.stopped}` : ""}`);
      }
      status.succeeded(options.sayRecovered);
      if (!result.found) {
        if (!options.follow) throw RemoteLogError.notFound(options.notFound);
        if (!warnedMissing) io.stderr.write(`remotelog ${verb}: name ${JSON.stringify(name)} has no remote log yet; waiting for it\n`);
        warnedMissing = true;
      }
      if (!options.follow || io.signal.aborted) break;
      pushed = await watch!.next(options.intervalMs);
      if (io.signal.aborted) break;
    }
  } finally {
    status.done();
    watch?.close();
  }
}
