/**
 * A mirror: keeps a verified copy of a log on a second server, head record and all, so that readers
 * of either server verify it with the same key. Once, or every INTERVAL_MS until Ctrl-C. The copy keeps
 * no state of its own: what it holds is read from the target, and a crash is repaired by running again.
 *
 *   node dist/examples/mirror.js FROM TO NAME [INTERVAL_MS]
 */
import { Mirror, openRemote, verifyLog, withRetry } from "remotelog";

const [from, to, name, interval] = process.argv.slice(2);
if (!from || !to || !name) {
  console.error("usage: mirror FROM TO NAME [INTERVAL_MS]");
  process.exit(2);
}

const source = openRemote(from);
const target = openRemote(to);
const mirror = new Mirror({ name, source, target });
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

try {
  do {
    // A server that restarts is waited for; anything else (a forged or rolled-back head) stops the mirror.
    const result = await withRetry(() => mirror.sync(), { timeoutMs: 0, signal: stop.signal });
    if (!result.found) console.log(JSON.stringify({ name, found: false }));
    else if (result.updated) {
      const copy = await verifyLog(target, name);
      console.log(JSON.stringify({ name, updated: true, pages: result.pages, messages: result.messages, sequence: Number(result.sequence ?? 0n), copyVerified: copy.ok }));
    }
    if (interval) await new Promise((resolve) => setTimeout(resolve, Number(interval)));
  } while (interval && !stop.signal.aborted);
} finally {
  source.close();
  target.close();
}
