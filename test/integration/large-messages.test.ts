import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, parseJsonl, runCli, startServer, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/*
 * A writer picks its messages' sizes. A receiver counted what it held in messages alone: each fetch
 * took up to 4,096 of them, and each delivered batch held 1,024, every one a view that kept its whole
 * fetch's answer alive. Messages of 900 KB made a `receive` of a 1.35 GB log peak at 2.7 GB, and a
 * server that answered with large blocks grew one past 12 GB.
 */
describe("receive - messages of up to a block each", () => {
  it("holds a bounded amount of them, whatever the log's size, and delivers each once, in order", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--max-response-bytes", String(64 << 20)]);
    const count = 200;
    const size = 900_000;
    const input = Array.from({ length: count }, (_, i) => `${String(i).padStart(5, "0")}${"x".repeat(size)}\n`).join("");
    const sent = await runCli(["send", "--unsigned", "--name", "big", "--server", server.url, "--data", join(dir, "alice"), "--embed", "none"], { stdin: input, timeoutMs: 120_000 });
    expect(sent.code, sent.stderr).toBe(0);

    // The process's own peak resident size (getrusage), said as it exits.
    const peak = join(dir, "peak.cjs");
    await writeFile(peak, 'process.on("exit", () => process.stderr.write(`peak-rss-kb ${process.resourceUsage().maxRSS}\\n`));\n');
    const received = await runCli(["receive", "--unsigned", "--name", "big", "--server", server.url], { timeoutMs: 120_000, env: { NODE_OPTIONS: `--require ${peak}` } });
    expect(received.code, received.stderr).toBe(0);
    const lines = parseJsonl<{ seq: number; body: string }>(received.stdout);
    expect(lines.map((line) => line.seq)).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(lines.every((line, i) => line.body.length === size + 5 && line.body.startsWith(String(i).padStart(5, "0")))).toBe(true);
    const peakMb = Number(/peak-rss-kb (\d+)/.exec(received.stderr)![1]) / 1024;
    // The log is 180 MB; what one fetch and one delivered batch hold (8 MiB each) and the process
    // itself (~70 MB) come to far less. It peaked at 400-600 MB when a batch held 1,024 messages.
    expect(peakMb).toBeLessThan(250);
  }, 240_000);
});
