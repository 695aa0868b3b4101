import { cp } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, lines, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/** Runs a verb that must fail with exit 1 and say what pattern says (on stdout or stderr). */
async function refuses(args: string[], pattern: RegExp): Promise<void> {
  const result = await runCli(args);
  expect(result.code, result.stdout + result.stderr).toBe(1);
  expect(result.stdout + result.stderr).toMatch(pattern);
}

/*
 * Every verb that reads a remote log reads it through core/log-reader.ts, so each applies a rollback
 * floor and a page bound. Before, backup, verify, export and inspect had no rollback floor, and export
 * no page bound (inspect did not even verify the head's record).
 */
describe("one reader - every verb that reads a log refuses a rollback and a chain over its bound", () => {
  it("a server rolled back to an older, validly signed head: backup, verify, export, inspect and mirror refuse it", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const send = (count: number, from: number) => runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(count, "m", from) });
    expect((await send(10, 0)).code).toBe(0);
    // The server's state as it was after the first publish (record sequence 1), kept aside.
    await stop(server.process);
    await cp(data, join(dir, "old-server"), { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const sent = await send(10, 10);
    expect(sent.code, sent.stderr).toBe(0);
    // Readers that keep state see sequence 2: a backup and a mirror.
    const backup = await runCli(["backup", "--from", name, "--server", server.url, "--to", join(dir, "backup")]);
    expect(backup.code, backup.stderr).toBe(0);
    const mirror = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "mirror")]);
    expect((await runCli(["mirror", "--name", name, "--server", server.url, "--to", mirror.url])).code).toBe(0);

    // The server comes back from the old copy: it serves the first head, validly signed, sequence 1.
    await stop(server.process);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "old-server")]);
    const rollback = /CONFLICT: .*is a rollback: its record has sequence 1, and sequence 2 was accepted before/;
    await refuses(["backup", "--from", name, "--server", server.url, "--to", join(dir, "backup")], rollback);
    const mirrored = await runCli(["mirror", "--name", name, "--server", server.url, "--to", mirror.url, "--retry-for", "0"]);
    expect(mirrored.code).not.toBe(0);
    expect(mirrored.stderr).toMatch(/is a rollback/);
    // Stateless verbs take the floor from the caller.
    await refuses(["verify", "--name", name, "--from", server.url, "--min-sequence", "2"], /is a rollback/);
    await refuses(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--min-sequence", "2"], rollback);
    await refuses(["inspect", "chain", "--name", name, "--server", server.url, "--min-sequence", "2"], rollback);
    // At or below the head's own sequence, each reads the log as it is.
    expect((await runCli(["inspect", "chain", "--name", name, "--server", server.url, "--min-sequence", "1"])).code).toBe(0);
  });

  it("a chain longer than --max-pages: verify, export and inspect stop at the bound with DATA_LOSS", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(30) })).code).toBe(0);
    const bound = /DATA_LOSS: .*page chain is longer than 3 pages/;
    await refuses(["verify", "--name", name, "--from", server.url, "--max-pages", "3"], bound);
    await refuses(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--max-pages", "3"], bound);
    await refuses(["inspect", "chain", "--name", name, "--server", server.url, "--max-pages", "3"], bound);
    // With room for the whole chain (8 pages), each reads it.
    expect((await runCli(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--max-pages", "8"])).code).toBe(0);
    expect((await runCli(["verify", "--name", name, "--from", server.url, "--max-pages", "8"])).code).toBe(0);
  });
});
