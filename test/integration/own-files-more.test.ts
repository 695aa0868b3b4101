import { afterEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { cleanup, lines, runCli, startServer, tempDir } from "../helpers/processes.js";

// The user's own files, through real processes: a verb that refuses, or only reads, leaves every file
// as it was, and says what it found.
afterEach(cleanup);

/** Every file under dir with its bytes' hash and its mtime in ns (directories only listed: a writer's lock comes and goes). */
async function files(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (at: string, rel: string) => {
    const info = await stat(at, { bigint: true });
    if (!info.isDirectory()) {
      out[rel] = `${createHash("sha256").update(await readFile(at)).digest("hex")} mtime ${info.mtimeNs}`;
      return;
    }
    for (const name of (await readdir(at)).sort()) await walk(join(at, name), `${rel}/${name}`);
  };
  await walk(dir, "");
  return out;
}

describe("send on a data directory whose log.bin is gone", () => {
  it("is NOT_FOUND naming the missing file, and creates nothing, when its published mark says messages went out; a fresh directory is still made", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const send = (data: string, stdin: string) => runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", data], { stdin });
    expect((await send(alice, lines(30))).code).toBe(0);
    const backup = await runCli(["backup", "--from-dir", alice, "--to", join(dir, "backup")]);
    expect(backup.code, backup.stderr).toBe(0);
    const logPath = join(alice, "log.bin");
    await unlink(logPath);
    const before = await files(alice);

    const refused = await send(alice, "one more\n");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`NOT_FOUND: local log ${logPath} is missing, yet 30 messages were published from it`);
    expect(refused.stderr).toContain("nothing was created or written");
    // The old send made an empty log.bin, then called it damaged ("ends after 0 whole records"), and
    // status counted it from then on as a log of 0 messages, exit 0.
    expect(refused.stderr).not.toContain("DATA_LOSS");
    expect(await files(alice)).toEqual(before);
    const status = await runCli(["status", "--data", alice, "--json"]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain(`NOT_FOUND: ${alice} holds no local log (no log.bin)`);

    // What the error offers works: the log rebuilt from a backup goes on from where it was.
    const restored = await runCli(["restore", "--from", join(dir, "backup"), "--to", alice, "--force"]);
    expect(restored.code, restored.stderr).toBe(0);
    const resumed = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, "--json"], { stdin: "one more\n" });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ appended: 1, published: 31, logLength: 31 });

    // A directory with no published mark and no log is a new sender's: made as before.
    const fresh = join(dir, "fresh");
    expect((await send(fresh, lines(2))).code).toBe(0);
    expect((await stat(join(fresh, "log.bin"))).size).toBeGreaterThan(0);
  });
});
