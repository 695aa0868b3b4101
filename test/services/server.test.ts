import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import http2 from "node:http2";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { CAS, NS } from "../../gen/vac/cas/cas_pb.js";
import { BlockService } from "../../gen/remotelog/v1/blocks_pb.js";
import { addressOf, addressText } from "../../core/hash.js";
import type { ContentStore } from "../../core/content-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { PassThrough } from "node:stream";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run as serve, parseListen } from "../../cli/serve.js";
import type { Io } from "../../cli/command.js";
import { codeOf } from "../helpers/connect.js";

const utf8 = (text: string) => new TextEncoder().encode(text);
// Decoded bytes may be Buffers or Uint8Arrays depending on the transport; compare their contents.
const hex = (bytes: Uint8Array[]) => bytes.map((b) => Buffer.from(b).toString("hex"));
const TEST_TIMEOUT = 15_000;

const protocols: [string, (baseUrl: string) => Transport][] = [
  ["Connect on HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ["Connect on HTTP/2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })],
  ["Connect JSON on HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false })],
  ["gRPC on HTTP/2", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["gRPC-Web on HTTP/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ["gRPC-Web on HTTP/2", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" })],
];


/** Bytes a raw socket receives until it closes or the time runs out. */
function rawExchange(port: number, writes: (string | Buffer)[], options: { gapMs?: number; waitMs?: number } = {}): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      closed = true;
      finish();
    });
    const timer = setTimeout(finish, options.waitMs ?? 2_000);
    function finish() {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closed });
    }
    socket.on("connect", async () => {
      for (const write of writes) {
        socket.write(write);
        await new Promise((r) => setTimeout(r, options.gapMs ?? 0));
      }
    });
  });
}

describe("server - one port, every protocol", () => {
  let server: Listening;
  const content = new MemoryContentStore();
  const names = new MemoryNameStore();

  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content, names }) });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("binds a free port and reports it", () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  describe.each(protocols)("%s", (protocol, transportFor) => {
    const clients = () => {
      const transport = transportFor(server.url);
      return { cas: createClient(CAS, transport), ns: createClient(NS, transport), blocks: createClient(BlockService, transport) };
    };

    it("adds and gets a block", { timeout: TEST_TIMEOUT }, async () => {
      const { cas } = clients();
      const data = utf8(`block over ${protocol}`);
      const { id } = await cas.add({ data });
      expect(id).toEqual(addressOf(data));
      expect((await cas.get({ id })).data).toEqual(data);
      expect((await cas.add({ data })).id).toEqual(id);
    });

    it("moves blocks in batches", { timeout: TEST_TIMEOUT }, async () => {
      const { blocks } = clients();
      const data = Array.from({ length: 50 }, (_, i) => utf8(`${protocol} batch block ${i}`));
      const { ids } = await blocks.addMany({ blocks: data });
      expect(hex(ids)).toEqual(hex(data.map(addressOf)));
      const missing = addressOf(utf8(`${protocol} never stored`));
      const got = await blocks.getMany({ ids: [missing, ...ids], allowMissing: true });
      expect(got.missing).toEqual([0]);
      expect(hex(got.blocks.slice(1))).toEqual(hex(data));
    });

    it("leaves AddMany's ids out when asked to (omit_ids), storing every block as before", { timeout: TEST_TIMEOUT }, async () => {
      const { blocks } = clients();
      const data = Array.from({ length: 20 }, (_, i) => utf8(`${protocol} omitted block ${i}`));
      expect((await blocks.addMany({ blocks: data, omitIds: true })).ids).toEqual([]);
      expect(hex((await blocks.getMany({ ids: data.map(addressOf) })).blocks)).toEqual(hex(data));
    });

    it("updates and fetches a name with versions", { timeout: TEST_TIMEOUT }, async () => {
      const { ns } = clients();
      const name = `name over ${protocol}`.replaceAll("/", " ");
      expect((await ns.update({ name, content: utf8("head 1"), expectedVersion: 0n })).version).toBe(1n);
      expect((await ns.update({ name, content: utf8("head 2") })).version).toBe(2n);
      expect(await ns.fetch({ name })).toMatchObject({ data: utf8("head 2"), version: 2n });
      expect(await codeOf(ns.update({ name, content: utf8("stale"), expectedVersion: 1n }))).toBe("Aborted");
    });

    it("carries our error codes and messages", { timeout: TEST_TIMEOUT }, async () => {
      const { cas, ns, blocks } = clients();
      const missing = addressOf(utf8("nowhere"));
      const err = await cas.get({ id: missing }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.NotFound);
      expect((err as ConnectError).rawMessage).toContain(addressText(missing));
      expect(await codeOf(cas.get({ id: new Uint8Array(0) }))).toBe("InvalidArgument");
      expect(await codeOf(blocks.getMany({ ids: [missing] }))).toBe("NotFound");
      expect(await codeOf(ns.fetch({ name: "nobody at all" }))).toBe("NotFound");
      expect(await codeOf(cas.add({ data: new Uint8Array((1 << 20) + 1) }))).toBe("ResourceExhausted");
    });
  });

  it("answers a plain JSON POST, as curl sends it", { timeout: TEST_TIMEOUT }, async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5_000),
      });
    const added = await post("/vac.cas.CAS/Add", { data: Buffer.from("hello curl").toString("base64") });
    expect(added.status).toBe(200);
    const { id } = (await added.json()) as { id: string };
    expect(new Uint8Array(Buffer.from(id, "base64"))).toEqual(addressOf(utf8("hello curl")));
    const got = await post("/vac.cas.CAS/Get", { id });
    expect(await got.json()).toEqual({ data: Buffer.from("hello curl").toString("base64") });

    const updated = await post("/vac.cas.NS/Update", { name: "curl", content: Buffer.from("h").toString("base64"), expectedVersion: "0" });
    expect(await updated.json()).toEqual({ version: "1" });
    const missing = await post("/vac.cas.NS/Fetch", { name: "not curl" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
  });

  it("serves an HTTP/2 connection whose preface arrives in pieces", { timeout: TEST_TIMEOUT }, async () => {
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const { received } = await rawExchange(server.port, ["PRI * HTTP/2", ".0\r\n\r\nS", Buffer.concat([Buffer.from("M\r\n\r\n"), settings])], { gapMs: 50, waitMs: 500 });
    // The server's first frame is its own SETTINGS (type 4 at offset 3).
    expect(received.length).toBeGreaterThanOrEqual(9);
    expect(received[3]).toBe(4);
  });

  it("serves an HTTP/1.1 request that arrives one byte at a time", { timeout: TEST_TIMEOUT }, async () => {
    const request = "POST /vac.cas.CAS/Add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    const { received } = await rawExchange(server.port, [...request], { waitMs: 5_000 });
    expect(received.toString("latin1")).toMatch(/^HTTP\/1\.1 200 /);
    expect(received.toString("latin1")).toContain(`"id":"${Buffer.from(addressOf(new Uint8Array(0))).toString("base64")}"`);
  });

  it("drops connections that close before their first byte, and keeps serving", { timeout: TEST_TIMEOUT }, async () => {
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(server.port, "127.0.0.1", () => (i % 2 ? socket.destroy() : socket.end()));
        socket.on("close", () => resolve());
        socket.on("error", () => {});
      });
    }
    // A preface cut short, then gone.
    await rawExchange(server.port, ["PRI * HTTP"], { waitMs: 100 });
    const cas = createClient(CAS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    expect((await cas.add({ data: utf8("still here") })).id).toEqual(addressOf(utf8("still here")));
  });

  it("answers what is not HTTP with 400 and closes", { timeout: TEST_TIMEOUT }, async () => {
    const { received, closed } = await rawExchange(server.port, ["\x00\x01\x02 this is not http\r\n\r\n"]);
    expect(received.toString("latin1")).toMatch(/^HTTP\/1\.1 400 /);
    expect(closed).toBe(true);
  });

  it("survives an HTTP/1.0 request without a Host header", { timeout: TEST_TIMEOUT }, async () => {
    const { received } = await rawExchange(server.port, ["POST /vac.cas.CAS/Add HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"]);
    expect(received.toString("latin1")).toMatch(/^HTTP\/1\.[01] 400 /);
    const cas = createClient(CAS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    expect((await cas.get({ id: addressOf(utf8("still here")) })).data).toEqual(utf8("still here"));
  });
});

describe("server - connections and close", () => {
  it("closes a connection that sends nothing", { timeout: TEST_TIMEOUT }, async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore() }), firstBytesTimeoutMs: 100 });
    try {
      // Closed by the server within the exchange's wait: its own timers are a minute and more.
      const { closed } = await rawExchange(server.port, [], { waitMs: 3_000 });
      expect(closed).toBe(true);
    } finally {
      await server.close();
    }
  });

  it("closes idle keep-alive connections and HTTP/2 sessions at once", { timeout: TEST_TIMEOUT }, async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }), closeGraceMs: 10 * 60_000 });
    for (const [, transportFor] of protocols) await createClient(CAS, transportFor(server.url)).add({ data: utf8("warm") });
    const session = http2.connect(server.url);
    await new Promise((resolve) => session.once("connect", resolve));
    const sessionClosed = new Promise((resolve) => session.once("close", resolve));
    // Within the test's time, where the grace is ten minutes: nothing idle waited for it.
    await server.close();
    await sessionClosed;
    await expect(fetch(`${server.url}/vac.cas.CAS/Add`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).rejects.toThrow();
    await server.close();
  });

  it.each([protocols[0], protocols[1]])("lets a call in flight over %s finish, then closes", { timeout: TEST_TIMEOUT }, async (protocol, transportFor) => {
    const memory = new MemoryContentStore();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const slow: ContentStore = {
      putMany: (blocks) => memory.putMany(blocks),
      getMany: async (addresses) => {
        entered();
        await gate;
        return memory.getMany(addresses);
      },
      has: (address) => memory.has(address),
      close: () => memory.close(),
    };
    const server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: slow }), closeGraceMs: 5_000 });
    const cas = createClient(CAS, transportFor(server.url));
    const { id } = await cas.add({ data: utf8(protocol) });
    const call = cas.get({ id });
    await inside;
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    setTimeout(release, 100);
    expect((await call).data).toEqual(utf8(protocol));
    await closing;
    expect(closed).toBe(true);
  });

  it("cuts calls that outlast the grace period", { timeout: TEST_TIMEOUT }, async () => {
    const stuck: ContentStore = {
      putMany: async () => [],
      getMany: () => new Promise(() => {}),
      has: async () => false,
      close: async () => {},
    };
    const server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: stuck }), closeGraceMs: 200 });
    const cas = createClient(CAS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const call = codeOf(cas.get({ id: addressOf(utf8("x")) }));
    await new Promise((r) => setTimeout(r, 100));
    // The stuck call never ends by itself: close() returns only because the grace cut it.
    await server.close();
    expect(await call).not.toBe("OK");
  });

  it("refuses a port that is taken", { timeout: TEST_TIMEOUT }, async () => {
    const first = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore() }) });
    try {
      await expect(listen({ host: "127.0.0.1", port: first.port, routes: routes({ content: new MemoryContentStore() }) })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});

/** `remotelog serve` in this process, with its own streams and abort signal. */
function startServe(args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (chunk) => (out += chunk));
  stderr.on("data", (chunk) => (err += chunk));
  const controller = new AbortController();
  const io: Io = { stdin: new PassThrough(), stdout, stderr, env: {}, signal: controller.signal };
  const exit = serve(args, io);
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 10_000);
    stdout.on("data", () => {
      const match = /^listening on (http:\/\/\S+)\n/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    exit.then((code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
  return { url, exit, stop: () => controller.abort(new Error("SIGTERM")), stdout: () => out, stderr: () => err };
}

describe("serve - the verb", () => {
  it("parses --listen", () => {
    expect(parseListen("127.0.0.1:7420")).toEqual({ host: "127.0.0.1", port: 7420 });
    expect(parseListen("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseListen("localhost:80")).toEqual({ host: "localhost", port: 80 });
    for (const bad of ["7420", "127.0.0.1", "127.0.0.1:70000", "::1:7420", "host:port", ""]) expect(() => parseListen(bad), bad).toThrow(/HOST:PORT/);
  });

  it("prints one line once listening, serves both services, and stops on abort", { timeout: TEST_TIMEOUT }, async () => {
    const running = startServe(["--listen", "127.0.0.1:0", "--memory", "--max-block", "100"]);
    const url = await running.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "2" });
    const cas = createClient(CAS, transport);
    const ns = createClient(NS, transport);
    expect((await cas.add({ data: utf8("served") })).id).toEqual(addressOf(utf8("served")));
    expect(await codeOf(cas.add({ data: new Uint8Array(101) }))).toBe("ResourceExhausted");
    expect(await codeOf(ns.update({ name: "n", content: new Uint8Array(101) }))).toBe("ResourceExhausted");
    expect((await ns.update({ name: "n", content: utf8("head") })).version).toBe(1n);
    running.stop();
    expect(await running.exit).toBe(0);
    expect(running.stdout()).toBe(`listening on ${url}\n`);
    expect(running.stderr()).toMatch(/CAS and NS from memory/);
    await expect(fetch(`${url}/vac.cas.NS/Fetch`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).rejects.toThrow();
  });

  it("serves only the CAS or only the NS when asked", { timeout: TEST_TIMEOUT }, async () => {
    for (const only of ["cas", "ns"]) {
      const running = startServe(["--listen", "127.0.0.1:0", "--memory", "--only", only]);
      const transport = createConnectTransport({ baseUrl: await running.url, httpVersion: "1.1" });
      const casCode = await codeOf(createClient(CAS, transport).add({ data: utf8("x") }));
      const nsCode = await codeOf(createClient(NS, transport).fetch({ name: "x" }));
      expect([casCode, nsCode]).toEqual(only === "cas" ? ["OK", "Unimplemented"] : ["Unimplemented", "NotFound"]);
      running.stop();
      expect(await running.exit).toBe(0);
    }
  });

  it("keeps blocks in DIR/cas and names in DIR/ns across restarts", { timeout: TEST_TIMEOUT }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "remotelog-serve-"));
    try {
      const first = startServe(["--listen", "127.0.0.1:0", "--data", dir]);
      let transport = createConnectTransport({ baseUrl: await first.url, httpVersion: "1.1" });
      const { id } = await createClient(CAS, transport).add({ data: utf8("durable") });
      await createClient(NS, transport).update({ name: "kept", content: utf8("head") });
      first.stop();
      expect(await first.exit).toBe(0);
      expect((await readdir(dir)).sort()).toEqual(["cas", "ns"]);

      const second = startServe(["--listen", "127.0.0.1:0", "--data", dir]);
      transport = createConnectTransport({ baseUrl: await second.url, httpVersion: "1.1" });
      expect((await createClient(CAS, transport).get({ id })).data).toEqual(utf8("durable"));
      expect(await createClient(NS, transport).fetch({ name: "kept" })).toMatchObject({ data: utf8("head"), version: 1n });
      second.stop();
      expect(await second.exit).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses bad flags with exit code 2 and a taken port with exit code 1", { timeout: TEST_TIMEOUT }, async () => {
    for (const args of [["--listen", "nowhere"], ["--memory", "--data", "x"], ["--only", "both"], ["--max-block", "0"]]) {
      const running = startServe(args);
      running.url.catch(() => {});
      expect(await running.exit, args.join(" ")).toBe(2);
    }
    const taken = await listen({ host: "127.0.0.1", port: 0, routes: routes({}) });
    try {
      const running = startServe(["--listen", `127.0.0.1:${taken.port}`, "--memory"]);
      running.url.catch(() => {});
      expect(await running.exit).toBe(1);
      expect(running.stderr()).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      expect(running.stdout()).toBe("");
    } finally {
      await taken.close();
    }
  });
});
