import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Remote } from "../../actors/remote.js";
import { Sender } from "../../actors/sender.js";
import { SharedNameWatch, type NameWaiter } from "../../actors/shared-name-watch.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

/*
 * The watches of many names on one WatchMany stream (actors/shared-name-watch.ts), which a page over
 * http:// uses past its few Watch streams (test/browser/remote-log.test.ts has the page), against a
 * real listen() server on loopback.
 */

let server: Listening;
let remote: Remote;
const senders = new Map<string, Sender>();
let sent = 0;

async function publish(name: string): Promise<void> {
  let sender = senders.get(name);
  if (!sender) {
    sender = new Sender({ published: new MemoryCheckpointStore(), name, log: new MemoryLocalLog(), remote });
    senders.set(name, sender);
  }
  await sender.append([new TextEncoder().encode(`${name} ${sent++}`)], new TextEncoder().encode("group"));
  await sender.publish();
}

/** Waits until check() holds, for at most 10 s: a bound on the wait, never on speed. */
async function until(check: () => boolean, what: () => string): Promise<void> {
  for (const deadline = Date.now() + 10_000; !check(); ) {
    if (Date.now() > deadline) throw new Error(`still not so after 10 s: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Counts each wake of a waiter, until stop aborts; the error that ended it, if one did. */
function counting(waiter: NameWaiter, stop: AbortSignal) {
  const state = { wakes: 0, error: undefined as unknown };
  void (async () => {
    try {
      for (;;) {
        await waiter.wait(stop);
        if (stop.aborted) return;
        state.wakes++;
      }
    } catch (err) {
      state.error = err;
    }
  })();
  return state;
}

beforeAll(async () => {
  server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
  remote = new Remote({ casUrl: server.url, nsUrl: server.url });
});

afterAll(async () => {
  remote?.close();
  await server?.close();
});

describe("shared name watch - many names on one WatchMany stream", () => {
  it("wakes a name's waiters on its own notes, and every waiter when the stream is opened again for a name joining or leaving", async () => {
    for (const name of ["a", "b"]) await publish(name);
    const watch = new SharedNameWatch((names, signal) => remote.watchNames(names, signal), server.url);
    const stop = new AbortController();
    const a = watch.join("a");
    const b = watch.join("b");
    const wakes = { a: counting(a, stop.signal), b: counting(b, stop.signal) };
    const counts = () => JSON.stringify({ a: wakes.a.wakes, b: wakes.b.wakes });
    try {
      // Opened once for both: each woken once, to read its head (a note may have come before the stream).
      await until(() => wakes.a.wakes === 1 && wakes.b.wakes === 1, counts);
      await publish("a");
      await until(() => wakes.a.wakes === 2, counts);
      await publish("b");
      await until(() => wakes.b.wakes === 2, counts);
      await publish("a");
      await until(() => wakes.a.wakes === 3, counts);
      // Each note woke its own name's waiter, and only that one.
      expect({ a: wakes.a.wakes, b: wakes.b.wakes }).toEqual({ a: 3, b: 2 });

      // c joins: the stream is opened again over a, b and c, and everyone reads again.
      const c = watch.join("c");
      const cWakes = counting(c, stop.signal);
      await until(() => wakes.a.wakes === 4 && wakes.b.wakes === 3 && cWakes.wakes === 1, counts);
      await publish("c");
      await until(() => cWakes.wakes === 2, counts);
      // c leaves: opened again over a and b.
      c.leave();
      await until(() => wakes.a.wakes === 5 && wakes.b.wakes === 4, counts);
      await publish("b");
      await until(() => wakes.b.wakes === 5, counts);
      expect([wakes.a.error, wakes.b.error, cWakes.error]).toEqual([undefined, undefined, undefined]);
    } finally {
      stop.abort();
      a.leave();
      b.leave();
    }
  });

  it("wakes its waiters once the NS watches, not when the stream is asked for: an update stored while the request is on its way is read then", async () => {
    await publish("late");
    // The request held on its way, as a slow network holds it.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let asked = false;
    const watch = new SharedNameWatch(async function* (names, signal) {
      asked = true;
      await held;
      yield* remote.watchNames(names, signal);
    }, server.url);
    const stop = new AbortController();
    const waiter = watch.join("late");
    // A follower as Remote.watchShared is one: it reads the head, waits for a wake, and reads it again.
    const read: bigint[] = [];
    const following = (async () => {
      for (;;) {
        read.push((await remote.fetchName("late"))!.version);
        await waiter.wait(stop.signal);
        if (stop.signal.aborted) return;
      }
    })();
    try {
      await until(() => asked && read.length >= 1, () => `asked ${asked}, read ${read}`);
      const first = read[0];
      // On the old code the waiter was woken as the stream was asked for: its second read came now,
      // before the update below, and nothing woke it after.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(read).toEqual([first]);
      await publish("late");
      release();
      await until(() => read.at(-1) === first + 1n, () => `read ${read}`);
      expect(read).toEqual([first, first + 1n]);
    } finally {
      stop.abort();
      waiter.leave();
      await following;
    }
  });

  it("fails every waiter with what ended the stream: the server closing is UNAVAILABLE (each follower opens its watch again after a pause, HeadWatch)", async () => {
    const own = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }), closeGraceMs: 0 });
    const ownRemote = new Remote({ casUrl: own.url, nsUrl: own.url });
    const watch = new SharedNameWatch((names, signal) => ownRemote.watchNames(names, signal), own.url);
    const stop = new AbortController();
    try {
      const waiters = ["x", "y"].map((name) => watch.join(name));
      const states = waiters.map((waiter) => counting(waiter, stop.signal));
      await until(() => states.every((state) => state.wakes === 1), () => JSON.stringify(states.map((s) => s.wakes)));
      await own.close();
      await until(() => states.every((state) => state.error !== undefined), () => String(states.map((s) => s.error)));
      for (const state of states) expect(state.error).toMatchObject({ code: "UNAVAILABLE" });
    } finally {
      stop.abort();
      ownRemote.close();
      await own.close();
    }
  });
});
