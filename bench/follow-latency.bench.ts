/**
 * Append-to-delivered latency of `receive --follow`: a sender in this process appends and publishes
 * one message at a time to a real `serve` process, and a real `receive --follow` process with a 60 s
 * poll interval prints it, woken by the head the NS pushes. Once with every message in the CAS, once
 * as a sender publishes by default (DEFAULT_EMBED: the newest 8 embedded in the head).
 * BENCH_FOLLOW_COUNT sets the count (200).
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { DEFAULT_EMBED, type EmbedMode } from "../core/page.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { GROUP, MAIN, percentile, startServer, stopChild, table, writeBenchResult } from "./harness.js";

const COUNT = Number(process.env.BENCH_FOLLOW_COUNT ?? 200);

async function run(embed: EmbedMode): Promise<(string | number)[]> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-follow-"));
  const server = await startServer(root);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const log = await FileLocalLog.open(join(root, "alice"));
  const sender = new Sender({ name: "follow", log, published: new MemoryCheckpointStore(), remote, embed });
  await sender.append([new TextEncoder().encode("start")], GROUP);
  await sender.publish();

  const receiver = spawn(process.execPath, [MAIN, "receive", "--unsigned", "--follow", "--interval", "60000", "--name", "follow", "--server", server.url, "--state", join(root, "bob")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const sentAt = new Map<string, bigint>();
  const latencies: number[] = [];
  const appends: number[] = [];
  const publishes: number[] = [];
  let arrived: (() => void) | undefined;
  createInterface({ input: receiver.stdout! }).on("line", (line) => {
    const body = (JSON.parse(line) as { body: string }).body;
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
      const start = process.hrtime.bigint();
      sentAt.set(body, start);
      await sender.append([new TextEncoder().encode(body)], GROUP);
      const appended = process.hrtime.bigint();
      await sender.publish();
      appends.push(Number(appended - start) / 1e6);
      publishes.push(Number(process.hrtime.bigint() - appended) / 1e6);
      await Promise.race([waiting, new Promise((_, fail) => setTimeout(() => fail(new Error(`message ${i} did not arrive in 10 s`)), 10_000))]);
    }
  } finally {
    await stopChild(receiver);
    await server.stop();
    remote.close();
    await log.close();
    await rm(root, { recursive: true, force: true });
  }
  for (const list of [latencies, appends, publishes]) list.sort((a, b) => a - b);
  // The embed column stays the bare mode: bench/summary.ts finds the default's row by it.
  return [COUNT, String(embed), percentile(appends, 0.5), percentile(publishes, 0.5), percentile(latencies, 0.5), percentile(latencies, 0.9), percentile(latencies, 0.99), latencies[latencies.length - 1]];
}

const rows = [await run("none"), await run(DEFAULT_EMBED)];
console.log(`\nload average ${loadavg().map((n) => n.toFixed(2)).join(" ")} at the end`);
console.log(`\nappend-to-delivered latency, receive --follow with pushed heads (poll interval 60 s), ${COUNT} messages one at a time; embed ${DEFAULT_EMBED} is the default\n`);
const headers = ["messages", "embed", "append p50 ms", "publish p50 ms", "delivered p50 ms", "p90 ms", "p99 ms", "max ms"];
console.log(table(headers, rows));
await writeBenchResult("follow", { follow: { headers, rows } });
