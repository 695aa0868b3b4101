/**
 * remotelog beside hypercore, measured in one run on the same machine, so that the goals of issue 13 are
 * ratios rather than absolute times: to hypercore (a writer and a reader process over TCP on loopback,
 * batches of 100) and to a bare `node -e 0` for whole processes. Every remotelog figure uses default
 * flags. 256-byte bodies; BENCH_PEER_SIZES (default 10000,100000) and, for the largest size, the same
 * catch-ups through bench/delay-proxy.ts (a process of its own) at BENCH_PEER_RTT_MS (default 20) round
 * trips; at 0 ms both readers connect directly.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Remote } from "../../actors/remote.js";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { Sender } from "../../actors/sender.js";
import { deliveryLines } from "../../cli/format.js";
import { encodeMessage, newMessage } from "../../core/hash.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { startDelayProxyProcess, type DelayProxy } from "../delay-proxy.js";
import { BODY_BYTES, GROUP, bareNodeMs, bodies, cpuMeter, ms, startServer, stopChild, table, wholeReceive, wholeSend, writeBenchResult } from "../harness.js";

const PEER = resolve("dist/bench/peers/hypercore-peer.js");
const SIZES = (process.env.BENCH_PEER_SIZES ?? "10000,100000").split(",").map(Number);
const RTT_MS = Number(process.env.BENCH_PEER_RTT_MS ?? 20);
/**
 * Append+publish (remotelog) and append (hypercore) are each timed as a long-running writer meets them:
 * after APPEND_WARM rounds of the same work in the same process, the median of APPEND_ROUNDS rounds,
 * each into a fresh log (a fresh core). Timed once after a small warm-up, the figure was mostly the
 * JIT compiling the path: remotelog's first two rounds of 10k took 168-234 ms, its later ones 78-125.
 */
const APPEND_WARM = Number(process.env.BENCH_PEER_APPEND_WARM ?? 2);
const APPEND_ROUNDS = Number(process.env.BENCH_PEER_APPEND_ROUNDS ?? 5);

/** Per RTT: catch-up in-process (best of 2 fresh receivers) and a whole receiving process. */
interface Catchup {
  rtt: number;
  inProcessMs: number;
  /** remotelog only: CPU time of this process (its verify threads included) and the server during the best in-process run. */
  inProcessCpuMs?: number;
  processMs: number;
}

interface Side {
  appendMs: number;
  /** remotelog only: CPU time of this process and the server during append+publish. */
  appendCpuMs?: number;
  /** remotelog only: a whole `send` process of the same count from stdin. */
  sendProcessMs?: number;
  catchups: Catchup[];
}

/** Each delivery as the bytes `receive` writes to its stdout (cli/format.ts deliveryLines), written nowhere. */
async function formatOnly(batch: Delivery[]): Promise<void> {
  if (deliveryLines(batch).length === 0) throw new Error("nothing formatted");
}

async function remotelogSide(count: number, rtts: number[]): Promise<Side> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-bench-peer-"));
  const server = await startServer(root);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  try {
    const name = `peer-${count}`;
    // A JIT-warm sender, as a long-running app: warm-up rounds, then the median of the timed ones, each
    // a fresh log and name (the first timed one is the log the receivers read); the whole `send`
    // process is the cold figure.
    const rounds: { ms: number; cpuMs: number }[] = [];
    for (let round = -APPEND_WARM; round < APPEND_ROUNDS; round++) {
      const roundName = round === 0 ? name : `${name}-${round < 0 ? "warm" : "round"}${Math.abs(round)}`;
      const log = await FileLocalLog.open(join(root, roundName));
      const encoded = bodies(count).map((body, i) => encodeMessage(newMessage(GROUP, 1_700_000_000n + BigInt(i), body)));
      const cpu = cpuMeter(server.pid);
      const start = process.hrtime.bigint();
      const { published } = await new Sender({ published: new MemoryCheckpointStore(), name: roundName, log, remote }).appendAndPublish(encoded);
      const took = { ms: ms(start), cpuMs: cpu() };
      await log.close();
      if (published.published !== count) throw new Error(`published ${published.published} of ${count}`);
      if (round >= 0) rounds.push(took);
    }
    const { ms: appendMs, cpuMs: appendCpuMs } = median(rounds);

    const input = bodies(count).map((body) => Buffer.from(body).toString("utf8")).join("\n") + "\n";
    const sendProcessMs = await wholeSend(server.url, `${name}-process`, join(root, "dave"), input);

    const catchups: Catchup[] = [];
    for (const rtt of rtts) {
      const proxy = await delayTo(server.url, rtt);
      try {
        const times: number[] = [];
        const cpus: number[] = [];
        for (let run = 0; run < 2; run++) {
          const through = new Remote({ casUrl: proxy.url, nsUrl: proxy.url });
          const receiver = new Receiver({ name, remote: through, checkpoints: new MemoryCheckpointStore() });
          let delivered = 0;
          const cpu = cpuMeter(server.pid);
          const begin = process.hrtime.bigint();
          await receiver.sync(async (batch) => {
            await formatOnly(batch);
            delivered += batch.length;
          });
          times.push(ms(begin));
          cpus.push(cpu());
          through.close();
          if (delivered !== count) throw new Error(`delivered ${delivered} of ${count}`);
        }
        const whole = await wholeReceive(proxy.url, name, join(root, `carol-${rtt}`));
        if (whole.lines !== count) throw new Error(`receive printed ${whole.lines} of ${count}`);
        const best = times.indexOf(Math.min(...times));
        catchups.push({ rtt, inProcessMs: times[best], inProcessCpuMs: cpus[best], processMs: whole.ms });
      } finally {
        await proxy.close();
      }
    }
    return { appendMs, appendCpuMs, sendProcessMs, catchups };
  } finally {
    remote.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Both sides reach their peer the same way: directly at 0 ms, and through a delay proxy in a process
 * of its own otherwise, so that its copying is not counted against remotelog's in-process reader,
 * which would share its event loop, while hypercore's reader is a process apart.
 */
async function delayTo(url: string, rtt: number): Promise<DelayProxy> {
  if (rtt === 0) return { url, close: async () => {} };
  return startDelayProxyProcess(url, rtt);
}

function firstJsonLine(child: ChildProcess): Promise<any> {
  return new Promise((ok, fail) => {
    createInterface({ input: child.stdout! }).once("line", (line) => ok(JSON.parse(line)));
    child.once("exit", (code) => fail(new Error(`hypercore peer exited with ${code}`)));
  });
}

async function hypercoreSide(count: number, rtts: number[]): Promise<Side> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-bench-hypercore-"));
  const writer = spawn(process.execPath, [PEER, "writer", join(root, "writer"), String(count), String(APPEND_WARM), String(APPEND_ROUNDS)], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const { key, port, appendMs } = await firstJsonLine(writer);
    const catchups: Catchup[] = [];
    for (const rtt of rtts) {
      const proxy = await delayTo(`http://127.0.0.1:${port}`, rtt);
      try {
        const start = process.hrtime.bigint();
        const reader = spawn(process.execPath, [PEER, "reader", join(root, `reader-${rtt}`), key, proxy.url, String(count)], { stdio: ["ignore", "pipe", "inherit"] });
        const result = await firstJsonLine(reader);
        await new Promise((ok) => (reader.exitCode !== null ? ok(null) : reader.once("exit", ok)));
        if (reader.exitCode !== 0) throw new Error(`hypercore reader exited with ${reader.exitCode}`);
        catchups.push({ rtt, inProcessMs: result.catchUpMs, processMs: ms(start) });
      } finally {
        await proxy.close();
      }
    }
    return { appendMs, catchups };
  } finally {
    await stopChild(writer);
    await rm(root, { recursive: true, force: true });
  }
}

const ratio = (a: number, b: number) => (a / b).toFixed(2);

/** The round with the median time (the upper one of an even count). */
function median<T extends { ms: number }>(rounds: T[]): T {
  return [...rounds].sort((a, b) => a.ms - b.ms)[rounds.length >> 1];
}

async function main() {
  const nodeMs = await bareNodeMs();
  const rows: (string | number)[][] = [];
  const largest = Math.max(...SIZES);
  for (const count of SIZES) {
    const rtts = count === largest && RTT_MS > 0 ? [0, RTT_MS] : [0];
    const ours = await remotelogSide(count, rtts);
    const theirs = await hypercoreSide(count, rtts);
    rows.push([count, "0", "append+publish, in-process", ours.appendMs, Math.round(ours.appendCpuMs!), theirs.appendMs, ratio(ours.appendMs, theirs.appendMs), "-", "≤ 0.5× hypercore"]);
    rows.push([count, "0", "send process, from stdin", ours.sendProcessMs!, "-", "-", "-", ratio(ours.sendProcessMs!, nodeMs), "≤ 600 ms (10k)"]);
    for (const [i, c] of ours.catchups.entries()) {
      const h = theirs.catchups[i];
      const goalIn = c.rtt === 0 ? "≤ 0.05× hypercore" : "≤ 1.0 s";
      const goalProcess = c.rtt === 0 ? "≤ 700 ms (10k)" : "≤ 1.3 s";
      rows.push([count, String(c.rtt), "fresh catch-up, in-process", c.inProcessMs, Math.round(c.inProcessCpuMs!), h.inProcessMs, ratio(c.inProcessMs, h.inProcessMs), "-", goalIn]);
      rows.push([count, String(c.rtt), "receive process, to a pipe", c.processMs, "-", h.processMs, ratio(c.processMs, h.processMs), ratio(c.processMs, nodeMs), goalProcess]);
    }
  }
  rows.push(["-", "-", "bare `node -e 0` (best of 3)", nodeMs, "-", "-", "-", "1.00", "the floor"]);
  console.log(`\nremotelog (default flags) beside hypercore, ${BODY_BYTES} B bodies, loopback; hypercore: writer and reader processes over TCP, batches of 100\n`);
  console.log(`load average ${loadavg().map((n) => n.toFixed(2)).join(" ")} at the end\n`);
  const headers = ["messages", "RTT ms", "measure", "remotelog ms", "remotelog cpu ms", "hypercore ms", "x hypercore", "x node -e 0", "goal"];
  console.log(table(headers, rows));
  await writeBenchResult("peers", { peers: { headers, rows } });
  console.log(
    `\nappend+publish: remotelog Sender.appendAndPublish (a FileLocalLog append, the blocks it will reference uploaded meanwhile, then the publish); hypercore core.append in its writer process. Each the median of ${APPEND_ROUNDS} rounds after ${APPEND_WARM} of warm-up in the same process, a fresh log or core each.` +
      "\nfresh catch-up: remotelog Receiver.sync with each line formatted (best of 2); hypercore update + download + read every block, in its reader process." +
      "\nreceive process: spawn to exit (hypercore: its reader process, which also opens its storage)." +
      "\nremotelog cpu: user + system time of the bench process (its verify threads included) and the server process over the same span.",
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
