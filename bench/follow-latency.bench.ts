/**
 * Append-to-delivered latency of `receive --follow`: a sender in this process appends and publishes
 * one message at a time to a real `serve` process, and a real `receive --follow` process with a 60 s
 * poll interval prints it, woken by the head the NS pushes. Once with every message in the CAS, once
 * as a sender publishes by default (DEFAULT_EMBED: the newest 8 embedded in the head).
 * BENCH_FOLLOW_COUNT sets the count (200).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_EMBED, type EmbedMode } from "../core/page.js";
import { startFollowRig } from "./follow-rig.js";
import { percentile, table, writeBenchResult } from "./harness.js";

const COUNT = Number(process.env.BENCH_FOLLOW_COUNT ?? 200);

async function run(embed: EmbedMode): Promise<(string | number)[]> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-follow-"));
  const rig = await startFollowRig(root, embed);
  const latencies: number[] = [];
  const appends: number[] = [];
  const publishes: number[] = [];
  try {
    for (let i = 0; i < COUNT; i++) {
      const body = `message ${i}`;
      const arrival = rig.nextLine(`message ${i}`);
      const { start, appended, published } = await rig.send(body);
      const { line, at } = await arrival;
      latencies.push(Number(at - start) / 1e6);
      if ((JSON.parse(line) as { body: string }).body !== body) throw new Error(`the follower printed ${line}, not message ${i}`);
      appends.push(Number(appended - start) / 1e6);
      publishes.push(Number(published - appended) / 1e6);
    }
  } finally {
    await rig.close();
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
