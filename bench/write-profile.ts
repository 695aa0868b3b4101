/**
 * Profiles the write path alone: `FileLocalLog.append` + `Sender.publish` of BENCH_WRITE_COUNT (10,000)
 * 256-byte messages to a real `serve` process, BENCH_WRITE_ROUNDS (6) times in one JIT-warm process, as
 * bench/peers/hypercore.bench.ts times it. With BENCH_WRITE_PROF_DIR=DIR, each round's span (and only
 * that span) is written as DIR/round<N>.cpuprofile through node:inspector, for bench/profile-top.ts; the
 * server's whole run goes to DIR/server with BENCH_WRITE_SERVER_PROF=1. Prints each round's wall time
 * and CPU time (this process, and it with the server).
 */
import { writeFile, mkdtemp, rm, mkdir } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { GROUP, bodies, cpuMeter, ms, startServer } from "./harness.js";

const COUNT = Number(process.env.BENCH_WRITE_COUNT ?? 10_000);
const ROUNDS = Number(process.env.BENCH_WRITE_ROUNDS ?? 6);
const PROF_DIR = process.env.BENCH_WRITE_PROF_DIR;

const root = await mkdtemp(join(tmpdir(), "remotelog-write-profile-"));
const serverProf = PROF_DIR && process.env.BENCH_WRITE_SERVER_PROF ? join(PROF_DIR, "server") : undefined;
if (serverProf) await mkdir(serverProf, { recursive: true });
const server = await startServer(root, [], serverProf ? ["--cpu-prof", `--cpu-prof-dir=${serverProf}`] : []);
const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
try {
  for (let round = 0; round < ROUNDS; round++) {
    const log = await FileLocalLog.open(join(root, `alice-${round}`));
    const encoded = bodies(COUNT).map((body, i) => encodeMessage(newMessage(GROUP, 1_700_000_000n + BigInt(round * COUNT + i), body)));
    const session = PROF_DIR ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
    }
    const cpu = cpuMeter(server.pid);
    const own = process.cpuUsage();
    const start = process.hrtime.bigint();
    await log.append(encoded);
    const appendMs = ms(start);
    const result = await new Sender({ published: new MemoryCheckpointStore(), name: `write-${round}`, log, remote }).publish();
    const totalMs = ms(start);
    const ownCpu = process.cpuUsage(own);
    const bothCpu = cpu();
    if (session) {
      const { profile } = await session.post("Profiler.stop");
      await writeFile(join(PROF_DIR!, `round${round}.cpuprofile`), JSON.stringify(profile));
      session.disconnect();
    }
    await log.close();
    if (result.published !== COUNT) throw new Error(`published ${result.published} of ${COUNT}`);
    console.log(
      `round ${round}: append ${appendMs.toFixed(1)} ms, publish ${(totalMs - appendMs).toFixed(1)} ms, append+publish ${totalMs.toFixed(1)} ms; ` +
        `CPU ${((ownCpu.user + ownCpu.system) / 1000).toFixed(0)} ms here, ${bothCpu.toFixed(0)} ms with the server; load average ${loadavg()[0].toFixed(2)}`,
    );
  }
} finally {
  remote.close();
  await server.stop();
  await rm(root, { recursive: true, force: true });
}
