import { afterAll, afterEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanup, lines, parseJsonl, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

// A server's own disk going wrong: a damaged pack, a full disk. The server keeps serving what it
// can, says what is wrong with the right code, and never shows a remote client its file paths.
afterEach(cleanup);

async function packs(data: string): Promise<string[]> {
  return (await readdir(join(data, "cas", "packs"))).filter((name) => name.endsWith(".pack")).sort();
}

/** Flips one byte inside a pack's index (just before its 56-byte trailer). */
async function damageIndex(path: string): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const size = (await handle.stat()).size;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, size - 56 - 20);
    byte[0] ^= 0x40;
    await handle.write(byte, 0, 1, size - 56 - 20);
  } finally {
    await handle.close();
  }
}

describe("serve - a damaged pack is quarantined, not fatal", () => {
  it("starts, logs and moves the pack aside, serves every other name, and answers DataLoss naming the block but no path", { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // Every message in the CAS: ten messages at the default embed would all stay in the head (up to 15 do).
    const send = (name: string) => runCli(["send", "--unsigned", "--embed", "none", "--name", name, "--server", server.url, "--data", join(dir, name)], { stdin: lines(10, name) });
    expect((await send("a")).code).toBe(0);
    const ofA = await packs(data);
    expect((await send("b")).code).toBe(0);
    await stop(server.process);
    for (const name of ofA) await damageIndex(join(data, "cas", "packs", name));

    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    for (const name of ofA) {
      expect(server.stderr()).toContain(name);
      await expect(stat(join(data, "cas", "quarantine", name))).resolves.toBeTruthy();
    }
    expect(server.stderr()).toContain("quarantined");
    expect(await packs(data)).not.toEqual(expect.arrayContaining(ofA));

    const receive = (name: string) => runCli(["receive", "--unsigned", "--name", name, "--server", server.url, "--state", join(dir, `state-${name}`), "--retry-for", "1"]);
    const b = await receive("b");
    expect(b.code, b.stderr).toBe(0);
    expect(parseJsonl<{ body: string }>(b.stdout).map((d) => d.body)).toEqual(lines(10, "b").trimEnd().split("\n"));
    const a = await receive("a");
    expect(a.code).not.toBe(0);
    // The first message the server cannot give is named (seq 0, all of a's being in the pack set aside),
    // with the server's answer for its block: set aside with its pack, or, for the one block whose entry
    // in the damaged index is the damaged one, not stored.
    expect(a.stderr).toMatch(/(DATA_LOSS|NOT_FOUND): name "a" seq 0: /);
    expect(a.stderr).toMatch(/DATA_LOSS: .*block bafkrei[a-z2-7]+ was in pack [0-9a-f]{32}\.pack, which is damaged and set aside|NOT_FOUND: .*block bafkrei[a-z2-7]+ is not stored/);
    expect(a.stderr).not.toContain(dir);

    // The same over the wire with an independent client: Connect JSON, by hand.
    const head = await fetch(`${server.url}/vac.cas.NS/Fetch`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "a" }) });
    const headText = await head.text();
    expect(headText).not.toContain(dir);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain(`remotelog_quarantined_packs ${ofA.length}`);
    const health = await fetch(`${server.url}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(await health.json()).toEqual({ status: "SERVING" });
    expect(health.headers.get("remotelog-quarantined-packs")).toBe(String(ofA.length));

  });

  it("NotFound, DataLoss and Internal answers name objects, never a path of the data dir", { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // Every message in the CAS (none embedded in the head), so that the damaged pack is what receive reads.
    expect((await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "c")], { stdin: lines(5) })).code).toBe(0);
    const receive = () => runCli(["receive", "--unsigned", "--name", "c", "--server", server.url, "--state", join(dir, "state"), "--retry-for", "1"]);
    // NotFound: a name with no log.
    const missing = await runCli(["receive", "--unsigned", "--name", "nobody", "--server", server.url, "--state", join(dir, "s2")]);
    expect(missing.stderr).toContain("NOT_FOUND");
    expect(missing.stderr).not.toContain(data);
    // DataLoss: a block's bytes damaged inside a pack whose index is intact.
    await stop(server.process);
    for (const name of await packs(data)) {
      const handle = await open(join(data, "cas", "packs", name), "r+");
      await handle.write(Buffer.from([0xff]), 0, 1, 9);
      await handle.close();
    }
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const damaged = await receive();
    expect(damaged.stderr).toMatch(/DATA_LOSS: .*block bafkrei[a-z2-7]+ in pack [0-9a-f]{32}\.pack does not match its address/);
    expect(damaged.stderr).not.toContain(data);
    // NotFound: the packs removed, and the server restarted without them.
    await stop(server.process);
    for (const name of await packs(data)) await rm(join(data, "cas", "packs", name));
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const gone = await receive();
    expect(gone.stderr).toContain("NOT_FOUND");
    expect(gone.stderr).not.toContain(data);
    // Internal: the packs directory made unwritable is an I/O failure the client sees only as "internal error".
    await rm(join(data, "cas", "packs"), { recursive: true });
    await writeFile(join(data, "cas", "packs"), "not a directory");
    const internal = await runCli(["send", "--unsigned", "--embed", "none", "--name", "d", "--server", server.url, "--data", join(dir, "d"), "--retry-for", "1"], { stdin: lines(3) });
    expect(internal.code).not.toBe(0);
    expect(internal.stderr).toContain("internal error");
    expect(internal.stderr).not.toContain(data);
  });
});

/** Mounts a tmpfs of size at dir; false (with why) where the machine does not allow it. */
function mountTmpfs(dir: string, size: string): string | undefined {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
  }
}

// Not tempDir(): cleanup() after each test would empty the mount under the next one.
const tmpfsDir = await mkdtemp(join(tmpdir(), "remotelog-tmpfs-"));
const cannotMount = mountTmpfs(tmpfsDir, "4m");
if (cannotMount !== undefined) console.warn(`skipping the disk-full test: cannot mount a tmpfs here (${cannotMount})`);

// After every test (cleanup() stops the server that holds files open there), so the mount never outlives the file.
afterAll(async () => {
  await cleanup();
  if (cannotMount === undefined) {
    try {
      execFileSync("umount", [tmpfsDir], { stdio: "pipe" });
    } catch (err) {
      console.warn(`cannot unmount ${tmpfsDir}: ${(err as Error).message}`);
    }
  }
  await rm(tmpfsDir, { recursive: true, force: true });
});

describe.skipIf(cannotMount !== undefined)("serve - a full disk", () => {
  it("answers ResourceExhausted 'server out of space', damages nothing stored before, and works again once space is freed", { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const data = join(tmpfsDir, "server");
    await mkdir(data);
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const send = (name: string, count: number, from = 0) =>
      runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", join(dir, name), "--retry-for", "2"], { stdin: lines(count, `${name} ${"x".repeat(200)}`, from) });
    expect((await send("before", 100)).code).toBe(0);
    // Fill the disk but for a little.
    const filler = join(tmpfsDir, "filler");
    const free = () => Number(execFileSync("df", ["--output=avail", "-B1", tmpfsDir]).toString().split("\n")[1]);
    await writeFile(filler, Buffer.alloc(Math.max(0, free() - 16 * 1024)));
    const full = await send("after", 2000);
    expect(full.code).not.toBe(0);
    expect(full.stderr).toContain("server out of space");
    expect(full.stderr).toContain("TOO_LARGE");
    expect(full.stderr).not.toContain("INTERNAL");
    expect(full.stderr).not.toContain(data);
    // What was stored before reads whole.
    const before = await runCli(["receive", "--unsigned", "--name", "before", "--server", server.url, "--state", join(dir, "s-before")]);
    expect(before.code, before.stderr).toBe(0);
    expect(parseJsonl(before.stdout)).toHaveLength(100);
    await rm(filler);
    // The failed send stopped taking lines when the server refused; what it took is in its local log,
    // and a send with nothing new publishes all of it now.
    const retry = await runCli(["send", "--unsigned", "--name", "after", "--server", server.url, "--data", join(dir, "after"), "--json"]);
    expect(retry.code, retry.stderr).toBe(0);
    const { logLength, published } = JSON.parse(retry.stdout) as { logLength: number; published: number };
    expect(logLength).toBeGreaterThan(0);
    expect(published).toBe(logLength);
    const after = await runCli(["receive", "--unsigned", "--name", "after", "--server", server.url, "--state", join(dir, "s-after")]);
    expect(after.code, after.stderr).toBe(0);
    expect(parseJsonl(after.stdout)).toHaveLength(logLength);
    await stop(server.process);
  });
});
