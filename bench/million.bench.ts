/**
 * A long log through whole processes (issue 13 item 5): `remotelog send` of N lines from a file,
 * `remotelog receive` of the whole log to a pipe, and the `serve` they talk to, each with its wall time,
 * CPU time (user + sys) and peak RSS (VmHWM). Peak RSS that grows with N means something holds the whole
 * log. Run with `make bench-million`; BENCH_MILLION_SIZES (default 100000,300000,1000000).
 * BENCH_MILLION_PROF_DIR=DIR writes a `--cpu-prof` profile of each process there (bench/profile-top.ts
 * reads them); BENCH_MILLION_NODE_ARGS adds node flags to all three (e.g. `--max-old-space-size=96`);
 * BENCH_MILLION_MAIN=FILE runs another build of the CLI (an old bundle, to compare).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { BODY_BYTES, MAIN, ms, startServer, table, writeBenchResult } from "./harness.js";

const CLI = process.env.BENCH_MILLION_MAIN ?? MAIN;
const PROF_DIR = process.env.BENCH_MILLION_PROF_DIR;
const NODE_ARGS = [...(PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROF_DIR}`] : []), ...(process.env.BENCH_MILLION_NODE_ARGS ?? "").split(" ").filter(Boolean)];

/** The peak RSS of a live process, in MB: VmHWM from /proc. */
async function peakMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** The CPU time (user + sys) of a live process so far, in seconds: utime and stime from /proc, in clock ticks of 1/100 s. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Runs `node MAIN args` to its exit; stdin from a file, stdout counted by lines. Its peak RSS is read
 * from /proc every 50 ms (VmHWM only grows), the last read just before it exits.
 */
async function whole(args: string[], stdinFile?: string): Promise<{ ms: number; cpuS: number; peakMb: number; lines: number }> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [...NODE_ARGS, CLI, ...args], { stdio: [stdinFile ? "pipe" : "ignore", "pipe", "inherit"] });
  if (stdinFile) {
    const { createReadStream } = await import("node:fs");
    createReadStream(stdinFile).pipe(child.stdin!);
  }
  let lines = 0;
  child.stdout!.on("data", (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  let peak = 0;
  let cpu = 0;
  const timer = setInterval(() => {
    void peakMb(child.pid!).then((mb) => (peak = Math.max(peak, mb)), () => {});
    void cpuSeconds(child.pid!).then((s) => (cpu = Math.max(cpu, s)), () => {});
  }, 50);
  const code = await new Promise<number | null>((ok) => child.once("close", ok));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${args[0]} exited with ${code}`);
  return { ms: ms(start), cpuS: cpu, peakMb: peak, lines };
}

async function writeLines(file: string, count: number): Promise<void> {
  const out = createWriteStream(file);
  for (let i = 0; i < count; i += 1000) {
    let chunk = "";
    for (let j = i; j < Math.min(count, i + 1000); j++) chunk += randomBytes(BODY_BYTES).toString("base64").slice(0, BODY_BYTES) + "\n";
    if (!out.write(chunk)) await new Promise<void>((ok) => out.once("drain", () => ok()));
  }
  await new Promise<void>((ok, fail) => out.end((err?: Error | null) => (err ? fail(err) : ok())));
}

async function main() {
  const sizes = (process.env.BENCH_MILLION_SIZES ?? "100000,300000,1000000").split(",").map(Number);
  const rows: (string | number)[][] = [];
  const loads: string[] = [];
  for (const count of sizes) {
    const root = await mkdtemp(join(tmpdir(), "remotelog-bench-million-"));
    const server = await startServer(root, [], NODE_ARGS, CLI);
    try {
      const input = join(root, "lines.txt");
      await writeLines(input, count);
      loads.push(loadavg()[0].toFixed(1));
      const send = await whole(["send", "--unsigned", "--name", "million", "--server", server.url, "--data", join(root, "alice")], input);
      const receive = await whole(["receive", "--unsigned", "--name", "million", "--server", server.url, "--state", join(root, "bob")]);
      if (receive.lines !== count) throw new Error(`receive printed ${receive.lines} lines of ${count}`);
      const serverPeak = await peakMb(server.pid);
      const serverCpu = await cpuSeconds(server.pid);
      rows.push([count, send.ms, send.cpuS, send.peakMb, receive.ms, receive.cpuS, receive.peakMb, serverCpu, serverPeak]);
      loads.push(loadavg()[0].toFixed(1));
    } finally {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  }
  console.log(`\nwhole processes, ${BODY_BYTES} B bodies, default flags, serve with fs + level on 127.0.0.1 (load average ${loads.join(" → ")})\n`);
  const headers = ["messages", "send ms", "send CPU s", "send peak RSS MB", "receive ms", "receive CPU s", "receive peak RSS MB", "serve CPU s", "serve peak RSS MB"];
  console.log(table(headers, rows));
  await writeBenchResult("million", { million: { headers, rows } });
}

await main();
