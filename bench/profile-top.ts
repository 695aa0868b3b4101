/**
 * The top frames of a `node --cpu-prof` profile by self time, as bench/README.md lists them:
 * `node dist/bench/profile-top.js FILE.cpuprofile [N]`. Paths are cut to node_modules/… or dist/….
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

const [file, count = "15"] = process.argv.slice(2);
if (!file) throw new Error("usage: profile-top FILE.cpuprofile [N]");
const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const selfUs = new Map<string, number>();
let totalUs = 0;
profile.samples.forEach((id, i) => {
  const frame = nodes.get(id)!.callFrame;
  const url = frame.url.replace(/^.*\/(node_modules|dist)\//, "$1/");
  const key = `${frame.functionName || "(anonymous)"} ${url}:${frame.lineNumber + 1}`;
  const us = profile.timeDeltas[i] ?? 0;
  selfUs.set(key, (selfUs.get(key) ?? 0) + us);
  totalUs += us;
});
console.log(`${(totalUs / 1000).toFixed(0)} ms sampled`);
for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) {
  console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${key}`);
}
