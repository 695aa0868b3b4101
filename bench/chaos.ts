/*
 * `make chaos`: 1,000 seeded random SIGKILLs (CHAOS_KILLS) of sender, server, receiver (--out), backup
 * and mirror, through the real CLI, and a table of what came of them. Exits 1 when anything
 * acknowledged was lost, duplicated or reordered, a verify was not clean, or a process hung.
 * CHAOS_SEED replays a run.
 */
import { chaosProblems, runChaos, TARGETS } from "./chaos-harness.js";
import { table } from "./harness.js";

const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);
const kills = Number(process.env.CHAOS_KILLS ?? 1000);
const started = performance.now();
console.log(`chaos: ${kills} kill points, seed ${seed} (CHAOS_SEED=${seed} replays it)`);
const result = await runChaos({
  seed,
  kills,
  log: (line) => {
    if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K`);
    else if (/^round \d*0:/.test(line)) process.stderr.write(`${line}\n`);
  },
});
if (process.stderr.isTTY) process.stderr.write("\n");
const minutes = (performance.now() - started) / 60_000;
console.log(
  table(
    ["kill points", ...TARGETS.map((t) => `${t}`), "acknowledged", "delivered", "lost", "duplicated", "reordered", "longest recovery"],
    [
      [
        String(Object.values(result.killsByTarget).reduce((a, b) => a + b, 0)),
        ...TARGETS.map((t) => String(result.killsByTarget[t])),
        String(result.acknowledged),
        String(result.delivered),
        String(result.lost),
        String(result.duplicated),
        String(result.reordered),
        `${(result.longestRecoveryMs / 1000).toFixed(2)} s (${result.longestRecoveryTarget ?? "-"})`,
      ],
    ],
  ),
);
console.log(
  `verify --read-data: backup ${result.verifyBackup || "clean"}, mirror ${result.verifyMirror || "clean"}; hangs: ${result.hangs.length}; ` +
    `runs that exited UNAVAILABLE while the server was down: ${result.unavailableWhileServerDown}; other failed runs: ${result.failures.length}; ${minutes.toFixed(1)} min`,
);
const problems = chaosProblems(result);
if (problems.length > 0) {
  console.log(`FAILED (seed ${seed}):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
