/**
 * The top frames of a `node --cpu-prof` profile by self time, as bench/README.md lists them:
 * `node dist/bench/profile-top.js FILE.cpuprofile [N]`. Paths are cut to node_modules/… or dist/….
 *
 * With `--stall`, the same for the longest stretch with no idle sample: the event loop's longest
 * stall, what every other call waited behind (on a busy machine, time the process was not scheduled
 * shows as one long sample of whatever ran before it: read the largest samples beside it).
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

const args = process.argv.slice(2);
const stall = args.includes("--stall");
const [file, count = "15"] = args.filter((arg) => arg !== "--stall");
if (!file) throw new Error("usage: profile-top [--stall] FILE.cpuprofile [N]");
const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const isIdle = (id: number) => nodes.get(id)!.callFrame.functionName === "(idle)";

// The samples to summarise: all of them, or the longest run between two idle ones.
let from = 0;
let to = profile.samples.length;
if (stall) {
  let best = { us: -1, from: 0, to: 0, at: 0 };
  let runUs = 0;
  let runFrom = 0;
  let clock = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    clock += us;
    if (isIdle(id)) {
      if (runUs > best.us) best = { us: runUs, from: runFrom, to: i, at: clock - runUs - us };
      runUs = 0;
      runFrom = i + 1;
    } else runUs += us;
  });
  ({ from, to } = best);
  const largest = Math.max(0, ...profile.timeDeltas.slice(from, to));
  console.log(`longest stretch without idle: ${(best.us / 1000).toFixed(0)} ms, ${(best.at / 1e6).toFixed(2)} s into the profile, ${to - from} samples (largest ${(largest / 1000).toFixed(1)} ms)`);
}

const selfUs = new Map<string, number>();
let totalUs = 0;
for (let i = from; i < to; i++) {
  const frame = nodes.get(profile.samples[i])!.callFrame;
  const url = frame.url.replace(/^.*\/(node_modules|dist)\//, "$1/");
  const key = `${frame.functionName || "(anonymous)"} ${url}:${frame.lineNumber + 1}`;
  const us = profile.timeDeltas[i] ?? 0;
  selfUs.set(key, (selfUs.get(key) ?? 0) + us);
  totalUs += us;
}
console.log(`${(totalUs / 1000).toFixed(0)} ms sampled`);
for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) {
  console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${key}`);
}
