import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { addressOf } from "../../core/hash.js";
import { openRemote, Sender } from "../../lib/index.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { defaultOpenPacks } from "../../stores/fs/file-cache.js";
import { cleanup, parseJsonl, runCli, startServer, stop, tempDir } from "../helpers/processes.js";
import { openPaths, TempDirs, text } from "./temp.js";

const dirs = new TempDirs();
afterEach(() => dirs.removeAll());
afterAll(cleanup);

/** A module script run by node in a process of its own whose descriptor limit is openFiles (bash's `ulimit -n`). */
function runUnder(openFiles: number, script: string) {
  return spawnSync("bash", ["-c", `ulimit -n ${openFiles} && exec "$0" --input-type=module -e "$1"`, process.execPath, script], { encoding: "utf8", timeout: 60_000 });
}

describe("the fs content store's open pack files", () => {
  it.skipIf(!existsSync("/proc/self/fd"))("a store told to keep more packs open than the process may have descriptors reads on, and from then on leaves half of them free (it failed INTERNAL: EMFILE)", async () => {
    const dir = await dirs.make();
    const script = `
      import { readdirSync, readlinkSync } from "node:fs";
      const { FsContentStore } = await import(${JSON.stringify(resolve("dist/stores/fs/content-store.js"))});
      const { addressOf } = await import(${JSON.stringify(resolve("dist/core/hash.js"))});
      const store = await FsContentStore.open(${JSON.stringify(dir)}, { maxOpenFiles: 1000 });
      const blocks = Array.from({ length: 160 }, (_, i) => new TextEncoder().encode("pack " + i));
      for (const block of blocks) await store.putMany([block]);
      const addresses = blocks.map(addressOf);
      const packFds = () => readdirSync("/proc/self/fd").filter((fd) => { try { return readlinkSync("/proc/self/fd/" + fd).endsWith(".pack"); } catch { return false; } }).length;
      let read = 0;
      const held = [];
      for (let round = 0; round < 8; round++) {
        const got = await store.getMany(addresses);
        read += got.filter((block, i) => block && new TextDecoder().decode(block) === "pack " + i).length;
        held.push(packFds());
      }
      await store.putMany([new TextEncoder().encode("after the reads")]);
      await store.close();
      console.log(JSON.stringify({ read, held }));
    `;
    // 96 descriptors: the 160 packs cannot all be open, and the first read runs out.
    const result = runUnder(96, script);
    expect(result.stderr).toBe("");
    const { read, held } = JSON.parse(result.stdout) as { read: number; held: number[] };
    expect(read).toBe(8 * 160);
    // Emptying the cache alone left it to fill up again, to the last descriptor, on the next reads.
    for (const packs of held) expect(packs).toBeLessThanOrEqual(48);
  });

  it("a pack write that finds no descriptor gets one from the packs kept open for reads, and with none to give back is UNAVAILABLE, naming no path (it was INTERNAL)", async () => {
    const dir = await dirs.make();
    const script = `
      import { openSync, closeSync } from "node:fs";
      const { FsContentStore } = await import(${JSON.stringify(resolve("dist/stores/fs/content-store.js"))});
      const { addressOf } = await import(${JSON.stringify(resolve("dist/core/hash.js"))});
      const store = await FsContentStore.open(${JSON.stringify(dir)});
      const block = (text) => new TextEncoder().encode(text);
      const blocks = Array.from({ length: 20 }, (_, i) => block("pack " + i));
      for (const b of blocks) await store.putMany([b]);
      await store.getMany(blocks.map(addressOf));
      // Everything else takes the rest, as a server's connections would.
      const taken = [];
      for (;;) { try { taken.push(openSync("/dev/null", "r")); } catch { break; } }
      const outcome = (promise) => promise.then(() => "stored", (err) => err.message);
      const first = await outcome(store.putMany([block("while full")]));
      // The 20 idle packs were given back, and the cache now keeps at most 10: take those too.
      for (;;) { try { taken.push(openSync("/dev/null", "r")); } catch { break; } }
      const second = await outcome(store.putMany([block("still full")]));
      for (const fd of taken) closeSync(fd);
      const after = await outcome(store.putMany([block("room again")]));
      const read = (await store.getMany([addressOf(block("while full")), addressOf(block("room again"))])).map((b) => b && new TextDecoder().decode(b));
      await store.close();
      console.log(JSON.stringify({ first, second, after, read }));
    `;
    const result = runUnder(96, script);
    expect(result.stderr).toBe("");
    const { first, second, after, read } = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(first).toBe("stored");
    expect(second).toMatch(/^UNAVAILABLE: cannot write a pack of \d+ bytes: the server has too many files open$/);
    expect(after).toBe("stored");
    expect(read).toEqual(["while full", "room again"]);
  });

  // This process's limit, as node raised it to the hard one at start, leaves room for 100 (at 400 or more).
  it.skipIf(!existsSync("/proc/self/fd") || defaultOpenPacks() < 100)("keeps every pack of a 100-pack log open by default, so a second catch-up reopens none (64 were kept: each catch-up reopened them all)", async () => {
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

  it.skipIf(!existsSync("/proc/self/limits"))("keeps at most a quarter of the process's descriptor limit open by default, the rest left to connections and writes", () => {
    const script = `const { defaultOpenPacks } = await import(${JSON.stringify(resolve("dist/stores/fs/file-cache.js"))}); console.log(defaultOpenPacks());`;
    const under = (limit: number) => runUnder(limit, script).stdout.trim();
    // Lowered only: a process may not raise its limit past the hard one.
    expect(under(200)).toBe("50");
    expect(under(400)).toBe("100");
  });

  it("a serve process out of file descriptors still answers a catch-up that spans more packs than it may open (it failed INTERNAL)", async () => {
    const dir = await tempDir();
    // A low `ulimit -n`, as a busy server meets it when connections hold most of its descriptors.
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")], undefined, undefined, { openFiles: 48 });
    const url = server.url;
    try {
      const sender = await Sender.open({ remote: openRemote(url), name: "many-packs", unsigned: true, data: join(dir, "alice"), embed: "none" });
      try {
        // A publish a message: each uploads its own pack.
        for (let i = 0; i < 80; i++) await sender.send([`message ${i}`]);
      } finally {
        await sender.close();
      }
      const packs = (await readdir(join(dir, "server", "cas", "packs"))).filter((name) => name.endsWith(".pack"));
      expect(packs.length).toBeGreaterThanOrEqual(80);

      const receive = async () => {
        const received = await runCli(["receive", "--unsigned", "--name", "many-packs", "--server", url, "--state", join(dir, "bob")]);
        expect(received.stderr).toBe("");
        expect(received.code).toBe(0);
        return parseJsonl<{ body: string }>(received.stdout).map((line) => line.body);
      };
      expect(await receive()).toEqual(Array.from({ length: 80 }, (_, i) => `message ${i}`));

      // The packs the catch-up opened leave the server descriptors to write with.
      const sent = await runCli(["send", "--unsigned", "--name", "many-packs", "--server", url, "--data", join(dir, "alice")], { stdin: "later 1\nlater 2\n" });
      expect(sent.stderr).toMatch(/^remotelog send: appended 2, 82 of 82 published/);
      expect(sent.code).toBe(0);
      expect(await receive()).toEqual(["later 1", "later 2"]);
    } finally {
      await stop(server.process);
    }
  });
});
