/**
 * Catch-up of a fresh receiver over a slow network: a real `serve` process behind a delay proxy that
 * adds a round-trip time to both services, 100k messages of 256 B in pages of 256. The receiver
 * collects pages by skip links (rounds of parallel fetches), then fetches messages in parallel
 * batches. A walk by tails alone would need one round trip per page before the first message.
 * Once as a sender publishes by default (DEFAULT_EMBED), once with every message only in the CAS, once
 * with every message in its page. CPU is this process's (its verify threads included) and the
 * server's, over the best run. Run with `make bench-rtt`; BENCH_RTT_MS and BENCH_RTT_COUNT change the
 * defaults (20 ms, 100000).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Remote } from "../actors/remote.js";
import { Receiver } from "../actors/receiver.js";
import { Sender } from "../actors/sender.js";
import { DEFAULT_EMBED, type EmbedMode } from "../core/page.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../stores/memory/local-log.js";
import { startDelayProxy } from "./delay-proxy.js";
import { GROUP, bodies, cpuMeter, ms, startServer, table } from "./harness.js";

const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 20);
const COUNT = Number(process.env.BENCH_RTT_COUNT ?? 100_000);
const PAGE_SIZE = 256;

async function main() {
  const rows: (string | number)[][] = [];
  for (const embed of [DEFAULT_EMBED, "none", "all"] as EmbedMode[]) {
    const root = await mkdtemp(join(tmpdir(), "remotelog-bench-rtt-"));
    const server = await startServer(root);
    try {
      const direct = new Remote({ casUrl: server.url, nsUrl: server.url });
      const sender = new Sender({ name: "rtt", log: new MemoryLocalLog(), published: new MemoryCheckpointStore(), remote: direct, pageSize: PAGE_SIZE, embed });
      await sender.append(bodies(COUNT), GROUP, 1n);
      await sender.publish();
      direct.close();
      for (const rtt of [0, RTT_MS]) {
        const proxy = await startDelayProxy(server.url, rtt);
        try {
          const times: number[] = [];
          const cpus: number[] = [];
          let pages = 0;
          for (let run = 0; run < 3; run++) {
            const remote = new Remote({ casUrl: proxy.url, nsUrl: proxy.url });
            const receiver = new Receiver({ name: "rtt", remote, checkpoints: new MemoryCheckpointStore() });
            let delivered = 0;
            const cpu = cpuMeter(server.pid);
            const start = process.hrtime.bigint();
            const result = await receiver.sync(async (batch) => {
              delivered += batch.length;
            });
            times.push(ms(start));
            cpus.push(cpu());
            remote.close();
            if (delivered !== COUNT) throw new Error(`delivered ${delivered}, not ${COUNT}`);
            pages = result.pages;
          }
          const sequential = (pages * rtt) / 1000;
          const best = times.indexOf(Math.min(...times.slice(1)));
          const label = embed === DEFAULT_EMBED ? `${embed} (default)` : embed;
          rows.push([COUNT, label, rtt, pages, times[0], times[best], Math.round(cpus[best]), rtt === 0 ? "-" : sequential.toFixed(1)]);
        } finally {
          await proxy.close();
        }
      }
    } finally {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  }
  console.log(`load average ${loadavg().map((n) => n.toFixed(2)).join(" ")} at the end\n`);
  console.log(table(["messages", "embed", "RTT ms", "pages", "catch-up first ms", "catch-up best of next 2 ms", "its cpu ms", "walk by tails alone ≥ s"], rows));
  console.log("\nwalk by tails alone: pages × RTT, the round trips a receiver without skip links needs before its first message.");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
