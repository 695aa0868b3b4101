import { describe, expect, it } from "vitest";
import { chaosProblems, runChaos } from "../../bench/chaos-harness.js";

// Seeded random SIGKILLs of sender, server, receiver (--out), backup and mirror: the real CLI, as
// separate processes. CHAOS_SEED replays a run, CHAOS_KILLS sets the kill points (at least 50 here;
// `make chaos` runs 1,000). A failure names its seed.
const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);
const KILLS = Math.max(50, Number(process.env.CHAOS_KILLS ?? 50));

describe(`chaos - ${KILLS} random SIGKILLs (seed ${SEED})`, () => {
  it("every acknowledged message arrives once, in order, in --out; backup and mirror verify clean; nothing hangs", { timeout: 170_000 }, async () => {
    const result = await runChaos({ seed: SEED, kills: KILLS, boundMs: 45_000 });
    const problems = chaosProblems(result);
    expect(problems, `seed ${SEED} (CHAOS_SEED=${SEED} replays it): ${JSON.stringify(result.killsByTarget)}`).toEqual([]);
    expect(Object.values(result.killsByTarget).reduce((a, b) => a + b, 0), `seed ${SEED}`).toBeGreaterThanOrEqual(KILLS * 0.8);
    expect(result.acknowledged, `seed ${SEED}`).toBeGreaterThan(0);
    expect(result.delivered, `seed ${SEED}`).toBeGreaterThanOrEqual(result.acknowledged);
  });
});
