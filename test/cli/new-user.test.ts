import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, runCli, startServer, tempDir } from "../helpers/processes.js";

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

  it("restore, verify and export of a service URL without --name or --pack say which of those to give, not backup's --head-name", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const to = join(dir, "restored");
    const runs = {
      restore: await runCli(["restore", "--to", to, "--from", server.url], { timeoutMs: 15_000 }),
      verify: await runCli(["verify", "--from", server.url], { timeoutMs: 15_000 }),
      export: await runCli(["export", "--car", join(dir, "x.car"), "--from", server.url], { timeoutMs: 15_000 }),
    };
    const picks = {
      restore: "say which backup to restore with --name NAME (the name backup --head-name gave it) or --pack CID (its head pack)",
      verify: "say what to check with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)",
      export: "say what to write with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)",
    };
    for (const [verb, run] of Object.entries(runs)) {
      // It was exit 1 and "a backup in a CAS service needs --head-name NAME (or --key FILE) to record its head", flags these verbs do not have.
      expect(run.code, `${verb}: ${run.stderr}`).toBe(2);
      expect(run.stderr, verb).toBe(`remotelog: INVALID_ARGUMENT: ${server.url} is a service, with no HEAD to start from: ${picks[verb as keyof typeof picks]}\n`);
    }
    expect(existsSync(to)).toBe(false);
  });
});
