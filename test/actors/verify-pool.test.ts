import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { addressOf, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { MessageSchema } from "../../gen/vac/mvds/mvds_pb.js";

// The pool runs the compiled worker script, so these tests load it from dist/ (test/global-setup.ts
// builds it); from the TypeScript sources VerifyPool.start() has no worker to start. They start a pool
// of their own, of one thread: the shared one has none on a machine of two cores.
const POOL = resolve("dist/actors/verify-pool.js");
let ownPool: import("../../actors/verify-pool.js").VerifyPool | undefined;
async function pool() {
  const { VerifyPool } = (await import(POOL)) as typeof import("../../actors/verify-pool.js");
  return (ownPool ??= VerifyPool.start(1)!);
}

function messages(n: number) {
  const data: Uint8Array[] = [];
  const pairs: { remoteHash: Uint8Array; localHash: Uint8Array }[] = [];
  for (let i = 0; i < n; i++) {
    const message = newMessage(new TextEncoder().encode("g"), BigInt(i), new TextEncoder().encode(`m${i}`));
    const bytes = encodeMessage(message);
    data.push(bytes);
    pairs.push({ remoteHash: addressOf(bytes), localHash: messageId(message) });
  }
  return { data, pairs };
}

describe("verify pool - messages checked on worker threads", () => {
  it("addresses a sender's blocks as addressOf does, from one buffer or gathered from several", async () => {
    const { data } = messages(300);
    const one = new Uint8Array(data.reduce((size, item) => size + item.length, 0));
    let at = 0;
    const views = data.map((item) => {
      one.set(item, at);
      return one.subarray(at, (at += item.length));
    });
    for (const blocks of [data, views, [new Uint8Array(0), new Uint8Array(2_000_000).fill(7)]]) {
      const addresses = await (await pool()).addresses(blocks);
      expect(addresses).toEqual(new Uint8Array(blocks.flatMap((block) => [...addressOf(block)])));
    }
  });

  it("passes good messages and fails each kind of bad one", async () => {
    const { data, pairs } = messages(300);
    data[7] = encodeMessage(newMessage(new TextEncoder().encode("g"), 7n, new TextEncoder().encode("tampered"))); // H2 fails
    pairs[8] = { ...pairs[8], localHash: new Uint8Array(32) }; // H1 fails
    data[9] = new Uint8Array([0xff, 0xff]); // not a message
    pairs[9] = { ...pairs[9], remoteHash: addressOf(data[9]) };
    pairs[10] = { ...pairs[10], remoteHash: new Uint8Array(3) }; // not an address
    // Good, in a layout the direct reader leaves to protobuf-es (metadata), and that message tampered.
    const withMetadata = create(MessageSchema, { groupId: new TextEncoder().encode("g"), timestamp: 11n, body: new TextEncoder().encode("meta"), metadata: { ephemeral: true } });
    data[11] = encodeMessage(withMetadata);
    pairs[11] = { remoteHash: addressOf(data[11]), localHash: messageId(withMetadata) };
    data[12] = encodeMessage({ ...withMetadata, body: new TextEncoder().encode("meta!") });
    pairs[12] = { remoteHash: addressOf(data[12]), localHash: messageId(withMetadata) };
    const verdicts = await (await pool()).verify(pairs, data);
    expect([...verdicts].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([7, 8, 9, 10, 12]);
  });

  it("checks messages that are views of one buffer (a GetMany answer) where they lie, and leaves that buffer whole", async () => {
    const { data, pairs } = messages(300);
    // Laid out as an answer is: each message after a few bytes of framing, in one buffer.
    const answer = new Uint8Array(data.reduce((sum, item) => sum + item.length + 3, 0));
    let at = 0;
    const views = data.map((item) => {
      at += 3;
      answer.set(item, at);
      at += item.length;
      return answer.subarray(at - item.length, at);
    });
    views[20][views[20].length - 1] ^= 1; // H2 fails
    pairs[21] = { ...pairs[21], localHash: new Uint8Array(32) }; // H1 fails
    const before = Uint8Array.from(answer);
    const verdicts = await (await pool()).verify(pairs, views);
    expect([...verdicts].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([20, 21]);
    // The caller decodes the same views afterwards: they must not have been moved to the worker.
    expect(answer.byteLength).toBe(before.byteLength);
    expect(answer).toEqual(before);
    // Views of a buffer much larger than they are (a pooled one) are gathered instead; same verdicts.
    const large = new Uint8Array(answer.length * 4);
    large.set(answer);
    const small = views.map((view) => large.subarray(view.byteOffset, view.byteOffset + view.length));
    expect([...(await (await pool()).verify(pairs, small))]).toEqual([...verdicts]);
  });

  it("never keeps a process alive once its work is done", () => {
    const script = `
      const { VerifyPool } = await import(${JSON.stringify(POOL)});
      const pool = VerifyPool.start(1);
      const verdicts = await pool.verify([{ remoteHash: new Uint8Array(36), localHash: new Uint8Array(32) }], [new Uint8Array(1)]);
      console.log(verdicts[0]);`;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 10_000, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe("1");
  });
});

describe("verify pool - which thread checks a receiver's messages", () => {
  it("checks on the caller's thread exactly as the threads do (messageVerdicts)", async () => {
    const { messageVerdicts } = await import("../../core/log-reader.js");
    // The bad ones of the test above, an H1 of the wrong length, and (on this thread) a tombstone.
    const { data, pairs } = messages(300);
    data[7] = encodeMessage(newMessage(new TextEncoder().encode("g"), 7n, new TextEncoder().encode("tampered")));
    pairs[8] = { ...pairs[8], localHash: new Uint8Array(32) };
    data[9] = new Uint8Array([0xff, 0xff]);
    pairs[9] = { ...pairs[9], remoteHash: addressOf(data[9]) };
    pairs[10] = { ...pairs[10], remoteHash: new Uint8Array(3) };
    pairs[13] = { ...pairs[13], localHash: new Uint8Array(31) };
    const withMetadata = create(MessageSchema, { groupId: new TextEncoder().encode("g"), timestamp: 11n, body: new TextEncoder().encode("meta"), metadata: { ephemeral: true } });
    data[11] = encodeMessage(withMetadata);
    pairs[11] = { remoteHash: addressOf(data[11]), localHash: messageId(withMetadata) };
    data[12] = encodeMessage({ ...withMetadata, body: new TextEncoder().encode("meta!") });
    pairs[12] = { remoteHash: addressOf(data[12]), localHash: messageId(withMetadata) };
    const here = messageVerdicts(pairs.map((pair, i) => ({ ...pair, redacted: i === 14 })), data);
    expect([...here].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([7, 8, 9, 10, 12, 13, 14]);
    const onThreads = await (await pool()).verify(pairs, data);
    expect([...onThreads].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([7, 8, 9, 10, 12, 13]);
  });

  it("checks CHECK_SLICE messages a turn on the caller's thread, with the same verdicts (messageVerdictsInTurns)", async () => {
    const { CHECK_SLICE, messageVerdicts, messageVerdictsInTurns } = await import("../../core/log-reader.js");
    const { data, pairs } = messages(2 * CHECK_SLICE + 10);
    // Bad ones on each side of the slices' edges, and a tombstone in the last slice.
    for (const i of [CHECK_SLICE - 1, CHECK_SLICE, 2 * CHECK_SLICE]) data[i] = encodeMessage(newMessage(new TextEncoder().encode("g"), BigInt(i), new TextEncoder().encode("tampered")));
    const marked = pairs.map((pair, i) => ({ ...pair, redacted: i === 2 * CHECK_SLICE + 9 }));
    // Turns of the event loop taken while the check runs: an answer that arrives meanwhile is taken in one.
    let turns = 0;
    let counting = true;
    const count = () => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    const sliced = await messageVerdictsInTurns(marked, data);
    counting = false;
    expect([...sliced].map((v, i) => (v === 0 ? -1 : i)).filter((i) => i >= 0)).toEqual([CHECK_SLICE - 1, CHECK_SLICE, 2 * CHECK_SLICE, 2 * CHECK_SLICE + 9]);
    expect([...sliced]).toEqual([...messageVerdicts(marked, data)]);
    // Three slices: two turns between them.
    expect(turns).toBeGreaterThanOrEqual(2);
    expect(await messageVerdictsInTurns([], [])).toEqual(new Uint8Array(0));
  });

  it("takes the threads for a read of THREADS_FROM_MESSAGES or more only (verifierForRead)", async () => {
    const { THREADS_FROM_MESSAGES, verifierForRead } = await import("../../core/log-reader.js");
    const threads = await pool();
    expect(verifierForRead(threads, THREADS_FROM_MESSAGES - 1)).toBeNull();
    expect(verifierForRead(threads, THREADS_FROM_MESSAGES)).toBe(threads);
    // A read of unknown length (a log without seqids, walked) may be long.
    expect(verifierForRead(threads, undefined)).toBe(threads);
    expect(verifierForRead(undefined, 10 * THREADS_FROM_MESSAGES)).toBeNull();
  });

  // The shared pool has a thread for each core past the second, up to two (VerifyPool.shared).
  const sharedThreads = Math.max(0, Math.min(2, availableParallelism() - 2));

  describe("a receiver in a process of its own, against a real server", () => {
    let server: import("../helpers/processes.js").Server;
    let helpers: typeof import("../helpers/processes.js");
    beforeAll(async () => {
      helpers = await import("../helpers/processes.js");
      server = await helpers.startServer(["--listen", "127.0.0.1:0", "--data", await helpers.tempDir(), "--read-rate-per-address", "0"]);
    });
    afterAll(async () => {
      await helpers.stop(server.process);
      await helpers.cleanup();
    });
    const send = async (name: string, count: number) => {
      const sent = await helpers.runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", await helpers.tempDir()], { stdin: helpers.lines(count), timeoutMs: 60_000 });
      expect(sent.code, sent.stderr).toBe(0);
    };
    // A fresh process each time, as the pool is the process's: how many messages it got, and how many
    // verify threads ran by the end.
    const catchUp = (name: string) => {
      const script = `
        const { Remote } = await import(${JSON.stringify(resolve("dist/actors/remote.js"))});
        const { Receiver } = await import(${JSON.stringify(resolve("dist/actors/receiver.js"))});
        const { MemoryCheckpointStore } = await import(${JSON.stringify(resolve("dist/stores/memory/checkpoint-store.js"))});
        const { VerifyPool } = await import(${JSON.stringify(POOL)});
        const remote = new Remote({ casUrl: ${JSON.stringify(server.url)}, nsUrl: ${JSON.stringify(server.url)} });
        const { delivered } = await new Receiver({ name: ${JSON.stringify(name)}, remote, checkpoints: new MemoryCheckpointStore() }).sync(async () => {});
        remote.close();
        console.log(delivered, VerifyPool.runningThreads());`;
      const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 60_000, encoding: "utf8" });
      expect(run.status, run.stderr).toBe(0);
      return run.stdout.trim().split(" ").map(Number);
    };

    it("starts no verify thread for a short catch-up", async () => {
      await send("short", 5_000);
      expect(catchUp("short")).toEqual([5_000, 0]);
    }, 60_000);

    it("starts the shared pool's threads for a long one, where there are cores for them (none on two)", async () => {
      const { THREADS_FROM_MESSAGES } = await import("../../core/log-reader.js");
      await send("long", THREADS_FROM_MESSAGES);
      expect(catchUp("long")).toEqual([THREADS_FROM_MESSAGES, sharedThreads]);
    }, 120_000);
  });
});
