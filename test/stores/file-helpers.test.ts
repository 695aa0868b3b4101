import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ensureDir, removeLeftoverTmp, SharedDir, SyncedDir, tmpPathFor, writeFileAtomic } from "../../stores/file/atomic.js";
import { KeyedMutex, Mutex } from "../../stores/file/mutex.js";
import { deadPid, openPaths, TempDirs } from "./temp.js";

describe("file helpers - atomic writes", () => {
  const dirs = new TempDirs();
  afterEach(() => dirs.removeAll());

  /** This process's open descriptors that name dir or a file in it. */
  const openIn = async (dir: string) => (await openPaths()).filter((target) => target.startsWith(dir));

  it("writeFileAtomic replaces a file whole and leaves no temporary file", async () => {
    const dir = await dirs.make();
    const path = join(dir, "state.json");
    await writeFileAtomic(path, Buffer.from("old"));
    await writeFileAtomic(path, Buffer.from("new and longer"));
    expect(await readFile(path, "utf8")).toBe("new and longer");
    expect(await readdir(dir)).toEqual(["state.json"]);
  });

  it("writeFileAtomic into a missing directory is INTERNAL and leaves nothing behind", async () => {
    const dir = await dirs.make();
    await expect(writeFileAtomic(join(dir, "missing", "x"), Buffer.from("x"))).rejects.toThrow(/^INTERNAL: cannot write .*ENOENT/);
    expect(await readdir(dir)).toEqual([]);
  });

  it("writeFileAtomic through a held directory replaces files whole, and the directory closes", async () => {
    const dir = await dirs.make();
    const held = await SyncedDir.open(dir);
    try {
      await writeFileAtomic(join(dir, "a"), Buffer.from("first"), held);
      await writeFileAtomic(join(dir, "a"), Buffer.from("second, longer"), held);
      await writeFileAtomic(join(dir, "empty"), new Uint8Array(0), held);
      expect(await readFile(join(dir, "a"), "utf8")).toBe("second, longer");
      expect(await readFile(join(dir, "empty"), "utf8")).toBe("");
      expect((await readdir(dir)).sort()).toEqual(["a", "empty"]);
    } finally {
      await held.close();
    }
    // No descriptor of this process still names the directory or a file in it.
    expect(await openIn(dir)).toEqual([]);
  });

  it("writeFileAtomic whose rename fails is INTERNAL, leaves the target and no temporary file, and closes its file", async () => {
    const dir = await dirs.make();
    // A non-empty directory where the file should go: the rename over it fails.
    await mkdir(join(dir, "target", "inside"), { recursive: true });
    const held = await SyncedDir.open(dir);
    try {
      await expect(writeFileAtomic(join(dir, "target"), Buffer.from("x"), held)).rejects.toThrow(/^INTERNAL: cannot write .*target.*EISDIR/);
    } finally {
      await held.close();
    }
    expect(await readdir(dir)).toEqual(["target"]);
    expect(await readdir(join(dir, "target"))).toEqual(["inside"]);
    expect(await openIn(dir)).toEqual([]);
  });

  it("SyncedDir of a missing directory is INTERNAL naming it", async () => {
    const dir = await dirs.make();
    await expect(SyncedDir.open(join(dir, "missing"))).rejects.toThrow(/^INTERNAL: cannot fsync directory .*missing.*ENOENT/);
  });

  /** A promise and the function that resolves it. */
  function gate(): { open: () => void; passed: Promise<void> } {
    let open!: () => void;
    const passed = new Promise<void>((resolve) => (open = resolve));
    return { open, passed };
  }

  it("SharedDir: a write that fails lets the directory go, but does not close it under a write still using it", async () => {
    const dir = await dirs.make();
    const shared = new SharedDir(dir);
    const inside = gate();
    const goOn = gate();
    let firstHeld: SyncedDir | undefined;
    const first = shared.use(async (held) => {
      firstHeld = held;
      inside.open();
      await goOn.passed;
      await writeFileAtomic(join(dir, "a"), Buffer.from("first"), held);
    });
    await inside.passed;
    await expect(shared.use(() => Promise.reject(new Error("the disk is in trouble")))).rejects.toThrow("the disk is in trouble");
    expect(await openIn(dir)).toEqual([dir]);
    goOn.open();
    // Closed at the failure, the first write's fsync would be EBADF.
    await first;
    expect(await readFile(join(dir, "a"), "utf8")).toBe("first");
    expect(await openIn(dir)).toEqual([]);
    // The next write opens the directory afresh, and keeps it open after.
    await shared.use(async (held) => {
      expect(held).not.toBe(firstHeld);
      await writeFileAtomic(join(dir, "b"), Buffer.from("second"), held);
    });
    expect(await openIn(dir)).toEqual([dir]);
    await shared.release();
    expect(await openIn(dir)).toEqual([]);
  });

  it("SharedDir.release closes the directory once the write using it is done, and a missing directory is INTERNAL until it is made", async () => {
    const dir = await dirs.make();
    const shared = new SharedDir(dir);
    const inside = gate();
    const goOn = gate();
    const write = shared.use(async (held) => {
      inside.open();
      await goOn.passed;
      await held.sync();
    });
    await inside.passed;
    await shared.release();
    expect(await openIn(dir)).toEqual([dir]);
    goOn.open();
    await write;
    expect(await openIn(dir)).toEqual([]);

    const missing = new SharedDir(join(dir, "later"));
    await expect(missing.use((held) => held.sync())).rejects.toThrow(/^INTERNAL: cannot fsync directory .*later.*ENOENT/);
    await mkdir(join(dir, "later"));
    await missing.use((held) => writeFileAtomic(join(dir, "later", "x"), Buffer.from("x"), held));
    expect(await readFile(join(dir, "later", "x"), "utf8")).toBe("x");
    await missing.release();
    expect(await openIn(dir)).toEqual([]);
    // Released, a write still to come opens the directory for itself and closes it after.
    await missing.use((held) => writeFileAtomic(join(dir, "later", "y"), Buffer.from("y"), held));
    expect(await readFile(join(dir, "later", "y"), "utf8")).toBe("y");
    expect(await openIn(dir)).toEqual([]);
  });

  it("ensureDir creates missing parents and accepts an existing directory", async () => {
    const dir = await dirs.make();
    const deep = join(dir, "a", "b", "c");
    await ensureDir(deep);
    expect((await stat(deep)).isDirectory()).toBe(true);
    await ensureDir(deep);
    expect(await readdir(join(dir, "a"))).toEqual(["b"]);
  });

  it("removeLeftoverTmp removes dead writers' .tmp files, and keeps live writers', other .tmp files (the user's) and the rest", async () => {
    const dir = await dirs.make();
    const mine = tmpPathFor(join(dir, "a"));
    const dead = join(dir, `b.${deadPid()}-00ff.tmp`);
    const users = join(dir, "c.tmp");
    const other = join(dir, "d.json");
    for (const path of [mine, dead, users, other]) await writeFile(path, "x");
    const removed = await removeLeftoverTmp(dir);
    expect(removed).toEqual([basename(dead)]);
    expect((await readdir(dir)).sort()).toEqual([basename(mine), basename(users), basename(other)].sort());
  });
});

describe("file helpers - mutex", () => {
  it("runs tasks one at a time, in call order, and a failure does not block the next", async () => {
    const mutex = new Mutex();
    const events: string[] = [];
    const task = (name: string, fail = false) =>
      mutex.run(async () => {
        events.push(`start ${name}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
        events.push(`end ${name}`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([task("a"), task("b", true), task("c")]);
    expect(events).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(mutex.busy).toBe(false);
  });

  it("KeyedMutex serialises per key and lets keys run side by side", async () => {
    const locks = new KeyedMutex();
    let running = 0;
    let most = 0;
    const task = (key: string) =>
      locks.run(key, async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
      });
    await Promise.all([task("x"), task("x"), task("x")]);
    expect(most).toBe(1);
    most = 0;
    await Promise.all([task("x"), task("y"), task("z")]);
    expect(most).toBe(3);
    // idle() waits for what is queued, even on a key nobody awaits.
    let done = false;
    void locks.run("w", async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      done = true;
    });
    await locks.idle();
    expect(done).toBe(true);
  });
});
