/**
 * The server's read path without Connect: `BlockServiceImpl.getMany` over an `FsContentStore`, as
 * `serve` answers a receiver's GetMany calls (binary answers, calls of 1,024 ids, blocks of 280 B,
 * stored in packs of 4,096). Prints wall and CPU time per pass over every block, six passes in one
 * process (the first ones JIT-cold). `node dist/bench/getmany-store.bench.js`; BENCH_GETMANY_BLOCKS
 * (default 100000) and BENCH_GETMANY_CALL (default 1024) change the sizes.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { GetManyRequestSchema } from "../gen/remotelog/v1/blocks_pb.js";
import { BlockServiceImpl } from "../services/block-service.js";
import { FsContentStore } from "../stores/fs/content-store.js";
import { ms } from "./harness.js";

const BLOCKS = Number(process.env.BENCH_GETMANY_BLOCKS ?? 100_000);
const CALL = Number(process.env.BENCH_GETMANY_CALL ?? 1024);

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "remotelog-bench-getmany-"));
  const store = await FsContentStore.open(dir);
  try {
    const ids: Uint8Array[] = [];
    for (let i = 0; i < BLOCKS; i += 4096) ids.push(...(await store.putMany(Array.from({ length: Math.min(4096, BLOCKS - i) }, () => randomBytes(280)))));
    const service = new BlockServiceImpl(store);
    // What answerFormat reads of a call: a binary one.
    const context = { requestHeader: new Headers({ "content-type": "application/proto" }) } as HandlerContext;
    const passes: string[] = [];
    for (let pass = 0; pass < 6; pass++) {
      const cpu = process.cpuUsage();
      const start = process.hrtime.bigint();
      for (let i = 0; i < BLOCKS; i += CALL) {
        const answer = await service.getMany(create(GetManyRequestSchema, { ids: ids.slice(i, i + CALL), partialOk: true }), context);
        if (!answer.$unknown?.length) throw new Error("an empty answer");
      }
      const used = process.cpuUsage(cpu);
      passes.push(`${ms(start).toFixed(0)} / ${((used.user + used.system) / 1000).toFixed(0)}`);
    }
    console.log(`GetMany of ${BLOCKS} blocks of 280 B in calls of ${CALL}, wall / CPU ms per pass: ${passes.join(", ")} (load average ${loadavg()[0].toFixed(1)})`);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
