import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe as group, expect, it } from "vitest";
import { generateNameKey, createNameRecord } from "../../core/names.js";
import { addressOf } from "../../core/hash.js";
import { openRemote } from "../../lib/index.js";
import { ContentSchema, QuerySchema } from "../../gen/vac/cas/cas_pb.js";
import { describe, launchBrowser, serveSite, type Site, type TestBrowser, type TestPage } from "../helpers/browser.js";
import { rpcRequests } from "../helpers/metrics.js";
import { cleanup, lines, parseJsonl, runCli, startServer, tempDir, type Server } from "../helpers/processes.js";
import { flipBit, startTamperProxy, type TamperProxy } from "../helpers/tamper-proxy.js";

// Everything here runs in Debian's Chromium against real `remotelog serve` processes: the page loads
// the browser bundle (dist/browser/remotelog.js) from its own loopback origin, so every call it makes
// to a server is cross-origin and needs the server's CORS (serve --cors-origin).

/** What a page's globalThis holds: the bundle, and what a test left there. */
type PageGlobals = { remotelog: typeof import("../../lib/browser.js") } & Record<string, unknown>;
type Line = { seq: number; id: string; body: string };
type Followers = { delivered: number; error: string; stop: AbortController }[];

/**
 * Eight Receivers of name on one remote in the page, following (at intervalMs, when given), each
 * counting what it delivers in page.followers; allHave(count) waits until each has count or failed.
 */
async function eightFollows(page: TestPage, url: string, name: string, intervalMs?: number) {
  await page.evaluate(
    async ({ url, name, intervalMs }) => {
      const page = globalThis as unknown as PageGlobals;
      const { openRemote, Receiver } = page.remotelog;
      const remote = openRemote(url);
      const followers = Array.from({ length: 8 }, () => ({ delivered: 0, error: "", stop: new AbortController() }));
      page.followers = followers;
      for (const follower of followers) {
        const receiver = await Receiver.open({ remote, name });
        void (async () => {
          try {
            for await (const _ of receiver.follow({ signal: follower.stop.signal, ...(intervalMs === undefined ? {} : { intervalMs }) })) follower.delivered++;
          } catch (err) {
            follower.error = `${(err as { code?: string }).code}: ${(err as Error).message}`;
          }
        })();
      }
    },
    { url, name, intervalMs },
  );
  const delivered = () => page.evaluate(() => ((globalThis as unknown as PageGlobals).followers as Followers).map((f) => f.delivered));
  return {
    delivered,
    errors: () => page.evaluate(() => ((globalThis as unknown as PageGlobals).followers as Followers).map((f) => f.error)),
    allHave: (count: number) =>
      page.waitForFunction((count) => ((globalThis as unknown as PageGlobals).followers as Followers).every((f) => f.delivered >= count || f.error !== ""), count, { timeout: 30_000 }).catch(async (err: Error) => {
        throw new Error(`${err.message}; delivered: ${JSON.stringify(await delivered())}`);
      }),
    stop: () => page.evaluate(() => ((globalThis as unknown as PageGlobals).followers as Followers).forEach((f) => f.stop.abort())),
  };
}

/** A follow that followUnsigned started in a page, in page.follows. */
type PageFollow = { delivered: number; ended: boolean; error: string; stop: AbortController; synced?: number };

/**
 * Starts a follow of the unsigned name in the page, on the page's one remote (page.remote), polling
 * every 10 minutes (only a push brings news within a test); it is the last of page.follows.
 */
async function followUnsigned(page: TestPage, url: string, name: string): Promise<void> {
  await page.evaluate(
    async ({ url, name }) => {
      const page = globalThis as unknown as PageGlobals;
      const { openRemote, Receiver } = page.remotelog;
      page.remote ??= openRemote(url);
      const follow: PageFollow = { delivered: 0, ended: false, error: "", stop: new AbortController() };
      ((page.follows ??= []) as PageFollow[]).push(follow);
      const receiver = await Receiver.open({ remote: page.remote as ReturnType<typeof openRemote>, name, unsigned: true });
      void (async () => {
        try {
          for await (const _ of receiver.follow({ signal: follow.stop.signal, intervalMs: 600_000 })) follow.delivered++;
        } catch (err) {
          follow.error = `${(err as { code?: string }).code}: ${(err as Error).message}`;
        }
        follow.ended = true;
      })();
    },
    { url, name },
  );
}

let browser: TestBrowser;
let site: Site;
/** Another origin, which no server here allows. */
let stranger: Site;
let server: Server;
let dir: string;
let keyFile: string;
let name: string;

beforeAll(async () => {
  [browser, site, stranger, dir] = await Promise.all([launchBrowser(), serveSite(), serveSite(), tempDir()]);
  server = await startServer(["--memory", "--listen", "127.0.0.1:0", "--cors-origin", site.origin]);
  keyFile = join(dir, "alice.key");
  const gen = await runCli(["key", "gen", "--out", keyFile]);
  expect(gen.code, gen.stderr).toBe(0);
  name = gen.stdout.trim();
});
afterAll(async () => {
  await browser?.close();
  await Promise.all([site?.close(), stranger?.close()]);
  await cleanup();
});

/** `remotelog send` of bodies as Alice, from Node, to url. */
async function send(bodies: string, url: string, extra: string[] = []): Promise<void> {
  const sent = await runCli(["send", "--key", keyFile, "--data", join(dir, "alice"), "--server", url, ...extra], { stdin: bodies });
  expect(sent.code, sent.stderr).toBe(0);
}

/** What `remotelog receive` reads of a name: seq, id and body of every message, verified by the CLI. */
async function receiveWithCli(logName: string, extra: string[] = []): Promise<Line[]> {
  const received = await runCli(["receive", "--server", server.url, "--name", logName, ...extra]);
  expect(received.code, received.stderr).toBe(0);
  return parseJsonl<Line>(received.stdout).map(({ seq, id, body }) => ({ seq, id, body }));
}

group("a page of an allowed origin, on a real server", () => {
  it("reads a signed log, verifies every message, and follows a message pushed by Watch", async () => {
    // Five pages of four, the newest eight embedded (the default): pages, embedded data and fetched blocks.
    await send(lines(20, "from node"), server.url, ["--page-size", "4"]);
    const page = await browser.open(site.url);
    await page.evaluate(
      async ({ url, name }) => {
        const page = globalThis as unknown as PageGlobals;
        const { openRemote, Receiver, toHex } = page.remotelog;
        const remote = openRemote(url);
        const receiver = await Receiver.open({ remote, name });
        const follower = { deliveries: [] as Line[], error: "", stop: new AbortController() };
        page.follower = follower;
        void (async () => {
          try {
            // Ten minutes between syncs: a new message that arrives within the test's bounds was pushed.
            for await (const delivery of receiver.follow({ signal: follower.stop.signal, intervalMs: 600_000 })) {
              follower.deliveries.push({ seq: delivery.seq, id: toHex(delivery.id), body: new TextDecoder().decode(delivery.message?.body) });
            }
          } catch (err) {
            follower.error = `${(err as { code?: string }).code}: ${(err as Error).message}`;
          }
        })();
      },
      { url: server.url, name },
    );
    const delivered = (count: number) => page.waitForFunction((count) => {
      const follower = (globalThis as unknown as PageGlobals).follower as { deliveries: unknown[]; error: string };
      return follower.deliveries.length >= count || follower.error !== "";
    }, count);
    const deliveries = () => page.evaluate(() => ((globalThis as unknown as PageGlobals).follower as { deliveries: Line[]; error: string }));

    await delivered(20);
    const first = await deliveries();
    expect(first.error, describe(page)).toBe("");
    // The page got what the CLI gets, id for id: the same H1 computed by noble's SHA-256 as by node:crypto.
    expect(first.deliveries).toEqual(await receiveWithCli(name));

    // The whole log checked in the page: the head's record, every page, every message.
    const report = await page.evaluate(
      async ({ url, name }) => {
        const { openRemote, verifyLog } = (globalThis as unknown as PageGlobals).remotelog;
        const report = await verifyLog(openRemote(url), name, { readData: true });
        return { ok: report.ok, faults: report.faults, objects: report.objects, messages: report.messages };
      },
      { url: server.url, name },
    );
    expect(report).toEqual({ ok: true, faults: [], objects: 5, messages: 20 });

    await send("pushed while the page follows\n", server.url);
    await delivered(21);
    const second = await deliveries();
    expect(second.error, describe(page)).toBe("");
    expect(second.deliveries.slice(20).map(({ seq, body }) => ({ seq, body }))).toEqual([{ seq: 20, body: "pushed while the page follows" }]);
    expect(second.deliveries).toEqual(await receiveWithCli(name));
    await page.evaluate(() => ((globalThis as unknown as PageGlobals).follower as { stop: AbortController }).stop.abort());
  });

  it("eight follows in one page over http:// leave the page's other calls their connections: a sync completes, and every follower gets the next message", async () => {
    await send("before the eight follow\n", server.url);
    const page = await browser.open(site.url);
    const before = (await receiveWithCli(name)).length;
    const follows = await eightFollows(page, server.url, name);
    await follows.allHave(before);
    // Before, six Watch streams took the browser's six HTTP/1.1 connections to the server, and this sync
    // waited behind them for good (here, past the step's 30 s bound).
    const synced = await page.evaluate(
      async ({ url, name }) => {
        const { openRemote, Receiver } = (globalThis as unknown as PageGlobals).remotelog;
        const receiver = await Receiver.open({ remote: openRemote(url), name });
        return (await receiver.sync()).messages.length;
      },
      { url: server.url, name },
    );
    expect(synced).toBe(before);
    await send("after the eight follow\n", server.url);
    await follows.allHave(before + 1);
    expect(await follows.errors(), describe(page)).toEqual(Array(8).fill(""));
    await follows.stop();
  });

  it("eight follows in one page over http:// are all pushed: past three Watch streams they share one WatchMany, where the rest only polled", async () => {
    await send("before the eight pushed follows\n", server.url);
    const page = await browser.open(site.url);
    const before = (await receiveWithCli(name)).length;
    // A poll every ten minutes: within the test's time only a pushed head brings the next message.
    const follows = await eightFollows(page, server.url, name, 600_000);
    await follows.allHave(before);
    for (let round = 1; round <= 2; round++) {
      await send(`pushed to eight follows, ${round}\n`, server.url);
      await follows.allHave(before + round);
    }
    expect(await follows.errors(), describe(page)).toEqual(Array(8).fill(""));
    expect(await follows.delivered()).toEqual(Array(8).fill(before + 2));
    await follows.stop();
  });

  it("follows stopped over http:// give their connections back: eight pushed and stopped in turn, then a sync, where the sixth waited for good", async () => {
    const chat = "switching-chat";
    const sendChat = async (body: string) => {
      const sent = await runCli(["send", "--unsigned", "--name", chat, "--data", join(dir, chat), "--server", server.url], { stdin: `${body}\n` });
      expect(sent.code, sent.stderr).toBe(0);
    };
    await sendChat("first");
    const page = await browser.open(site.url);
    const state = () => page.evaluate(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).at(-1)!);
    const until = (check: string, count: number) =>
      page.waitForFunction(new Function("count", `const chat = globalThis.follows.at(-1); return ${check};`) as (count: number) => boolean, count, { timeout: 30_000 }).catch(async (err: Error) => {
        throw new Error(`${err.message}; ${JSON.stringify(await state())}; ${describe(page)}`);
      });
    // A page that follows a chat while it is open, as a user switches between chats: each follow reads
    // the log, is pushed one message on its Watch stream, and is stopped.
    for (let round = 0; round < 8; round++) {
      await followUnsigned(page, server.url, chat);
      await until("chat.delivered >= count || chat.error !== ''", round + 1);
      await sendChat(`pushed ${round}`);
      await until("chat.delivered >= count || chat.error !== ''", round + 2);
      await page.evaluate(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).at(-1)!.stop.abort());
      await until("chat.ended", 0);
      expect(await state()).toMatchObject({ delivered: round + 2, error: "" });
    }
    // Before, each stopped Watch held its connection: the sixth follow's first read waited for one for good.
    await page.evaluate(
      ({ name }) => {
        const page = globalThis as unknown as PageGlobals;
        const { Receiver } = page.remotelog;
        const chat = (page.follows as PageFollow[]).at(-1)!;
        void (async () => {
          const receiver = await Receiver.open({ remote: page.remote as ReturnType<typeof page.remotelog.openRemote>, name, unsigned: true });
          chat.synced = (await receiver.sync()).messages.length;
        })().catch((err: Error) => (chat.error = err.message));
      },
      { name: chat },
    );
    await until("chat.synced !== undefined || chat.error !== ''", 0);
    expect(await state()).toMatchObject({ synced: 9, error: "" });
  });

  it("follows of many names joining one by one over http:// cost a few Fetches each, not one for every follow on the shared stream", async () => {
    const names = Array.from({ length: 15 }, (_, i) => `joining-${i}`);
    for (const [i, each] of names.entries()) {
      const sent = await runCli(["send", "--unsigned", "--name", each, "--data", join(dir, each), "--server", server.url], { stdin: `first of ${i}\n` });
      expect(sent.code, sent.stderr).toBe(0);
    }
    const fetches = () => rpcRequests(server.url, "vac.cas.NS/Fetch");
    const page = await browser.open(site.url);
    // One follow a name, each started once the one before has its first message: three take the Watch
    // streams, and the twelve after them join the shared WatchMany one by one.
    const perJoin: number[] = [];
    for (const each of names) {
      const before = await fetches();
      await followUnsigned(page, server.url, each);
      await page
        .waitForFunction(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).every((f) => f.delivered >= 1 || f.error !== ""), undefined, { timeout: 30_000 })
        .catch(async (err: Error) => {
          const state = await page.evaluate(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).map((f) => [f.delivered, f.error]));
          throw new Error(`${err.message}; ${JSON.stringify(state)}; Fetches a join: ${JSON.stringify(perJoin)}; ${describe(page)}`);
        });
      // Settled: the stream over the new set watches, and whoever it woke has read.
      let settled = await fetches();
      for (let quiet = 0; quiet < 5; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const now = await fetches();
        quiet = now === settled ? quiet + 1 : 0;
        settled = now;
      }
      perJoin.push(settled - before);
    }
    // Every follow is still pushed.
    await runCli(["send", "--unsigned", "--name", names[14], "--data", join(dir, names[14]), "--server", server.url], { stdin: "pushed\n" });
    await page.waitForFunction(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[])[14].delivered >= 2, undefined, { timeout: 30_000 });
    expect(await page.evaluate(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).map((f) => f.error))).toEqual(Array(15).fill(""));
    // The old shared watch woke every follow on it at each join: the k-th joiner's Fetches grew with k.
    const shared = perJoin.slice(3);
    expect(Math.max(...shared), JSON.stringify(perJoin)).toBeLessThanOrEqual(Math.min(...shared) + 1);
    await page.evaluate(() => ((globalThis as unknown as PageGlobals).follows as PageFollow[]).forEach((f) => f.stop.abort()));
  });

  it("publishes with a key held in the page, and the CLI reads and verifies what it sent", async () => {
    const page = await browser.open(site.url);
    const published = await page.evaluate(async (url) => {
      const { openRemote, generateKey, keyName, Sender } = (globalThis as unknown as PageGlobals).remotelog;
      const key = await generateKey();
      const sender = await Sender.open({ remote: openRemote(url), key, pageSize: 2 });
      const first = await sender.send(["written", "in", "the page"]);
      const second = await sender.send(["and one more"]);
      await sender.close();
      return { name: keyName(key), appended: first.appended + second.appended };
    }, server.url);
    expect(published.appended, describe(page)).toBe(4);
    expect((await receiveWithCli(published.name)).map(({ seq, body }) => ({ seq, body }))).toEqual([
      { seq: 0, body: "written" },
      { seq: 1, body: "in" },
      { seq: 2, body: "the page" },
      { seq: 3, body: "and one more" },
    ]);
    const verified = await runCli(["verify", "--server", server.url, "--name", published.name, "--read-data", "--json"]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ kind: "log", ok: true, messages: 4, objects: 2 });
  });

  it("reads the same log through the server's trustless gateway and router (openGateway)", async () => {
    const page = await browser.open(site.url);
    const read = await page.evaluate(
      async ({ url, name }) => {
        const { openGateway, Receiver, toHex } = (globalThis as unknown as PageGlobals).remotelog;
        const receiver = await Receiver.open({ remote: openGateway(url, { router: url }), name });
        const { messages } = await receiver.sync();
        return messages.map((delivery) => ({ seq: delivery.seq, id: toHex(delivery.id), body: new TextDecoder().decode(delivery.message?.body) }));
      },
      { url: server.url, name },
    );
    expect(read.length, describe(page)).toBeGreaterThanOrEqual(20);
    expect(read).toEqual(await receiveWithCli(name));
  });

  it("checks a catch-up of more messages than one slice (CHECK_SLICE) a slice a turn, and delivers every one", async () => {
    // More than two slices in one fetch: the check takes turns of the page's event loop between them.
    const many = `many-${Date.now()}`;
    const sent = await runCli(["send", "--unsigned", "--name", many, "--data", join(dir, "many"), "--server", server.url], { stdin: lines(1100, "slice") });
    expect(sent.code, sent.stderr).toBe(0);
    const page = await browser.open(site.url);
    const read = await page.evaluate(
      async ({ url, many }) => {
        const { openRemote, Receiver, toHex } = (globalThis as unknown as PageGlobals).remotelog;
        const receiver = await Receiver.open({ remote: openRemote(url), name: many, unsigned: true });
        const { messages } = await receiver.sync();
        return messages.map((delivery) => ({ seq: delivery.seq, id: toHex(delivery.id), body: new TextDecoder().decode(delivery.message?.body) }));
      },
      { url: server.url, many },
    );
    expect(read.length, describe(page)).toBe(1100);
    expect(read).toEqual(await receiveWithCli(many, ["--unsigned"]));
  });

  it("takes a key made by `remotelog key gen` as bytes, publishes with it, and gives the same bytes back", async () => {
    const fileBytes = [...(await readFile(keyFile))];
    const page = await browser.open(site.url);
    const result = await page.evaluate(
      async ({ url, fileBytes }) => {
        const { openRemote, keyFromBytes, keyToBytes, keyName, Sender } = (globalThis as unknown as PageGlobals).remotelog;
        const key = await keyFromBytes(Uint8Array.from(fileBytes));
        const sender = await Sender.open({ remote: openRemote(url), key });
        await sender.send(["from the page, with Alice's key"]);
        await sender.close();
        const damaged = Uint8Array.from(fileBytes);
        damaged[damaged.length - 1] ^= 1; // the public half
        const refused = await keyFromBytes(damaged).then(() => "taken", (err: { code?: string }) => err.code);
        return { name: keyName(key), bytes: [...keyToBytes(key)], refused };
      },
      { url: server.url, fileBytes },
    );
    expect(result, describe(page)).toEqual({ name, bytes: fileBytes, refused: "INVALID_ARGUMENT" });
    // The page's publish kept everything Node published before it, and the CLI verifies it all.
    const read = await receiveWithCli(name);
    expect(read.at(-1)?.body).toBe("from the page, with Alice's key");
    expect(read.map(({ seq }) => seq)).toEqual(read.map((_, index) => index));
  });

  it("keeps a sender's log in memory: a data directory is INVALID_ARGUMENT in a browser", async () => {
    const page = await browser.open(site.url);
    const refused = await page.evaluate(async (url) => {
      const { openRemote, generateKey, Sender } = (globalThis as unknown as PageGlobals).remotelog;
      try {
        await Sender.open({ remote: openRemote(url), key: await generateKey(), data: "./alice" });
        return "opened";
      } catch (err) {
        return (err as { code?: string }).code;
      }
    }, server.url);
    expect(refused, describe(page)).toBe("INVALID_ARGUMENT");
  });
});

group("a page bounds what it reads", () => {
  it("refuses an answer larger than its readMaxBytes as TOO_LARGE, where connect-web read any answer whole, and reads it under the default", async () => {
    const block = new Uint8Array(512 << 10).fill(7);
    const remote = openRemote(server.url);
    try {
      await remote.putBlocks([block]);
    } finally {
      remote.close();
    }
    const page = await browser.open(site.url);
    const read = await page.evaluate(
      async ({ url, address }) => {
        const { openRemote } = (globalThis as unknown as PageGlobals).remotelog;
        const id = new Uint8Array(address);
        const refused = await openRemote(url, { readMaxBytes: 64 << 10 })
          .getBlock(id)
          .then((bytes) => `read ${bytes.length} bytes`, (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`);
        const whole = (await openRemote(url).getBlock(id)).length;
        return { refused, whole };
      },
      { url: server.url, address: [...addressOf(block)] },
    );
    expect(read.refused, describe(page)).toMatch(/^TOO_LARGE: .*larger than the 65536 bytes this client takes \(readMaxBytes\)/);
    expect(read.whole).toBe(512 << 10);
  });

  it("refuses a stream message larger than its readMaxBytes as TOO_LARGE once its envelope says so, where connect-web held it as it came", async () => {
    // A hostile NS: its Watch announces a message of 64 MiB and sends 4 MiB of it, then ends.
    let sent = 0;
    const hostile = http.createServer((request, response) => {
      const cors = { "access-control-allow-origin": "*", "access-control-allow-headers": "*", "access-control-allow-methods": "POST", "access-control-expose-headers": "*" };
      if (request.method === "OPTIONS") return void response.writeHead(204, cors).end();
      request.resume();
      response.writeHead(200, { ...cors, "content-type": "application/connect+proto" });
      const envelope = Buffer.alloc(5);
      envelope.writeUInt32BE(64 << 20, 1);
      response.write(envelope);
      const chunk = Buffer.alloc(64 << 10);
      const more = () => {
        while (sent < 4 << 20 && !response.destroyed) {
          sent += chunk.length;
          if (!response.write(chunk)) return void response.once("drain", more);
        }
        response.end();
      };
      more();
    });
    await new Promise<void>((resolve) => hostile.listen(0, "127.0.0.1", resolve));
    const page = await browser.open(site.url);
    try {
      const watched = await page.evaluate(async (url) => {
        const { openRemote } = (globalThis as unknown as PageGlobals).remotelog;
        try {
          for await (const head of openRemote(url, { readMaxBytes: 1 << 20 }).watchName("any", new AbortController().signal)) return `a head of ${head.content.length} bytes`;
          return "ended";
        } catch (err) {
          return `${(err as { code?: string }).code}: ${(err as Error).message}`;
        }
      }, `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`);
      expect(watched, describe(page)).toMatch(/^TOO_LARGE: .*the answer of 67108864 bytes is larger than the 1048576 bytes this client takes \(readMaxBytes\)/);
    } finally {
      await page.close();
      hostile.closeAllConnections();
      await new Promise((resolve) => hostile.close(resolve));
    }
  });
});

group("a page refuses what a lying server serves", () => {
  let proxy: TamperProxy;
  let tamperedName: string;

  beforeAll(async () => {
    proxy = await startTamperProxy(server.url);
    const gen = await runCli(["key", "gen", "--out", join(dir, "tampered.key")]);
    tamperedName = gen.stdout.trim();
    const sent = await runCli(["send", "--key", join(dir, "tampered.key"), "--data", join(dir, "tampered"), "--server", server.url, "--embed", "none"], { stdin: lines(3) });
    expect(sent.code, sent.stderr).toBe(0);
  });
  afterAll(async () => {
    await proxy?.close();
  });

  /** sync() of the tampered name through the proxy, in the page: what it delivered, or the error's code. */
  async function syncThroughProxy(page: TestPage): Promise<{ delivered: number; code?: string; message?: string }> {
    return page.evaluate(
      async ({ url, name }) => {
        const { openRemote, Receiver } = (globalThis as unknown as PageGlobals).remotelog;
        const receiver = await Receiver.open({ remote: openRemote(url), name });
        let delivered = 0;
        try {
          await receiver.sync(async (batch) => void (delivered += batch.length));
          return { delivered };
        } catch (err) {
          return { delivered, code: (err as { code?: string }).code, message: (err as Error).message };
        }
      },
      { url: proxy.url, name: tamperedName },
    );
  }

  /** Rewrites the NS's answer to Fetch (a vac.cas.Content: the head page and its record). */
  function rewriteFetch(change: (content: { data: Uint8Array; record: Uint8Array }) => Promise<void> | void): Promise<void> {
    return (async () => {
      // The rewrite is synchronous, so the forged answer is made ahead, from the real one.
      const real = fromBinary(ContentSchema, await fetchRaw());
      await change(real);
      const forged = Buffer.from(toBinary(ContentSchema, real));
      proxy.rewrite = (path) => (path === "/vac.cas.NS/Fetch" ? forged : undefined);
    })();
  }

  async function fetchRaw(): Promise<Uint8Array> {
    const response = await fetch(`${server.url}/vac.cas.NS/Fetch`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: toBinary(QuerySchema, create(QuerySchema, { name: tamperedName })),
    });
    expect(response.status).toBe(200);
    return new Uint8Array(await response.arrayBuffer());
  }


  it("takes an answer cut off mid-body as UNAVAILABLE, so that a retry gets past it", async () => {
    const page = await browser.open(site.url);
    try {
      // Every GetMany answer cut in half: the page's fetch fails while reading the body, which is the
      // network failing, not the server answering wrong.
      proxy.cut = (path) => path.includes("GetMany");
      const cut = await syncThroughProxy(page);
      expect(cut, cut.message).toMatchObject({ delivered: 0, code: "UNAVAILABLE" });
      // Only the first answer cut: withRetry, as follow() uses it, tries again and gets every message.
      let cuts = 0;
      proxy.cut = (path) => path.includes("GetMany") && cuts++ === 0;
      const retried = await page.evaluate(
        async ({ url, name }) => {
          const { openRemote, Receiver, withRetry } = (globalThis as unknown as PageGlobals).remotelog;
          const receiver = await Receiver.open({ remote: openRemote(url), name });
          let delivered = 0;
          let retries = 0;
          await withRetry(() => receiver.sync(async (batch) => void (delivered += batch.length)), { timeoutMs: 10_000, onRetry: () => void retries++ });
          return { delivered, retries };
        },
        { url: proxy.url, name: tamperedName },
      );
      expect(retried).toEqual({ delivered: 3, retries: 1 });
    } finally {
      proxy.cut = undefined;
      await page.close();
    }
  });
  it("fails a call to a wedged server UNAVAILABLE after the idle limit, where the page waited forever, and reads again once it wakes", async () => {
    const wedged = await startServer(["--memory", "--listen", "127.0.0.1:0", "--cors-origin", site.origin]);
    const sent = await runCli(["send", "--key", keyFile, "--data", join(dir, "alice-wedged"), "--server", wedged.url], { stdin: "before\n" });
    expect(sent.code, sent.stderr).toBe(0);
    const page = await browser.open(site.url);
    // A wedged server (or a dead connection): it takes the connection and never answers.
    wedged.process.kill("SIGSTOP");
    try {
      const stuck = await page.evaluate(
        async ({ url, name }) => {
          const { openRemote, Receiver } = (globalThis as unknown as PageGlobals).remotelog;
          const receiver = await Receiver.open({ remote: openRemote(url, { idleTimeoutMs: 1_000 }), name });
          try {
            await receiver.sync(async () => {});
            return "answered";
          } catch (err) {
            return `${(err as { code?: string }).code}: ${(err as Error).message}`;
          }
        },
        { url: wedged.url, name },
      );
      expect(stuck, describe(page)).toMatch(/^UNAVAILABLE: .*no answer for 1 s/);
    } finally {
      wedged.process.kill("SIGCONT");
    }
    const read = await page.evaluate(
      async ({ url, name }) => {
        const { openRemote, Receiver } = (globalThis as unknown as PageGlobals).remotelog;
        const receiver = await Receiver.open({ remote: openRemote(url, { idleTimeoutMs: 1_000 }), name });
        let delivered = 0;
        await receiver.sync(async (batch) => void (delivered += batch.length));
        return delivered;
      },
      { url: wedged.url, name },
    );
    expect(read).toBe(1);
    await page.close();
  });

  it("reads the untouched log through the proxy", async () => {
    proxy.rewrite = undefined;
    const page = await browser.open(site.url);
    expect(await syncThroughProxy(page), describe(page)).toEqual({ delivered: 3 });
  });

  it("rejects a head whose page bytes were altered under a valid record", async () => {
    await rewriteFetch((content) => void (content.data = flipBit(Buffer.from(content.data), -1)));
    const page = await browser.open(site.url);
    const result = await syncThroughProxy(page);
    // The one reader's verdict, as on Node: the signed record names another page.
    expect(result, describe(page)).toMatchObject({ delivered: 0, code: "DATA_LOSS", message: expect.stringMatching(/points at bafk\w+, but the content's CID is bafk\w+/) });
  });

  it("rejects a head whose record is signed by another key", async () => {
    await rewriteFetch(async (content) => void (content.record = await createNameRecord(await generateNameKey(), content.data, 99n)));
    const page = await browser.open(site.url);
    const result = await syncThroughProxy(page);
    expect(result, describe(page)).toMatchObject({ delivered: 0, code: "PERMISSION_DENIED" });
  });

  it("rejects a message block whose bytes were altered, delivering the messages before it and naming its seq", async () => {
    // The last bit of the answer is the last block's: seq 2 of the three.
    proxy.rewrite = (path, body) => (path === "/remotelog.v1.BlockService/GetMany" ? flipBit(body, -1) : undefined);
    const page = await browser.open(site.url);
    const result = await syncThroughProxy(page);
    expect(result, describe(page)).toMatchObject({ delivered: 2, code: "DATA_LOSS", message: expect.stringMatching(/^DATA_LOSS: name "[^"]+" seq 2: /) });
  });
});

group("CORS", () => {
  it("refuses a page of an origin the server does not allow, and lets an allowed one read", async () => {
    const read = (page: TestPage) =>
      page.evaluate(
        async ({ url, name }) => {
          const { openRemote } = (globalThis as unknown as PageGlobals).remotelog;
          try {
            const head = await openRemote(url).fetchName(name);
            return { found: head !== undefined };
          } catch (err) {
            return { code: (err as { code?: string }).code, message: (err as Error).message };
          }
        },
        { url: server.url, name },
      );
    const allowed = await browser.open(site.url);
    expect(await read(allowed), describe(allowed)).toEqual({ found: true });
    const refused = await browser.open(stranger.url);
    const result = await read(refused);
    // The browser withholds the answer: the page sees a failed fetch, which the client calls UNAVAILABLE.
    expect(result, describe(refused)).toMatchObject({ code: "UNAVAILABLE", message: expect.stringContaining("Failed to fetch") });
    expect(refused.logs.join("\n")).toMatch(/CORS/);
  });

  it("lets an allowed origin's page read why a server refused it: an error carries the CORS headers too", async () => {
    // Without them the page would see only a failed fetch (UNAVAILABLE), not the server's refusal.
    const closed = await startServer(["--memory", "--listen", "127.0.0.1:0", "--require-signed", "--cors-origin", site.origin]);
    const page = await browser.open(site.url);
    const refused = await page.evaluate(async (url) => {
      const { openRemote, Sender } = (globalThis as unknown as PageGlobals).remotelog;
      const sender = await Sender.open({ remote: openRemote(url), name: "anonymous-chat", unsigned: true });
      return sender.send(["hello"]).then(
        () => "published",
        (err: { code?: string }) => err.code,
      );
    }, closed.url);
    expect(refused, describe(page)).toBe("PERMISSION_DENIED");
  });

  it("answers an allowed origin's preflight and request with Connect's CORS headers, and another origin with none", async () => {
    const preflight = (origin: string) =>
      fetch(`${server.url}/vac.cas.NS/Fetch`, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,connect-protocol-version" } });
    const allowed = await preflight(site.origin);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(site.origin);
    expect(allowed.headers.get("access-control-allow-methods")).toContain("POST");
    expect(allowed.headers.get("access-control-allow-headers")).toMatch(/Connect-Protocol-Version/);
    // Answered once the request is read, so the connection stays open for the call that follows.
    expect(allowed.headers.get("connection")).not.toBe("close");
    const other = await preflight(stranger.origin);
    expect(other.status).toBe(403);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();

    const call = (origin: string) =>
      fetch(`${server.url}/vac.cas.NS/Fetch`, { method: "POST", headers: { origin, "content-type": "application/json" }, body: JSON.stringify({ name: "no-such-name" }) });
    const allowedCall = await call(site.origin);
    expect(allowedCall.status).toBe(404);
    expect(allowedCall.headers.get("access-control-allow-origin")).toBe(site.origin);
    expect(allowedCall.headers.get("access-control-expose-headers")).toMatch(/Grpc-Status/);
    const otherCall = await call(stranger.origin);
    expect(otherCall.status).toBe(404);
    expect(otherCall.headers.get("access-control-allow-origin")).toBeNull();
  });
});
