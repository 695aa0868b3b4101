import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { addressOf, encodeMessage, messageId, newMessage } from "../../core/hash.js";

// The pool runs the compiled worker script, so these tests load it from dist/ (test/global-setup.ts
// builds it); from the TypeScript sources VerifyPool.shared() has no worker to start.
const POOL = resolve("dist/actors/verify-pool.js");

function messages(n: number) {
  const data: Uint8Array[] = [];
  const pairs: { remoteHash: Uint8Array; localHash: Uint8Array }[] = [];
  for (let i = 0; i < n; i++) {
    const message = newMessage(new TextEncoder().encode("g"), BigInt(i), new TextEncoder().encode(`m${i}`));
    const bytes = encodeMessage(message);
    data.push(bytes);
    pairs.push({ remoteHash: addressOf(bytes), localHash: messageId(message) });
  }
  return { data, pairs };
}

describe("verify pool - messages checked on worker threads", () => {
  it("passes good messages and fails each kind of bad one", async () => {
    const { VerifyPool } = (await import(POOL)) as typeof import("../../actors/verify-pool.js");
    const pool = VerifyPool.shared();
    expect(pool).toBeDefined();
    const { data, pairs } = messages(300);
    data[7] = encodeMessage(newMessage(new TextEncoder().encode("g"), 7n, new TextEncoder().encode("tampered"))); // H2 fails
    pairs[8] = { ...pairs[8], localHash: new Uint8Array(32) }; // H1 fails
    data[9] = new Uint8Array([0xff, 0xff]); // not a message
    pairs[9] = { ...pairs[9], remoteHash: addressOf(data[9]) };
    pairs[10] = { ...pairs[10], remoteHash: new Uint8Array(3) }; // not an address
    const verdicts = await pool!.verify(pairs, data);
    expect([...verdicts].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([7, 8, 9, 10]);
  });

  it("never keeps a process alive once its work is done", () => {
    const script = `
      const { VerifyPool } = await import(${JSON.stringify(POOL)});
      const pool = VerifyPool.shared();
      const verdicts = await pool.verify([{ remoteHash: new Uint8Array(36), localHash: new Uint8Array(32) }], [new Uint8Array(1)]);
      console.log(verdicts[0]);`;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 10_000, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe("1");
  });
});
