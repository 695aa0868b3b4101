/** What the benchmarks share: a real `serve` process, message bodies, timers and a table printer. */
import { readFileSync } from "node:fs";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const MAIN = resolve("dist/cli/main.js");
export const BODY_BYTES = 256;
export const GROUP = new TextEncoder().encode("bench");

export interface ServerHandle {
  url: string;
  dataDir: string;
  pid: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `remotelog serve` on a free loopback port with its data under root/server. */
export async function startServer(root: string, extraArgs: string[] = [], nodeArgs: string[] = [], main = MAIN): Promise<ServerHandle> {
  const dataDir = join(root, "server");
  const child = spawn(process.execPath, [...nodeArgs, main, "serve", "--listen", "127.0.0.1:0", "--data", dataDir, "--log-level", "warn", ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  // The server's log lines would bury the table; they are shown only if it dies.
  let log = "";
  child.stderr!.on("data", (chunk) => (log = (log + chunk).slice(-20_000)));
  child.once("exit", (code, signal) => {
    if (code !== 0 && signal !== "SIGTERM") process.stderr.write(`serve exited with ${code ?? signal}:\n${log}`);
  });
  const url = await new Promise<string>((ok, fail) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const match = /^listening on (\S+)/.exec(line);
      if (match) ok(match[1]);
    });
    child.once("exit", (code) => fail(new Error(`serve exited with ${code}`)));
  });
  return { url, dataDir, pid: child.pid!, process: child, stop: () => stopChild(child) };
}

export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((ok) => {
    if (child.exitCode !== null || child.signalCode !== null) return ok();
    child.once("exit", () => ok());
    child.kill("SIGTERM");
  });
}

/** Printable, incompressible-ish bodies, like chat text that has been encrypted and base64-encoded. */
export function bodies(count: number): Uint8Array[] {
  return Array.from({ length: count }, () => new TextEncoder().encode(randomBytes(BODY_BYTES).toString("base64").slice(0, BODY_BYTES)));
}

/** Milliseconds since start (from process.hrtime.bigint()). */
export function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (typeof cell === "number" ? cell.toFixed(cell < 10 ? 1 : 0) : cell)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => String(row[i]).length)));
  const line = (row: (string | number)[]) => `| ${row.map((cell, i) => String(cell).padStart(widths[i])).join(" | ")} |`;
  return [line(cells[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.slice(1).map(line)].join("\n");
}

/** Deterministic pseudo-random numbers (xorshift32), so a failing fault run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
}

/** A whole `receive` process of name from url, from spawn to exit, stdout to a pipe; counts its lines. */
export async function wholeReceive(url: string, name: string, stateDir: string): Promise<{ ms: number; lines: number }> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [MAIN, "receive", "--unsigned", "--name", name, "--server", url, "--state", stateDir], { stdio: ["ignore", "pipe", "inherit"] });
  let lines = 0;
  child.stdout!.on("data", (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  const code = await new Promise<number | null>((ok) => child.once("close", ok));
  if (code !== 0) throw new Error(`receive exited with ${code}`);
  return { ms: ms(start), lines };
}

/** A whole `send` process: start, append the lines from stdin, publish, exit. Default flags unless args say. */
export async function wholeSend(url: string, name: string, dataDir: string, input: string, args: string[] = []): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [MAIN, "send", "--unsigned", "--name", name, "--server", url, "--data", dataDir, ...args], { stdio: ["pipe", "ignore", "inherit"] });
  child.stdin!.end(input);
  const code = await new Promise<number | null>((ok) => child.once("close", ok));
  if (code !== 0) throw new Error(`send exited with ${code}`);
  return ms(start);
}

/** The start-up floor: a bare `node -e 0`, spawn to exit, best of runs. */
export async function bareNodeMs(runs = 3): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    await new Promise((ok) => child.once("close", ok));
    times.push(ms(start));
  }
  return Math.min(...times);
}

/**
 * CPU time (user + system, ms) of this process, its threads included, and of the server process since
 * the call, for a machine shared with other work where wall time moves with the load. The server's
 * part is read from /proc and left out where there is none.
 */
export function cpuMeter(serverPid: number): () => number {
  const serverTicks = () => {
    try {
      const fields = readFileSync(`/proc/${serverPid}/stat`, "utf8").split(") ")[1].split(" ");
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return 0;
    }
  };
  const ownBefore = process.cpuUsage();
  const serverBefore = serverTicks();
  return () => {
    const own = process.cpuUsage(ownBefore);
    return (own.user + own.system) / 1000 + ((serverTicks() - serverBefore) * 1000) / CLOCK_TICKS;
  };
}

/** USER_HZ: what /proc counts CPU time in, 100 on Linux. */
const CLOCK_TICKS = 100;

/** Where each bench's figures go, for bench/summary.ts: BENCH_RESULTS, default .tmp/bench/results. */
export const RESULTS_DIR = resolve(process.env.BENCH_RESULTS ?? ".tmp/bench/results");

/** A table as a bench printed it: its headers, and its rows of cells (numbers unrounded). */
export interface BenchTable {
  headers: string[];
  rows: (string | number)[][];
}

/**
 * Writes a bench's tables to RESULTS_DIR/<bench>.json with the time and load average of the run, for
 * bench/summary.ts to read. Written whole (temp file, rename), so a bench killed half-way leaves the
 * previous file or none, never half of one.
 */
export async function writeBenchResult(bench: string, tables: Record<string, BenchTable>, context: Record<string, string | number> = {}): Promise<void> {
  const { mkdir, rename, writeFile } = await import("node:fs/promises");
  const { loadavg } = await import("node:os");
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${bench}.json`);
  const result = { bench, finishedAt: new Date().toISOString(), loadAverage: loadavg()[0], context, tables };
  await writeFile(`${file}.tmp`, JSON.stringify(result, null, 1) + "\n");
  await rename(`${file}.tmp`, file);
}
