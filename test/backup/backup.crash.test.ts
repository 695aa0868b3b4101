import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, collect, runCli, spawnCli, stop, tempDir } from "../helpers/processes.js";
import { readLog, writeLog } from "./helpers.js";

afterEach(cleanup);

const packsIn = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((name) => name.startsWith("bafk") && !name.endsWith(".tmp"));

describe("backup - crash", () => {
  it("a backup killed with SIGKILL mid-run leaves the previous one whole, and the next run finishes it", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    const packs = join(dir, "packs");
    await writeLog(log, 200, { bodySize: 200 });
    const first = await runCli(["backup", "--from", log, "--to", packs, "--pack-size", "4KiB"]);
    expect(first.code, first.stderr).toBe(0);
    const firstHead = first.stdout.trim();
    const firstPacks = (await packsIn(packs)).length;

    // Enough small packs (one fsync each) that the kill lands in the middle of writing them.
    await writeLog(log, 30_000, { bodySize: 200, from: 1000 });
    const child = spawnCli(["backup", "--from", log, "--to", packs, "--pack-size", "4KiB"]);
    const done = collect(child);
    for (let i = 0; i < 600 && (await packsIn(packs)).length < firstPacks + 20; i++) await new Promise((r) => setTimeout(r, 10));
    await stop(child, "SIGKILL");
    const killed = await done;
    expect(killed.signal).toBe("SIGKILL");
    const written = (await packsIn(packs)).length;
    expect(written).toBeGreaterThan(firstPacks);
    // The head has not moved: the previous backup is what HEAD names, and it verifies.
    expect((await readFile(join(packs, "HEAD"), "utf8")).trim()).toBe(firstHead);
    expect((await runCli(["verify", "--from", packs, "--read-data"])).code).toBe(0);

    const second = await runCli(["backup", "--from", log, "--to", packs, "--pack-size", "4KiB", "--json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ previous: firstHead, messages: 30_200, added: 30_000 });
    // The packs of the killed run were the same packs: none is left over beside the chain, nor a temporary file.
    expect((await readdir(packs)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    const verify = await runCli(["verify", "--from", packs, "--read-data", "--json"]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(JSON.parse(verify.stdout).objects).toBe((await packsIn(packs)).length);

    const restore = await runCli(["restore", "--from", packs, "--to", join(dir, "restored")]);
    expect(restore.code, restore.stderr).toBe(0);
    const [original, restored] = await Promise.all([readLog(log), readLog(join(dir, "restored"))]);
    expect(restored.length).toBe(30_200);
    expect(Buffer.concat(restored).equals(Buffer.concat(original))).toBe(true);
  });
});

describe("export - crash", () => {
  it("an export killed with SIGKILL leaves its temporary CAR; the next export to the same file removes it, and not a live process's", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    const packs = join(dir, "packs");
    await writeLog(log, 15_000, { bodySize: 200 });
    const backup = await runCli(["backup", "--from", log, "--to", packs, "--pack-size", "4KiB"]);
    expect(backup.code, backup.stderr).toBe(0);
    const car = join(dir, "out.car");
    const temporaries = async () => (await readdir(dir)).filter((name) => name.startsWith("out.car.") && name.endsWith(".tmp"));

    // Many small packs, each read and checked, so that the kill lands while the CAR is being written.
    const child = spawnCli(["export", "--from", packs, "--car", car]);
    const done = collect(child);
    const written = async () => (await Promise.all((await temporaries()).map((name) => stat(join(dir, name)).then((info) => info.size, () => 0)))).some((size) => size > 0);
    for (let i = 0; i < 1000 && !(await written()); i++) await new Promise((r) => setTimeout(r, 5));
    await stop(child, "SIGKILL");
    expect((await done).signal).toBe("SIGKILL");
    const [killed] = await temporaries();
    expect(killed).toMatch(new RegExp(`^out\\.car\\.${child.pid}-[0-9a-f]+\\.tmp$`));

    // A live process's temporary CAR (this one's pid), and a file of the user's that only looks like one.
    const live = `out.car.${process.pid}-0123456789ab.tmp`;
    const users = "out.car.notes.tmp";
    for (const name of [live, users]) await writeFile(join(dir, name), "keep me");

    const again = await runCli(["export", "--from", packs, "--car", car]);
    expect(again.code, again.stderr).toBe(0);
    // The old code left the killed export's temporary file, as big as the CAR, for good.
    expect((await temporaries()).sort()).toEqual([live, users].sort());
    expect(await readFile(join(dir, live), "utf8")).toBe("keep me");
    expect((await readdir(dir)).filter((name) => name.startsWith("out.car"))).toContain("out.car");
    const verify = await runCli(["import", "--car", car, "--to", join(dir, "imported")]);
    expect(verify.code, verify.stderr).toBe(0);
  });
});
