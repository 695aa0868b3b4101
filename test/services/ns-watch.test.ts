import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { NameUpdateSchema, NS, QuerySchema } from "../../gen/vac/cas/cas_pb.js";
import { NsService } from "../../services/ns-service.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { WatchManyRequestSchema } from "../../gen/remotelog/v1/names_pb.js";

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
