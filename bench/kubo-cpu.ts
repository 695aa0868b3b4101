/**
 * Where the time of the Kubo CAS goes, client against node: N random 272-byte blocks put with one
 * KuboContentStore.putMany (PUT=car, the default, or PUT=block) and read back twice with getMany, each
 * with its wall time, the CPU time of this process and that of the IPFS node (the js-ipfs harness, from
 * /proc). `node dist/bench/kubo-cpu.js`, N (default 2000).
 */
import { execSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpuUsage } from "node:process";
import { KuboContentStore } from "../stores/kubo/content-store.js";
import { startIpfs } from "../test/kubo/ipfs-node.js";

/** User + system CPU ms of the harness this process started (utime and stime of /proc/PID/stat, at 100 ticks a second). */
let harnessPid: string | undefined;
function nodeCpuMs(): number {
  harnessPid ??= execSync(`pgrep -P ${process.pid} -f server.mjs`).toString().trim().split("\n")[0];
  const pid = harnessPid;
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

const n = Number(process.env.N ?? 2000);
const node = await startIpfs();
try {
  const store = await KuboContentStore.open({ url: node.url, put: (process.env.PUT as "car" | "block") ?? "car" });
  const blocks = Array.from({ length: n }, () => randomBytes(272));
  let t = performance.now();
  let c = cpuUsage();
  let h = nodeCpuMs();
  const addresses = await store.putMany(blocks);
  let cu = cpuUsage(c);
  console.log(`put ${n}: ${(performance.now() - t).toFixed(0)} ms, client cpu ${((cu.user + cu.system) / 1000).toFixed(0)} ms, mode ${store.putPath}, node cpu ${nodeCpuMs() - h} ms`);
  for (let round = 0; round < 2; round++) {
    t = performance.now();
    c = cpuUsage();
    h = nodeCpuMs();
    const got = await store.getMany(addresses);
    cu = cpuUsage(c);
    if (got.some((b) => b === undefined)) throw new Error("missing");
    console.log(`get ${n}: ${(performance.now() - t).toFixed(0)} ms, client cpu ${((cu.user + cu.system) / 1000).toFixed(0)} ms, node cpu ${nodeCpuMs() - h} ms`);
  }
  await store.close();
} finally {
  await node.stop();
}
