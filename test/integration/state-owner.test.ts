import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { openRemote, Receiver } from "../../lib/index.js";
import { cleanup, lines, runCli, spawnCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/*
 * A receiver's state directory holds its checkpoints, and each receiver caches its own: two at once on
 * one directory each moved the other's checkpoint, back too (library hunt M4), delivering again what
 * the other had, or skipping what it never delivered. The directory is one receiver's at a time now.
 */
describe("receive - a state directory is one receiver's at a time", () => {
  it("a second receive on the --state of a running follower is CONFLICT naming its process; once it is gone, the state is taken", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    try {
      expect((await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(3) })).code).toBe(0);
      const state = join(dir, "bob");
      const follower = spawnCli(["receive", "--unsigned", "--follow", "--name", "n", "--server", server.url, "--state", state]);
      let seen = 0;
      createInterface({ input: follower.stdout! }).on("line", () => seen++);
      await expect.poll(() => seen, { timeout: 15_000 }).toBe(3);
      const second = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", state]);
      // The old second receiver read the follower's checkpoint and went on from it beside it.
      expect(second.code).toBe(1);
      expect(second.stderr).toContain(`CONFLICT: receiver state ${state} is in use by process ${follower.pid}`);
      expect(second.stdout).toBe("");
      await stop(follower, "SIGTERM");
      // The follower's LOCK names a process gone: taken over, and the checkpoint is where it left it.
      expect((await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(1, "more") })).code).toBe(0);
      const after = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", state]);
      expect(after.code, after.stderr).toBe(0);
      expect(after.stdout.trim().split("\n").map((line) => JSON.parse(line).seq)).toEqual([3]);
    } finally {
      await stop(server.process);
    }
  });

  it("library: a second Receiver.open on the same state is CONFLICT until the first is closed, which lets the directory go", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const remote = openRemote(server.url);
    try {
      const state = join(dir, "bob");
      const first = await Receiver.open({ remote, name: "n", unsigned: true, state });
      await expect(Receiver.open({ remote, name: "n", unsigned: true, state })).rejects.toMatchObject({ code: "CONFLICT", message: expect.stringContaining(`receiver state ${state} is in use by process ${process.pid} (this one)`) });
      await expect(Receiver.open({ remote, name: "other", unsigned: true, state })).rejects.toMatchObject({ code: "CONFLICT" });
      expect(await readFile(join(state, "LOCK"), "utf8")).toBe(`${process.pid}\n`);
      await first.close();
      await expect(readFile(join(state, "LOCK"))).rejects.toMatchObject({ code: "ENOENT" });
      const again = await Receiver.open({ remote, name: "n", unsigned: true, state });
      await again.close();
    } finally {
      remote.close();
      await stop(server.process);
    }
  });
});
