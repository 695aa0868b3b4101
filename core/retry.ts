import { RemoteLogError, ErrorCodes } from "./errors.js";

/*
 * Backoff and bounded parallelism, shared by the actors (talking to our services) and the Kubo
 * backends (talking to an IPFS node): both meet services that are down or restarting.
 */

/**
 * A call whose server says nothing for this long (no headers, no byte of the answer) fails UNAVAILABLE,
 * which callers retry as any outage: a wedged server, a half-open connection or a slowloris answer
 * otherwise held every read forever. An answer that keeps coming is never cut. Both transports (Node's
 * and a browser's) keep it; openRemote's idleTimeoutMs changes it.
 */
export const UNARY_IDLE_MS = 30_000;

/**
 * The largest answer either transport takes (connect's readMaxBytes); a larger one fails TOO_LARGE
 * (Connect's ResourceExhausted), where it was read into memory whole. A server caps GetMany's answers
 * far below it (max_response_bytes); this bounds a server that does not.
 */
export const READ_MAX_BYTES = 256 << 20;

/** How withRetry retries: how long, until which signal, and what it says meanwhile. */
export interface RetryOptions {
  /**
   * Give up once the service has been failing this long, counted from the first failure (an attempt
   * that worked for an hour before it failed does not use up the budget); 0 retries forever. A
   * function is asked again at each failure, with the time that failing began, so that a budget can
   * change while one call runs (a verb's short first-contact budget, then a long one once it is served).
   */
  timeoutMs: number | ((failingSince: number) => number);
  signal?: AbortSignal;
  /** Told about each failed attempt, so that the user sees why nothing moves. */
  onRetry?: (err: RemoteLogError, delayMs: number, attempt: number) => void;
  /** How an error that is not a RemoteLogError is judged; default INTERNAL, which is not retried. */
  toError?: (err: unknown) => RemoteLogError;
  /** Backoff of the first retry and the cap, in ms; default 100 and 5,000. */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * Retries fn while it fails with UNAVAILABLE (a service down or restarting), backing off from 100 ms
 * to 5 s with jitter. Any other error, or the timeout running out, is thrown as it is. Once signal
 * aborts, fn is not called again: aborted during a wait, the failure that began the wait is thrown
 * as it is (UNAVAILABLE); aborted before the first call, fn is never called, and the throw is
 * UNAVAILABLE too, with the signal's reason as its cause.
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  // A caller stopped already (a follower closed, a verb interrupted) made one call, to a server that may be wedged, before this noticed.
  if (options.signal?.aborted) throw RemoteLogError.unavailable("stopped before the first attempt: the signal was aborted", options.signal.reason);
  let failingSince: number | undefined;
  const toError = options.toError ?? ((err: unknown) => RemoteLogError.internal(err instanceof Error ? err.message : String(err), err));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const error = err instanceof RemoteLogError ? err : toError(err);
      if (error.code !== ErrorCodes.UNAVAILABLE) throw error;
      const delayMs = backoffDelayMs(attempt, options.firstDelayMs, options.maxDelayMs);
      if (options.signal?.aborted) throw error;
      failingSince ??= Date.now();
      const timeoutMs = typeof options.timeoutMs === "function" ? options.timeoutMs(failingSince) : options.timeoutMs;
      const failingMs = Date.now() - failingSince;
      if (timeoutMs > 0 && failingMs >= timeoutMs) {
        // error is UNAVAILABLE too: its text without the code, which the one thrown leads with.
        throw RemoteLogError.unavailable(`gave up after ${(failingMs / 1000).toFixed(1)} s and ${attempt} attempts: ${error.text}`, error);
      }
      // The last wait ends where the budget does, for a last attempt there: giving up as soon as the next
      // full backoff would pass it gave up at 1.4 s of a budget said to be 3 s.
      const waitMs = timeoutMs > 0 ? Math.min(delayMs, timeoutMs - failingMs) : delayMs;
      options.onRetry?.(error, waitMs, attempt);
      await sleep(waitMs, options.signal);
      // The wait ends early on abort; going on would call fn once more after it.
      if (options.signal?.aborted) throw error;
    }
  }
}

/**
 * The wait before retry number attempt (from 1): firstMs doubling up to capMs, with ±25% jitter so
 * that many clients of one restarted service do not all come back at the same moment.
 */
export function backoffDelayMs(attempt: number, firstMs = 100, capMs = 5_000): number {
  return Math.min(capMs, firstMs * 2 ** Math.min(attempt - 1, 16)) * (0.75 + Math.random() * 0.5);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Runs fn over items with at most limit in flight, keeping results in order. */
export async function mapBounded<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index], index);
    }
  });
  await Promise.all(workers);
  return results;
}
