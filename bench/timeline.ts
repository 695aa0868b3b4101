/**
 * Lays two or more `.cpuprofile`s (a client's round and the server's whole run, say) side by side on one
 * clock, in bins: `node dist/bench/timeline.js [--bin MS] [--from US --to US] LABEL=FILE...`. V8 stamps
 * samples with the monotonic clock, shared by every process on the machine, so the profiles line up
 * without an offset. Each row is a bin: for each profile, the share of it that was busy (not idle) and its top frame by self time; the span shown is the first profile's. Time no profile was
 * busy in is waiting: on the network, on the disk, or (on a loaded machine) on the CPU itself.
 */
import { readFileSync } from "node:fs";
import { busyIn, busySamples, type CpuProfile } from "./profile-bins.js";

const args = process.argv.slice(2);
let binUs = 5_000;
let from: number | undefined;
let to: number | undefined;
const inputs: { label: string; file: string }[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--bin") binUs = Number(args[++i]) * 1000;
  else if (args[i] === "--from") from = Number(args[++i]);
  else if (args[i] === "--to") to = Number(args[++i]);
  else {
    const at = args[i].indexOf("=");
    inputs.push({ label: args[i].slice(0, at), file: args[i].slice(at + 1) });
  }
}
if (inputs.length === 0) throw new Error("usage: timeline [--bin MS] LABEL=FILE.cpuprofile ...");

const profiles = inputs.map(({ label, file }) => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  return { label, profile, samples: busySamples(profile) };
});
const start = from ?? profiles[0].profile.startTime;
const end = to ?? profiles[0].profile.endTime;
const bins = Math.ceil((end - start) / binUs);
const busyTotals = profiles.map(() => 0);
let idleBins = 0;
console.log(`span ${((end - start) / 1000).toFixed(1)} ms, bins of ${binUs / 1000} ms; per profile: busy % and top frame`);
for (let b = 0; b < bins; b++) {
  const lo = start + b * binUs;
  const hi = lo + binUs;
  const cells = profiles.map(({ samples }, p) => {
    const { busy, top } = busyIn(samples, lo, hi);
    busyTotals[p] += busy;
    return { busy, text: `${String(Math.round((100 * busy) / binUs)).padStart(3)}% ${top.slice(0, 48)}`.padEnd(54) };
  });
  if (cells.every((cell) => cell.busy < binUs * 0.1)) idleBins++;
  console.log(`${String(((lo - start) / 1000).toFixed(0)).padStart(6)} ms  ${cells.map((cell, p) => `${profiles[p].label}: ${cell.text}`).join(" ")}`);
}
console.log(
  `busy: ${profiles.map(({ label }, p) => `${label} ${(busyTotals[p] / 1000).toFixed(1)} ms`).join(", ")}; bins with every profile under 10% busy: ${idleBins} of ${bins}`,
);
