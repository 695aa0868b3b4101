import { createConnection, createServer, type Server as NetServer } from "node:net";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

/**
 * A TCP relay to the server that counts the bytes the client sends: what a `send` uploads, headers
 * and all, seen from outside the processes.
 */
async function countingRelay(port: number): Promise<{ url: string; sent: () => number; reset: () => void; close: () => Promise<void> }> {
  let sent = 0;
  const relay: NetServer = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port });
    client.on("data", (chunk: Buffer) => (sent += chunk.length));
    client.pipe(upstream).pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((ok) => relay.listen(0, "127.0.0.1", ok));
  const address = relay.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    sent: () => sent,
    reset: () => void (sent = 0),
    close: () => new Promise<void>((ok) => relay.close(() => ok())),
  };
}

afterAll(cleanup);

describe("cli - send uploads what is new", () => {
  it("a send of one message uploads that message, not again every referenced message of the head page", { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--log-level", "warn"]);
    const relay = await countingRelay(server.port);
    try {
      const body = (i: number) => `${String(i).padStart(4, "0")}${"x".repeat(8 * 1024)}`;
      const send = async (lines: string[]) => {
        const result = await runCli(["send", "--unsigned", "--name", "n", "--server", relay.url, "--data", join(dir, "alice"), "--embed", "none"], { stdin: lines.map((line) => `${line}\n`).join("") });
        expect(result.code, result.stderr).toBe(0);
      };
      // Eleven messages of 8 KiB in the head page, each in the CAS as a block of its own.
      await send(Array.from({ length: 11 }, (_, i) => body(i)));
      relay.reset();
      await send([body(11)]);
      // The twelfth message (8 KiB) and a head page of twelve pairs, with the calls around them: far
      // under the 96 KiB of sending the eleven blocks again.
      expect(relay.sent()).toBeLessThan(32 * 1024);
      const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url]);
      expect(received.code, received.stderr).toBe(0);
      expect(received.stdout.trim().split("\n").map((line) => JSON.parse(line).body)).toEqual(Array.from({ length: 12 }, (_, i) => body(i)));
    } finally {
      await relay.close();
      await stop(server.process);
    }
  });

  it("one-message sends at the default embed (8) write a pack once in 8 sends, not at every send, and every message arrives", { timeout: 120_000 }, async () => {
    // Embedding exactly the newest 8 moved one message out of the head at every publish: a pack of
    // one block (a file, its fdatasync, a rename, a directory fsync) per message sent, most of a
    // follower's latency. Now the head keeps up to 15 and the oldest 8 go to the CAS together.
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--log-level", "warn"]);
    try {
      const packs = async () => (await readdir(join(dir, "server", "cas", "packs"))).filter((name) => name.endsWith(".pack")).length;
      const sends = 16;
      for (let i = 0; i < sends; i++) {
        const result = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, "alice")], { stdin: `message ${i}\n` });
        expect(result.code, result.stderr).toBe(0);
      }
      // Messages 0-15 were embedded, and the 16th send moved 0-7 out together: one pack (the old code wrote 8, one a send from the 9th).
      expect(await packs()).toBe(1);
      const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url]);
      expect(received.code, received.stderr).toBe(0);
      expect(received.stdout.trim().split("\n").map((line) => JSON.parse(line).body)).toEqual(Array.from({ length: sends }, (_, i) => `message ${i}`));
    } finally {
      await stop(server.process);
    }
  });
});
