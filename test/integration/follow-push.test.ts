import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { cleanup, lines, runCli, spawnCli, startServer, stop, tempDir, bodyText } from "../helpers/processes.js";

afterEach(cleanup);

describe("follow - pushed heads", () => {
  it("receive --follow delivers as soon as a head is pushed, long before its poll interval", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const send = (batch: string) => runCli(["send", "--unsigned", "--name", "p", "--server", server.url, "--data", join(dir, "alice")], { stdin: batch });
    expect((await send(lines(3, "first"))).code).toBe(0);
    // A poll every minute: only a pushed head can bring the next messages within the test's time.
    const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", "--name", "p", "--server", server.url, "--state", join(dir, "bob")]);
    const seen: string[] = [];
    createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
    await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(3);
    for (let round = 0; round < 3; round++) {
      const started = Date.now();
      expect((await send(lines(2, `push${round}`))).code).toBe(0);
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(5 + round * 2);
      expect(Date.now() - started).toBeLessThan(10_000);
    }
    expect(seen.slice(3)).toEqual(["push0 0", "push0 1", "push1 0", "push1 1", "push2 0", "push2 1"]);
    await stop(follower, "SIGTERM");
    expect(follower.exitCode).toBe(0);
  });
});
