import { execFile } from "node:child_process";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { access, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FileCheckpointStore, MemoryCheckpointStore, generateKey, keyName, mvdsId, openGateway, openKubo, openRemote, Receiver, Sender, toHex, verifyLog, withRetry, type Delivery, type LogRemote } from "../../lib/index.js";
import { encodeMessage, newMessage } from "../../core/hash.js";
import type { Checkpoint } from "../../core/checkpoint-store.js";
import type { SendResult } from "../../lib/sender.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { cleanup, runCli, startServer, tempDir, type Server } from "../helpers/processes.js";
import { rpcRequests } from "../helpers/metrics.js";

/** The library's API against a real `remotelog serve` process. */
describe("library", () => {
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

  test("library - send, sync and verify a signed log; a second sync and a repeated send change nothing", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key, data: join(dir, "alice") });
    const sent = await sender.send(["one", "two", new TextEncoder().encode("three")], { timestamp: 1_700_000_000n });
    expect(sent).toMatchObject({ appended: 3, duplicates: 0, published: 3 });
    const again = await sender.send(["one", "two"], { timestamp: 1_700_000_000n });
    expect(again).toMatchObject({ appended: 0, duplicates: 2, published: 3, added: 0 });
    await sender.close();
    await sender.close();

    const receiver = await Receiver.open({ remote, name: keyName(key) });
    const first = await receiver.sync();
    expect(first.messages.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(["one", "two", "three"]);
    expect(first.messages.map((d) => d.seq)).toEqual([0, 1, 2]);
    // The id a receiver gets is the MVDS id of the message: mvdsId computes the same from the fields.
    expect(toHex(mvdsId(first.messages[0].message!))).toBe(toHex(first.messages[0].id));
    expect((await receiver.sync()).messages).toEqual([]);

    const report = await verifyLog(remote, keyName(key), { readData: true });
    expect(report).toMatchObject({ ok: true, messages: 3, faults: [] });
  });

  test("library - close() waits for a send under way, which then succeeds; a send after close() is CONFLICT", async () => {
    const data = join(dir, "closing");
    const sender = await Sender.open({ remote, name: "closing", unsigned: true, data });
    const bodies = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const sending = sender.send(bodies);
    // Closed under the send: the old sender failed it INTERNAL ("local log … is closed") though its messages were appended.
    const closing = sender.close();
    // Begun after close() while the first still runs: the old sender took it (and close() waited for it too).
    await expect(sender.send(["during"])).rejects.toMatchObject({ code: "CONFLICT", details: { name: "closing" } });
    await expect(sender.publish()).rejects.toMatchObject({ code: "CONFLICT" });
    await closing;
    await expect(sending).resolves.toMatchObject({ appended: 200, published: 200 });
    await expect(sender.send(["late"])).rejects.toMatchObject({ code: "CONFLICT", details: { name: "closing" } });
    await expect(sender.publish()).rejects.toMatchObject({ code: "CONFLICT" });
    const receiver = await Receiver.open({ remote, name: "closing", unsigned: true });
    expect((await receiver.sync()).messages.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(bodies);
  });

  test("library - 200 sends at once on one Sender: none races its own Sender, they share a few name updates, and the published mark never moves back", async () => {
    const key = await generateKey();
    const name = keyName(key);
    // Every mark the sender saves, in order: the old sender saved a smaller one after a larger (82 -> 33).
    const saves: Checkpoint[] = [];
    const published = new (class extends MemoryCheckpointStore {
      override async save(n: string, checkpoint: Checkpoint): Promise<void> {
        saves.push(checkpoint);
        await super.save(n, checkpoint);
      }
    })();
    const sender = new Sender({ remote, key, name, log: new MemoryLocalLog(), published });
    await sender.send(["seed"]);
    const before = (await remote.fetchName(name))!.version;

    const bodies = Array.from({ length: 200 }, (_, i) => `c${i}`);
    // Not awaited one by one, as a chat app sends each message as it is typed.
    const results = await Promise.allSettled(bodies.map((body) => sender.send([body])));
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    const sent = results.map((r) => (r as PromiseFulfilledResult<SendResult>).value);
    // The old sender lost ~900 races to itself here (and 600 sends ended ABORTED "lost 20 races").
    expect(sent.reduce((sum, r) => sum + r.lostRaces, 0)).toBe(0);
    // Each send resolves once its message is published: the publish that did it holds it.
    sent.forEach((r, i) => expect(r.published).toBeGreaterThanOrEqual(i + 2));
    // A publish begun while another runs takes everything appended by then: far fewer updates than
    // sends (one name update per publish; the old sender made ~200 and more).
    const after = (await remote.fetchName(name))!.version;
    expect(after - before).toBeLessThan(50n);

    for (let i = 1; i < saves.length; i++) {
      expect(saves[i].delivered).toBeGreaterThanOrEqual(saves[i - 1].delivered);
      expect(saves[i].sequence!).toBeGreaterThanOrEqual(saves[i - 1].sequence!);
    }
    expect(saves.at(-1)).toMatchObject({ delivered: 201, sequence: after });

    const receiver = await Receiver.open({ remote, name });
    const { messages } = await receiver.sync();
    expect(messages.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(["seed", ...bodies]);
    await sender.close();
  });

  test("library - Sender.open refuses an unpublishable free-form name, a read-only remote and a key that is not one, INVALID_ARGUMENT before anything is written", async () => {
    const data = join(dir, "refused");
    const refused = (what: string) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringContaining(what) });
    // The NS's rule (core/names.ts), as `send --unsigned --name` checks it: the old Sender claimed the
    // directory for the name and appended, and then every publish failed on the server.
    for (const [name, rule] of [
      ["a/b", "path separator"],
      ["..", "relative path"],
      ["x".repeat(300), "bytes long"],
      ["chat\u200B", "zero-width"],
      ["tab\there", "not printable"],
      [" chat", "white space"],
    ]) {
      await expect(Sender.open({ remote, name, unsigned: true, data })).rejects.toEqual(refused(rule));
    }
    // openGateway's client is read-only: the old Sender appended, then failed as a TypeError ("putBlocks is not a function").
    const gateway = openGateway(server.url);
    await expect(Sender.open({ remote: gateway as never, key: await generateKey(), data })).rejects.toEqual(refused("read-only"));
    gateway.close();
    // A TypeError ("Cannot use 'in' operator to search for 'publicKey' in abc") before.
    await expect(Sender.open({ remote, key: "abc" as never, data })).rejects.toEqual(refused("key"));
    await expect(Sender.open({ remote, key: { publicKey: {} } as never, data })).rejects.toEqual(refused("key"));
    await expect(access(data)).rejects.toMatchObject({ code: "ENOENT" });
  });

  test("library - Sender.open over a data directory whose published last record was cut short is DATA_LOSS, and leaves it as it is", async () => {
    const data = join(dir, "cut");
    const sender = await Sender.open({ remote, name: "cut", unsigned: true, data });
    await sender.send(["one", "two", "three"]);
    await sender.close();
    const log = await readFile(join(data, "log.bin"));
    await writeFile(join(data, "log.bin"), log.subarray(0, log.length - 1));
    // It was taken for a torn append: cut, and the next message given the published one's seq.
    await expect(Sender.open({ remote, name: "cut", unsigned: true, data })).rejects.toMatchObject({ code: "DATA_LOSS", details: { seq: 2 } });
    expect(await readFile(join(data, "log.bin"))).toEqual(log.subarray(0, log.length - 1));
  });

  test("library - mvdsId of encoded bytes is what `remotelog mvds id` prints", async () => {
    const bytes = encodeMessage(newMessage(new TextEncoder().encode("group"), 1n, new TextEncoder().encode("hey")));
    const hex = toHex(bytes);
    const cli = await runCli(["mvds", "id", hex]);
    expect(cli.code).toBe(0);
    expect(toHex(mvdsId(bytes))).toBe(cli.stdout.trim());
  });

  test("library - a free-form name is refused unless unsigned is asked for, on both sides", async () => {
    await expect(Sender.open({ remote, name: "chat" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(Receiver.open({ remote, name: "chat" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const sender = await Sender.open({ remote, name: "chat", unsigned: true });
    await sender.send(["hi"]);
    const receiver = await Receiver.open({ remote, name: "chat", unsigned: true });
    expect((await receiver.sync()).messages).toHaveLength(1);
  });

  test("library - bad URLs are INVALID_ARGUMENT before anything is loaded or sent", async () => {
    expect(() => openRemote("ftp://127.0.0.1:1")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => openRemote({ cas: server.url, ns: "not a url" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    await expect(openKubo("file:///tmp")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  test("library - follow delivers the backlog, then a message published later, and ends on abort", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["a", "b"]);
    const receiver = await Receiver.open({ remote, name: keyName(key) });
    const stop = new AbortController();
    const seen: string[] = [];
    for await (const delivery of receiver.follow({ signal: stop.signal, intervalMs: 60_000 })) {
      seen.push(new TextDecoder().decode(delivery.message!.body));
      // Published once the backlog is read: only a pushed head (Watch) wakes the follower before
      // the minute-long poll interval, so this also shows follow listens for pushes.
      if (seen.length === 2) await sender.send(["c"]);
      if (seen.length === 3) stop.abort();
    }
    expect(seen).toEqual(["a", "b", "c"]);
  });

  test("library - an idle follower with the default interval does not poll an NS that pushes heads", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["first"]);
    const receiver = await Receiver.open({ remote, name: keyName(key) });
    const fetches = () => rpcRequests(server.url, "vac.cas.NS/Fetch");
    const stop = new AbortController();
    const seen: string[] = [];
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    let idle: Promise<number> | undefined;
    for await (const delivery of receiver.follow({ signal: stop.signal })) {
      seen.push(new TextDecoder().decode(delivery.message!.body));
      // A thousand idle followers must cost almost nothing: while the NS can push, nothing is fetched
      // between pushes (the poll, 30 s, only backs the pushes up; it was 1 s). Counted while the
      // follower waits for its next message, not inside this loop body, where it is paused.
      idle ??= (async () => {
        await sleep(300);
        const before = await fetches();
        await sleep(2_500);
        const count = (await fetches()) - before;
        await sender.send(["second"]);
        return count;
      })();
      if (seen.length === 2) stop.abort();
    }
    const idleFetches = await idle;
    expect(idleFetches).toBe(0);
    expect(seen).toEqual(["first", "second"]);
  });

  test("library - a follow loop that stops mid-batch leaves the checkpoint before that batch; a finished batch is remembered", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["0", "1", "2", "3", "4"]);
    const state = join(dir, "bob-state");
    const name = keyName(key);
    const readWith = async (stopAfter: number) => {
      const receiver = await Receiver.open({ remote, name, state, batchSize: 2 });
      const seqs: number[] = [];
      try {
        for await (const delivery of receiver.follow()) {
          seqs.push(delivery.seq);
          if (seqs.length === stopAfter) break;
        }
      } finally {
        await receiver.close();
      }
      return seqs;
    };
    // Batches of two: stopping at seq 2 (the first of the second batch) keeps seqs 0-1 delivered only.
    expect(await readWith(3)).toEqual([0, 1, 2]);
    const checkpoints = await FileCheckpointStore.open(state);
    expect((await checkpoints.load(name))?.delivered).toBe(2);
    await checkpoints.close();
    expect(await readWith(3)).toEqual([2, 3, 4]);
  });

  test("library - aborting follow inside the loop ends it after the message in hand, which counts as delivered", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["p", "q", "r"]);
    const checkpoints = new MemoryCheckpointStore();
    const name = keyName(key);
    for (const expected of [[0], [1], [2]]) {
      const receiver = new Receiver({ remote, name, checkpoints, batchSize: 1 });
      const stop = new AbortController();
      const seqs: number[] = [];
      for await (const delivery of receiver.follow({ signal: stop.signal })) {
        seqs.push(delivery.seq);
        stop.abort();
      }
      expect(seqs).toEqual(expected);
    }
    expect((await checkpoints.load(name))?.delivered).toBe(3);
  });

  test("library - sync with a callback: a callback that throws keeps the checkpoint before its batch", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["x", "y"]);
    const receiver = await Receiver.open({ remote, name: keyName(key) });
    await expect(
      receiver.sync(async () => {
        throw new Error("disk full");
      }),
    ).rejects.toThrow("disk full");
    const batches: Delivery[][] = [];
    const result = await receiver.sync(async (batch) => void batches.push(batch));
    expect(result).toMatchObject({ delivered: 2, total: 2, messages: [] });
    expect(batches.flat().map((d) => d.seq)).toEqual([0, 1]);
  });

  test("library - a Receiver runs one sync() or follow() at a time: another meanwhile is ABORTED, and no message is delivered twice", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["m0", "m1", "m2", "m3"]);
    const receiver = await Receiver.open({ remote, name: keyName(key), state: join(dir, "one-at-a-time") });
    // A timer's sync and a refresh button's, say: both started from the same checkpoint and each delivered all four.
    const inbox: number[] = [];
    const deliver = async (batch: Delivery[]) => void inbox.push(...batch.map((d) => d.seq));
    const [first, second] = await Promise.allSettled([receiver.sync(deliver), receiver.sync(deliver)]);
    expect(first).toMatchObject({ status: "fulfilled", value: { delivered: 4, total: 4 } });
    expect(second).toMatchObject({ status: "rejected", reason: { code: "ABORTED", details: { name: keyName(key) } } });
    expect(inbox).toEqual([0, 1, 2, 3]);

    await sender.send(["m4"]);
    const stop = new AbortController();
    const followed: number[] = [];
    for await (const delivery of receiver.follow({ signal: stop.signal })) {
      followed.push(delivery.seq);
      // The follower holds the receiver: a sync here would have delivered seq 4 a second time.
      await expect(receiver.sync()).rejects.toMatchObject({ code: "ABORTED" });
      const otherFollow = receiver.follow();
      await expect(otherFollow.next()).rejects.toMatchObject({ code: "ABORTED" });
      stop.abort();
    }
    expect(followed).toEqual([4]);
    // Once the follower has ended, the receiver is free again, and goes on where it stopped.
    expect(await receiver.sync()).toMatchObject({ delivered: 0, total: 5 });
    await receiver.close();
    await sender.close();
  });

  test("library - sync() and follow() after close() throw CONFLICT at once, even where the checkpoint is cached", async () => {
    const key = await generateKey();
    const sender = await Sender.open({ remote, key });
    await sender.send(["only"]);
    const receiver = await Receiver.open({ remote, name: keyName(key), state: join(dir, "closed") });
    expect((await receiver.sync()).delivered).toBe(1);
    await receiver.close();
    await expect(receiver.sync()).rejects.toMatchObject({ code: "CONFLICT", details: { name: keyName(key) } });
    await expect(receiver.follow().next()).rejects.toMatchObject({ code: "CONFLICT" });
    await sender.close();
  });

  test("library - options a caller can get wrong are INVALID_ARGUMENT naming the option, and nothing is created, appended or delivered", async () => {
    const key = await generateKey();
    const name = keyName(key);
    const sender = await Sender.open({ remote, key });
    await sender.send(["kept"]);
    const naming = (option: string) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringContaining(option) });

    const state = join(dir, "bad-options");
    const badReceivers: [string, Record<string, unknown>][] = [
      ["fromSeq", { fromSeq: -1 }],
      ["fromSeq", { fromSeq: "1" }],
      ["fromSeq", { fromSeq: 1.5 }],
      ["batchSize", { batchSize: 0 }],
      ["batchSize", { batchSize: -1 }],
      ["batchSize", { batchSize: Number.NaN }],
      ["maxPages", { maxPages: 0 }],
      ["checkpoints", { checkpoints: new MemoryCheckpointStore() }],
    ];
    for (const [option, bad] of badReceivers) {
      await expect(Receiver.open({ remote, name, state, ...bad })).rejects.toEqual(naming(option));
    }
    await expect(Receiver.open({ remote: undefined as never, name })).rejects.toEqual(naming("remote"));
    await expect(access(state)).rejects.toMatchObject({ code: "ENOENT" });
    expect(() => new Receiver({ remote, name, batchSize: 0 })).toThrow(naming("batchSize"));

    const receiver = await Receiver.open({ remote, name });
    // intervalMs 0 was a busy loop of fetches while nothing was new.
    for (const [option, bad] of [["intervalMs", { intervalMs: 0 }], ["intervalMs", { intervalMs: -5 }], ["retryForMs", { retryForMs: -1 }]] as const) {
      await expect(receiver.follow(bad).next()).rejects.toEqual(naming(option));
    }

    await expect(sender.send("hello" as never)).rejects.toEqual(naming("array"));
    await expect(sender.send([42] as never)).rejects.toEqual(naming("body 0"));
    await expect(sender.send(["x"], { group: 5 as never })).rejects.toEqual(naming("group"));
    // An int64 on the wire: 2^64 + 7 was stored as 7.
    await expect(sender.send(["x"], { timestamp: 2n ** 64n + 7n })).rejects.toEqual(naming("timestamp"));
    await expect(sender.send(["x"], { timestamp: 1_700_000_000 as never })).rejects.toEqual(naming("timestamp"));
    await expect(Sender.open({ key } as never)).rejects.toEqual(naming("remote"));
    await expect(Sender.open({ remote, key, validityMs: 0 })).rejects.toEqual(naming("validityMs"));
    await expect(Sender.open({ remote, key, embed: -1 })).rejects.toEqual(naming("embed"));
    await expect(Sender.open({ remote, key, pageSize: 0 })).rejects.toEqual(naming("pageSize"));
    await expect(Sender.open({ remote, key, limitsTimeoutMs: 0 })).rejects.toEqual(naming("limitsTimeoutMs"));
    await expect(Sender.open({ remote, key, maxAttempts: 0 } as never)).rejects.toEqual(naming("maxAttempts"));
    // Each was a TypeError from deep inside (library hunt M7).
    expect(() => openRemote(undefined as never)).toThrow(naming("openRemote takes a server URL"));
    expect(() => openRemote({ cas: server.url } as never)).toThrow(naming("openRemote takes a server URL"));
    expect(() => mvdsId(undefined as never)).toThrow(naming("mvdsId takes an encoded message"));
    expect(() => mvdsId({ groupId: "chat", timestamp: 1n, body: new Uint8Array() } as never)).toThrow(naming("mvdsId takes an encoded message"));
    await expect(receiver.follow({ signal: "stop" as never }).next()).rejects.toEqual(naming("signal takes an AbortSignal"));
    expect(() => openGateway(server.url, { concurrency: 0 })).toThrow(naming("concurrency"));
    expect(() => openGateway(server.url, { maxBlockBytes: -1 })).toThrow(naming("maxBlockBytes"));
    await expect(openKubo("http://127.0.0.1:1", { timeoutMs: Number.NaN })).rejects.toEqual(naming("timeoutMs"));

    const { messages } = await receiver.sync();
    expect(messages.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(["kept"]);
    await sender.close();
  });

  test("library - a data or state that is not a path (empty, with a NUL byte, not a string) is INVALID_ARGUMENT naming the option, before anything is written", async () => {
    const key = await generateKey();
    const naming = (option: string) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringContaining(`${option} takes the path of a directory`) });
    // The old open failed INTERNAL ("cannot create directory : ENOENT: no such file or directory, mkdir ''"),
    // a NUL byte INTERNAL from node:fs, and a number as node:fs's bare TypeError.
    for (const bad of ["", `${join(dir, "nul")}\0x`, 5]) {
      await expect(Sender.open({ remote, key, data: bad as never })).rejects.toEqual(naming("data"));
      await expect(Receiver.open({ remote, name: keyName(key), state: bad as never })).rejects.toEqual(naming("state"));
    }
    await expect(access(join(dir, "nul"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  // The bound is this test's own timeout: the old open waited out the keepalive PING (15 s quiet + 10 s unanswered) first.
  test("library - Sender.open against a server that takes the connection and never answers opens offline within a few seconds, and publishes once a real server is there", { timeout: 15_000 }, async () => {
    const sockets = new Set<Socket>();
    const blackHole = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => blackHole.listen(0, "127.0.0.1", resolve));
    const port = (blackHole.address() as AddressInfo).port;
    const silentRemote = openRemote(`http://127.0.0.1:${port}`);
    try {
      const key = await generateKey();
      const sender = await Sender.open({ remote: silentRemote, key, data: join(dir, "black-hole") });
      expect(sockets.size).toBeGreaterThan(0); // it did reach the listener, which answered nothing
      // Offline: the append is durable at once, and only its publish waits for a server.
      await sender.appendEncoded([encodeMessage(newMessage(new TextEncoder().encode("chat"), 1_700_000_000n, new TextEncoder().encode("offline")))]);
      blackHole.close();
      for (const socket of sockets) socket.destroy();
      const real = await startServer(["--listen", `127.0.0.1:${port}`, "--memory"]);
      try {
        const published = await withRetry(() => sender.publish(), { timeoutMs: 5_000 });
        expect(published).toMatchObject({ published: 1 });
        const receiver = await Receiver.open({ remote: silentRemote, name: keyName(key) });
        const { messages } = await receiver.sync();
        expect(messages.map((d) => new TextDecoder().decode(d.message!.body))).toEqual(["offline"]);
        await receiver.close();
        await sender.close();
      } finally {
        real.process.kill();
      }
    } finally {
      silentRemote.close();
      blackHole.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  test("library - a damaged checkpoint file is DATA_LOSS with the file and name in details", async () => {
    const key = await generateKey();
    const name = keyName(key);
    const sender = await Sender.open({ remote, key });
    await sender.send(["one"]);
    const state = join(dir, "damaged-checkpoint");
    const receiver = await Receiver.open({ remote, name, state });
    await receiver.sync();
    await receiver.close();
    const store = await FileCheckpointStore.open(state);
    const file = store.pathOf(name);
    await store.close();
    await writeFile(file, "{ not json");
    const reopened = await Receiver.open({ remote, name, state });
    await expect(reopened.sync()).rejects.toMatchObject({ code: "DATA_LOSS", details: { file, name } });
    await reopened.close();
    await sender.close();
  });

  test("library - the entry point does not load kubo-rpc-client; openKubo does", async () => {
    // A module-resolution hook (node:module register) writes every resolved URL to a file.
    const log = join(dir, "resolved.txt");
    const hooks = join(dir, "hooks.mjs");
    await writeFile(
      hooks,
      `import { appendFileSync } from "node:fs";\n` +
        `export async function resolve(specifier, context, next) { const result = await next(specifier, context); appendFileSync(${JSON.stringify(log)}, result.url + "\\n"); return result; }\n`,
    );
    const script =
      `import { register } from "node:module"; import { appendFileSync } from "node:fs";\n` +
      `register(${JSON.stringify(pathToFileURL(hooks).href)});\n` +
      `const lib = await import(${JSON.stringify(pathToFileURL(resolve("dist/lib/index.js")).href)});\n` +
      `appendFileSync(${JSON.stringify(log)}, "--- openKubo\\n");\n` +
      `(await lib.openKubo("http://127.0.0.1:1")).close();\n`;
    await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
    const [before, after] = (await readFile(log, "utf8")).split("--- openKubo\n");
    expect(before).toContain("/dist/lib/index.js");
    expect(before).not.toContain("kubo-rpc-client");
    expect(after).toContain("kubo-rpc-client");
  });

  test("library - follow() stopped while its server is wedged ends at once: the abort cancels the calls of the sync under way", async () => {
    // A server of its own, stopped with SIGSTOP: it holds its connections and answers nothing.
    const wedged = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    // An idle limit past the test's own bound: the old follower waited it out before it ended.
    const wedgedRemote = openRemote(wedged.url, { idleTimeoutMs: 600_000 });
    try {
      const key = await generateKey();
      const sender = await Sender.open({ remote: wedgedRemote, key, data: join(dir, "wedged-sender") });
      await sender.send(["before the wedge"]);
      await sender.close();
      const receiver = await Receiver.open({ remote: wedgedRemote, name: keyName(key) });
      const stop = new AbortController();
      const got: string[] = [];
      const followed = (async () => {
        for await (const delivery of receiver.follow({ signal: stop.signal, intervalMs: 100 })) {
          got.push(new TextDecoder().decode(delivery.message!.body));
          // Delivered: the server stops, and the follower's next sync (within intervalMs) waits on it.
          wedged.process.kill("SIGSTOP");
        }
      })();
      await expect.poll(() => got, { timeout: 10_000 }).toEqual(["before the wedge"]);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      stop.abort();
      // Bounded by the test's own timeout: before, this waited for the stopped server's answer.
      await followed;
      expect(got).toEqual(["before the wedge"]);
      await receiver.close();
    } finally {
      wedged.process.kill("SIGCONT");
      wedgedRemote.close();
    }
  }, 20_000);
});
