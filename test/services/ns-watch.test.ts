import { afterEach, describe, expect, it } from "vitest";
import type http from "node:http";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { NameUpdateSchema, NS, QuerySchema } from "../../gen/vac/cas/cas_pb.js";
import { NsService } from "../../services/ns-service.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { NameWatchService, WatchManyRequestSchema } from "../../gen/remotelog/v1/names_pb.js";
import { metricValue } from "../helpers/metrics.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

let server: Listening | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("ns watch many - notes for many names on one stream", () => {
  it("notes updates of the watched names only, the newest version per name when the client lags", async () => {
    const ns = new NsService(new MemoryNameStore());
    await ns.update(create(NameUpdateSchema, { name: "a", content: utf8("a1") }));
    const stop = new AbortController();
    const stream = ns.watchMany(create(WatchManyRequestSchema, { names: ["a", "b", "a"] }), { signal: stop.signal } as never);
    const first = stream.next();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await ns.update(create(NameUpdateSchema, { name: "b", content: utf8("b1") }));
    expect((await first).value).toMatchObject({ name: "b", version: 1n });
    await ns.update(create(NameUpdateSchema, { name: "other", content: utf8("x") }));
    await ns.update(create(NameUpdateSchema, { name: "a", content: utf8("a2") }));
    await ns.update(create(NameUpdateSchema, { name: "a", content: utf8("a3") }));
    expect((await stream.next()).value).toMatchObject({ name: "a", version: 3n });
    const ending = stream.next();
    stop.abort();
    expect((await ending).done).toBe(true);
  });

  it("with confirm, says first that it watches every name (an update stored after that is noted); without, says nothing", async () => {
    const ns = new NsService(new MemoryNameStore());
    const stop = new AbortController();
    const confirmed = ns.watchMany(create(WatchManyRequestSchema, { names: ["a", "b"], confirm: true }), { signal: stop.signal } as never);
    expect((await confirmed.next()).value).toMatchObject({ name: "", version: 0n, letGo: false, watching: true });
    await ns.update(create(NameUpdateSchema, { name: "b", content: utf8("b1") }));
    expect((await confirmed.next()).value).toMatchObject({ name: "b", version: 1n, watching: false });
    const plain = ns.watchMany(create(WatchManyRequestSchema, { names: ["a"] }), { signal: stop.signal } as never);
    const first = plain.next();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await ns.update(create(NameUpdateSchema, { name: "a", content: utf8("a1") }));
    expect((await first).value).toMatchObject({ name: "a", version: 1n, watching: false });
    stop.abort();
    expect((await confirmed.next()).done).toBe(true);
    expect((await plain.next()).done).toBe(true);
  });

  it("refuses too many names, a bad name, and more watchers than the NS serves", async () => {
    const ns = new NsService(new MemoryNameStore(), { maxWatchNames: 2, maxWatches: 3 });
    const open = (names: string[]) => ns.watchMany(create(WatchManyRequestSchema, { names }), { signal: new AbortController().signal } as never).next();
    await expect(open(["a", "b", "c"])).rejects.toThrowError(/TOO_LARGE: 3 names in one WatchMany is over the limit of 2/);
    await expect(open(["a", ""])).rejects.toThrowError(/INVALID_ARGUMENT: name is empty/);
    const stop = new AbortController();
    const held = ns.watchMany(create(WatchManyRequestSchema, { names: ["a", "b"] }), { signal: stop.signal } as never);
    const pending = held.next();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await expect(open(["c", "d"])).rejects.toThrowError(/TOO_LARGE: 2 names are watched already/);
    stop.abort();
    await pending;
  });
});

describe("ns watch - pushed heads", () => {
  it("yields the current head, then each newer one, and ends when the watcher goes away", async () => {
    const ns = new NsService(new MemoryNameStore());
    await ns.update(create(NameUpdateSchema, { name: "w", content: utf8("one") }));
    const stop = new AbortController();
    const stream = ns.watch(create(QuerySchema, { name: "w" }), { signal: stop.signal } as never);
    expect(text((await stream.next()).value!.data)).toBe("one");
    const second = stream.next();
    await ns.update(create(NameUpdateSchema, { name: "w", content: utf8("two") }));
    expect(await second).toMatchObject({ done: false, value: { version: 2n } });
    // A watcher that falls behind gets the newest head, not every one in between.
    await ns.update(create(NameUpdateSchema, { name: "w", content: utf8("three") }));
    await ns.update(create(NameUpdateSchema, { name: "w", content: utf8("four") }));
    expect(text((await stream.next()).value!.data)).toBe("four");
    const ending = stream.next();
    stop.abort();
    expect((await ending).done).toBe(true);
  });

  it("waits for a name that does not exist yet, and refuses watchers past the limit", async () => {
    const ns = new NsService(new MemoryNameStore(), { maxWatches: 1 });
    const stop = new AbortController();
    const stream = ns.watch(create(QuerySchema, { name: "later" }), { signal: stop.signal } as never);
    const first = stream.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await ns.update(create(NameUpdateSchema, { name: "later", content: utf8("now") }));
    expect(text((await first).value!.data)).toBe("now");
    const other = ns.watch(create(QuerySchema, { name: "x" }), { signal: new AbortController().signal } as never);
    await expect(other.next()).rejects.toThrowError(/TOO_LARGE/);
    stop.abort();
    await stream.return(undefined);
  });

  it.each([
    ["Connect over HTTP/1.1", (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
    ["gRPC over HTTP/2", (baseUrl: string) => createGrpcTransport({ baseUrl })],
  ])("pushes heads to a real client over %s, and ends open streams when the server closes", async (_, transport) => {
    server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ names: new MemoryNameStore(), content: new MemoryContentStore() }) });
    const client = createClient(NS, transport(server.url));
    const stop = new AbortController();
    const seen: string[] = [];
    const watching = (async () => {
      for await (const content of client.watch({ name: "live" }, { signal: stop.signal })) seen.push(text(content.data));
    })().catch((err) => {
      if (ConnectError.from(err).code !== Code.Canceled) throw err;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const head of ["a", "b", "c"]) {
      await client.update({ name: "live", content: utf8(head) });
      await expect.poll(() => seen.at(-1), { timeout: 5_000 }).toBe(head);
    }
    const closed = server.close();
    server = undefined;
    await closed;
    await watching;
    expect(seen).toEqual(["a", "b", "c"]);
  });
});

// Distinct client addresses on loopback (127.0.0.0/8): the NS counts watches by client address.
const STRANGER = "127.0.0.2";
const HONEST = "127.0.0.3";
const THIRD = "127.0.0.4";

describe("ns watch - a full --max-watches is shared among client addresses", () => {
  const transportFrom = (from: string) =>
    createConnectTransport({ baseUrl: server!.url, httpVersion: "1.1", nodeOptions: { localAddress: from, agent: false } as http.RequestOptions });

  /** One Watch stream from an address: the versions it was pushed, and how it ended (undefined: not yet, or cleanly). */
  function watchFrom(from: string, name: string) {
    const stop = new AbortController();
    const stream = { name, versions: [] as bigint[], done: false, error: undefined as ConnectError | undefined, stop: () => stop.abort() };
    let pushed!: () => void;
    const firstHead = new Promise<void>((resolve) => (pushed = resolve));
    const ended = (async () => {
      try {
        for await (const content of createClient(NS, transportFrom(from)).watch({ name }, { signal: stop.signal })) {
          stream.versions.push(content.version);
          pushed();
        }
      } catch (err) {
        stream.error = ConnectError.from(err);
      } finally {
        stream.done = true;
      }
    })();
    // The watched names exist, so a stream that was let in is pushed its head at once.
    return Object.assign(stream, { opened: Promise.race([firstHead, ended]) });
  }

  /** One WatchMany stream from an address: the notes it got, and how it ended. */
  function watchManyFrom(from: string, names: string[]) {
    const stop = new AbortController();
    const stream = { notes: [] as string[], letGo: [] as string[], done: false, error: undefined as ConnectError | undefined, stop: () => stop.abort() };
    void (async () => {
      try {
        for await (const note of createClient(NameWatchService, transportFrom(from)).watchMany({ names }, { signal: stop.signal })) {
          if (note.letGo) stream.letGo.push(note.name);
          else stream.notes.push(note.name);
        }
      } catch (err) {
        stream.error = ConnectError.from(err);
      } finally {
        stream.done = true;
      }
    })();
    return stream;
  }

  async function start(maxWatches: number) {
    server = await listen({ host: "127.0.0.1", port: 0, metrics: true, routes: routes({ names: new MemoryNameStore(), content: new MemoryContentStore(), limits: { maxWatches } }) });
    const ns = createClient(NS, transportFrom("127.0.0.1"));
    const publish = (name: string) => ns.update({ name, content: utf8(`${name} ${Date.now()}`) });
    return { publish };
  }

  /** Opens Watch streams from an address one after another, each let in (pushed its head) before the next. */
  async function watchAll(from: string, watched: string[]) {
    const streams = [];
    for (const name of watched) {
      const stream = watchFrom(from, name);
      await stream.opened;
      expect(stream.error, `${from} watching ${name}`).toBeUndefined();
      streams.push(stream);
    }
    return streams;
  }

  const metric = (name: string) => metricValue(server!.url, name);
  const maxWatchesHits = () => metric('remotelog_limit_hits_total{limit="max-watches"}');
  const evicted = () => metric("remotelog_watches_evicted_total");
  const isMaxWatchesRefusal = (error: ConnectError | undefined) => error?.code === Code.ResourceExhausted;
  const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  it("a stranger holding the whole budget gives one watch way to an honest follower, who is pushed its updates", async () => {
    const { publish } = await start(6);
    for (const name of [...names("s", 6), "honest"]) await publish(name);
    const stranger = await watchAll(STRANGER, names("s", 6));

    const honest = watchFrom(HONEST, "honest");
    await honest.opened;
    // Before, the follower was refused (ResourceExhausted, max-watches) and left to poll.
    expect(honest.error).toBeUndefined();
    expect(honest.versions).toEqual([1n]);
    await publish("honest");
    await expect.poll(() => honest.versions, { timeout: 5_000 }).toEqual([1n, 2n]);

    // One of the stranger's streams ended, as a refused watch does, so its client polls and asks again later.
    await expect.poll(() => stranger.filter((s) => s.done).length, { timeout: 5_000 }).toBe(1);
    const [gone] = stranger.filter((s) => s.done);
    expect(isMaxWatchesRefusal(gone.error)).toBe(true);
    expect(gone.error!.rawMessage).toMatch(/let go to make room for another client address's: this NS watches at most 6 at once, shared among client addresses/);
    // The stranger keeps its 5: each is still pushed its name's updates.
    const kept = stranger.filter((s) => !s.done);
    for (const stream of kept) await publish(stream.name);
    await expect.poll(() => kept.map((s) => s.versions.length), { timeout: 5_000 }).toEqual([2, 2, 2, 2, 2]);
    expect(await evicted()).toBe(1);
    expect(await maxWatchesHits()).toBe(1);
    // The stranger asking for its 6th back is refused: the honest follower holds fewer than it would.
    const again = watchFrom(STRANGER, "s0");
    await again.opened;
    expect(isMaxWatchesRefusal(again.error)).toBe(true);
    expect(honest.done).toBe(false);
    for (const stream of [...stranger, honest]) stream.stop();
  });

  it("each of k addresses asking gets about max/k, no address is taken below the asker's count, and past equal shares the asker is refused", async () => {
    const { publish } = await start(6);
    for (const name of [...names("s", 6), ...names("h", 6), ...names("t", 6)]) await publish(name);
    const stranger = await watchAll(STRANGER, names("s", 6));
    const strangerHolds = () => stranger.filter((s) => !s.done).length;

    // The honest address asks one at a time: each is let in, taking one from the stranger...
    const honest = await watchAll(HONEST, names("h", 3));
    await expect.poll(strangerHolds, { timeout: 5_000 }).toBe(3);
    // ...up to equal shares: a fourth would leave it holding more than the stranger.
    const fourth = watchFrom(HONEST, "h3");
    await fourth.opened;
    expect(isMaxWatchesRefusal(fourth.error)).toBe(true);
    expect(fourth.error!.rawMessage).toMatch(/6 names are watched already, the most this NS serves at once, shared among client addresses: 127\.0\.0\.3 would watch 4/);
    // Nor does the stranger win one back: it would then hold more than the honest address.
    const back = watchFrom(STRANGER, "s0");
    await back.opened;
    expect(isMaxWatchesRefusal(back.error)).toBe(true);
    expect(strangerHolds()).toBe(3);
    expect(honest.every((s) => !s.done)).toBe(true);

    // A third address: the largest holder gives way each time, until all three hold 6/3.
    const third = await watchAll(THIRD, names("t", 2));
    await expect.poll(() => [strangerHolds(), honest.filter((s) => !s.done).length], { timeout: 5_000 }).toEqual([2, 2]);
    const thirdMore = watchFrom(THIRD, "t2");
    await thirdMore.opened;
    expect(isMaxWatchesRefusal(thirdMore.error)).toBe(true);
    expect(await evicted()).toBe(5);
    // 5 streams ended by eviction, 3 asks refused.
    expect(await maxWatchesHits()).toBe(8);
    for (const stream of [...stranger, ...honest, ...third]) stream.stop();
  });

  /** Whether a WatchMany stream was let in: it hears of an update of name, published until it does or ends. */
  async function letIn(stream: ReturnType<typeof watchManyFrom>, publish: (name: string) => Promise<unknown>, name: string): Promise<boolean> {
    for (let round = 0; round < 100 && !stream.done && stream.notes.length === 0; round++) {
      await publish(name);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return stream.notes.length > 0 && stream.error === undefined;
  }

  it("a WatchMany of several names takes its room from several streams at once, all or none", async () => {
    const { publish } = await start(6);
    for (const name of names("s", 6)) await publish(name);
    const stranger = await watchAll(STRANGER, names("s", 6));
    const many = watchManyFrom(HONEST, names("h", 3));
    expect(await letIn(many, publish, "h1")).toBe(true);
    await expect.poll(() => stranger.filter((s) => !s.done).length, { timeout: 5_000 }).toBe(3);
    expect(await evicted()).toBe(3);
    // One more would leave the honest address holding 4, more than the stranger's 3: refused, nothing ended.
    const more = watchManyFrom(HONEST, ["x0"]);
    await expect.poll(() => more.done, { timeout: 5_000 }).toBe(true);
    expect(isMaxWatchesRefusal(more.error)).toBe(true);
    expect(stranger.filter((s) => !s.done).length).toBe(3);
    expect(await evicted()).toBe(3);
    for (const stream of [...stranger, many]) stream.stop();
  });

  it("the WatchMany stream of the largest holder lets go of just the names it must give, says which, and goes on pushing the rest", async () => {
    const { publish } = await start(6);
    await publish("h0");
    const stranger = watchManyFrom(STRANGER, names("s", 6));
    expect(await letIn(stranger, publish, "s0")).toBe(true);
    const [honest] = await watchAll(HONEST, ["h0"]);
    // Before, the stream ended whole (RESOURCE_EXHAUSTED), all six names, for the honest address's one.
    await expect.poll(() => stranger.letGo, { timeout: 5_000 }).toEqual(["s5"]);
    expect(stranger.done).toBe(false);
    expect(await evicted()).toBe(1);
    expect(await maxWatchesHits()).toBe(0);
    // The names it kept are still pushed; the one let go is not.
    stranger.notes.length = 0;
    for (const name of ["s5", "s1", "s4"]) await publish(name);
    await expect.poll(() => [...stranger.notes].sort(), { timeout: 5_000 }).toEqual(["s1", "s4"]);
    // A second honest address takes one more from it, its largest holder; each of the three then holds no more than it.
    const [third] = await watchAll(THIRD, ["h0"]);
    await expect.poll(() => stranger.letGo, { timeout: 5_000 }).toEqual(["s5", "s4"]);
    expect(stranger.done).toBe(false);
    // Asked for again, the names let go are refused: the stranger would hold more than the others.
    const again = watchManyFrom(STRANGER, ["s4", "s5"]);
    await expect.poll(() => again.done, { timeout: 5_000 }).toBe(true);
    expect(isMaxWatchesRefusal(again.error)).toBe(true);
    expect([honest.done, third.done]).toEqual([false, false]);
    for (const stream of [honest, third, stranger]) stream.stop();
  });

  it("a WatchMany that must give all its names ends whole, as a refused watch does", async () => {
    const { publish } = await start(3);
    for (const name of ["h0", "h1"]) await publish(name);
    const stranger = watchManyFrom(STRANGER, names("s", 2));
    expect(await letIn(stranger, publish, "s0")).toBe(true);
    const small = watchManyFrom(STRANGER, ["t0"]);
    expect(await letIn(small, publish, "t0")).toBe(true);
    // An honest address's one: the stranger (3) gives one from its largest stream, which goes on with s0.
    const [honest] = await watchAll(HONEST, ["h0"]);
    await expect.poll(() => stranger.letGo, { timeout: 5_000 }).toEqual(["s1"]);
    expect(stranger.done).toBe(false);
    // A third address's one: the stranger (2, the only larger holder) gives one more, a stream's last name: it ends.
    const [third] = await watchAll(THIRD, ["h1"]);
    await expect.poll(() => stranger.done, { timeout: 5_000 }).toBe(true);
    expect(isMaxWatchesRefusal(stranger.error)).toBe(true);
    expect(stranger.error!.rawMessage).toMatch(/let go to make room/);
    expect(small.done).toBe(false);
    expect(await evicted()).toBe(2);
    expect(await maxWatchesHits()).toBe(1);
    for (const stream of [stranger, small, honest, third]) stream.stop();
  });

  it("counts stay exact through evictions and closes: afterwards one address gets the whole budget, and not one more", async () => {
    const { publish } = await start(6);
    for (const name of [...names("s", 6), ...names("h", 3), "extra"]) await publish(name);
    const stranger = await watchAll(STRANGER, names("s", 6));
    const honest = await watchAll(HONEST, names("h", 3));
    await expect.poll(() => stranger.filter((s) => s.done).length, { timeout: 5_000 }).toBe(3);
    // Evicted streams are closed by their clients too: nothing is given back twice.
    for (const stream of [...stranger, ...honest]) stream.stop();
    // Once the closes reach the server, every watch is back: one stream of the whole budget is let in.
    const whole = names("w", 6);
    let held: ReturnType<typeof watchManyFrom> | undefined;
    await expect
      .poll(
        async () => {
          held?.stop();
          held = watchManyFrom(THIRD, whole);
          return letIn(held, publish, "w5");
        },
        { timeout: 10_000, interval: 100 },
      )
      .toBe(true);
    // Exactly 6 are counted: one more from the same address is refused, saying so.
    const one = watchFrom(THIRD, "extra");
    await one.opened;
    expect(isMaxWatchesRefusal(one.error)).toBe(true);
    expect(one.error!.rawMessage).toMatch(/^6 names are watched already/);
    held!.stop();
  });
});
