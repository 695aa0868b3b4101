import type { NameHead, Remote } from "./remote.js";
import { WatchUnsupportedError } from "../core/log-remote.js";
import { ErrorCodes, isRemoteLogError, type RemoteLogError } from "../core/errors.js";
import { backoffDelayMs, sleep } from "../core/retry.js";

/** A follower's poll interval while its NS pushes new heads: pushes carry the news, the poll only backs them up. */
export const PUSHED_POLL_MS = 30_000;
/**
 * The longest a name followed among many waits for its next poll while its NS pushes: each poll that
 * finds nothing the notes had not already brought doubles the wait, from PUSHED_POLL_MS up to this.
 */
export const PUSHED_POLL_MAX_MS = 480_000;
/**
 * The wait before asking again for a watch the NS refused (TOO_LARGE: one of its limits) for the
 * attempt-th time: a limit is not lifted in seconds, so from 1 s up to every 5 minutes.
 */
export function refusedWatchDelayMs(attempt: number): number {
  return backoffDelayMs(attempt, 1_000, 300_000);
}

/** A follower's poll interval when its NS cannot push (the draft's NS, IPNS): polling is all it has. */
export const POLL_MS = 500;

/**
 * Keeps one Watch stream open on a name and wakes a follower as soon as the NS pushes a new head, so
 * that `receive --follow` delivers within a round trip of the publish instead of a poll interval. It
 * never replaces polling: the follower still syncs at least every interval, so a stream that breaks
 * (and is reopened with backoff) or an NS that cannot push (the draft's) costs latency, not messages.
 */
export class HeadWatch {
  private pushed = false;
  private latest?: NameHead;
  private wake?: () => void;
  private readonly stop = new AbortController();
  /** False once the NS turned out not to push; the follower then just polls. */
  supported = true;

  /**
   * A remote without watchName (a gateway, say) cannot push: the follower just polls, at POLL_MS.
   * onRefused: the NS refused the watch (TOO_LARGE: one of its limits); said once, the follower then
   * polls until a later try, asked less and less often, is granted.
   */
  constructor(remote: Partial<Pick<Remote, "watchName">>, name: string, signal: AbortSignal, private readonly onRefused?: (error: RemoteLogError) => void) {
    signal.addEventListener("abort", () => this.close(), { once: true });
    const watchName = remote.watchName?.bind(remote);
    if (watchName) void this.run({ watchName }, name);
    else this.supported = false;
  }

  private async run(remote: Pick<Remote, "watchName">, name: string): Promise<void> {
    let delayMs = 100;
    let refusals = 0;
    while (!this.stop.signal.aborted) {
      try {
        for await (const head of remote.watchName(name, this.stop.signal)) {
          delayMs = 100;
          refusals = 0;
          this.pushed = true;
          this.latest = head;
          this.wake?.();
        }
      } catch (err) {
        if (err instanceof WatchUnsupportedError) {
          this.supported = false;
          // A follower waiting out the long interval of a pushing NS polls at once, then at POLL_MS.
          this.wake?.();
          return;
        }
        // One of the NS's limits (a stranger may have filled it): said once, asked again ever less
        // often, where it was asked every 5 s without a word.
        if (isRemoteLogError(err, ErrorCodes.TOO_LARGE)) {
          if (refusals++ === 0) this.onRefused?.(err);
          await sleep(refusedWatchDelayMs(refusals), this.stop.signal);
          continue;
        }
      }
      // The stream ended or broke: reopen it, backing off while the NS stays away.
      await sleep(delayMs, this.stop.signal);
      delayMs = Math.min(delayMs * 2, 5_000);
    }
  }

  /** How long a follower waits for a push before it polls: long while the NS pushes, short when it cannot. */
  get pollMs(): number {
    return this.supported ? PUSHED_POLL_MS : POLL_MS;
  }

  /**
   * Resolves when a head was pushed since the last call, with the newest one pushed, or after
   * timeoutMs (default pollMs) with none, whichever comes first. A pushed head is checked like a
   * fetched one; using it saves the follower a Fetch.
   */
  async next(timeoutMs = this.pollMs): Promise<NameHead | undefined> {
    if (!this.pushed && !this.stop.signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.stop.signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        this.wake = done;
        this.stop.signal.addEventListener("abort", done, { once: true });
      });
    }
    this.pushed = false;
    const head = this.latest;
    this.latest = undefined;
    return head;
  }

  close(): void {
    this.stop.abort();
    this.wake?.();
  }
}
