import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CID } from "multiformats/cid";
import { LogExplorer, openRemote, type MessageView } from "../../lib/index.js";
import { cleanup, runCli, startServer, stop, tempDir, type Server } from "../helpers/processes.js";
import { damageStoredBlock } from "../helpers/damage.js";
import { startSilentProxy } from "../helpers/silent-proxy.js";

/*
 * The explorer's view model (lib/explorer.ts) against a real `remotelog serve` process: what the page
 * at /explorer shows of a name, every check's verdict in its place.
 */

let dir: string;
let data: string;
let server: Server;
let keyFile: string;
let name: string;

async function send(stdin: string, format = "lines"): Promise<void> {
  const sent = await runCli(["send", "--key", keyFile, "--data", join(dir, "alice"), "--server", server.url, "--page-size", "16", "--embed", "none", "--format", format], { stdin });
  expect(sent.code, sent.stderr).toBe(0);
}

beforeAll(async () => {
  dir = await tempDir("remotelog-explorer-");
  data = join(dir, "server");
  keyFile = join(dir, "alice.key");
  server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
  expect((await runCli(["key", "gen", "--out", keyFile])).code).toBe(0);
  name = (await runCli(["key", "name", keyFile])).stdout.trim();
  // 40 text messages and one that is not UTF-8: 3 pages of 16.
  let lines = "";
  for (let i = 0; i < 40; i++) lines += JSON.stringify({ body: `message ${i}`, timestamp: 1_700_000_000 + i }) + "\n";
  lines += JSON.stringify({ body_base64: Buffer.from([0xff, 0x00, 0x80]).toString("base64"), timestamp: 1_700_000_040 }) + "\n";
  await send(lines, "jsonl");
});

afterAll(cleanup);

describe("explorer - the view of a name", () => {
  it("shows the signed record, the pages with seqids and skip links, redactions, and messages decoded, text as text", async () => {
    const remote = openRemote(server.url);
    try {
      const before = await new LogExplorer(remote, name).view();
      const redacted = before.pages.flatMap((page) => page.messages).find((m) => m.seqid === 5)!;
      const redact = await runCli(["redact", "--key", keyFile, "--id", redacted.id, "--server", server.url]);
      expect(redact.code, redact.stderr).toBe(0);

      const view = await new LogExplorer(remote, name).view();
      expect(view.status).toBe("ok");
      expect(view.length).toBe(41);
      expect(view.more).toBe(false);
      expect(view.record).toMatchObject({ status: "ok", key: { type: "Ed25519" } });
      expect(view.record!.sequence).toBe(view.version);
      expect(view.record!.validity!.getTime()).toBeGreaterThan(Date.now());
      expect(view.record!.value).toBe(`/ipfs/${view.pages[0].address}`);
      expect(view.record!.key.peerId).toMatch(/^12D3KooW/);

      // Newest first: the head is page 2 (seqids 32..40), linking to pages 1 and 0.
      expect(view.pages.map((page) => [page.number, page.firstSeqid, page.messages.length, page.status])).toEqual([
        [2, 32, 9, "ok"],
        [1, 16, 16, "ok"],
        [0, 0, 16, "ok"],
      ]);
      expect(view.pages[0].head).toBe(true);
      expect(view.pages[0].tail).toBe(view.pages[1].address);
      expect(view.pages[0].skips).toEqual([
        { number: 1, firstSeqid: 16, address: view.pages[1].address, status: "ok" },
        { number: 0, firstSeqid: 0, address: view.pages[2].address, status: "ok" },
      ]);
      expect(view.pages[2].tail).toBeUndefined();
      expect(view.pages[0].redactions).toBe(1);

      const messages = view.pages.flatMap((page) => page.messages);
      expect(messages.map((m) => m.seqid)).toEqual([...Array(41).keys()].reverse());
      const tombstone = messages.find((m) => m.seqid === 5)!;
      expect(tombstone).toMatchObject({ status: "redacted", id: redacted.id });
      expect(tombstone.body).toBeUndefined();
      const text = messages.find((m) => m.seqid === 7)!;
      expect(text).toMatchObject({ status: "ok", timestamp: 1_700_000_007, body: { kind: "text", text: "message 7", length: 9 }, group: { kind: "text", text: "remotelog" }, embedded: false });
      expect(text.address).toMatch(/^bafkrei/);
      expect(messages[0].body).toEqual({ kind: "binary", hex: "ff0080", base64: "/wCA", length: 3, truncated: false });

      expect(view.unlisted).toBe(0);
      expect(view.pages.map((page) => page.pairs)).toEqual([9, 16, 16]);
      // A bounded list: the newest 20 messages, the pages' other pairs counted, not listed.
      const listed = await new LogExplorer(remote, name).view({ maxMessages: 20 });
      expect(listed.pages.map((page) => [page.pairs, page.messages.length])).toEqual([
        [9, 9],
        [16, 11],
        [16, 0],
      ]);
      expect(listed.pages.flatMap((page) => page.messages.map((m) => m.seqid))).toEqual([...Array(41).keys()].reverse().slice(0, 20));
      expect(listed).toMatchObject({ status: "ok", unlisted: 21, length: 41 });

      // A bounded view: the head page only, and word that more is older.
      const short = await new LogExplorer(remote, name).view({ pages: 1 });
      expect(short.pages).toHaveLength(1);
      expect(short.more).toBe(true);
      expect(short.pages[0].skips.map((skip) => skip.status)).toEqual(["unchecked", "unchecked"]);
    } finally {
      remote.close();
    }
  });

  it("lists the server's names a page at a time, and a server with --no-explorer lists none", async () => {
    const remote = openRemote(server.url);
    const closed = await startServer(["--listen", "127.0.0.1:0", "--memory", "--no-explorer"]);
    const closedRemote = openRemote(closed.url);
    try {
      const unsigned = await runCli(["send", "--unsigned", "--name", "aaa-free-form", "--data", join(dir, "free"), "--server", server.url], { stdin: "one\n" });
      expect(unsigned.code, unsigned.stderr).toBe(0);
      const first = await remote.listNames({ limit: 1 });
      expect(first).toEqual({ names: [{ name: "aaa-free-form", version: 1n }], next: "aaa-free-form" });
      const second = await remote.listNames({ after: first!.next, limit: 10 });
      expect(second?.names.map((entry) => entry.name)).toEqual([name]);
      expect(second?.next).toBeUndefined();
      expect(await closedRemote.listNames()).toBeUndefined();
    } finally {
      remote.close();
      closedRemote.close();
      await stop(closed.process);
    }
  });

  it("fetches a view's messages within its byte budget, newest first: the rest are unfetched, and never come over the wire", async () => {
    // 48 messages of 128 KiB (6 MiB) on 3 pages, read through a proxy that counts what the server sends.
    const bigKey = join(dir, "big.key");
    expect((await runCli(["key", "gen", "--out", bigKey])).code).toBe(0);
    const bigName = (await runCli(["key", "name", bigKey])).stdout.trim();
    const bodies = Array.from({ length: 48 }, (_, i) => `${i} ${"x".repeat(128 << 10)}\n`).join("");
    const sent = await runCli(["send", "--key", bigKey, "--data", join(dir, "big"), "--server", server.url, "--page-size", "16", "--embed", "none"], { stdin: bodies });
    expect(sent.code, sent.stderr).toBe(0);
    const proxy = await startSilentProxy(server.url);
    const remote = openRemote(proxy.url);
    try {
      const explorer = new LogExplorer(remote, bigName);
      const view = await explorer.view({ maxMessageBytes: 1 << 20 });
      const first = proxy.bytesToClients();
      const messages = view.pages.flatMap((page) => page.messages);
      // The newest up to the one that crosses 1 MiB (8 of ~128 KiB), checked; the 40 older ones not fetched.
      expect(messages.filter((m) => m.status === "ok").map((m) => m.seqid)).toEqual([47, 46, 45, 44, 43, 42, 41, 40]);
      expect(messages.filter((m) => m.status === "unfetched")).toHaveLength(40);
      const unfetched = messages.find((m) => m.status === "unfetched")!;
      expect(unfetched).toMatchObject({ seqid: 39, embedded: false });
      expect(unfetched.body).toBeUndefined();
      expect(view).toMatchObject({ status: "ok", unfetched: 40, length: 48 });
      // 8 messages, 3 pages, the head and HTTP/2's own (1,053,717 bytes when written): far from the 6 MiB the pages name.
      expect(first).toBeLessThan((1 << 20) + (256 << 10));
      // Again on the same explorer: the same messages, from its cache, not the wire (1,602 bytes).
      const again = await explorer.view({ maxMessageBytes: 1 << 20 });
      expect(again.pages.flatMap((page) => page.messages).map((m) => m.status)).toEqual(messages.map((m) => m.status));
      expect(proxy.bytesToClients() - first).toBeLessThan(64 << 10);
      // At the default budget (16 MiB) every message is fetched and checked.
      const whole = await new LogExplorer(remote, bigName).view();
      expect(whole.pages.flatMap((page) => page.messages).every((m) => m.status === "ok")).toBe(true);
      expect(whole.unfetched).toBe(0);
    } finally {
      remote.close();
      await proxy.close();
    }
  });

  it("walks a view's pages within its byte budget: the walk stops at the page that crosses it, and older pages never come over the wire", async () => {
    // 24,000 messages on 6 pages of 4,000 pairs (~300 KB each), read through a proxy that counts what the server sends.
    const wideKey = join(dir, "wide.key");
    expect((await runCli(["key", "gen", "--out", wideKey])).code).toBe(0);
    const wideName = (await runCli(["key", "name", wideKey])).stdout.trim();
    const bodies = Array.from({ length: 24_000 }, (_, i) => `${i}\n`).join("");
    const sent = await runCli(["send", "--key", wideKey, "--data", join(dir, "wide"), "--server", server.url, "--page-size", "4000", "--embed", "none"], { stdin: bodies });
    expect(sent.code, sent.stderr).toBe(0);
    const proxy = await startSilentProxy(server.url);
    const remote = openRemote(proxy.url);
    try {
      const view = await new LogExplorer(remote, wideName).view({ maxPageBytes: 512 << 10, maxMessages: 0 });
      // The head and the page that crosses 512 KiB; 8 pages were asked for, 6 exist.
      expect(view.pages.map((page) => page.status)).toEqual(["ok", "ok"]);
      const [head, second] = view.pages.map((page) => page.bytes!);
      expect(head).toBeLessThan(512 << 10);
      expect(head + second).toBeGreaterThanOrEqual(512 << 10);
      expect(view).toMatchObject({ status: "ok", more: true, pageBytesSpent: true, length: 24_000, unlisted: 8_000 });
      // Two pages and the record (~600 KB): the four older pages (~1.2 MB) were not read.
      expect(proxy.bytesToClients()).toBeLessThan(head + second + (64 << 10));

      // Within the budget the walk ends where it is asked to, or where the chain does.
      const whole = await new LogExplorer(remote, wideName).view({ maxMessages: 0 });
      expect(whole).toMatchObject({ more: false, pageBytesSpent: false });
      expect(whole.pages).toHaveLength(6);
      const one = await new LogExplorer(remote, wideName).view({ pages: 1, maxMessages: 0 });
      expect(one).toMatchObject({ more: true, pageBytesSpent: false });
      expect(one.pages).toHaveLength(1);
    } finally {
      remote.close();
      await proxy.close();
    }
  });

  it("follows the name: a new view after each pushed head", async () => {
    const remote = openRemote(server.url);
    const stopFollowing = new AbortController();
    try {
      const events = new LogExplorer(remote, name).follow(stopFollowing.signal, { pages: 1 });
      const first = await events.next();
      expect(first.value && "view" in first.value && first.value.view.length).toBe(41);
      await send("followed\n");
      const second = await events.next();
      const view = second.value && "view" in second.value ? second.value.view : undefined;
      expect(view?.length).toBe(42);
      expect(view?.pages[0].messages[0]).toMatchObject({ seqid: 41, status: "ok", body: { kind: "text", text: "followed" } });
      stopFollowing.abort();
      expect((await events.next()).done).toBe(true);
    } finally {
      stopFollowing.abort();
      remote.close();
    }
  });

  it("shows an expired record as failed, with the chain under it still read and checked", async () => {
    const other = await tempDir("remotelog-explorer-expired-");
    const otherKey = join(other, "bob.key");
    expect((await runCli(["key", "gen", "--out", otherKey])).code).toBe(0);
    const otherName = (await runCli(["key", "name", otherKey])).stdout.trim();
    const sent = await runCli(["send", "--key", otherKey, "--data", join(other, "bob"), "--server", server.url, "--validity", "1m"], { stdin: "short-lived\n" });
    expect(sent.code, sent.stderr).toBe(0);
    // Two minutes on, past the record's validity: only the clock moves (Date), not the timers.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 2 * 60_000 });
    const remote = openRemote(server.url);
    try {
      const view = await new LogExplorer(remote, otherName).view();
      expect(view.status).toBe("failed");
      expect(view.record).toMatchObject({ status: "failed", fault: { code: "CONFLICT" } });
      expect(view.record!.fault!.message).toContain("expired");
      expect(view.record!.sequence).toBeUndefined();
      expect(view.pages.map((page) => page.status)).toEqual(["ok"]);
      expect(view.pages[0].messages[0]).toMatchObject({ status: "ok", body: { kind: "text", text: "short-lived" } });
    } finally {
      vi.useRealTimers();
      remote.close();
    }
  });

  it("shows a tampered page and a tampered message as failed, and the rest of the log as it is", async () => {
    let remote = openRemote(server.url);
    const view = await new LogExplorer(remote, name).view();
    const middle = view.pages[1];
    const victim = view.pages[0].messages.find((m) => m.body?.kind === "text" && m.body.text === "message 33") as MessageView;
    const pageBytes = await remote.getBlock(CID.parse(middle.address).bytes);
    const messageBytes = await remote.getBlock(CID.parse(victim.address!).bytes);
    remote.close();
    await stop(server.process);
    expect(await damageStoredBlock(data, pageBytes)).toBeGreaterThan(0);
    expect(await damageStoredBlock(data, messageBytes)).toBeGreaterThan(0);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);

    remote = openRemote(server.url);
    try {
      const damaged = await new LogExplorer(remote, name).view();
      expect(damaged.status).toBe("failed");
      expect(damaged.record?.status).toBe("ok");
      expect(damaged.pages.map((page) => [page.address, page.status])).toEqual([
        [view.pages[0].address, "ok"],
        [middle.address, "failed"],
      ]);
      expect(damaged.pages[1].fault?.code).toBe("DATA_LOSS");
      // The head's skip link to page 0 cannot be checked: the page before it is lost.
      expect(damaged.pages[0].skips.map((skip) => skip.status)).toEqual(["unchecked", "unchecked"]);
      const head = damaged.pages[0].messages;
      expect(head.find((m) => m.id === victim.id)).toMatchObject({ status: "failed", fault: { code: "DATA_LOSS" } });
      expect(head.filter((m) => m.status === "ok")).toHaveLength(head.length - 1);
    } finally {
      remote.close();
    }
  });
});
