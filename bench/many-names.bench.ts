/**
 * One `receive` process following many names: catch-up time, memory (peak, after catch-up, after
 * following a while), CPU while following, and how soon new messages on random names arrive.
 * Run with `make bench-many`. The server is a real `remotelog serve` process with the embedded stores;
 * the logs are published in-process, unsigned.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Remote, mapBounded } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../stores/memory/local-log.js";
import { BODY_BYTES, GROUP, MAIN, bodies, percentile, startServer, stopChild, table, writeBenchResult } from "./harness.js";

const MESSAGES_PER_NAME = Number(process.env.BENCH_MANY_MESSAGES ?? 20);
const NEW_MESSAGES = 100;
// Long enough for the poll behind pushes to back off as it does for a receiver left running (30 s, then
// doubling while polls find nothing): its first round, 30 s in, is also shown alone.
const FOLLOW_MS = Number(process.env.BENCH_MANY_FOLLOW_S ?? 300) * 1000;
const FIRST_FOLLOW_MS = Math.min(FOLLOW_MS, 35_000);
// Pushed notes (WatchMany) wake a name as soon as it is updated; polling is only the safety net behind them.
// The receiver runs with default flags (a 30 s poll behind WatchMany's pushes) unless this says otherwise.
const INTERVAL_ARGS = process.env.BENCH_MANY_INTERVAL_MS ? ["--interval", process.env.BENCH_MANY_INTERVAL_MS] : [];
/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICKS_PER_SECOND = 100;

/** Resident and peak resident memory of a process, in MB, from /proc. */
async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
}

/** User plus system CPU time of a process so far, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name in parentheses may hold spaces; the fields counted here come after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}


interface Row {
  names: number;
  concurrency: number;
  messages: number;
  catchUpMs: number;
  peakMb: number;
  caughtUpMb: number;
  followedMb: number;
  followHwmMb: number;
  receiverCpu: number;
  receiverFirstCpu: number;
  serverCpu: number;
  newCount: number;
  newAllMs: number;
  newMedianMs: number;
  newP90Ms: number;
  newMaxMs: number;
}

/** The published logs, one Sender each, kept so that new messages can be added later. */
interface Log {
  name: string;
  log: MemoryLocalLog;
  sender: Sender;
}

async function publishAll(remote: Remote, prefix: string, count: number): Promise<Log[]> {
  const logs: Log[] = Array.from({ length: count }, (_, i) => {
    const log = new MemoryLocalLog();
    const name = `${prefix}-${String(i).padStart(4, "0")}`;
    return { name, log, sender: new Sender({ published: new MemoryCheckpointStore(), name, log, remote }) };
  });
  await mapBounded(logs, 16, async ({ sender }) => {
    await sender.append(bodies(MESSAGES_PER_NAME), GROUP, 1_700_000_000n);
    await sender.publish();
  });
  return logs;
}

async function runRow(root: string, url: string, serverPid: number, logs: Log[], concurrency: number): Promise<Row> {
  const namesFile = join(root, `names-${logs.length}-${concurrency}.txt`);
  await writeFile(namesFile, logs.map((l) => l.name).join("\n") + "\n");
  const expected = new Map(logs.map((l) => [l.name, l.log.length]));
  const total = logs.reduce((sum, l) => sum + l.log.length, 0);

  const start = performance.now();
  const child = spawn(
    process.execPath,
    [MAIN, "receive", "--unsigned", "--names", namesFile, "--follow", ...INTERVAL_ARGS, "--concurrency", String(concurrency), "--server", url, "--state", join(root, `state-${logs.length}-${concurrency}`)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const pid = child.pid!;
  const next = new Map<string, number>(); // name → next seq expected, to check each log comes in order
  const arrived = new Map<string, number>(); // "name/seq" → when, for the messages being timed
  let lines = 0;
  let outOfOrder = 0;
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const match = /^\{"name":"([^"]*)","seq":(\d+),/.exec(line);
    if (!match) throw new Error(`unexpected line: ${line.slice(0, 100)}`);
    const [, name, seqText] = match;
    const seq = Number(seqText);
    if (seq !== (next.get(name) ?? 0)) outOfOrder++;
    next.set(name, seq + 1);
    arrived.set(`${name}/${seq}`, performance.now());
    lines++;
  });
  const exited = new Promise<void>((_, fail) => child.once("exit", (code, signal) => fail(new Error(`receive exited early: ${code ?? signal}`))));
  exited.catch(() => {});

  let peakRss = 0;
  const sampler = setInterval(() => {
    memory(pid).then(
      (m) => (peakRss = Math.max(peakRss, m.rss)),
      () => {},
    );
  }, 50);
  try {
    const until = async (done: () => boolean, timeoutMs: number, what: string) => {
      const deadline = performance.now() + timeoutMs;
      while (!done()) {
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await Promise.race([sleep(5), exited]);
      }
    };
    await until(() => lines >= total, 600_000, `${total} messages`);
    const catchUpMs = performance.now() - start;
    const caughtUp = await memory(pid);

    const cpuBefore = [await cpuSeconds(pid), await cpuSeconds(serverPid)];
    await sleep(FIRST_FOLLOW_MS);
    const cpuFirst = await cpuSeconds(pid);
    await sleep(FOLLOW_MS - FIRST_FOLLOW_MS);
    const cpuAfter = [await cpuSeconds(pid), await cpuSeconds(serverPid)];
    const followed = await memory(pid);

    // One new message on each of 100 random names, published at once as 100 writers would.
    const chosen = [...logs].sort(() => Math.random() - 0.5).slice(0, Math.min(NEW_MESSAGES, logs.length));
    const published = new Map<string, number>();
    const newStart = performance.now();
    await mapBounded(chosen, 16, async (l) => {
      await l.sender.append(bodies(1), GROUP, 1_700_000_001n);
      await l.sender.publish();
      published.set(`${l.name}/${l.log.length - 1}`, performance.now());
    });
    await until(() => [...published.keys()].every((key) => arrived.has(key)), 60_000, "the new messages");
    const latencies = [...published].map(([key, at]) => arrived.get(key)! - at).sort((a, b) => a - b);
    const newAllMs = Math.max(...[...published.keys()].map((key) => arrived.get(key)!)) - newStart;

    for (const [name, length] of expected) if ((next.get(name) ?? 0) < length) throw new Error(`${name}: ${next.get(name)} of ${length} delivered`);
    if (outOfOrder > 0) throw new Error(`${outOfOrder} deliveries out of order`);
    return {
      names: logs.length,
      concurrency,
      messages: total,
      catchUpMs,
      peakMb: Math.max(peakRss, (await memory(pid)).hwm),
      caughtUpMb: caughtUp.rss,
      followedMb: followed.rss,
      followHwmMb: followed.hwm,
      receiverCpu: ((cpuAfter[0] - cpuBefore[0]) / (FOLLOW_MS / 1000)) * 100,
      receiverFirstCpu: ((cpuFirst - cpuBefore[0]) / (FIRST_FOLLOW_MS / 1000)) * 100,
      serverCpu: ((cpuAfter[1] - cpuBefore[1]) / (FOLLOW_MS / 1000)) * 100,
      newCount: chosen.length,
      newAllMs,
      newMedianMs: percentile(latencies, 0.5),
      newP90Ms: percentile(latencies, 0.9),
      newMaxMs: latencies[latencies.length - 1],
    };
  } finally {
    clearInterval(sampler);
    child.removeAllListeners("exit");
    await stopChild(child);
  }
}


async function main() {
  const counts = (process.env.BENCH_MANY_NAMES ?? "1000").split(",").map(Number);
  const concurrencies = (process.env.BENCH_MANY_CONCURRENCY ?? "16").split(",").map(Number);
  const root = await mkdtemp(join(tmpdir(), "remotelog-bench-many-"));
  const server = await startServer(root);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const rows: Row[] = [];
  try {
    for (const count of counts) {
      const started = performance.now();
      const logs = await publishAll(remote, `bench-${count}`, count);
      console.error(`published ${count} names of ${MESSAGES_PER_NAME} messages in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      for (const concurrency of concurrencies) {
        rows.push(await runRow(root, server.url, server.pid, logs, concurrency));
        console.error(`done: ${count} names, concurrency ${concurrency}`);
      }
    }
  } finally {
    remote.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
  console.log(
    `\none \`receive --unsigned --names FILE --follow${INTERVAL_ARGS.map((arg) => " " + arg).join("")}\` process, ${MESSAGES_PER_NAME} messages of ${BODY_BYTES} B per name,` +
      ` server: remotelog serve (fs packs + level) on loopback\n`,
  );
  const headers = ["names", "concurrency", "messages", "catch-up ms", "peak RSS MB", "RSS caught up MB", `RSS after ${FOLLOW_MS / 1000} s MB`, "receiver CPU %", `receiver CPU % first ${FIRST_FOLLOW_MS / 1000} s`, "server CPU %", "new msgs", "all in ms", "latency median ms", "p90 ms", "max ms"];
  const cells = rows.map((r) => [r.names, r.concurrency, r.messages, r.catchUpMs, r.peakMb, r.caughtUpMb, r.followedMb, r.receiverCpu, r.receiverFirstCpu, r.serverCpu, r.newCount, r.newAllMs, r.newMedianMs, r.newP90Ms, r.newMaxMs]);
  console.log(table(headers, cells));
  await writeBenchResult("many-names", { "many-names": { headers, rows: cells } });
  console.log(
    "\ncatch-up: from spawning the receiver to its last line of the existing logs (process start included)." +
      "\npeak RSS: the receiver's VmHWM (and VmRSS sampled every 50 ms), over the whole run; CPU %: of one core, while following" +
      ` ${FOLLOW_MS / 1000} s with nothing new (and over its first ${FIRST_FOLLOW_MS / 1000} s, which hold the first poll of every name).` +
      `\nnew msgs: one message published to each of ${NEW_MESSAGES} random names (or every name, when fewer) at once; all in: from the first publish to the last arrival;` +
      " latency: from each publish's end to its line.",
  );
}

await main();
