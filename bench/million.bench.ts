/**
 * A long log through whole processes (issue 13 item 5): `remotelog send` of N lines from a file,
 * `remotelog receive` of the whole log to a pipe, and the `serve` they talk to, each with its wall time
 * and peak RSS (VmHWM). Peak RSS that grows with N means something holds the whole log. Run with
 * `make bench-million`; BENCH_MILLION_SIZES (default 100000,300000,1000000).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { BODY_BYTES, MAIN, ms, startServer, table, writeBenchResult } from "./harness.js";

/** The peak RSS of a live process, in MB: VmHWM from /proc. */
async function peakMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/**
 * Runs `node MAIN args` to its exit; stdin from a file, stdout counted by lines. Its peak RSS is read
 * from /proc every 50 ms (VmHWM only grows), the last read just before it exits.
 */
async function whole(args: string[], stdinFile?: string): Promise<{ ms: number; peakMb: number; lines: number }> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: [stdinFile ? "pipe" : "ignore", "pipe", "inherit"] });
  if (stdinFile) {
    const { createReadStream } = await import("node:fs");
    createReadStream(stdinFile).pipe(child.stdin!);
  }
  let lines = 0;
  child.stdout!.on("data", (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  let peak = 0;
  const timer = setInterval(() => void peakMb(child.pid!).then((mb) => (peak = Math.max(peak, mb)), () => {}), 50);
  const code = await new Promise<number | null>((ok) => child.once("close", ok));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${args[0]} exited with ${code}`);
  return { ms: ms(start), peakMb: peak, lines };
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
    const server = await startServer(root);
    try {
      const input = join(root, "lines.txt");
      await writeLines(input, count);
      loads.push(loadavg()[0].toFixed(1));
      const send = await whole(["send", "--unsigned", "--name", "million", "--server", server.url, "--data", join(root, "alice")], input);
      const receive = await whole(["receive", "--unsigned", "--name", "million", "--server", server.url, "--state", join(root, "bob")]);
      if (receive.lines !== count) throw new Error(`receive printed ${receive.lines} lines of ${count}`);
      const serverPeak = await peakMb(server.pid);
      rows.push([count, send.ms, send.peakMb, receive.ms, receive.peakMb, serverPeak]);
      loads.push(loadavg()[0].toFixed(1));
    } finally {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  }
  console.log(`\nwhole processes, ${BODY_BYTES} B bodies, default flags, serve with fs + level on 127.0.0.1 (load average ${loads.join(" → ")})\n`);
  const headers = ["messages", "send ms", "send peak RSS MB", "receive ms", "receive peak RSS MB", "serve peak RSS MB"];
  console.log(table(headers, rows));
  await writeBenchResult("million", { million: { headers, rows } });
}

await main();
