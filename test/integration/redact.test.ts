import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { cleanup, lines, parseJsonl, runCli, startServer, tempDir, skewedClock } from "../helpers/processes.js";

afterEach(cleanup);

interface Line {
  seq: number;
  id: string;
  body?: string;
  redacted?: boolean;
}

describe("redact - end to end through real processes", () => {
  it("removes a message; receivers print its tombstone, in place for a new receiver and on the next sync for one that had it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "8"], { stdin: lines(40) })).code).toBe(0);
    const bob = ["receive", "--name", name, "--server", server.url, "--state", join(dir, "bob")];
    const before = parseJsonl<Line>((await runCli(bob)).stdout);
    expect(before).toHaveLength(40);

    const target = before[13];
    const redacted = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", target.id]);
    expect(redacted.code, redacted.stderr).toBe(0);
    expect(JSON.parse(redacted.stdout)).toEqual({ redacted: [13], pages: 4, version: 2, redactions: 1 });

    expect(parseJsonl<Line>((await runCli(bob)).stdout)).toEqual([{ seq: 13, id: target.id, redacted: true }]);
    expect((await runCli(bob)).stdout).toBe("");
    const carol = parseJsonl<Line>((await runCli(["receive", "--name", name, "--server", server.url, "--state", join(dir, "carol")])).stdout);
    expect(carol.map((l) => l.redacted === true)).toEqual(Array.from({ length: 40 }, (_, i) => i === 13));
    expect(carol[13]).toEqual({ seq: 13, id: target.id, redacted: true });

    // cat from a seq prints from that seq: the old cat printed the tombstone at 13 first, and counted it toward --limit.
    const from = await runCli(["cat", name, "--server", server.url, "--from-seq", "30", "--limit", "3", "--format", "jsonl"]);
    expect(from.code, from.stderr).toBe(0);
    expect(parseJsonl<Line>(from.stdout).map((l) => l.seq)).toEqual([30, 31, 32]);

    // The sender goes on over the rewritten head.
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "8"], { stdin: lines(2, "after") })).code).toBe(0);
    expect(parseJsonl<Line>((await runCli(bob)).stdout).map((l) => l.seq)).toEqual([40, 41]);

    const bad = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", "abc"]);
    expect(bad.code).toBe(2);
    const unknown = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", "0".repeat(64)]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NOT_FOUND/);
  });
  it("a receiver started at --from-seq K delivers no tombstone below K, then or later, but still those of messages it delivered", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(10) })).code).toBe(0);
    const all = parseJsonl<Line>((await runCli(["cat", name, "--server", server.url, "--format", "jsonl"])).stdout);
    const redact = async (seq: number) => {
      const run = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", all[seq].id]);
      expect(run.code, run.stderr).toBe(0);
    };
    const seqs = (text: string) => parseJsonl<Line>(text).map((l) => (l.redacted ? `${l.seq} redacted` : l.seq));
    await redact(1);
    await redact(4);

    // The old receiver printed seq 1's tombstone first, for a message it never read.
    const stateless = await runCli(["receive", "--name", name, "--server", server.url, "--from-seq", "3"]);
    expect(stateless.code, stateless.stderr).toBe(0);
    expect(seqs(stateless.stdout)).toEqual([3, "4 redacted", 5, 6, 7, 8, 9]);

    // With --state, later redactions below where it started are not its own either; one of a message it delivered is.
    const bob = ["receive", "--name", name, "--server", server.url, "--state", join(dir, "bob")];
    expect(seqs((await runCli([...bob, "--from-seq", "5"])).stdout)).toEqual([5, 6, 7, 8, 9]);
    await redact(2);
    await redact(6);
    expect(parseJsonl<Line>((await runCli(bob)).stdout)).toEqual([{ seq: 6, id: all[6].id, redacted: true }]);
    // A seek back into what it delivered keeps the messages it delivered before as its own.
    expect(seqs((await runCli([...bob, "--from-seq", "8"])).stdout)).toEqual([8, 9]);
    await redact(5);
    // Seq 6 shares the page the redaction rewrote, so its tombstone may come again, as any repeat a consumer drops by seq and id.
    const back = parseJsonl<Line>((await runCli(bob)).stdout);
    expect(back.find((l) => l.seq === 5)).toEqual({ seq: 5, id: all[5].id, redacted: true });
    expect(back.every((l) => l.redacted === true && l.seq >= 5), JSON.stringify(back)).toBe(true);
  });

  it("redacts a log whose record expired while its sender was quiet: the key holder's new head renews it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--validity", "1m"], { stdin: "secret leaked\nok\n" })).code).toBe(0);
    const leaked = parseJsonl<Line>((await runCli(["cat", name, "--server", server.url, "--format", "jsonl"])).stdout)[0];
    // Two minutes on, past the record's validity: the old redact refused it (CONFLICT: expired; "the sender must publish it again").
    const redacted = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", leaked.id], { env: await skewedClock(2 * 60_000) });
    expect(redacted.code, redacted.stderr).toBe(0);
    expect(JSON.parse(redacted.stdout)).toMatchObject({ redacted: [0] });
    const read = parseJsonl<Line>((await runCli(["cat", name, "--server", server.url, "--format", "jsonl"])).stdout);
    expect(read.map((l) => l.redacted === true)).toEqual([true, false]);
  });
});
