/*
 * `make soak`: 100 senders and 100 following receivers on one `remotelog serve` process for 10
 * minutes (SOAK_SECONDS, SOAK_SENDERS). Each sender appends and publishes one message at a time to its
 * own name, with a short random pause; each receiver follows one name, woken by the heads the NS
 * pushes (Watch) and polling every second behind them. The senders and receivers are actors in this
 * process, each with its own connection, so the server sees 200 clients and 100 watch streams; the
 * server is a real process, whose peak RSS (VmHWM) is read from /proc at the end.
 *
 * Prints throughput, append-to-delivered latency (p50, p99, max), peak RSS of the server and of this
 * process, and the final counts: published, delivered, lost, duplicated. Exits 1 when a receiver
 * lost or repeated a message.
 */
import { setMaxListeners } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeadWatch } from "../actors/head-watch.js";
import { Receiver } from "../actors/receiver.js";
import { Remote, type NameHead } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { GROUP, percentile, startServer, table } from "./harness.js";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SENDERS = Number(process.env.SOAK_SENDERS ?? 100);
/** The longest pause between one sender's messages; the mean is half of it. */
const PAUSE_MS = Number(process.env.SOAK_PAUSE_MS ?? 400);

const root = await mkdtemp(join(tmpdir(), "remotelog-soak-"));
const server = await startServer(root);
const stop = new AbortController();
const sentAt = new Map<string, number>();
const latencies: number[] = [];
let published = 0;
let delivered = 0;
let duplicated = 0;
let lost = 0;
let sendErrors = 0;
let receiveErrors = 0;
const errorSamples = new Set<string>();
let serverPeakRss = 0;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function noteError(err: unknown): void {
  if (errorSamples.size < 5) errorSamples.add((err as Error).message);
}

async function readServerPeakRss(): Promise<void> {
  try {
    const status = await readFile(`/proc/${server.pid}/status`, "utf8");
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
    serverPeakRss = Math.max(serverPeakRss, kb * 1024);
  } catch {
    // not Linux, or the server is gone
  }
}

async function runSender(i: number): Promise<number> {
  const name = `soak-${i}`;
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const log = await FileLocalLog.open(join(root, "senders", name));
  const sender = new Sender({ name, log, published: new MemoryCheckpointStore(), remote });
  let next = 0;
  try {
    while (!stop.signal.aborted) {
      const body = `${name} ${next}`;
      sentAt.set(body, performance.now());
      try {
        await sender.append([new TextEncoder().encode(body)], GROUP);
        next++;
        await sender.publish();
        published++;
      } catch (err) {
        sendErrors++;
        noteError(err);
      }
      await sleep(Math.random() * PAUSE_MS);
    }
    // What was appended but not yet published goes out before the counts are taken.
    await sender.publish().catch((err) => {
      sendErrors++;
      noteError(err);
    });
  } finally {
    remote.close();
    await log.close();
  }
  return next;
}

async function runReceiver(i: number, done: AbortSignal): Promise<number> {
  const name = `soak-${i}`;
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const receiver = new Receiver({ name, remote, checkpoints: new MemoryCheckpointStore() });
  const watch = new HeadWatch(remote, name, done);
  let expected = 0;
  let pushed: NameHead | undefined;
  try {
    while (!done.aborted) {
      try {
        await receiver.sync(async (batch) => {
          const now = performance.now();
          for (const d of batch) {
            const body = new TextDecoder().decode(d.message?.body);
            const n = Number(body.slice(body.lastIndexOf(" ") + 1));
            if (n < expected) duplicated++;
            else {
              lost += n - expected;
              expected = n + 1;
              delivered++;
              const at = sentAt.get(body);
              if (at !== undefined) latencies.push(now - at);
            }
          }
        }, pushed);
      } catch (err) {
        receiveErrors++;
        noteError(err);
      }
      pushed = await watch.next(1000);
    }
  } finally {
    watch.close();
    remote.close();
  }
  return expected;
}

console.log(`soak: ${SENDERS} senders and ${SENDERS} following receivers on one server for ${SECONDS} s`);
const started = performance.now();
const receiversDone = new AbortController();
// One listener per receiver's watch, on purpose.
setMaxListeners(0, receiversDone.signal);
const receivers = Array.from({ length: SENDERS }, (_, i) => runReceiver(i, receiversDone.signal));
const senders = Array.from({ length: SENDERS }, (_, i) => runSender(i));
const sampler = setInterval(() => void readServerPeakRss(), 1000);
const progress = setInterval(() => {
  const s = ((performance.now() - started) / 1000).toFixed(0);
  if (process.stderr.isTTY) process.stderr.write(`\r${s} s: ${published} published, ${delivered} delivered\x1b[K`);
}, 1000);
await sleep(SECONDS * 1000);
stop.abort();
const appended = (await Promise.all(senders)).reduce((a, b) => a + b, 0);
const sendingSeconds = (performance.now() - started) / 1000;
// Receivers catch up on what was published last, then stop.
const deadline = performance.now() + 60_000;
while (delivered + lost < appended && performance.now() < deadline) await sleep(200);
receiversDone.abort();
const reached = (await Promise.all(receivers)).reduce((a, b) => a + b, 0);
clearInterval(sampler);
clearInterval(progress);
await readServerPeakRss();
if (process.stderr.isTTY) process.stderr.write("\n");
await server.stop();
await rm(root, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const mb = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MB`;
console.log(
  table(
    ["seconds", "senders", "receivers", "published/s", "delivered/s", "latency p50 ms", "p99 ms", "max ms", "server peak RSS", "soak process peak RSS"],
    [
      [
        sendingSeconds.toFixed(0),
        String(SENDERS),
        String(SENDERS),
        (published / sendingSeconds).toFixed(1),
        (delivered / sendingSeconds).toFixed(1),
        percentile(latencies, 0.5).toFixed(1),
        percentile(latencies, 0.99).toFixed(1),
        latencies[latencies.length - 1].toFixed(1),
        mb(serverPeakRss),
        mb(process.resourceUsage().maxRSS * 1024),
      ],
    ],
  ),
);
console.log(
  table(
    ["appended", "published (calls)", "delivered", "not delivered", "lost", "duplicated", "send errors", "receive errors"],
    [[String(appended), String(published), String(delivered), String(appended - reached), String(lost), String(duplicated), String(sendErrors), String(receiveErrors)]],
  ),
);
if (errorSamples.size > 0) console.log(`errors seen: ${[...errorSamples].join(" | ")}`);
if (lost > 0 || duplicated > 0 || reached !== appended) process.exit(1);
