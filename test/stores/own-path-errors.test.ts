import { execFile } from "node:child_process";
import { chmod, chown, mkdir, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

const exec = promisify(execFile);

afterAll(cleanup);

/*
 * Directories of the user's own that the user may not write: as root the processes run as nobody (root
 * writes anywhere), and a directory root made is then read-only for them.
 */
const root = process.getuid?.() === 0;
const asUser = root ? { uid: 65534, gid: 65534 } : {};

/** A directory this test's processes can enter but not write. */
async function readOnlyDir(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await mkdir(path, { recursive: true });
  await chmod(dir, 0o755);
  await chmod(path, root ? 0o755 : 0o555);
  return path;
}

describe("a directory of the user's own that may not be written is PERMISSION_DENIED, not INTERNAL (library hunt M6)", () => {
  it("receive refuses a state directory it may not write before it delivers anything; send refuses a data directory it may not lock", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    try {
      const dir = await tempDir();
      expect((await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice")], { stdin: "one\ntwo\n" })).code).toBe(0);
      const state = await readOnlyDir(dir, "bob");
      const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", state], asUser);
      // The old receiver printed both lines, then failed INTERNAL saving its checkpoint: the next run printed them again.
      expect(received.stderr).toMatch(/PERMISSION_DENIED: cannot write checkpoints in .*bob.*EACCES/);
      expect(received.stdout).toBe("");
      expect(received.code).toBe(1);
      expect(await readdir(state)).toEqual([]);

      const data = await readOnlyDir(dir, "carol");
      const sent = await runCli(["send", "--unsigned", "--name", "c", "--server", server.url, "--data", data], { stdin: "hi\n", ...asUser });
      expect(sent.stderr).toMatch(/PERMISSION_DENIED: cannot create lock .*carol\/LOCK.*EACCES/);
      expect(sent.code).toBe(1);
    } finally {
      await stop(server.process);
    }
  });

  it("a lock this process released, whose file stayed (its directory read-only then), is taken again by this process, not CONFLICT '(this one)'", async () => {
    const dir = await tempDir();
    await chmod(dir, 0o755);
    const data = join(dir, "alice");
    await mkdir(data);
    // Its owner, so that the script may make it read-only and writable again.
    if (root) await chown(data, 65534, 65534);
    const lockFile = resolve("dist/stores/file/lock-file.js");
    const script = `
      import { chmod } from "node:fs/promises";
      const { LockFile } = await import(${JSON.stringify(lockFile)});
      const path = ${JSON.stringify(join(data, "LOCK"))};
      const first = await LockFile.acquire(path, "local log");
      await chmod(${JSON.stringify(data)}, 0o555);
      await first.release();
      await chmod(${JSON.stringify(data)}, 0o755);
      const second = await LockFile.acquire(path, "local log");
      // A second holder in this process is still refused.
      const third = await LockFile.acquire(${JSON.stringify(join(data, ".", "LOCK"))}, "local log").then(() => "taken", (err) => err.message);
      await second.release();
      console.log(JSON.stringify({ third }));
    `;
    const { stdout } = await exec(process.execPath, ["--input-type=module", "-e", script], { ...asUser, timeout: 30_000 });
    expect(JSON.parse(stdout).third).toMatch(/^CONFLICT: local log is in use by process \d+ \(this one\)/);
  });
});
