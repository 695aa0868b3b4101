/**
 * One delivery of `receive --follow`, end to end, on one clock: as bench/follow-latency.bench.ts (a sender
 * in this process appends and publishes one message at a time to a real `serve`, a real `receive
 * --follow` prints it, woken by the pushed head), with all three processes profiled at a fine interval
 * (BENCH_TRACE_INTERVAL_US, 100). Prints the median delivery's marks (append done, publish done, line
 * read here) and, in bins of BENCH_TRACE_BIN_MS (0.5), what each process was busy with: a span where none
 * is busy is waiting (an fsync, the network, or the CPU on a loaded machine). BENCH_TRACE_COUNT messages
 * (60); BENCH_TRACE_EMBED the embed mode (the default's 8). The profiles stay in BENCH_TRACE_DIR when set
 * (this process's as sender.cpuprofile).
 */
import { mkdtemp, readdir, readFile, rm, mkdir, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_EMBED, parseEmbed } from "../core/page.js";
import { startFollowRig } from "./follow-rig.js";
import { busyIn, busySamples, type CpuProfile } from "./profile-bins.js";

const COUNT = Number(process.env.BENCH_TRACE_COUNT ?? 60);
const INTERVAL_US = Number(process.env.BENCH_TRACE_INTERVAL_US ?? 100);
const BIN_US = Number(process.env.BENCH_TRACE_BIN_MS ?? 0.5) * 1000;
const EMBED = process.env.BENCH_TRACE_EMBED ? parseEmbed(process.env.BENCH_TRACE_EMBED) : DEFAULT_EMBED;

async function onlyProfile(dir: string): Promise<CpuProfile> {
  const [file] = (await readdir(dir)).filter((name) => name.endsWith(".cpuprofile"));
  return JSON.parse(await readFile(join(dir, file), "utf8")) as CpuProfile;
}

const keep = process.env.BENCH_TRACE_DIR;
const root = await mkdtemp(join(tmpdir(), "remotelog-follow-trace-"));
const profDir = keep ?? join(root, "prof");
for (const side of ["server", "receiver"]) await mkdir(join(profDir, side), { recursive: true });
const nodeArgs = (side: string) => ["--cpu-prof", `--cpu-prof-interval=${INTERVAL_US}`, `--cpu-prof-dir=${join(profDir, side)}`];
const rig = await startFollowRig(root, EMBED, nodeArgs);

const session = new Session();
session.connect();
await session.post("Profiler.setSamplingInterval", { interval: INTERVAL_US });
await session.post("Profiler.enable");
await session.post("Profiler.start");
const marks: { start: number; appended: number; published: number; printed: number }[] = [];
try {
  for (let i = 0; i < COUNT; i++) {
    const arrival = rig.nextLine(`message ${i}`);
    const sent = await rig.send(`message ${i}`);
    await arrival;
    const us = (at: bigint) => Number(at / 1000n);
    marks.push({ start: us(sent.start), appended: us(sent.appended), published: us(sent.published), printed: us(process.hrtime.bigint()) });
    // Apart, so that one delivery's tail does not run into the next one's start.
    await new Promise((ok) => setTimeout(ok, 20));
  }
} finally {
  await rig.close();
}
const { profile: own } = await session.post("Profiler.stop");
session.disconnect();
if (keep) await writeFile(join(profDir, "sender.cpuprofile"), JSON.stringify(own));

const byLatency = [...marks].sort((a, b) => a.printed - a.start - (b.printed - b.start));
const median = byLatency[Math.floor(byLatency.length / 2)];
const sides = [
  { label: "sender", samples: busySamples(own as CpuProfile) },
  { label: "server", samples: busySamples(await onlyProfile(join(profDir, "server"))) },
  { label: "receiver", samples: busySamples(await onlyProfile(join(profDir, "receiver"))) },
];
const ms = (from: number, to: number) => ((to - from) / 1000).toFixed(2);
const p50 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)].toFixed(2);
console.log(
  `${COUNT} deliveries, embed ${String(EMBED)}, load average ${loadavg()[0].toFixed(2)}; p50 ms: append ${p50(marks.map((m) => (m.appended - m.start) / 1000))}, ` +
    `publish ${p50(marks.map((m) => (m.published - m.appended) / 1000))}, publish done → printed ${p50(marks.map((m) => (m.printed - m.published) / 1000))}, ` +
    `delivered ${p50(marks.map((m) => (m.printed - m.start) / 1000))}`,
);
console.log(`median delivery: append ${ms(median.start, median.appended)} ms, publish ${ms(median.appended, median.published)} ms, printed ${ms(median.published, median.printed)} ms after (delivered in ${ms(median.start, median.printed)} ms)`);
const from = median.start - 1000;
const to = median.printed + 1000;
for (let lo = from; lo < to; lo += BIN_US) {
  const hi = lo + BIN_US;
  const mark = [
    ["append starts", median.start],
    ["appended", median.appended],
    ["published", median.published],
    ["line read here", median.printed],
  ].find(([, at]) => (at as number) >= lo && (at as number) < hi)?.[0];
  const cells = sides.map(({ label, samples }) => {
    const { busy, top } = busyIn(samples, lo, hi);
    return `${label} ${String(Math.min(100, Math.round((100 * busy) / BIN_US))).padStart(3)}% ${top.slice(0, 34).padEnd(34)}`;
  });
  console.log(`${((lo - median.start) / 1000).toFixed(1).padStart(6)} ms ${cells.join(" ")}${mark ? `  <- ${mark}` : ""}`);
}
if (!keep) await rm(root, { recursive: true, force: true });
