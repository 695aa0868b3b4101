import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { AddressSchema, ContentSchema, NameUpdateSchema, QuerySchema } from "../../gen/vac/cas/cas_pb.js";
import { AddManyRequestSchema, GetManyRequestSchema } from "../../gen/remotelog/v1/blocks_pb.js";
import { GetLimitsRequestSchema } from "../../gen/remotelog/v1/info_pb.js";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { addressOf } from "../../core/hash.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { cleanup, startServer, stop, tempDir } from "../helpers/processes.js";

const TEST_TIMEOUT = 30_000;
const READ_MAX_BYTES = 4096;
const utf8 = (text: string) => new TextEncoder().encode(text);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP/2 request on session, the whole answer back (the date header's value only checked: it is the clock's). */
function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    const chunks: Buffer[] = [];
    let received: http2.IncomingHttpHeaders = {};
    stream.on("response", (answer) => (received = answer));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      const { date, ...rest } = received;
      resolve({ status: Number(rest[":status"]), headers: { ...rest, date: typeof date === "string" && !Number.isNaN(Date.parse(date)) ? "a date" : date }, body: Buffer.concat(chunks).toString("base64") });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

const post = (path: string, extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders => ({
  ":method": "POST",
  ":path": path,
  "content-type": "application/proto",
  "connect-protocol-version": "1",
  ...extra,
});

/**
 * Each request with whether the direct path takes it, in the order sent: state carries over (a name
 * updated, then read; blocks added, then got), so both servers see the same history.
 */
const requests: { what: string; direct: boolean; headers: http2.OutgoingHttpHeaders; body: Uint8Array }[] = [
  { what: "NS.Update of a new name", direct: true, headers: post("/vac.cas.NS/Update"), body: toBinary(NameUpdateSchema, create(NameUpdateSchema, { name: "alice", content: utf8("head"), expectedVersion: 0n })) },
  { what: "NS.Fetch of it", direct: true, headers: post("/vac.cas.NS/Fetch"), body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  { what: "NS.Fetch of a missing name", direct: true, headers: post("/vac.cas.NS/Fetch"), body: toBinary(QuerySchema, create(QuerySchema, { name: "bob" })) },
  {
    what: "NS.Update that lost its race",
    direct: true,
    headers: post("/vac.cas.NS/Update"),
    body: toBinary(NameUpdateSchema, create(NameUpdateSchema, { name: "alice", content: utf8("other"), expectedVersion: 0n })),
  },
  { what: "NS.Update of a name that is not valid", direct: true, headers: post("/vac.cas.NS/Update"), body: toBinary(NameUpdateSchema, create(NameUpdateSchema, { name: "", content: utf8("x") })) },
  { what: "AddMany", direct: true, headers: post("/remotelog.v1.BlockService/AddMany"), body: toBinary(AddManyRequestSchema, create(AddManyRequestSchema, { blocks: [utf8("one"), utf8("two")] })) },
  {
    what: "GetMany of one held and one not",
    direct: true,
    headers: post("/remotelog.v1.BlockService/GetMany"),
    body: toBinary(GetManyRequestSchema, create(GetManyRequestSchema, { ids: [addressOf(utf8("one")), addressOf(utf8("three"))] })),
  },
  { what: "CAS.Get of a missing block", direct: true, headers: post("/vac.cas.CAS/Get"), body: toBinary(AddressSchema, create(AddressSchema, { id: addressOf(utf8("three")) })) },
  { what: "CAS.Get of an address that is not one", direct: true, headers: post("/vac.cas.CAS/Get"), body: toBinary(AddressSchema, create(AddressSchema, { id: utf8("nonsense") })) },
  { what: "GetLimits", direct: true, headers: post("/remotelog.v1.ServerInfoService/GetLimits"), body: toBinary(GetLimitsRequestSchema, create(GetLimitsRequestSchema)) },
  { what: "Health.Check", direct: true, headers: post("/grpc.health.v1.Health/Check"), body: toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema)) },
  { what: "a body that does not decode", direct: true, headers: post("/vac.cas.NS/Fetch"), body: new Uint8Array([0x0a, 0x7f, 1, 2, 3]) },
  { what: "wire type 7", direct: true, headers: post("/remotelog.v1.BlockService/GetMany"), body: new Uint8Array([0x0f, 0x00]) },
  { what: "a body over readMaxBytes", direct: true, headers: post("/remotelog.v1.BlockService/AddMany"), body: new Uint8Array(READ_MAX_BYTES * 2) },
  { what: "a body of 4 MiB, far over readMaxBytes", direct: true, headers: post("/remotelog.v1.BlockService/AddMany"), body: new Uint8Array(4 << 20) },
  {
    what: "a content-length over readMaxBytes",
    direct: true,
    headers: post("/remotelog.v1.BlockService/AddMany", { "content-length": String(READ_MAX_BYTES + 10) }),
    body: new Uint8Array(READ_MAX_BYTES + 10),
  },
  { what: "an empty body", direct: true, headers: post("/vac.cas.NS/Fetch"), body: new Uint8Array(0) },
  { what: "a timeout", direct: true, headers: post("/vac.cas.NS/Fetch", { "connect-timeout-ms": "5000" }), body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  { what: "no protocol version header", direct: true, headers: { ":method": "POST", ":path": "/vac.cas.NS/Fetch", "content-type": "application/proto" }, body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  // Left to connect-node:
  { what: "a timeout that is not one", direct: false, headers: post("/vac.cas.NS/Fetch", { "connect-timeout-ms": "soon" }), body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  {
    what: "a compressed body",
    direct: false,
    headers: post("/vac.cas.NS/Fetch", { "content-encoding": "gzip" }),
    body: gzipSync(toBinary(QuerySchema, create(QuerySchema, { name: "alice" }))),
  },
  { what: "JSON", direct: false, headers: post("/vac.cas.NS/Fetch", { "content-type": "application/json" }), body: utf8(JSON.stringify({ name: "alice" })) },
  { what: "a CORS caller", direct: false, headers: post("/vac.cas.NS/Fetch", { origin: "https://example.org" }), body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  { what: "a query string", direct: false, headers: post("/vac.cas.NS/Fetch?x=1"), body: toBinary(QuerySchema, create(QuerySchema, { name: "alice" })) },
  { what: "a streaming method", direct: false, headers: post("/remotelog.v1.NameWatchService/WatchMany"), body: new Uint8Array(0) },
  { what: "an unknown method", direct: false, headers: post("/vac.cas.NS/Nothing"), body: new Uint8Array(0) },
  { what: "a write refused unread", direct: false, headers: post("/vac.cas.CAS/Add"), body: toBinary(ContentSchema, create(ContentSchema, { data: utf8("refused") })) },
];

describe("unary calls answered on their HTTP/2 stream (services/h2-unary.ts)", () => {
  let direct: Listening;
  let viaConnect: Listening;
  const start = (directUnary: boolean) =>
    listen({
      host: "127.0.0.1",
      port: 0,
      readMaxBytes: READ_MAX_BYTES,
      directUnary,
      refusesUnread: (path) => path === "/vac.cas.CAS/Add",
      routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore(), readMaxBytes: READ_MAX_BYTES }),
    });

  beforeAll(async () => {
    [direct, viaConnect] = await Promise.all([start(true), start(false)]);
  });
  afterAll(async () => {
    await Promise.all([direct?.close(), viaConnect?.close()]);
  });

  it(
    "answers every kind of call as connect-node does, byte for byte, and takes only the plain ones",
    async () => {
      const sessions = [http2.connect(direct.url), http2.connect(viaConnect.url)];
      try {
        let expectedDirect = 0;
        for (const request of requests) {
          const before = direct.directUnaryCalls();
          const [ours, theirs] = await Promise.all(sessions.map((session) => call(session, request.headers, request.body)));
          expect({ what: request.what, ...ours }).toEqual({ what: request.what, ...theirs });
          expect(direct.directUnaryCalls() - before, request.what).toBe(request.direct ? 1 : 0);
          if (request.direct) expectedDirect++;
        }
        expect(direct.directUnaryCalls()).toBe(expectedDirect);
        expect(viaConnect.directUnaryCalls()).toBe(0);
      } finally {
        for (const session of sessions) session.close();
      }
    },
    TEST_TIMEOUT,
  );

  it(
    "a `serve` process carries on when a client's connection is cut while its call runs (it used to exit: an unheard stream error)",
    async () => {
      const dir = await tempDir();
      const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--log-level", "warn"]);
      try {
        for (let round = 0; round < 12; round++) {
          let socket: net.Socket | undefined;
          const session = http2.connect(server.url, { createConnection: () => (socket = net.connect(server.port, "127.0.0.1")) });
          session.on("error", () => {});
          await new Promise((resolve, reject) => {
            session.once("connect", resolve);
            session.once("close", () => reject(new Error(`serve is gone after ${round} cut connection(s): ${server.stderr()}`)));
          });
          // Enough blocks that storing them (a pack written and fsynced) is still going on when the connection goes.
          const blocks = Array.from({ length: 2000 }, (_, i) => utf8(`block ${round} ${i} `.repeat(20)));
          const stream = session.request(post("/remotelog.v1.BlockService/AddMany"));
          stream.on("error", () => {});
          await new Promise<void>((resolve) => stream.end(toBinary(AddManyRequestSchema, create(AddManyRequestSchema, { blocks })), resolve));
          await new Promise((resolve) => setTimeout(resolve, round % 6));
          if (round % 2 === 0) socket!.resetAndDestroy();
          else socket!.destroy();
          session.destroy();
        }
        const session = http2.connect(server.url);
        session.on("error", () => {});
        try {
          const answer = await call(session, post("/vac.cas.NS/Fetch"), toBinary(QuerySchema, create(QuerySchema, { name: "nobody" })));
          expect(answer.status).toBe(404);
        } finally {
          session.close();
        }
        expect(server.process.exitCode, server.stderr()).toBeNull();
      } finally {
        await stop(server.process);
        await cleanup();
      }
    },
    TEST_TIMEOUT,
  );

  it(
    "carries on when a client resets its call part-way through the body",
    async () => {
      const session = http2.connect(direct.url);
      try {
        const before = direct.directUnaryCalls();
        const cut = session.request(post("/remotelog.v1.BlockService/AddMany"));
        cut.write(new Uint8Array(100));
        const closed = new Promise((resolve) => cut.once("close", resolve));
        // Once the server has the call, so that it is cut in the middle of reading the body.
        while (direct.directUnaryCalls() === before) await new Promise((resolve) => setTimeout(resolve, 5));
        cut.close(http2.constants.NGHTTP2_CANCEL);
        await closed;
        const next = await call(session, post("/vac.cas.NS/Fetch"), toBinary(QuerySchema, create(QuerySchema, { name: "alice" })));
        expect(next.status).toBe(200);
        expect(direct.directUnaryCalls() - before).toBe(2);
      } finally {
        session.close();
      }
    },
    TEST_TIMEOUT,
  );
});
