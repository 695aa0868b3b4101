import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, lines, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

describe("verify - a remote log", () => {
  it("checks the pages without reading messages, and names a corrupt message with --read-data", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await runCli(["send", "--unsigned", "--name", "v", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "16"], { stdin: lines(100) })).code).toBe(0);
    const clean = await runCli(["verify", "--name", "v", "--server", server.url, "--read-data", "--json"]);
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ kind: "log", ok: true, objects: 7, messages: 100 });
    await stop(server.process);

    // Damage one message's body where the server keeps it: its pack's index still checks out.
    const packsDir = join(data, "cas", "packs");
    let damaged = false;
    for (const name of await readdir(packsDir)) {
      const bytes = await readFile(join(packsDir, name));
      const at = bytes.indexOf("message 42\n".slice(0, 10));
      if (at === -1) continue;
      bytes[at] ^= 0x20;
      await writeFile(join(packsDir, name), bytes);
      damaged = true;
    }
    expect(damaged).toBe(true);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);

    const structure = await runCli(["verify", "--name", "v", "--from", server.url]);
    expect(structure.code, structure.stdout + structure.stderr).toBe(0);
    expect(structure.stdout).toMatch(/^ok: 7 pages, 100 messages, .* \(structure only\)/m);
    const full = await runCli(["verify", "--name", "v", "--from", server.url, "--read-data"]);
    expect(full.code).toBe(1);
    const faults = full.stdout.split("\n").filter((line) => line.startsWith("FAULT "));
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatch(/^FAULT bafkrei\w+: .*DATA_LOSS/);
    expect(full.stdout).toMatch(/^FAILED: 7 pages, 99 messages/m);
  });
});
