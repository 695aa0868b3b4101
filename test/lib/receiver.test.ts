import { spawn } from "node:child_process";
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { generateKey, keyName, openGateway, openRemote, Receiver, Sender, type LogRemote } from "../../lib/index.js";
import { cleanup, collect, startServer, tempDir, type Server } from "../helpers/processes.js";

/** Resolves to "timeout" if p has not settled within ms. */
function within<T>(ms: number, p: Promise<T>): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)))]).finally(() => clearTimeout(timer));
}

/** Receiver.close() and Receiver.open's name check, and follow over a gateway, against a real `remotelog serve`. */
describe("receiver", () => {
  let server: Server;
  let remote: LogRemote;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    remote = openRemote(server.url);
  });
  afterAll(async () => {
    remote.close();
    await cleanup();
  });

  test("receiver - close() during follow: nothing sent after it is delivered, and the loop returns", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key, data: join(dir, "close-follow-alice") });
    await sender.send(["m0"]);
    const receiver = await Receiver.open({ remote, name: keyName(key), state: join(dir, "close-follow-bob") });
    // Only so that the old receiver's loop ends at all; close() is what must end it.
    const backstop = new AbortController();
    const seen: number[] = [];
    const followed = (async () => {
      for await (const delivery of receiver.follow({ signal: backstop.signal, intervalMs: 100 })) seen.push(delivery.seq);
      return "returned";
    })();
    try {
      while (seen.length === 0) await new Promise((r) => setTimeout(r, 20));
      await receiver.close();
      // The old receiver delivered m1, then failed INTERNAL "checkpoint store … is closed".
      await sender.send(["m1, sent after close()"]);
      expect(await within(5_000, followed)).toBe("returned");
      await new Promise((r) => setTimeout(r, 500));
      expect(seen).toEqual([0]);
      await expect(receiver.sync()).rejects.toMatchObject({ code: "CONFLICT", details: { name: keyName(key) } });
    } finally {
      backstop.abort();
      await followed.catch(() => {});
      await sender.close();
    }
  });

  test("receiver - a follower with no signal ends on close(), and its process exits", async () => {
    const lib = pathToFileURL(resolve("dist/lib/index.js")).href;
    const script = `
      const { openRemote, generateKey, keyName, Sender, Receiver } = await import(${JSON.stringify(lib)});
      const remote = openRemote(${JSON.stringify(server.url)});
      const key = await generateKey();
      const sender = await Sender.open({ remote, key, data: ${JSON.stringify(join(dir, "exit-alice"))} });
      await sender.send(["m0"]);
      await sender.close();
      const receiver = await Receiver.open({ remote, name: keyName(key), state: ${JSON.stringify(join(dir, "exit-bob"))} });
      let first;
      const delivered = new Promise((r) => (first = r));
      (async () => {
        try {
          for await (const d of receiver.follow()) { console.log("delivered", d.seq); first(); }
          console.log("follow returned");
        } catch (err) { console.log("follow threw", err.code); }
      })();
      await delivered;
      // Idle, waiting for news: the old follower then went on for ever, keeping the process alive.
      await new Promise((r) => setTimeout(r, 500));
      await receiver.close();
      remote.close();
      console.log("closed");
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "pipe"] });
    // The old follower re-opened a connection and kept the process alive for ever.
    const result = await collect(child, undefined, 10_000);
    expect(result.stdout.split("\n").filter(Boolean).sort()).toEqual(["closed", "delivered 0", "follow returned"]);
    expect(result.code).toBe(0);
  });

  test("receiver - close() from a sync() callback: no later batch is delivered, no deadlock, and the finished batches are remembered", async () => {
    const name = "close-in-callback";
    const sender = await Sender.open({ remote, name, unsigned: true, data: join(dir, "callback-alice") });
    await sender.send(Array.from({ length: 9 }, (_, i) => `m${i}`));
    await sender.close();
    const state = join(dir, "callback-bob");
    const receiver = await Receiver.open({ remote, name, unsigned: true, state, batchSize: 3 });
    const batches: number[][] = [];
    const syncing = receiver.sync(async (batch) => {
      batches.push(batch.map((d) => d.seq));
      if (batches.length === 2) await receiver.close();
    });
    // The old receiver delivered seqs 6-8 after close() had resolved, then failed INTERNAL "checkpoint store … is closed".
    const settled = await within(
      10_000,
      syncing.then(
        () => "resolved",
        (err: unknown) => err,
      ),
    );
    expect(settled).toMatchObject({ code: "CONFLICT", details: { name } });
    expect(batches).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    // Both callbacks returned, so both batches are remembered.
    const reopened = await Receiver.open({ remote, name, unsigned: true, state });
    expect((await reopened.sync()).messages.map((d) => d.seq)).toEqual([6, 7, 8]);
    await reopened.close();
  });

  test("receiver - close() from a follow loop body: the loop ends after the delivery in hand", async () => {
    const name = "close-in-loop";
    const sender = await Sender.open({ remote, name, unsigned: true, data: join(dir, "loop-alice") });
    await sender.send(Array.from({ length: 9 }, (_, i) => `m${i}`));
    await sender.close();
    const receiver = await Receiver.open({ remote, name, unsigned: true, state: join(dir, "loop-bob"), batchSize: 3 });
    // Only so that the old receiver's loop ends at all.
    const stop = new AbortController();
    const backstop = setTimeout(() => stop.abort(), 10_000);
    const seen: number[] = [];
    for await (const delivery of receiver.follow({ signal: stop.signal })) {
      seen.push(delivery.seq);
      if (delivery.seq === 4) await receiver.close();
    }
    clearTimeout(backstop);
    expect(stop.signal.aborted).toBe(false);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
  });

  test("receiver - Receiver.open refuses a free-form name no NS stores: INVALID_ARGUMENT naming the rule, nothing written", async () => {
    const cases: [string, RegExp][] = [
      ["a/b", /path separator/],
      ["..", /relative path/],
      ["x".repeat(300), /300 bytes long/],
      ["a\u200Bb", /zero-width/],
    ];
    for (const [i, [name, rule]] of cases.entries()) {
      const state = join(dir, `bad-name-${i}`);
      // The old Receiver.open took them all, made the directory, and its follow() waited for ever.
      await expect(Receiver.open({ remote, name, unsigned: true, state })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(rule) });
      await expect(access(state)).rejects.toMatchObject({ code: "ENOENT" });
    }
  });

  test("receiver - follow through openGateway while the sender publishes in a tight loop gets every message", async () => {
    const key = await generateKey();
    const name = keyName(key);
    const sender = await Sender.open({ remote, key });
    await sender.send(["m0"]);
    const gateway = openGateway(server.url, { router: server.url });
    const receiver = await Receiver.open({ remote: gateway, name });
    const count = 80;
    const seen: number[] = [];
    const stop = new AbortController();
    const followed = (async () => {
      for await (const delivery of receiver.follow({ signal: stop.signal, intervalMs: 100 })) {
        seen.push(delivery.seq);
        if (seen.length === count) break;
      }
    })();
    try {
      // The old gateway remote read a record, then found its head page gone once the next head was
      // published, and the follower died NOT_FOUND.
      for (let i = 1; i < count; i++) await sender.send([`m${i}`]);
      await followed;
      expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
    } finally {
      stop.abort();
      await followed.catch(() => {});
      await receiver.close();
      gateway.close();
      await sender.close();
    }
  });
});
