import { afterEach, describe, expect, it } from "vitest";
import http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { CAS, NS } from "../../gen/vac/cas/cas_pb.js";
import { BlockService } from "../../gen/remotelog/v1/blocks_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { addressOf } from "../../core/hash.js";
import type { ContentStore } from "../../core/content-store.js";
import type { NameStore } from "../../core/name-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { LevelNameStore } from "../../stores/level/name-store.js";
import { listen, routes, type ListenOptions, type Listening, type RouteDeps } from "../../services/server.js";
import { tempDir, cleanup } from "../helpers/processes.js";
import { codeOf } from "../helpers/connect.js";

const TEST_TIMEOUT = 15_000;
const utf8 = (text: string) => new TextEncoder().encode(text);

const servers: Listening[] = [];
const stores: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await cleanup();
});

async function start(deps: RouteDeps, options: Partial<ListenOptions> = {}): Promise<Listening> {
  const server = await listen({ host: "127.0.0.1", port: 0, metrics: true, ...options, routes: routes(deps) });
  servers.push(server);
  return server;
}


/** One scrape, as Prometheus reads it: `name{labels}` to value, the labels in the order written. */
type Samples = Map<string, number>;

function parse(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    samples.set(match[1], Number(match[2]));
  }
  return samples;
}

async function scrape(url: string): Promise<{ samples: Samples; contentType: string | null }> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  expect(res.status).toBe(200);
  return { samples: parse(await res.text()), contentType: res.headers.get("content-type") };
}

const requests = (method: string, code: string) => `remotelog_rpc_requests_total{method="${method}",code="${code}"}`;
const durationCount = (method: string) => `remotelog_rpc_duration_seconds_count{method="${method}"}`;
const durationBucket = (method: string, le: string) => `remotelog_rpc_duration_seconds_bucket{le="${le}",method="${method}"}`;

describe("metrics - GET /metrics on the server's port", () => {
  it("counts every RPC by method and final code, times them, and reports the stores", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start({ content: new MemoryContentStore(), names: new MemoryNameStore() });
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" });
    const cas = createClient(CAS, transport);
    const blocks = createClient(BlockService, transport);
    const ns = createClient(NS, transport);

    const { id } = await cas.add({ data: utf8("one") });
    await cas.add({ data: utf8("two!") });
    await cas.add({ data: utf8("one") }); // stored already: one block, counted once
    await cas.get({ id });
    expect(await codeOf(cas.get({ id: addressOf(utf8("never stored")) }))).toBe("NotFound");
    expect(await codeOf(cas.get({ id: new Uint8Array(0) }))).toBe("InvalidArgument");
    await blocks.addMany({ blocks: [utf8("three"), utf8("four"), utf8("one")] });
    await ns.update({ name: "alice", content: utf8("head") });
    await ns.update({ name: "bob", content: utf8("head") });
    expect(await codeOf(ns.update({ name: "bob", content: utf8("stale"), expectedVersion: 0n }))).toBe("Aborted");
    expect(await codeOf(ns.fetch({ name: "carol" }))).toBe("NotFound");

    const { samples, contentType } = await scrape(server.url);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samples.get(requests("vac.cas.CAS/Add", "OK"))).toBe(3);
    expect(samples.get(requests("vac.cas.CAS/Get", "OK"))).toBe(1);
    expect(samples.get(requests("vac.cas.CAS/Get", "NotFound"))).toBe(1);
    expect(samples.get(requests("vac.cas.CAS/Get", "InvalidArgument"))).toBe(1);
    expect(samples.get(requests("remotelog.v1.BlockService/AddMany", "OK"))).toBe(1);
    expect(samples.get(requests("vac.cas.NS/Update", "OK"))).toBe(2);
    expect(samples.get(requests("vac.cas.NS/Update", "Aborted"))).toBe(1);
    expect(samples.get(requests("vac.cas.NS/Fetch", "NotFound"))).toBe(1);
    // Only what happened is there: no zero series for codes never seen.
    expect([...samples.keys()].filter((key) => key.startsWith("remotelog_rpc_requests_total")).length).toBe(8);

    // The histogram times every call, failed ones too, and each one fell in some bucket.
    expect(samples.get(durationCount("vac.cas.CAS/Add"))).toBe(3);
    expect(samples.get(durationCount("vac.cas.CAS/Get"))).toBe(3);
    expect(samples.get(durationCount("vac.cas.NS/Update"))).toBe(3);
    expect(samples.get(durationBucket("vac.cas.CAS/Get", "+Inf"))).toBe(3);
    expect(samples.get(durationBucket("vac.cas.CAS/Get", "10"))).toBe(3);
    expect(samples.get(`remotelog_rpc_duration_seconds_sum{method="vac.cas.CAS/Get"}`)).toBeGreaterThan(0);
    expect(samples.get(`remotelog_rpc_duration_seconds_sum{method="vac.cas.CAS/Get"}`)).toBeLessThan(5);

    expect(samples.get("remotelog_blocks_stored")).toBe(4);
    expect(samples.get("remotelog_block_bytes_stored")).toBe("one".length + "two!".length + "three".length + "four".length);
    expect(samples.get("remotelog_names")).toBe(2);
    // prom-client's default process metrics.
    expect(samples.get("process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(0);
    expect(samples.get("nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
    expect(samples.has("process_start_time_seconds")).toBe(true);

    // Scraping is no RPC, and the gauges follow the stores.
    await cas.add({ data: utf8("five") });
    const again = (await scrape(server.url)).samples;
    expect(again.get(requests("vac.cas.CAS/Add", "OK"))).toBe(4);
    expect(again.get("remotelog_blocks_stored")).toBe(5);
  });

  it("reports the replaced head pages the gateway keeps serving, and none without a gateway", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start({ content: new MemoryContentStore(), names: new MemoryNameStore(), gateway: true });
    const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    expect((await scrape(server.url)).samples.get("remotelog_gateway_replaced_heads")).toBe(0);
    await ns.update({ name: "alice", content: utf8("first head") });
    await ns.update({ name: "alice", content: utf8("second head") });
    await ns.update({ name: "alice", content: utf8("third") });
    const { samples } = await scrape(server.url);
    expect(samples.get("remotelog_gateway_replaced_heads")).toBe(2);
    expect(samples.get("remotelog_gateway_replaced_head_bytes")).toBe("first head".length + "second head".length);
    const without = await start({ content: new MemoryContentStore(), names: new MemoryNameStore() });
    expect((await scrape(without.url)).samples.has("remotelog_gateway_replaced_heads")).toBe(false);
  });

  it("counts Internal failures, whose cause the client never sees", { timeout: TEST_TIMEOUT }, async () => {
    const memory = new MemoryContentStore();
    const broken: ContentStore = {
      putMany: (blocks) => memory.putMany(blocks),
      getMany: async () => {
        throw new Error("disk on fire");
      },
      has: (address) => memory.has(address),
      close: () => memory.close(),
    };
    const internal: string[] = [];
    const server = await start({ content: broken, onInternalError: (_, method) => internal.push(method) });
    const cas = createClient(CAS, createGrpcTransport({ baseUrl: server.url }));
    expect(await codeOf(cas.get({ id: addressOf(utf8("x")) }))).toBe("Internal");
    expect(internal).toEqual(["vac.cas.CAS/Get"]);
    const { samples } = await scrape(server.url);
    expect(samples.get(requests("vac.cas.CAS/Get", "Internal"))).toBe(1);
    // A store without stats() adds no gauge rather than a false zero.
    expect(samples.has("remotelog_blocks_stored")).toBe(false);
    expect(samples.has("remotelog_names")).toBe(false);
  });

  it("counts health checks, and a Watch once it ends, cancelled by the client", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start({ names: new MemoryNameStore() });
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    await health.check({ service: "" });
    expect(await codeOf(health.check({ service: "nothing" }))).toBe("NotFound");
    const controller = new AbortController();
    const iterator = health.watch({ service: "" }, { signal: controller.signal })[Symbol.asyncIterator]();
    await iterator.next();
    expect((await scrape(server.url)).samples.has(requests("grpc.health.v1.Health/Watch", "Canceled"))).toBe(false);
    controller.abort();
    await iterator.next().catch(() => {});
    let samples = (await scrape(server.url)).samples;
    // The server hears of the cancel a little after the client gives up.
    for (let i = 0; i < 100 && !samples.has(requests("grpc.health.v1.Health/Watch", "Canceled")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      samples = (await scrape(server.url)).samples;
    }
    expect(samples.get(requests("grpc.health.v1.Health/Check", "OK"))).toBe(1);
    expect(samples.get(requests("grpc.health.v1.Health/Check", "NotFound"))).toBe(1);
    expect(samples.get(requests("grpc.health.v1.Health/Watch", "Canceled"))).toBe(1);
  });

  it("reports the durable stores, with what was there before the server started", { timeout: TEST_TIMEOUT }, async () => {
    const dir = await tempDir("remotelog-metrics-");
    const content = await FsContentStore.open(`${dir}/cas`);
    const names = await LevelNameStore.open(`${dir}/ns`);
    stores.push(content, names);
    await content.putMany([utf8("before"), utf8("the server")]);
    await names.put("early", utf8("head"));
    const server = await start({ content, names });
    await createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })).update({ name: "late", content: utf8("head") });
    const { samples } = await scrape(server.url);
    expect(samples.get("remotelog_blocks_stored")).toBe(2);
    expect(samples.get("remotelog_block_bytes_stored")).toBe("before".length + "the server".length);
    expect(samples.get("remotelog_names")).toBe(2);
  });

  it("answers over HTTP/2 too, and to HEAD", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start({ content: new MemoryContentStore() });
    await createClient(CAS, createGrpcTransport({ baseUrl: server.url })).add({ data: utf8("h2") });
    const session = http2.connect(server.url);
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "GET", ":path": "/metrics?x=1" });
        let status = 0;
        let body = "";
        stream.on("response", (headers) => (status = Number(headers[":status"])));
        stream.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
        stream.on("end", () => resolve({ status, body }));
        stream.on("error", reject);
        stream.setTimeout(5_000, () => reject(new Error("no answer over HTTP/2")));
      });
      expect(status).toBe(200);
      expect(parse(body).get(requests("vac.cas.CAS/Add", "OK"))).toBe(1);
    } finally {
      session.close();
    }
    const head = await fetch(`${server.url}/metrics`, { method: "HEAD", signal: AbortSignal.timeout(5_000) });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("keeps each server's counts apart", { timeout: TEST_TIMEOUT }, async () => {
    const [first, second] = await Promise.all([start({ content: new MemoryContentStore() }), start({ content: new MemoryContentStore() })]);
    await createClient(CAS, createConnectTransport({ baseUrl: first.url, httpVersion: "1.1" })).add({ data: utf8("a") });
    await createClient(CAS, createConnectTransport({ baseUrl: first.url, httpVersion: "1.1" })).add({ data: utf8("b") });
    await createClient(CAS, createConnectTransport({ baseUrl: second.url, httpVersion: "1.1" })).add({ data: utf8("c") });
    expect((await scrape(first.url)).samples.get(requests("vac.cas.CAS/Add", "OK"))).toBe(2);
    expect((await scrape(second.url)).samples.get(requests("vac.cas.CAS/Add", "OK"))).toBe(1);
    expect((await scrape(second.url)).samples.get("remotelog_blocks_stored")).toBe(1);
  });

  it("fails a scrape with 500 when a store cannot be read, and keeps serving", { timeout: TEST_TIMEOUT }, async () => {
    const memory = new MemoryNameStore();
    const failing: NameStore = {
      get: (name) => memory.get(name),
      put: (name, content, options) => memory.put(name, content, options),
      count: async () => {
        throw new Error("cannot count");
      },
      close: () => memory.close(),
    };
    const errors: string[] = [];
    const server = await start({ names: failing }, { onMetricsError: (err) => errors.push(err.message) });
    const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(500);
    await res.text();
    expect(errors).toEqual(["cannot count"]);
    expect((await createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })).update({ name: "n", content: utf8("h") })).version).toBe(1n);
  });

  it("serves no /metrics unless asked", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start({ content: new MemoryContentStore() }, { metrics: false });
    const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    await res.text();
    expect(res.status).toBe(404);
  });
});
