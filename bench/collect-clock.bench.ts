/**
 * The page collection of a catch-up (core/chain.ts `collectPages`, as a receiver calls it) on a virtual
 * clock, so that its schedule can be compared on a machine whose load moves wall times by ±50%: every
 * fetch call takes the round trip, 0.05 ms a page, and a random delay (exponential, of mean JITTER ms,
 * seeded) standing for a server and client busy with other work (message calls queued ahead of it, the
 * garbage collector, other processes). No CPU time of this machine enters the figures: they are the
 * virtual time at which the collection ends, one per seed. Run `node dist/bench/collect-clock.bench.js`
 * in an old and a new build to compare; BENCH_CLOCK_MESSAGES (default 100000, pages of 256),
 * BENCH_CLOCK_RTT_MS (20), BENCH_CLOCK_JITTERS (2,10,30) and BENCH_CLOCK_SEEDS (8).
 */
import { collectPages } from "../core/chain.js";
import { addressOf, encodeMessage, messageId, newMessage, toHex } from "../core/hash.js";
import { planPages, type LogEntry } from "../core/page.js";
import { seededRandom, table } from "./harness.js";

const MESSAGES = Number(process.env.BENCH_CLOCK_MESSAGES ?? 100_000);
const RTT_MS = Number(process.env.BENCH_CLOCK_RTT_MS ?? 20);
const JITTERS = (process.env.BENCH_CLOCK_JITTERS ?? "2,10,30").split(",").map(Number);
const SEEDS = Number(process.env.BENCH_CLOCK_SEEDS ?? 8);

async function main() {
  const group = new TextEncoder().encode("g");
  const entries: LogEntry[] = Array.from({ length: MESSAGES }, (_, i) => {
    const message = newMessage(group, 1n, new TextEncoder().encode(`m${i}`));
    const data = encodeMessage(message);
    return { id: messageId(message), address: addressOf(data), data };
  });
  const plan = planPages(entries, new Uint8Array(0), 256, "none");
  const blocks = new Map(plan.sealed.map((page) => [toHex(page.address), page.bytes]));
  const rows: (string | number)[][] = [];
  for (const jitter of JITTERS) {
    const ends: number[] = [];
    let calls = 0;
    let rounds = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = seededRandom(seed);
      let clock = 0;
      calls = 0;
      const answers: { at: number; answer: () => void }[] = [];
      const fetchPages = (addresses: Uint8Array[]) =>
        new Promise<Uint8Array[]>((resolve) => {
          calls++;
          const at = clock + RTT_MS + 0.05 * addresses.length - jitter * Math.log(1 - random());
          answers.push({ at, answer: () => resolve(addresses.map((address) => blocks.get(toHex(address))!)) });
        });
      let done = false;
      const collecting = collectPages(plan.head, 0, fetchPages, { holdPages: 64, tellUnheld: false }).finally(() => (done = true));
      // Each answer is given once everything the one before set off has run: the clock moves to it.
      while (!done) {
        await new Promise((resolve) => setImmediate(resolve));
        if (done || answers.length === 0) continue;
        answers.sort((a, b) => a.at - b.at);
        const next = answers.shift()!;
        clock = next.at;
        next.answer();
      }
      rounds = (await collecting).rounds;
      ends.push(Math.round(clock));
    }
    const sorted = [...ends].sort((a, b) => a - b);
    rows.push([plan.sealed.length, RTT_MS, jitter, calls, rounds, sorted[Math.floor(sorted.length / 2)], ends.join(" ")]);
  }
  console.log(table(["pages", "RTT ms", "jitter mean ms", "calls", "fetches deep", "median end ms", "end ms per seed"], rows));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
