import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, runCli, tempDir } from "../helpers/processes.js";

// What a user trying remotelog for the first time meets: the demo, and the messages of a flag got wrong.

afterEach(cleanup);

describe("cli - a new user's mistakes get one clear line", () => {
  it("send --embed with a bad value names it once, with its code once", async () => {
    const dir = await tempDir();
    const run = await runCli(["send", "--unsigned", "--name", "chat", "--data", join(dir, "chat"), "--embed", "foo"], { timeoutMs: 15_000 });
    expect(run.code, run.stderr).toBe(2);
    // It was "remotelog: INVALID_ARGUMENT: INVALID_ARGUMENT: --embed takes …".
    expect(run.stderr).toBe('remotelog: INVALID_ARGUMENT: --embed takes none, all or a count, not "foo"\n');
  });
});
