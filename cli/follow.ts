import { HeadWatch } from "../actors/head-watch.js";
import { withRetry, type NameHead, type Remote } from "../actors/remote.js";
import { RemoteLogError } from "../core/errors.js";
import type { Io } from "./command.js";

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
  /** How long an unreachable service is retried; undefined: 60 s once, forever when following. */
  retryForSeconds?: number;
  /** Without follow, the NOT_FOUND message for a name that has no remote log. */
  notFound: string;
  /** Says on stderr when the services answer again after retries. */
  sayRecovered?: boolean;
  /** One sync of the name, from the head the NS pushed when there is one. */
  sync: (pushed: NameHead | undefined) => Promise<R>;
}

/**
 * Syncs one name once, or with follow, again as soon as its NS pushes a new head and at least every
 * interval (the poll catches what a broken stream or an NS without Watch would miss). An unreachable
 * service is retried with backoff and said once per cause; a name with no remote log is NOT_FOUND, or,
 * following, said once and waited for.
 */
export async function followName<R extends { found: boolean }>(options: FollowOptions<R>): Promise<void> {
  const { verb, io, name } = options;
  const retryForMs = (options.retryForSeconds ?? (options.follow ? 0 : 60)) * 1000;
  const watch = options.follow ? new HeadWatch(options.ns, name, io.signal) : undefined;
  let warnedMissing = false;
  let lastRetryMessage = "";
  let pushed: NameHead | undefined;
  try {
    for (;;) {
      const result = await withRetry(() => options.sync(pushed), {
        timeoutMs: retryForMs,
        signal: io.signal,
        onRetry: (err, delay) => {
          // A service that stays down is said once per distinct cause, not on every attempt.
          if (err.message !== lastRetryMessage) io.stderr.write(`remotelog ${verb}: ${err.message}; retrying with backoff (next in ${(delay / 1000).toFixed(1)} s)\n`);
          lastRetryMessage = err.message;
        },
      });
      if (lastRetryMessage && options.sayRecovered) io.stderr.write(`remotelog ${verb}: services reachable again\n`);
      lastRetryMessage = "";
      if (!result.found) {
        if (!options.follow) throw RemoteLogError.notFound(options.notFound);
        if (!warnedMissing) io.stderr.write(`remotelog ${verb}: name ${JSON.stringify(name)} has no remote log yet; waiting for it\n`);
        warnedMissing = true;
      }
      if (!options.follow || io.signal.aborted) break;
      pushed = await watch!.next(options.intervalMs ?? watch!.pollMs);
      if (io.signal.aborted) break;
    }
  } finally {
    watch?.close();
  }
}
