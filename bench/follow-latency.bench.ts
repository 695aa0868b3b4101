/**
 * Append-to-delivered latency of `receive --follow` with pushed heads: a sender in this process
 * appends and publishes one message at a time to a real `remotelog serve`, and a real `receive --follow`
 * process prints it. Timed from just before the append to the line arriving here. Its poll interval is
 * a minute, so every delivery within it came from a pushed head.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";

const MAIN = resolve("dist/cli/main.js");
const COUNT = Number(process.env.BENCH_FOLLOW_COUNT ?? 200);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "remotelog-follow-"));
  const server = spawn(process.execPath, [MAIN, "serve", "--listen", "127.0.0.1:0", "--data", join(root, "server"), "--log-level", "warn"], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((ok, fail) => {
    createInterface({ input: server.stdout! }).on("line", (line) => {
      const match = /^listening on (\S+)/.exec(line);
      if (match) ok(match[1]);
    });
    server.once("exit", (code) => fail(new Error(`serve exited with ${code}`)));
  });
  const remote = new Remote({ casUrl: url, nsUrl: url });
  const log = await FileLocalLog.open(join(root, "alice"));
  const sender = new Sender({ name: "follow", log, published: new MemoryCheckpointStore(), remote });
  const group = new TextEncoder().encode("bench");
  await sender.append([new TextEncoder().encode("start")], group);
  await sender.publish();

  const receiver = spawn(process.execPath, [MAIN, "receive", "--unsigned", "--follow", "--interval", "60000", "--name", "follow", "--server", url, "--state", join(root, "bob")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const sentAt = new Map<string, bigint>();
  const latencies: number[] = [];
  let arrived: (() => void) | undefined;
  createInterface({ input: receiver.stdout! }).on("line", (line) => {
    const body = Buffer.from((JSON.parse(line) as { body: string }).body, "base64").toString("utf8");
    const at = sentAt.get(body);
    if (at !== undefined) latencies.push(Number(process.hrtime.bigint() - at) / 1e6);
    arrived?.();
  });
  // The follower is ready once it has printed the first message.
  await new Promise<void>((ok) => (arrived = ok));
  try {
    for (let i = 0; i < COUNT; i++) {
      const body = `message ${i}`;
      const waiting = new Promise<void>((ok) => (arrived = ok));
      sentAt.set(body, process.hrtime.bigint());
      await sender.append([new TextEncoder().encode(body)], group);
      await sender.publish();
      await Promise.race([waiting, new Promise((_, fail) => setTimeout(() => fail(new Error(`message ${i} did not arrive in 10 s`)), 10_000))]);
    }
  } finally {
    receiver.kill("SIGTERM");
    server.kill("SIGTERM");
    remote.close();
    await log.close();
  }
  latencies.sort((a, b) => a - b);
  const row = [COUNT, percentile(latencies, 0.5), percentile(latencies, 0.9), percentile(latencies, 0.99), latencies[latencies.length - 1]];
  console.log(`\nappend-to-delivered latency, receive --follow with pushed heads (poll interval 60 s), ${COUNT} messages one at a time\n`);
  console.log("| messages | p50 ms | p90 ms | p99 ms | max ms |\n|----------|--------|--------|--------|--------|");
  console.log(`| ${row.map((v, i) => (i === 0 ? String(v) : v.toFixed(2))).join(" | ")} |`);
  await rm(root, { recursive: true, force: true });
}

await main();
