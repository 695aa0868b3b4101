import http2 from "node:http2";
import net from "node:net";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withDirectUnary } from "../../actors/h2-unary.js";
import { fromConnectError, Remote } from "../../actors/remote.js";
import { ErrorCodes } from "../../core/errors.js";
import { openTransport } from "../../actors/transport-node.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { CAS, ContentSchema, NS } from "../../gen/vac/cas/cas_pb.js";
import { BlockService } from "../../gen/remotelog/v1/blocks_pb.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

/*
 * The Node transport's unary calls (actors/h2-unary.ts) against connect-node's own transport, call by
 * call on the same servers: a real listen() server for answers and errors, and a bare node:http2
 * server for what a server of ours never sends (other statuses, content types, resets, silence).
 */

/** What a call came to: its message, or its error as the caller sees it. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { message: await call() };
  } catch (err) {
    const error = ConnectError.from(err);
    // The answer's headers and trailers, as the error carries them (the date aside: two calls, two dates).
    const metadata = [...error.metadata.entries()].filter(([key]) => key !== "date");
    return {
      connectError: err instanceof ConnectError,
      code: Code[error.code],
      rawMessage: error.rawMessage,
      message: error.message,
      metadata,
      details: error.details.map((detail) => ("desc" in detail ? detail.desc.typeName : detail.type)),
    };
  }
}

function reference(baseUrl: string): Transport {
  return createConnectTransport({ baseUrl, httpVersion: "2", acceptCompression: [] });
}

describe("direct unary calls - the same answers and errors as connect-node's transport", () => {
  const servers: Listening[] = [];
  const opened: { close(): void }[] = [];
  const newServer = async () => {
    const server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore(), limits: { maxBlockBytes: 1 << 20 } }) });
    servers.push(server);
    return server;
  };
  afterAll(async () => {
    for (const transport of opened) transport.close();
    await Promise.all(servers.map((server) => server.close()));
  });
  const ours = (url: string) => {
    const open = openTransport(url, {});
    opened.push(open);
    return open.transport;
  };

  it("answers, refusals and missing things come out alike, call by call", async () => {
    const results = [];
    // Each on a server of its own, which it finds empty.
    for (const transport of [reference((await newServer()).url), ours((await newServer()).url)]) {
      const ns = createClient(NS, transport);
      const cas = createClient(CAS, transport);
      const blocks = createClient(BlockService, transport);
      const name = "alice";
      const big = new Uint8Array(900_000).map((_, i) => (i * 7) & 255);
      results.push([
        await outcome(() => ns.update({ name, content: new TextEncoder().encode("head 1") })),
        await outcome(() => ns.update({ name, content: new TextEncoder().encode("head 2"), expectedVersion: 1n })),
        // A lost race: the version moved on.
        await outcome(() => ns.update({ name, content: new TextEncoder().encode("late"), expectedVersion: 1n })),
        await outcome(() => ns.fetch({ name })),
        await outcome(() => ns.fetch({ name: "nobody" })),
        await outcome(() => ns.update({ name: "", content: new Uint8Array(1) })),
        await outcome(() => cas.add({ data: big })),
        await outcome(async () => (await cas.get(await cas.add({ data: big }))).data.length),
        await outcome(() => cas.add({ data: new Uint8Array((1 << 20) + 1) })),
        await outcome(() => blocks.getMany({ ids: [new Uint8Array([1, 2, 3])] })),
        await outcome(() => blocks.getMany({ ids: [new Uint8Array(36)] })),
      ]);
    }
    // The same calls on servers alike: the same messages, and the same errors to the letter.
    expect(results[1]).toEqual(results[0]);
    expect((results[0][2] as { code: string }).code).toBe("Aborted");
    expect((results[0][4] as { code: string }).code).toBe("NotFound");
    expect((results[0][8] as { code: string }).code).toBe("ResourceExhausted");
  });

  it("many calls at once on one connection each get their own answer", async () => {
    const cas = createClient(CAS, ours((await newServer()).url));
    const data = Array.from({ length: 64 }, (_, i) => new TextEncoder().encode(`block ${i} `.repeat(1 + i * 50)));
    const addresses = await Promise.all(data.map((block) => cas.add({ data: block })));
    const back = await Promise.all(addresses.map((address) => cas.get(address)));
    // Compared as text: a failing deep compare of 64 large arrays takes minutes to print.
    expect(back.map((content) => Buffer.from(content.data).toString("latin1"))).toEqual(data.map((block) => Buffer.from(block).toString("latin1")));
    expect(back.every((content) => content.data.constructor === Uint8Array)).toBe(true);
  });
});

describe("direct unary calls - what only another server sends", () => {
  let server: http2.Http2Server;
  let url: string;
  const requests: http2.IncomingHttpHeaders[] = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  beforeAll(async () => {
    server = http2.createServer();
    // connect-node's transports keep their connections; close() waits for them otherwise.
    server.on("session", (session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    server.on("stream", (stream, headers) => {
      requests.push(headers);
      stream.on("error", () => {});
      const how = headers[":path"]!.endsWith("/Fetch") ? String(headers["x-answer"] ?? "") : "";
      stream.resume();
      stream.on("end", () => {
        const answer = (headers: http2.OutgoingHttpHeaders, body: string | Buffer) => {
          stream.respond(headers);
          stream.end(body);
        };
        if (how === "html") answer({ ":status": 503, "content-type": "text/html" }, "<h1>down</h1>");
        else if (how === "json-200") answer({ ":status": 200, "content-type": "application/json" }, "{}");
        else if (how === "gzip") answer({ ":status": 200, "content-type": "application/proto", "content-encoding": "gzip" }, Buffer.alloc(4));
        else if (how === "refuse") stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        else if (how === "big") answer({ ":status": 200, "content-type": "application/proto" }, Buffer.alloc(200_000));
        else if (how === "big-announced") answer({ ":status": 200, "content-type": "application/proto", "content-length": "200000" }, Buffer.alloc(200_000));
        else if (how.startsWith("split")) {
          // A real answer in many DATA frames, its length announced or not, or announced wrong.
          const body = Buffer.from(toBinary(ContentSchema, create(ContentSchema, { data: Buffer.alloc(90_000, 7), version: 3n })));
          const length = { split: body.length, "split-unannounced": undefined, "split-announced-short": body.length - 100, "split-announced-long": body.length + 100 }[how];
          stream.respond({ ":status": 200, "content-type": "application/proto", ...(length === undefined ? {} : { "content-length": String(length) }) });
          for (let at = 0; at < body.length; at += 7_000) stream.write(body.subarray(at, at + 7_000));
          stream.end();
        } else if (how === "die") stream.session?.destroy();
        else if (how === "rst-no-error") stream.close(http2.constants.NGHTTP2_NO_ERROR);
        else if (how === "garbage") answer({ ":status": 200, "content-type": "application/proto" }, Buffer.from([0xff, 0xff, 0xff]));
        else if (how === "error") answer({ ":status": 429, "content-type": "application/json", "trailer-x-why": "busy" }, JSON.stringify({ code: "resource_exhausted", message: "slow down" }));
        // Error answers each a little off the usual one (actors/h2-unary.ts plainErrorAnswer takes the usual one only).
        else if (how === "error-charset") answer({ ":status": 404, "content-type": "application/json; charset=utf-8" }, JSON.stringify({ code: "not_found", message: "no such name" }));
        else if (how === "error-no-message") answer({ ":status": 404, "content-type": "application/json" }, JSON.stringify({ code: "not_found" }));
        else if (how === "error-null-message") answer({ ":status": 404, "content-type": "application/json" }, JSON.stringify({ code: "not_found", message: null }));
        else if (how === "error-details") answer({ ":status": 400, "content-type": "application/json" }, JSON.stringify({ code: "invalid_argument", message: "bad", details: [{ type: "google.rpc.ErrorInfo", value: "CgNiYWQ" }] }));
        else if (how === "error-bad-details") answer({ ":status": 400, "content-type": "application/json" }, JSON.stringify({ code: "invalid_argument", message: "bad", details: [{ type: 1 }] }));
        else if (how === "error-unknown-code") answer({ ":status": 503, "content-type": "application/json" }, JSON.stringify({ code: "on_fire", message: "hot" }));
        else if (how === "error-number-message") answer({ ":status": 404, "content-type": "application/json" }, JSON.stringify({ code: "not_found", message: 5 }));
        else if (how === "error-array") answer({ ":status": 404, "content-type": "application/json" }, "[]");
        else if (how === "error-not-json") answer({ ":status": 404, "content-type": "application/json" }, "{not json");
        else if (how === "error-gzip") answer({ ":status": 404, "content-type": "application/json", "content-encoding": "gzip" }, JSON.stringify({ code: "not_found" }));
        else if (how === "error-identity") answer({ ":status": 404, "content-type": "application/json", "content-encoding": "identity" }, JSON.stringify({ code: "not_found", message: "gone" }));
        else if (how === "error-status-200") answer({ ":status": 200, "content-type": "application/json" }, JSON.stringify({ code: "not_found", message: "gone" }));
        // "silent": never answers.
      });
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    const closed = new Promise((ok) => server.close(ok));
    for (const session of sessions) session.destroy();
    await closed;
  });

  const both = async (call: (ns: ReturnType<typeof createClient<typeof NS>>) => Promise<unknown>) => {
    const session = new Http2SessionManager(url);
    const direct = withDirectUnary(reference(url), { baseUrl: url, session, readMaxBytes: 100_000 });
    const connect = createConnectTransport({ baseUrl: url, httpVersion: "2", acceptCompression: [], readMaxBytes: 100_000 });
    try {
      return [await outcome(() => call(createClient(NS, connect))), await outcome(() => call(createClient(NS, direct)))];
    } finally {
      session.abort();
    }
  };
  const answered = (how: string) => (ns: ReturnType<typeof createClient<typeof NS>>) => ns.fetch({ name: "n" }, { headers: { "x-answer": how } });

  it.each(["split", "split-unannounced", "split-announced-short", "split-announced-long"])("a %s answer comes out the same", async (how) => {
    const [connect, direct] = await both(answered(how));
    expect(direct).toEqual(connect);
    if (how === "split" || how === "split-unannounced") expect(direct).toMatchObject({ message: { version: 3n, data: new Uint8Array(90_000).fill(7) } });
  });

  it.each([
    "html", "json-200", "gzip", "refuse", "big", "big-announced", "garbage", "error",
    "error-charset", "error-no-message", "error-null-message", "error-details", "error-bad-details", "error-unknown-code",
    "error-number-message", "error-array", "error-not-json", "error-gzip", "error-identity", "error-status-200",
  ])("a %s answer is the same error", async (how) => {
    const [connect, direct] = await both(answered(how));
    expect(direct).toEqual(connect);
    expect(direct).toHaveProperty("code");
  });

  it("sends what connect-node sends, and the bearer token", async () => {
    requests.length = 0;
    const session = new Http2SessionManager(url);
    const direct = withDirectUnary(reference(url), { baseUrl: url, session, token: "s3cret", readMaxBytes: 100_000 });
    await outcome(() => createClient(NS, reference(url)).fetch({ name: "n" }, { headers: { "x-answer": "error" }, timeoutMs: 5000 }));
    await outcome(() => createClient(NS, direct).fetch({ name: "n" }, { headers: { "x-answer": "error" }, timeoutMs: 5000 }));
    session.abort();
    const pick = (headers: http2.IncomingHttpHeaders) =>
      Object.fromEntries(["content-type", "connect-protocol-version", "connect-timeout-ms", ":path", ":method", "x-answer", "user-agent"].map((key) => [key, headers[key]]));
    expect(pick(requests[1])).toEqual(pick(requests[0]));
    expect(requests[1].authorization).toBe("Bearer s3cret");
  });

  it("a call the caller aborts, or whose deadline passes, ends without an answer", async () => {
    const controller = new AbortController();
    const pending = both((ns) => ns.fetch({ name: "n" }, { headers: { "x-answer": "silent" }, signal: controller.signal }));
    setTimeout(() => controller.abort(), 200);
    const [connect, direct] = await pending;
    expect(direct).toMatchObject({ code: "Canceled" });
    expect(connect).toMatchObject({ code: "Canceled" });
    const [connectLate, directLate] = await both((ns) => ns.fetch({ name: "n" }, { headers: { "x-answer": "silent" }, timeoutMs: 200 }));
    expect(directLate).toMatchObject({ code: "DeadlineExceeded" });
    expect(connectLate).toMatchObject({ code: "DeadlineExceeded" });
  });

  it.each(["die", "rst-no-error", "refuse"])("a call cut short (%s) is UNAVAILABLE to a Remote, to be retried, not a failure of the server", async (how) => {
    // What a client meets when the server is SIGKILLed in the middle of its call (the chaos test found it).
    const remote = new Remote({ casUrl: url, nsUrl: url });
    const directFetch = (remote as unknown as { ns: ReturnType<typeof createClient<typeof NS>> }).ns;
    try {
      const failure = await directFetch.fetch({ name: "n" }, { headers: { "x-answer": how } }).then(
        () => undefined,
        (err: unknown) => fromConnectError(err, "NS"),
      );
      expect(failure?.code, String(failure)).toBe(ErrorCodes.UNAVAILABLE);
    } finally {
      remote.close();
    }
  });

  it("a port nobody listens on is Unavailable", async () => {
    const closed = net.createServer();
    await new Promise<void>((ok) => closed.listen(0, "127.0.0.1", ok));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((ok) => closed.close(ok));
    const nowhere = `http://127.0.0.1:${port}`;
    const session = new Http2SessionManager(nowhere);
    const failure = await outcome(() => createClient(NS, withDirectUnary(reference(nowhere), { baseUrl: nowhere, session, readMaxBytes: 1000 })).fetch({ name: "n" }));
    session.abort();
    const expected = await outcome(() => createClient(NS, reference(nowhere)).fetch({ name: "n" }));
    expect(failure).toMatchObject({ code: "Unavailable" });
    expect((failure as { code: string }).code).toBe((expected as { code: string }).code);
  });
});
