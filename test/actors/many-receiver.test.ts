import { afterEach, describe, expect, it } from "vitest";
import { ManyReceiver, pollDelayMs, quietPollsAfter, type ManyReceiverEvents } from "../../actors/many-receiver.js";
import type { Delivery } from "../../actors/receiver.js";
import { Sender } from "../../actors/sender.js";
import { addressOf, toHex } from "../../core/hash.js";
import { generateNameKey, keyName } from "../../core/names.js";
import type { RemoteLogError } from "../../core/errors.js";
import { FileCheckpointStore } from "../../stores/file/checkpoint-store.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { Remote } from "../../actors/remote.js";
import { cleanup, startServer, tempDir } from "../helpers/processes.js";
import { memoryWorld } from "../helpers/connect.js";

afterEach(cleanup);

const utf8 = (text: string) => new TextEncoder().encode(text);
const GROUP = utf8("g");

/** The in-memory world, with one Remote shared as a receiver of many names shares it, and senders. */
function world() {
  const { content, names, remote: newRemote } = memoryWorld();
  const remote = newRemote();
  const logs = new Map<string, { log: MemoryLocalLog; sender: Sender }>();
  let stamp = 1n;
  /** Appends count messages to name's log and publishes them. */
  const publish = async (name: string, count: number) => {
    let entry = logs.get(name);
    if (!entry) {
      const log = new MemoryLocalLog();
      entry = { log, sender: new Sender({ published: new MemoryCheckpointStore(), name, log, remote, pageSize: 4 }) };
      logs.set(name, entry);
    }
    const from = entry.log.length;
    await entry.sender.append(Array.from({ length: count }, (_, i) => utf8(`${name}-${from + i}`)), GROUP, stamp++);
    await entry.sender.publish();
  };
  /** The ids of name's log, in order: what a receiver must deliver. */
  const ids = async (name: string) => {
    const log = logs.get(name)!.log;
    return (await log.read(0, log.length)).map((e) => toHex(e.id));
  };
  /** The first message of name's log, as stored in the CAS. */
  const firstMessage = async (name: string) => (await logs.get(name)!.log.read(0, 1))[0].data;
  return { content, names, remote, publish, ids, firstMessage };
}

/** Collects what a ManyReceiver delivers, per name and in arrival order. */
function collector() {
  const byName = new Map<string, Delivery[]>();
  const order: string[] = [];
  const deliver = async (name: string, batch: Delivery[]) => {
    if (!byName.has(name)) byName.set(name, []);
    byName.get(name)!.push(...batch);
    order.push(name);
  };
  const ids = (name: string) => (byName.get(name) ?? []).map((d) => toHex(d.id));
  const seqs = (name: string) => (byName.get(name) ?? []).map((d) => d.seq);
  return { byName, order, deliver, ids, seqs };
}

function eventLog() {
  const failures: { name: string; error: RemoteLogError; inMs?: number; attempt: number; repeated: boolean }[] = [];
  const recovered: string[] = [];
  const missing: string[] = [];
  const events: ManyReceiverEvents = {
    failed: (name, error, retry) => failures.push({ name, error, ...retry }),
    recovered: (name) => recovered.push(name),
    missing: (name) => missing.push(name),
  };
  return { failures, recovered, missing, events };
}

describe("actors - one receiver following many names over the in-memory transport", () => {
  it("delivers every name's log in order, a few names at a time, logs interleaving", async () => {
    const w = world();
    const sizes: Record<string, number> = { a: 1, b: 9, c: 30, d: 4, e: 17, f: 2 };
    for (const round of [0, 1]) {
      for (const [name, size] of Object.entries(sizes)) await w.publish(name, round === 0 ? Math.ceil(size / 2) : Math.floor(size / 2));
    }
    const out = collector();
    let inFlight = 0;
    let most = 0;
    const busy = new Set<string>();
    const many = new ManyReceiver({ names: Object.keys(sizes), remote: w.remote, checkpoints: new MemoryCheckpointStore(), concurrency: 2, batchSize: 3 });
    const result = await many.run(async (name, batch) => {
      // One name never delivers two batches at once, and no more names than the limit sync at once.
      expect(busy.has(name)).toBe(false);
      busy.add(name);
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      await out.deliver(name, batch);
      inFlight--;
      busy.delete(name);
    });
    expect(result).toEqual({ failed: [], unread: [], delivered: 63 });
    for (const [name, size] of Object.entries(sizes)) {
      expect(out.seqs(name)).toEqual([...Array(size).keys()]);
      expect(out.ids(name)).toEqual(await w.ids(name));
    }
    expect(most).toBe(2);
    // Batches of different names interleave: some name's batches are not all next to each other.
    const runs = out.order.filter((name, i) => i === 0 || out.order[i - 1] !== name).length;
    expect(runs).toBeGreaterThan(Object.keys(sizes).length);
  });

  it("a failing name does not stop the others: without follow, it is reported once and the rest is delivered", async () => {
    const w = world();
    for (const name of ["a", "b", "lost-block", "c"]) await w.publish(name, 10);
    // A head that is no page at all, a message the CAS can no longer serve whole, a name nobody published.
    await w.names.put("bad-head", utf8("not a page"));
    const first = await w.firstMessage("lost-block");
    w.content.corrupt(addressOf(first), utf8("rot"));
    const out = collector();
    const log = eventLog();
    const many = new ManyReceiver({ names: ["bad-head", "a", "lost-block", "missing", "b", "c"], remote: w.remote, checkpoints: new MemoryCheckpointStore(), concurrency: 2 });
    const result = await many.run(out.deliver, { events: log.events });
    for (const name of ["a", "b", "c"]) expect(out.ids(name)).toEqual(await w.ids(name));
    expect(out.byName.has("lost-block")).toBe(false);
    expect(result.failed.map(({ name, error }) => [name, error.code]).sort()).toEqual([
      ["bad-head", "DATA_LOSS"],
      ["lost-block", "DATA_LOSS"],
      ["missing", "NOT_FOUND"],
    ]);
    expect(result.unread).toEqual([]);
    expect(log.failures.map((f) => [f.name, f.inMs])).toEqual(expect.arrayContaining([["bad-head", undefined], ["lost-block", undefined], ["missing", undefined]]));
    expect(log.failures).toHaveLength(3);
    expect(result.failed.find((f) => f.name === "bad-head")!.error.message).toMatch(/head of name "bad-head"/);
  });

  it("with follow, a failing name is retried with backoff and catches up once mended, while the others keep flowing", async () => {
    const w = world();
    for (const name of ["a", "b", "broken"]) await w.publish(name, 5);
    const first = await w.firstMessage("broken");
    w.content.corrupt(addressOf(first), utf8("rot"));
    const out = collector();
    const log = eventLog();
    const stop = new AbortController();
    const many = new ManyReceiver({ names: ["a", "b", "broken", "later"], remote: w.remote, checkpoints: new MemoryCheckpointStore(), concurrency: 2 });
    const running = many.run(out.deliver, { follow: true, intervalMs: 20, signal: stop.signal, events: log.events });

    await expect.poll(() => log.failures.length, { timeout: 5_000 }).toBeGreaterThan(0);
    expect(log.failures[0]).toMatchObject({ name: "broken", attempt: 1, repeated: false });
    expect(log.failures[0].error.code).toBe("DATA_LOSS");
    // A broken log waits for its writer or its NS, so it is tried again after a second or more, not every poll.
    expect(log.failures[0].inMs).toBeGreaterThanOrEqual(750);
    await expect.poll(() => log.missing, { timeout: 5_000 }).toEqual(["later"]);

    // The others go on: new messages on two names arrive while one name is broken.
    await w.publish("a", 3);
    await w.publish("later", 4);
    await expect.poll(() => out.ids("a").length, { timeout: 5_000 }).toBe(8);
    await expect.poll(() => out.ids("later").length, { timeout: 5_000 }).toBe(4);
    expect(out.byName.has("broken")).toBe(false);

    w.content.corrupt(addressOf(first), first);
    await expect.poll(() => out.ids("broken").length, { timeout: 10_000 }).toBe(5);
    expect(log.recovered).toEqual(["broken"]);
    stop.abort();
    const result = await running;
    expect(result.failed).toEqual([]);
    for (const name of ["a", "b", "broken", "later"]) {
      expect(out.ids(name)).toEqual(await w.ids(name));
      expect(out.seqs(name)).toEqual([...Array(out.seqs(name).length).keys()]);
    }
    expect(log.missing).toEqual(["later"]);
  });

  it("checks the signed head of every key name among the names, and reads free-form ones beside them", async () => {
    const w = world();
    const key = await generateNameKey();
    const signed = keyName(key);
    const log = new MemoryLocalLog();
    const sender = new Sender({ published: new MemoryCheckpointStore(), name: signed, key, log, remote: w.remote, pageSize: 4 });
    await sender.append([utf8("s0"), utf8("s1")], GROUP, 1n);
    await sender.publish();
    await w.publish("free", 3);
    // Another key name whose head comes without a record: anyone could have written it.
    const unvouched = keyName(await generateNameKey());
    await w.names.put(unvouched, (await w.names.get("free"))!.content);
    const out = collector();
    const result = await new ManyReceiver({ names: [signed, "free", unvouched], remote: w.remote, checkpoints: new MemoryCheckpointStore() }).run(out.deliver);
    expect(out.seqs(signed)).toEqual([0, 1]);
    expect(out.seqs("free")).toEqual([0, 1, 2]);
    expect(result.failed.map(({ name, error }) => [name, error.code])).toEqual([[unvouched, "PERMISSION_DENIED"]]);
  });

  it("keeps a checkpoint per name in one store: a new receiver goes on where each name stopped", async () => {
    const w = world();
    const dir = await tempDir();
    for (const name of ["x", "y", "z"]) await w.publish(name, 6);
    let checkpoints = await FileCheckpointStore.open(dir);
    const before = collector();
    await new ManyReceiver({ names: ["x", "y", "z"], remote: w.remote, checkpoints, batchSize: 4 }).run(before.deliver);
    await checkpoints.close();

    await w.publish("x", 3);
    await w.publish("z", 1);
    await w.publish("new", 2);
    checkpoints = await FileCheckpointStore.open(dir);
    const after = collector();
    const result = await new ManyReceiver({ names: ["x", "y", "z", "new"], remote: w.remote, checkpoints, batchSize: 4 }).run(after.deliver);
    await checkpoints.close();
    expect(result.delivered).toBe(6);
    expect(after.seqs("x")).toEqual([6, 7, 8]);
    expect(after.byName.has("y")).toBe(false);
    expect(after.seqs("z")).toEqual([6]);
    expect(after.seqs("new")).toEqual([0, 1]);
    for (const name of ["x", "y", "z"]) expect([...before.ids(name), ...after.ids(name)]).toEqual(await w.ids(name));
  });

  it("a delivery that fails stops the whole run, and that name's checkpoint stays before the batch", async () => {
    const w = world();
    for (const name of ["a", "b", "c"]) await w.publish(name, 5);
    const checkpoints = new MemoryCheckpointStore();
    const many = new ManyReceiver({ names: ["a", "b", "c"], remote: w.remote, checkpoints, concurrency: 1, batchSize: 2 });
    const gone = new Error("EPIPE: the output is gone");
    await expect(
      many.run(async (name) => {
        if (name === "b") throw gone;
      }),
    ).rejects.toBe(gone);
    expect(await checkpoints.load("a")).toMatchObject({ delivered: 5 });
    expect(await checkpoints.load("b")).toBeUndefined();
    expect(await checkpoints.load("c")).toBeUndefined();
  });

  it("with follow, a stop during a sync waits for it, and leaves no timer behind to keep the process up", async () => {
    const w = world();
    await w.publish("a", 3);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const stop = new AbortController();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const out = collector();
    const running = new ManyReceiver({ names: ["a"], remote: w.remote, checkpoints: new MemoryCheckpointStore() }).run(
      async (name, batch) => {
        entered();
        await gate;
        await out.deliver(name, batch);
      },
      { follow: true, intervalMs: 600_000, signal: stop.signal },
    );
    await inside;
    stop.abort();
    release();
    expect(await running).toEqual({ failed: [], unread: [], delivered: 3 });
    expect(timers()).toBe(before);
  });

  it("with follow, is woken by the NS's notes: new messages arrive long before the next poll", async () => {
    const w = world();
    const names = Array.from({ length: 50 }, (_, i) => `push-${i}`);
    for (const name of names) await w.publish(name, 2);
    const got = collector();
    const stop = new AbortController();
    const many = new ManyReceiver({ names, remote: w.remote, checkpoints: new MemoryCheckpointStore() });
    const running = many.run(got.deliver, { follow: true, intervalMs: 60_000, signal: stop.signal });
    const until = async (check: () => boolean) => {
      const deadline = Date.now() + 5_000;
      while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      return check();
    };
    expect(await until(() => names.every((name) => (got.byName.get(name)?.length ?? 0) === 2))).toBe(true);
    await w.publish("push-17", 3);
    await w.publish("push-42", 1);
    // Within until's 5 s: the poll interval is a minute, so only a push brings them.
    expect(await until(() => got.byName.get("push-17")!.length === 5 && got.byName.get("push-42")!.length === 3)).toBe(true);
    expect(got.byName.get("push-17")!.map((d) => d.seq)).toEqual([0, 1, 2, 3, 4]);
    stop.abort();
    await running;
  });

  it("with follow and pushes, polls a name whose polls find nothing ever less often, the wait doubling each time", async () => {
    const w = world();
    await w.publish("quiet", 2);
    // Every fetch of the name's head, when it was made: the catch-up, the sync once the NS watches, then polls.
    const fetched: number[] = [];
    // How many fetches there were when the NS said it watched: the sync that note starts is fetch number
    // that many (the catch-up, when it had not started yet), and the polls come after it.
    let beforeWatching: number | undefined;
    const remote = new Proxy(w.remote, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        if (key === "fetchName") return (...args: unknown[]) => (fetched.push(performance.now()), value.apply(target, args));
        if (key === "watchNames") {
          return async function* (names: string[], signal: AbortSignal) {
            for await (const note of target.watchNames(names, signal)) {
              if (note.watching) beforeWatching = fetched.length;
              yield note;
            }
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const stop = new AbortController();
    const got = collector();
    const running = new ManyReceiver({ names: ["quiet"], remote, checkpoints: new MemoryCheckpointStore() }).run(got.deliver, {
      follow: true,
      intervalMs: 20,
      maxIntervalMs: 160,
      signal: stop.signal,
    });
    const deadline = Date.now() + 20_000;
    while ((beforeWatching === undefined || fetched.length < beforeWatching + 6) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    stop.abort();
    await running;
    expect(got.seqs("quiet")).toEqual([0, 1]);
    expect(beforeWatching).toBeDefined();
    const polls = fetched.slice(beforeWatching);
    expect(polls.length).toBeGreaterThanOrEqual(6);
    // A timer never fires early, so each wait is at least what the schedule says; load only lengthens it.
    // With a fixed interval every wait would be about 20 ms.
    const waits = polls.slice(1, 6).map((at, i) => at - polls[i]);
    [20, 40, 80, 160, 160].forEach((least, i) => expect(waits[i]).toBeGreaterThanOrEqual(least - 1));
  });

  it("with follow, names whose watch a real server refuses (its per-address limit) are polled at the first interval, not ever less often", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--max-watches-per-address", "1"]);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const sender = new Sender({ published: new MemoryCheckpointStore(), name: "r0", log: new MemoryLocalLog(), remote, pageSize: 4 });
      await sender.append([utf8("one")], GROUP, 1n);
      await sender.publish();
      const fetched: number[] = [];
      const counted = new Proxy(remote, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if (key === "fetchName") return (...args: unknown[]) => (fetched.push(performance.now()), value.apply(target, args));
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const refused: number[] = [];
      const stop = new AbortController();
      const got = collector();
      // Two names over a limit of one: the WatchMany is refused. Behind pushes, each quiet poll doubled the
      // wait up to maxIntervalMs (20 ms up to a minute: 11 fetches a name in the first 15 s, 22 in all); refused, it stays at 20 ms.
      const running = new ManyReceiver({ names: ["r0", "r1"], remote: counted, checkpoints: new MemoryCheckpointStore() }).run(got.deliver, {
        follow: true,
        intervalMs: 20,
        maxIntervalMs: 60_000,
        signal: stop.signal,
        events: { watchRefused: (names) => refused.push(names) },
      });
      const polls = () => fetched.length;
      await expect.poll(polls, { timeout: 15_000, interval: 20 }).toBeGreaterThanOrEqual(30);
      stop.abort();
      await running;
      expect(refused).toEqual([2]);
      expect(got.seqs("r0")).toEqual([0]);
    } finally {
      remote.close();
    }
  }, 30_000);

  it("with follow, an update stored while the WatchMany request is on its way is delivered once the stream watches, not at the next poll", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const sender = new Sender({ published: new MemoryCheckpointStore(), name: "late", log: new MemoryLocalLog(), remote, pageSize: 4 });
      const publish = async (text: string) => {
        await sender.append([utf8(text)], GROUP, 1n);
        await sender.publish();
      };
      await publish("one");
      // The request held on its way, as a slow network holds it: the stream asked for, not yet watching.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let asked = false;
      const slow = new Proxy(remote, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if (key === "watchNames") {
            return async function* (names: string[], signal: AbortSignal) {
              asked = true;
              await held;
              yield* target.watchNames(names, signal);
            };
          }
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const stop = new AbortController();
      const got = collector();
      const running = new ManyReceiver({ names: ["late"], remote: slow, checkpoints: new MemoryCheckpointStore() }).run(got.deliver, {
        follow: true,
        intervalMs: 600_000,
        signal: stop.signal,
      });
      await expect.poll(() => asked && got.seqs("late").length === 1, { timeout: 10_000, interval: 10 }).toBe(true);
      // Stored after the name's first sync read its head, before the NS watches it: no note will come.
      await publish("two");
      release();
      // On the old code the receiver synced at the request, not once the NS watched: "two" waited for the 10-minute poll.
      await expect.poll(() => got.seqs("late"), { timeout: 10_000, interval: 10 }).toEqual([0, 1]);
      stop.abort();
      await running;
    } finally {
      remote.close();
    }
  }, 30_000);

  it("counts a poll as quiet unless it found what no note announced, and caps the wait it doubles", () => {
    expect(quietPollsAfter(3, { polled: true, delivered: 0, notedDuring: false })).toBe(4);
    expect(quietPollsAfter(3, { polled: true, delivered: 5, notedDuring: false })).toBe(0); // notes were lost
    expect(quietPollsAfter(3, { polled: true, delivered: 5, notedDuring: true })).toBe(4); // the note came too
    expect(quietPollsAfter(3, { polled: false, delivered: 5, notedDuring: false })).toBe(3); // woken by a note
    expect(quietPollsAfter(30, { polled: true, delivered: 0, notedDuring: false })).toBe(30);
    expect([0, 1, 2, 3, 4, 30].map((quiet) => pollDelayMs(30_000, 480_000, quiet))).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 480_000]);
    expect(pollDelayMs(500, 100, 3)).toBe(500); // a cap below the first interval does not shorten it
  });

  it("refuses a name given twice", () => {
    const w = world();
    expect(() => new ManyReceiver({ names: ["a", "b", "a"], remote: w.remote, checkpoints: new MemoryCheckpointStore() })).toThrow(/INVALID_ARGUMENT: name "a" is given twice/);
  });

  it("stopped before it starts, reads nothing and says which names were left unread", async () => {
    const w = world();
    await w.publish("a", 1);
    const stop = new AbortController();
    stop.abort();
    const out = collector();
    const result = await new ManyReceiver({ names: ["a", "b"], remote: w.remote, checkpoints: new MemoryCheckpointStore() }).run(out.deliver, { signal: stop.signal });
    expect(result).toEqual({ failed: [], unread: ["a", "b"], delivered: 0 });
  });
});
