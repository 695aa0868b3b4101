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
  it("wakes a name's waiters on its own notes; a name joining or leaving opens the stream again, the one before kept until the new one watches, and wakes only the joiner", async () => {
    for (const name of ["a", "b"]) await publish(name);
    // Each stream's request can be held on its way, as a slow network holds it; live counts the open streams.
    let hold: Promise<void> | undefined;
    let live = 0;
    let opened = 0;
    const watch = new SharedNameWatch(async function* (names, signal) {
      opened++;
      live++;
      try {
        await hold;
        yield* remote.watchNames(names, signal);
      } finally {
        live--;
      }
    }, server.url);
    const stop = new AbortController();
    const a = watch.join("a");
    const b = watch.join("b");
    const wakes = { a: counting(a, stop.signal), b: counting(b, stop.signal) };
    let c: NameWaiter | undefined;
    let cWakes: ReturnType<typeof counting> | undefined;
    const counts = () => JSON.stringify({ a: wakes.a.wakes, b: wakes.b.wakes, c: cWakes?.wakes, live, opened });
    try {
      // Opened once for both: each woken once the NS watches, to read its head (an update may have come before).
      await until(() => wakes.a.wakes === 1 && wakes.b.wakes === 1, counts);
      await publish("a");
      await until(() => wakes.a.wakes === 2, counts);
      await publish("b");
      await until(() => wakes.b.wakes === 2, counts);
      // Each note woke its own name's waiter, and only that one.
      expect({ a: wakes.a.wakes, b: wakes.b.wakes, opened }).toEqual({ a: 2, b: 2, opened: 1 });

      // c joins: a stream over a, b and c is asked for, and held on its way. The one before still
      // notes a's update meanwhile: nothing is lost, and a and b need not read again.
      let release!: () => void;
      hold = new Promise<void>((resolve) => (release = resolve));
      c = watch.join("c");
      cWakes = counting(c, stop.signal);
      await until(() => opened === 2 && live === 2, counts);
      await publish("a");
      await until(() => wakes.a.wakes === 3, counts);
      release();
      hold = undefined;
      // Once the new one watches, the one before is closed and only c is woken.
      await until(() => cWakes!.wakes === 1 && live === 1, counts);
      await publish("c");
      await until(() => cWakes!.wakes === 2, counts);
      expect({ a: wakes.a.wakes, b: wakes.b.wakes }).toEqual({ a: 3, b: 2 });

      // c leaves: opened again over a and b, which the stream before watched: no one is woken.
      c.leave();
      await until(() => opened === 3 && live === 1, counts);
      await publish("b");
      await until(() => wakes.b.wakes === 3, counts);
      expect({ a: wakes.a.wakes, b: wakes.b.wakes, c: cWakes.wakes, opened, live }).toEqual({ a: 3, b: 3, c: 2, opened: 3, live: 1 });
      expect([wakes.a.error, wakes.b.error, cWakes.error]).toEqual([undefined, undefined, undefined]);
    } finally {
      stop.abort();
      a.leave();
      b.leave();
      c?.leave();
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

  it("from an NS that never says it watches (one older than WatchManyRequest.confirm), closes the stream before and wakes every waiter as the new one is asked for", async () => {
    let live = 0;
    const watch = new SharedNameWatch(async function* (names, signal) {
      live++;
      try {
        for await (const note of remote.watchNames(names, signal)) if (!note.watching) yield note;
      } finally {
        live--;
      }
    }, server.url);
    const stop = new AbortController();
    const waiters: NameWaiter[] = [];
    try {
      waiters.push(watch.join("old-a"), watch.join("old-b"));
      const states = waiters.map((waiter) => counting(waiter, stop.signal));
      const counts = () => `${JSON.stringify(states.map((state) => state.wakes))}, ${live} open`;
      // The first stream wakes no one: each follower read its head as it joined. Nothing says when it
      // watches, so old-a is published until a note of it comes.
      await until(() => live === 1, counts);
      for (let tries = 0; states[0].wakes === 0 && tries < 50; tries++) {
        await publish("old-a");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(states[0].wakes).toBeGreaterThan(0);
      expect(states[1].wakes).toBe(0);
      const [a, b] = states.map((state) => state.wakes);
      waiters.push(watch.join("old-c"));
      states.push(counting(waiters[2], stop.signal));
      // Opened again: no note says when it watches, so everyone reads again at once, and one stream is open.
      await until(() => states[0].wakes > a && states[1].wakes > b && states[2].wakes === 1 && live === 1, counts);
      for (let tries = 0; states[2].wakes === 1 && tries < 50; tries++) {
        await publish("old-c");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(states[2].wakes).toBeGreaterThan(1);
      expect(states.map((state) => state.error)).toEqual([undefined, undefined, undefined]);
    } finally {
      stop.abort();
      waiters.forEach((waiter) => waiter.leave());
    }
  });

  it("asked for past a watch limit that the stream before still counts towards, closes that one and asks again without it", async () => {
    const own = await listen({
      host: "127.0.0.1",
      port: 0,
      routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore(), limits: { maxWatchesPerAddress: 3 } }),
      closeGraceMs: 0,
    });
    const ownRemote = new Remote({ casUrl: own.url, nsUrl: own.url });
    let opened = 0;
    const watch = new SharedNameWatch((names, signal) => (opened++, ownRemote.watchNames(names, signal)), own.url);
    const stop = new AbortController();
    const waiters: NameWaiter[] = [];
    try {
      waiters.push(watch.join("x"), watch.join("y"));
      const states = waiters.map((waiter) => counting(waiter, stop.signal));
      await until(() => states.every((state) => state.wakes === 1), () => JSON.stringify(states.map((s) => s.wakes)));
      // Three names while the stream over two is held: five watches of the address's three, refused.
      waiters.push(watch.join("z"));
      states.push(counting(waiters[2], stop.signal));
      // Asked again alone (once the NS let go of the stream before: a try or two), the stream over
      // three is let in, and each is woken once it watches, where each waiter failed TOO_LARGE.
      await until(() => opened >= 3 && states.every((state) => state.wakes === 2 || (state === states[2] && state.wakes === 1)), () => `${opened} ${JSON.stringify(states.map((s) => s.wakes))} ${states.map((s) => String(s.error))}`);
      const sender = new Sender({ published: new MemoryCheckpointStore(), name: "z", log: new MemoryLocalLog(), remote: ownRemote });
      await sender.append([new TextEncoder().encode("z")], new TextEncoder().encode("group"));
      await sender.publish();
      await until(() => states[2].wakes === 2, () => JSON.stringify(states.map((s) => s.wakes)));
      expect(states.map((state) => state.error)).toEqual([undefined, undefined, undefined]);
    } finally {
      stop.abort();
      waiters.forEach((waiter) => waiter.leave());
      ownRemote.close();
      await own.close();
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
