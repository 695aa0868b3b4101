/**
 * Catch-up of a fresh receiver over a slow network: a real `serve` process behind a delay proxy that
 * adds a round-trip time to both services, 100k messages of 256 B in pages of 256. The receiver
 * collects pages by skip links (rounds of parallel fetches), then fetches messages in parallel
 * batches. A walk by tails alone would need one round trip per page before the first message.
 * Run with `make bench-rtt`; BENCH_RTT_MS and BENCH_RTT_COUNT change the defaults (20 ms, 100000).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Remote } from "../actors/remote.js";
import { Receiver } from "../actors/receiver.js";
import { Sender } from "../actors/sender.js";
import type { EmbedMode } from "../core/page.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../stores/memory/local-log.js";
import { startDelayProxy } from "./delay-proxy.js";
import { GROUP, bodies, ms, startServer, table } from "./harness.js";

const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 20);
const COUNT = Number(process.env.BENCH_RTT_COUNT ?? 100_000);
const PAGE_SIZE = 256;

async function main() {
  const rows: (string | number)[][] = [];
  for (const embed of ["none", "all"] as EmbedMode[]) {
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
          let pages = 0;
          for (let run = 0; run < 3; run++) {
            const remote = new Remote({ casUrl: proxy.url, nsUrl: proxy.url });
            const receiver = new Receiver({ name: "rtt", remote, checkpoints: new MemoryCheckpointStore() });
            let delivered = 0;
            const start = process.hrtime.bigint();
            const result = await receiver.sync(async (batch) => {
              delivered += batch.length;
            });
            times.push(ms(start));
            remote.close();
            if (delivered !== COUNT) throw new Error(`delivered ${delivered}, not ${COUNT}`);
            pages = result.pages;
          }
          const sequential = (pages * rtt) / 1000;
          rows.push([COUNT, embed, rtt, pages, times[0], Math.min(...times.slice(1)), rtt === 0 ? "-" : sequential.toFixed(1)]);
        } finally {
          await proxy.close();
        }
      }
    } finally {
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  }
  console.log(table(["messages", "embed", "RTT ms", "pages", "catch-up first ms", "catch-up best of next 2 ms", "walk by tails alone ≥ s"], rows));
  console.log("\nwalk by tails alone: pages × RTT, the round trips a receiver without skip links needs before its first message.");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
