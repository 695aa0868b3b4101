import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { addressOf } from "../../core/hash.js";
import { openRemote, Sender } from "../../lib/index.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { cleanup, collect, MAIN, parseJsonl, runCli, stop, tempDir } from "../helpers/processes.js";
import { openPaths, TempDirs, text } from "./temp.js";

const dirs = new TempDirs();
afterEach(() => dirs.removeAll());
afterAll(cleanup);

describe("the fs content store's open pack files", () => {
  it.skipIf(!existsSync("/proc/self/fd"))("keeps every pack of a 100-pack log open by default, so a second catch-up reopens none (64 were kept: each catch-up reopened them all)", async () => {
    const dir = await dirs.make();
    const store = await FsContentStore.open(dir);
    try {
      const blocks = Array.from({ length: 100 }, (_, i) => text(`pack ${i}`));
      // One call, one pack: each waits for its own write.
      for (const block of blocks) await store.putMany([block]);
      const packs = (await readdir(join(dir, "packs"))).filter((name) => name.endsWith(".pack"));
      expect(packs).toHaveLength(100);

      const addresses = blocks.map(addressOf);
      const first = await store.getMany(addresses);
      first.forEach((block, i) => expect(block).toEqual(blocks[i]));
      const packFds = async () => (await openPaths()).filter((target) => target.startsWith(join(dir, "packs") + "/")).sort();
      const afterFirst = await packFds();
      expect(afterFirst).toHaveLength(100);

      const second = await store.getMany(addresses);
      second.forEach((block, i) => expect(block).toEqual(blocks[i]));
      expect(await packFds()).toEqual(afterFirst);
    } finally {
      await store.close();
    }
  });

  it("a serve process out of file descriptors still answers a catch-up that spans more packs than it may open (it failed INTERNAL)", async () => {
    const dir = await tempDir();
    // A low `ulimit -n`, as a busy server meets it when connections hold most of its descriptors.
    const child = spawn("bash", ["-c", 'ulimit -n 48 && exec "$0" "$@"', process.execPath, MAIN, "serve", "--listen", "127.0.0.1:0", "--data", join(dir, "server")], { stdio: ["pipe", "pipe", "pipe"] });
    const exited = collect(child, undefined, 120_000, { keepStdinOpen: true });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on("line", (line) => {
          const match = /^listening on (\S+)/.exec(line);
          if (match) resolve(match[1]);
        });
        child.once("exit", (code) => reject(new Error(`serve exited with ${code}`)));
      });
      const sender = await Sender.open({ remote: openRemote(url), name: "many-packs", unsigned: true, data: join(dir, "alice"), embed: "none" });
      try {
        // A publish a message: each uploads its own pack.
        for (let i = 0; i < 80; i++) await sender.send([`message ${i}`]);
      } finally {
        await sender.close();
      }
      const packs = (await readdir(join(dir, "server", "cas", "packs"))).filter((name) => name.endsWith(".pack"));
      expect(packs.length).toBeGreaterThanOrEqual(80);

      const received = await runCli(["receive", "--unsigned", "--name", "many-packs", "--server", url, "--state", join(dir, "bob")]);
      expect(received.stderr).toBe("");
      expect(received.code).toBe(0);
      expect(parseJsonl<{ body: string }>(received.stdout).map((line) => line.body)).toEqual(Array.from({ length: 80 }, (_, i) => `message ${i}`));
    } finally {
      await stop(child);
      await exited;
    }
  });
});
