/**
 * Honest senders and receivers against a real `remotelog serve --require-signed` process while a
 * hostile client, a process of its own on 127.0.0.2, runs each attack of issue 11 in turn:
 *
 * - watches: one WatchMany of 100,000 names, then 20 of 1,000 names, held open;
 * - getmany: GetMany naming one 1 MiB block 16,384 times, 40 calls, half of them paging (partial_ok);
 * - getmany-json: the same in Connect's JSON, where every block is answered as base64 text;
 * - add: 1 GB of anonymous Add, 1,024 blocks of 1 MiB, 8 at a time;
 * - slowloris: 1,000 sockets that send a header line a second and never finish their request;
 * - burst: 5,000 HTTP/1.1 connections opened at once, each asking for health;
 * - bodies: 8 HTTP/2 connections of 256 streams, each sending 1.2 MB of a CAS Get body and never
 *   ending it, held 10 s (the server holds at most --max-body-bytes-per-address of them).
 *
 * Honest work, from 127.0.0.1 in this process: 2 signed senders publishing one message at a time and
 * 2 receivers syncing their names, each pausing 20 ms between operations, and a WatchMany of both names
 * opened at the start of each phase. Prints per attack the server's CPU time, its peak RSS (VmRSS sampled every
 * 50 ms), the honest operations' p50 and p99 against the quiet baseline, honest failures, and what
 * the attacker got. Every phase is bounded (BENCH_ABUSE_QUIET_S, default 10 s of quiet baseline; an
 * attack runs to its end, at most 60 s, and an attack over sooner than the baseline is run again until
 * the phase has lasted as long); at the end every receiver must hold every message sent.
 *
 * BENCH_ABUSE_ATTACKS=burst,add runs only those attacks (after the quiet baseline);
 * BENCH_ABUSE_CPU_PROF=DIR runs the server under `node --cpu-prof`, its profile written to DIR on exit
 * (summarise it with `node dist/bench/profile-top.js FILE`); BENCH_ABUSE_SERVE_ARGS="--flag value ..."
 * adds flags to `serve`, to try its limits.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Remote } from "../actors/remote.js";
import { Receiver } from "../actors/receiver.js";
import { Sender } from "../actors/sender.js";
import { cidOf, toHex } from "../core/hash.js";
import { generateNameKey, keyName } from "../core/names.js";
import { CAS } from "../gen/vac/cas/cas_pb.js";
import { BlockService } from "../gen/remotelog/v1/blocks_pb.js";
import { NameWatchService } from "../gen/remotelog/v1/names_pb.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { GROUP, MAIN, percentile, startServer, table } from "./harness.js";

const ATTACKER = "127.0.0.2";
const QUIET_S = Number(process.env.BENCH_ABUSE_QUIET_S ?? 10);
const ATTACK_LIMIT_MS = 60_000;
const PAUSE_MS = 20;
const ATTACKS = ["watches", "getmany", "getmany-json", "add", "slowloris", "burst", "bodies"] as const;
type Attack = (typeof ATTACKS)[number];
const CHOSEN = process.env.BENCH_ABUSE_ATTACKS?.split(",") ?? [...ATTACKS];
const CPU_PROF = process.env.BENCH_ABUSE_CPU_PROF;
const SERVE_ARGS = process.env.BENCH_ABUSE_SERVE_ARGS?.split(/\s+/).filter(Boolean) ?? [];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the attacker (this file run as `abuse.bench.js attack KIND URL ARG`) ----

function attackerClient<T extends Parameters<typeof createClient>[0]>(service: T, url: string, agent: http.Agent, json = false) {
  return createClient(service, createConnectTransport({ baseUrl: url, httpVersion: "1.1", readMaxBytes: 1 << 30, nodeOptions: { agent }, useBinaryFormat: !json }));
}

async function attack(kind: Attack, url: string, arg: string): Promise<string> {
  const agent = new http.Agent({ keepAlive: true, localAddress: ATTACKER, maxSockets: 64 });
  const port = Number(new URL(url).port);
  switch (kind) {
    case "watches": {
      const stop = new AbortController();
      setMaxListeners(100, stop.signal);
      const watch = attackerClient(NameWatchService, url, agent);
      let watched = 0;
      let refused = 0;
      let asked = 0;
      const sizes = [100_000, ...Array.from({ length: 20 }, () => 1_000)];
      for (const [index, size] of sizes.entries()) {
        asked += size;
        const stream = watch.watchMany({ names: Array.from({ length: size }, (_, i) => `victim-${index}-${i}`) }, { signal: stop.signal })[Symbol.asyncIterator]();
        // A refusal comes at once; a stream still open after 3 s holds its names.
        const outcome = await Promise.race([stream.next().then(() => "note", () => "refused"), sleep(3_000).then(() => "held")]);
        if (outcome === "refused") refused += size;
        else watched += size;
      }
      await sleep(8_000);
      stop.abort();
      return `watched ${watched} of ${asked} names asked; ${refused} refused`;
    }
    case "getmany":
    case "getmany-json": {
      // In JSON every block of the answer is written as base64 text: that cost the server ~0.3 s of CPU a MiB.
      const blocks = attackerClient(BlockService, url, agent, kind === "getmany-json");
      const ids = Array.from({ length: 16_384 }, () => Buffer.from(arg, "hex"));
      let bytes = 0;
      let refused = 0;
      let calls = 0;
      const worker = async (n: number) => {
        for (let i = n; i < 40; i += 4) {
          calls++;
          try {
            const response = await blocks.getMany({ ids, partialOk: i % 2 === 0 });
            bytes += response.blocks.reduce((sum, block) => sum + block.length, 0);
          } catch {
            refused++;
          }
        }
      };
      await Promise.all([0, 1, 2, 3].map(worker));
      return `${calls} calls asking ${((calls * 16_384) / 1024).toFixed(0)} GiB: got ${(bytes / 2 ** 20).toFixed(0)} MiB, ${refused} refused`;
    }
    case "add": {
      const cas = attackerClient(CAS, url, agent);
      const data = randomBytes(1 << 20);
      let stored = 0;
      let refused = 0;
      let next = 0;
      const worker = async () => {
        while (next < 1024) {
          next++;
          data.writeUInt32BE(next, 0);
          try {
            await cas.add({ data });
            stored++;
          } catch (err) {
            refused++;
            if (refused === 1) process.stderr.write(`first refusal: ${ConnectError.from(err).message}\n`);
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      return `sent 1024 MiB in 1024 Adds: ${stored} stored, ${refused} refused`;
    }
    case "slowloris": {
      const lifetimes: number[] = [];
      const started = performance.now();
      const sockets = Array.from({ length: 1_000 }, () => {
        const socket = net.connect({ host: "127.0.0.1", port, localAddress: ATTACKER });
        socket.on("error", () => {});
        socket.once("connect", () => socket.write("POST /vac.cas.CAS/Get HTTP/1.1\r\nHost: victim\r\n"));
        const drip = setInterval(() => socket.writable && socket.write(`X-Slow-${Math.random().toString(36).slice(2)}: 1\r\n`), 1_000);
        const closed = new Promise<void>((resolve) =>
          socket.once("close", () => {
            clearInterval(drip);
            lifetimes.push(performance.now() - started);
            resolve();
          }),
        );
        return { socket, closed };
      });
      await Promise.race([Promise.all(sockets.map((s) => s.closed)), sleep(45_000)]);
      const cut = lifetimes.length;
      for (const { socket } of sockets) socket.destroy();
      lifetimes.sort((a, b) => a - b);
      return `${cut} of 1000 sockets cut by the server, median after ${(percentile(lifetimes, 0.5) / 1000).toFixed(1)} s`;
    }
    case "burst": {
      const one = () =>
        new Promise<string>((resolve) => {
          const req = http.request(
            { host: "127.0.0.1", port, localAddress: ATTACKER, method: "POST", path: "/grpc.health.v1.Health/Check", agent: false, headers: { "content-type": "application/json", "content-length": 2 } },
            (res) => {
              res.resume();
              res.once("end", () => resolve(String(res.statusCode)));
            },
          );
          req.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
          req.end("{}");
        });
      const outcomes = await Promise.all(Array.from({ length: 5_000 }, one));
      const counts = new Map<string, number>();
      for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      return `5000 connections at once: ${[...counts].map(([outcome, n]) => `${n} ${outcome === "200" ? "answered" : outcome}`).join(", ")}`;
    }
    case "bodies": {
      const chunk = Buffer.alloc(64 << 10, 1);
      let written = 0;
      let refused = 0;
      const sessions = Array.from({ length: 8 }, () => {
        const session = http2.connect(url, { createConnection: () => net.connect({ host: "127.0.0.1", port, localAddress: ATTACKER }) });
        session.on("error", () => {});
        for (let i = 0; i < 256; i++) {
          const stream = session.request({ ":method": "POST", ":path": "/vac.cas.CAS/Get", "content-type": "application/proto" });
          stream.on("error", () => {});
          stream.on("response", (headers) => headers[":status"] === 429 && refused++);
          let sent = 0;
          const pump = () => {
            while (sent < 1_200_000 && !stream.destroyed) {
              sent += chunk.length;
              written += chunk.length;
              if (!stream.write(chunk)) return void stream.once("drain", pump);
            }
          };
          pump();
        }
        return session;
      });
      await sleep(10_000);
      for (const session of sessions) session.destroy();
      return `2048 bodies of 1.2 MB never ended: ${(written / 1e6).toFixed(0)} MB written, ${refused} answered ResourceExhausted`;
    }
  }
}

// ---- the honest side and the table ----

interface Honest {
  latencies: number[];
  failures: string[];
  stop(): Promise<void>;
}

interface Log {
  name: string;
  sender: Sender;
  receiver: Receiver;
  sent: number;
  received: number;
}

function honestLoops(logs: Log[], remote: Remote, label: string): Honest {
  const latencies: number[] = [];
  const failures: string[] = [];
  let running = true;
  const timed = async (what: string, op: () => Promise<void>) => {
    const start = performance.now();
    try {
      await op();
      latencies.push(performance.now() - start);
    } catch (err) {
      failures.push(`${label} ${what}: ${(err as Error).message}`);
    }
  };
  const watchStop = new AbortController();
  const watching = (async () => {
    try {
      for await (const _note of remote.watchNames(logs.map((log) => log.name), watchStop.signal)) void _note;
    } catch (err) {
      failures.push(`${label} WatchMany: ${(err as Error).message}`);
    }
  })();
  const loops = logs.flatMap((log) => [
    (async () => {
      while (running) {
        await timed("publish", async () => {
          await log.sender.append([new TextEncoder().encode(`${label} ${log.sent}`)], GROUP);
          log.sent++;
          await log.sender.publish();
        });
        await sleep(PAUSE_MS);
      }
    })(),
    (async () => {
      while (running) {
        await timed("sync", async () => {
          await log.receiver.sync(async (batch) => {
            log.received += batch.length;
          });
        });
        await sleep(PAUSE_MS);
      }
    })(),
  ]);
  return {
    latencies,
    failures,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      watchStop.abort();
      await watching;
    },
  };
}

/** The server's longest event-loop stall since the last scrape (prom-client resets its histogram at each). */
async function loopLagMaxMs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("nodejs_eventloop_lag_max_seconds"));
  return line ? Number(line.split(" ").pop()) * 1000 : NaN;
}

/** The CPU time (user + system) a process has used, in seconds: waiting for a core on a busy machine does not add to it. */
async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

function runAttacker(kind: Attack, url: string, arg: string): Promise<string> {
  const child = spawn(process.execPath, [join(MAIN, "../../bench/abuse.bench.js"), "attack", kind, url, arg, String(QUIET_S * 1000)], { stdio: ["ignore", "pipe", "inherit"] });
  const killer = setTimeout(() => child.kill("SIGKILL"), ATTACK_LIMIT_MS);
  return new Promise((resolve) => {
    let result = "";
    createInterface({ input: child.stdout! }).on("line", (line) => (result = line));
    child.once("exit", (code, signal) => {
      clearTimeout(killer);
      resolve(code === 0 ? result : `attacker ended with ${code ?? signal} (cut at ${ATTACK_LIMIT_MS / 1000} s)`);
    });
  });
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-abuse-"));
  const tokenFile = join(root, "write.token");
  const token = randomBytes(16).toString("hex");
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const server = await startServer(root, ["--require-signed", "--write-token-file", tokenFile, ...SERVE_ARGS], CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`] : []);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const operator = new Remote({ casUrl: server.url, nsUrl: server.url, token });
  try {
    // A 1 MiB block the amplification names, stored by a token holder.
    const big = randomBytes(1 << 20);
    await operator.putBlocks([big]);
    const bigId = toHex(cidOf(big).bytes);

    const logs: Log[] = [];
    for (let i = 0; i < 2; i++) {
      const key = await generateNameKey();
      const name = keyName(key);
      const log = await FileLocalLog.open(join(root, `sender-${i}`));
      const sender = new Sender({ name, key, log, published: new MemoryCheckpointStore(), remote });
      const receiver = new Receiver({ name, remote, checkpoints: new MemoryCheckpointStore() });
      logs.push({ name, sender, receiver, sent: 0, received: 0 });
    }

    const rows: (string | number)[][] = [];
    const phase = async (label: string, kind: Attack | undefined) => {
      await loopLagMaxMs(server.url);
      let peak = await rssOf(server.pid);
      const cpuBefore = await cpuSecondsOf(server.pid);
      const sampler = setInterval(() => void rssOf(server.pid).then((rss) => (peak = Math.max(peak, rss))), 50);
      const honest = honestLoops(logs, remote, label);
      const got = kind ? await runAttacker(kind, server.url, bigId) : await sleep(QUIET_S * 1000).then(() => "nothing (quiet)");
      await honest.stop();
      clearInterval(sampler);
      const lag = await loopLagMaxMs(server.url);
      const cpu = (await cpuSecondsOf(server.pid)) - cpuBefore;
      const sorted = [...honest.latencies].sort((a, b) => a - b);
      return { label, lag, cpu, peak, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), ops: sorted.length, failures: honest.failures, got };
    };
    const baseline = await phase("quiet", undefined);
    const results = [baseline];
    for (const kind of ATTACKS.filter((attack) => CHOSEN.includes(attack))) results.push(await phase(kind, kind));

    // Nothing honest lost: every receiver ends holding every message its sender published.
    for (const log of logs) await log.receiver.sync(async (batch) => void (log.received += batch.length));
    const lost = logs.map((log) => log.sent - log.received);

    for (const r of results) {
      rows.push([
        r.label,
        `${(r.peak / 2 ** 20).toFixed(0)} MiB`,
        r.cpu.toFixed(2),
        r.lag,
        r.ops,
        r.p50,
        r.p99,
        `${(r.p99 / baseline.p99).toFixed(2)}x`,
        r.failures.length,
        r.got,
      ]);
    }
    console.log(table(["attack", "server peak RSS", "server CPU s", "server loop stall ms", "honest ops", "p50 ms", "p99 ms", "p99 vs quiet", "honest failed", "what the attacker got"], rows));
    console.log(`\nhonest messages sent ${logs.map((l) => l.sent).join(" + ")}, not received: ${lost.join(" + ")}`);
    for (const r of results) for (const failure of r.failures.slice(0, 5)) console.log(`honest failure: ${failure}`);
    const over = results.filter((r) => r.peak >= 1 << 30 || r.p99 > 3 * baseline.p99 || r.failures.length > 0);
    console.log(
      over.length === 0 && lost.every((n) => n === 0)
        ? "targets met: server under 1 GiB, honest p99 within 3x the quiet baseline, nothing honest lost or refused"
        : `targets missed by: ${over.map((r) => r.label).join(", ") || "lost messages"}`,
    );
  } finally {
    remote.close();
    operator.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * The attacker's process: the attack again and again, until it has lasted at least minMs. A burst or
 * a round of GetMany is over in a second or two; measured over one round, the honest p99 was one of
 * the phase's three slowest calls and moved by about 1x from run to run. Repeated (in this one
 * process, as an attacker would), the pressure stays on for as long as the quiet baseline lasted, and
 * the p99 has as many samples as the baseline's.
 */
async function sustained(kind: Attack, url: string, arg: string, minMs: number): Promise<string> {
  const started = performance.now();
  let rounds = 0;
  let last = "";
  do {
    rounds++;
    last = await attack(kind, url, arg);
  } while (performance.now() - started < minMs);
  return rounds === 1 ? last : `${rounds} rounds, each: ${last}`;
}

if (process.argv[2] === "attack") {
  sustained(process.argv[3] as Attack, process.argv[4], process.argv[5], Number(process.argv[6] ?? 0)).then(
    (summary) => {
      console.log(summary);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  await main();
}
