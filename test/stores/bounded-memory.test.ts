import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addressOf, addressText, decodeMessage, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { HEADER_SIZE, writeRecord } from "../../stores/file/local-log.js";
import { encodePack } from "../../stores/fs/pack.js";
import { cleanup, runCli, startServer, tempDir } from "../helpers/processes.js";

/*
 * A long log in a small, fixed heap (issue 13 item 5: "pages are streamed, not held"). The local log
 * and the fs CAS used to hold an object (or several) per message and per block: ~300 bytes of JS heap
 * each, so 200,000 of them did not open in 48 MB. Their indexes now live in typed arrays, outside the
 * JS heap, and read() fetches records from the file, so a 24 MB heap is plenty (serve alone needs
 * ~14 MB). The old code fails each case below with an out-of-memory abort.
 */
const COUNT = 200_000;
/** Bodies long enough that log.bin (~28 MB) is more than one of the chunks open reads it in (16 MiB), so records straddle a chunk's end. */
const PAD = "x".repeat(80);
const env = { NODE_OPTIONS: "--max-old-space-size=24" };

describe("bounded memory - a 200,000-message log opens in a 24 MB heap", () => {
  let root: string;
  const messages: Uint8Array[] = [];
  beforeAll(async () => {
    root = await tempDir("remotelog-bounded-");
    const group = new TextEncoder().encode("bounded");
    for (let i = 0; i < COUNT; i++) messages.push(encodeMessage(newMessage(group, 1_700_000_000n + BigInt(i), new TextEncoder().encode(`message ${i} ${PAD}`))));
    // The files as FileLocalLog and FsContentStore write them, made directly: appending 200,000 one by one would take longer than the test.
    const log = Buffer.alloc(messages.reduce((sum, data) => sum + HEADER_SIZE + data.length, 0));
    let at = 0;
    for (const data of messages) at = writeRecord(log, at, messageId(decodeMessage(data)), data);
    await mkdir(join(root, "alice"));
    await writeFile(join(root, "alice", "log.bin"), log);
    await mkdir(join(root, "server", "cas", "packs"), { recursive: true });
    for (let i = 0; i < COUNT; i += 50_000) {
      const blocks = messages.slice(i, i + 50_000);
      const pack = encodePack(blocks, blocks.map(addressOf));
      await writeFile(join(root, "server", "cas", "packs", pack.name), pack.bytes);
    }
  }, 120_000);
  afterAll(cleanup);

  it("inspect log (a read-only open) reads the last messages back, checked", async () => {
    const result = await runCli(["inspect", "log", "--data", join(root, "alice"), "--from", String(COUNT - 2), "--limit", "5"], { timeoutMs: 60_000, env });
    expect(result.code, result.stderr).toBe(0);
    const printed = JSON.parse(result.stdout) as { length: number; messages: { seq: number; id: string }[] };
    expect(printed.length).toBe(COUNT);
    expect(printed.messages.map((m) => [m.seq, m.id])).toEqual([COUNT - 2, COUNT - 1].map((seq) => [seq, toHex(messageId(decodeMessage(messages[seq])))]));
  });

  it("status (a writer's open, which takes the lock) counts every message", async () => {
    const result = await runCli(["status", "--data", join(root, "alice")], { timeoutMs: 60_000, env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`messages:  ${COUNT} in the local log`);
  });

  it("serve opens the CAS of 200,000 blocks and serves the last one, checked", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(root, "server"), "--log-level", "warn"], 60_000, env);
    const last = messages[COUNT - 1];
    const response = await fetch(`${server.url}/ipfs/${addressText(addressOf(last))}?format=raw`);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(last))).toBe(true);
  });
});

describe("bounded memory - send", () => {
  afterAll(cleanup);

  it("a send of 200,000 lines from stdin publishes them all in a 48 MB heap", async () => {
    // It kept every batch read from stdin reachable until it ended (a Promise.race per batch against a
    // promise that never settled), ~200 bytes of heap a line: out of memory here, after a long stall.
    const root = await tempDir("remotelog-bounded-send-");
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(root, "server"), "--log-level", "warn"]);
    let input = "";
    for (let i = 0; i < COUNT; i++) input += `line ${i} ${PAD}\n`;
    const result = await runCli(["send", "--unsigned", "--name", "bounded", "--server", server.url, "--data", join(root, "alice"), "--json"], {
      stdin: input,
      timeoutMs: 300_000,
      env: { NODE_OPTIONS: "--max-old-space-size=48" },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ appended: COUNT, published: COUNT, logLength: COUNT });
  }, 320_000);
});
