import { afterEach, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { Code, ConnectError, createClient, createRouterTransport, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { listen, routes, type Listening, type RouteDeps } from "../../services/server.js";
import { codeOf } from "../helpers/connect.js";

const TEST_TIMEOUT = 15_000;
const BUF = "node_modules/.bin/buf";

const servers: Listening[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(deps: RouteDeps = { content: new MemoryContentStore(), names: new MemoryNameStore() }, closeGraceMs = 5_000): Promise<Listening> {
  const server = await listen({ host: "127.0.0.1", port: 0, routes: routes(deps), closeGraceMs });
  servers.push(server);
  return server;
}


/** The statuses a Watch streams, until it ends; fails if it outlives timeoutMs. */
function watch(transport: Transport, service: string, timeoutMs = 5_000) {
  const statuses: string[] = [];
  let seen!: () => void;
  const first = new Promise<void>((resolve) => (seen = resolve));
  const ended = (async () => {
    for await (const { status } of createClient(Health, transport).watch({ service }, { signal: AbortSignal.timeout(timeoutMs) })) {
      statuses.push(Status[status]);
      seen();
    }
    return statuses;
  })();
  return { first, ended, statuses };
}

describe("health - grpc.health.v1.Health on the server's port", () => {
  it("reports the server and every mounted service SERVING, over gRPC", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start();
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    for (const service of ["", "vac.cas.CAS", "vac.cas.NS", "remotelog.v1.BlockService"]) {
      expect(Status[(await health.check({ service })).status], service).toBe("SERVING");
    }
  });

  it("fails Check of an unknown service with NotFound, as the protocol asks", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start();
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const err = await health.check({ service: "vac.cas.Nothing" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toContain("vac.cas.Nothing");
    // The health service itself is not one of the services it reports on.
    expect(await codeOf(health.check({ service: "grpc.health.v1.Health" }))).toBe("NotFound");
  });

  it("knows only the services this server mounts", { timeout: TEST_TIMEOUT }, async () => {
    const cas = createClient(Health, createGrpcTransport({ baseUrl: (await start({ content: new MemoryContentStore() })).url }));
    expect(await codeOf(cas.check({ service: "vac.cas.CAS" }))).toBe("OK");
    expect(await codeOf(cas.check({ service: "remotelog.v1.BlockService" }))).toBe("OK");
    expect(await codeOf(cas.check({ service: "vac.cas.NS" }))).toBe("NotFound");
    const ns = createClient(Health, createGrpcTransport({ baseUrl: (await start({ names: new MemoryNameStore() })).url }));
    expect(await codeOf(ns.check({ service: "vac.cas.NS" }))).toBe("OK");
    expect(await codeOf(ns.check({ service: "vac.cas.CAS" }))).toBe("NotFound");
    expect(await codeOf(ns.check({ service: "" }))).toBe("OK");
  });

  it.each([
    ["gRPC on HTTP/2", (baseUrl: string) => createGrpcTransport({ baseUrl })],
    ["Connect on HTTP/1.1", (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ])("streams SERVING to a Watch over %s, then NOT_SERVING when the server closes, and ends it", { timeout: TEST_TIMEOUT }, async (_, transportFor) => {
    const server = await start(undefined, 10 * 60_000);
    const transport = transportFor(server.url);
    const whole = watch(transport, "");
    const cas = watch(transport, "vac.cas.CAS");
    await Promise.all([whole.first, cas.first]);
    expect(whole.statuses).toEqual(["SERVING"]);
    // Within the test's time, where the grace is ten minutes: the Watch ended by itself instead of being cut.
    await server.close();
    expect(await whole.ended).toEqual(["SERVING", "NOT_SERVING"]);
    expect(await cas.ended).toEqual(["SERVING", "NOT_SERVING"]);
  });

  it("tells many watchers at once, without piling listeners on one signal", { timeout: TEST_TIMEOUT }, async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on("warning", onWarning);
    try {
      const server = await start(undefined, 10_000);
      const transport = createGrpcTransport({ baseUrl: server.url });
      const watches = Array.from({ length: 40 }, () => watch(transport, "vac.cas.NS"));
      await Promise.all(watches.map((w) => w.first));
      await server.close();
      for (const w of watches) expect(await w.ended).toEqual(["SERVING", "NOT_SERVING"]);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((message) => /listener/i.test(message))).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("streams SERVICE_UNKNOWN to a Watch of an unknown service, and keeps it open until the server closes", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start(undefined, 10_000);
    const unknown = watch(createGrpcTransport({ baseUrl: server.url }), "nobody");
    await unknown.first;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(unknown.statuses).toEqual(["SERVICE_UNKNOWN"]);
    await server.close();
    expect(await unknown.ended).toEqual(["SERVICE_UNKNOWN"]);
  });

  it("lets a client cancel its Watch", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start(undefined, 10 * 60_000);
    const controller = new AbortController();
    const stream = createClient(Health, createGrpcTransport({ baseUrl: server.url })).watch({ service: "" }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    expect(Status[(await iterator.next()).value.status]).toBe("SERVING");
    controller.abort();
    expect(await codeOf(iterator.next())).toBe("Canceled");
    // Nothing of that Watch is left to hold the close up: within the test's time, where the grace is ten minutes.
    await server.close();
  });

  it("answers Check with NOT_SERVING once the server is closing", { timeout: TEST_TIMEOUT }, async () => {
    // In-process, because a closing server takes no new connections to ask it on.
    const closing = new AbortController();
    const transport = createRouterTransport((router) => routes({ content: new MemoryContentStore() })(router, { closing: closing.signal }));
    const health = createClient(Health, transport);
    expect(Status[(await health.check({ service: "vac.cas.CAS" })).status]).toBe("SERVING");
    closing.abort();
    expect(Status[(await health.check({ service: "vac.cas.CAS" })).status]).toBe("NOT_SERVING");
    expect(Status[(await health.check({ service: "" })).status]).toBe("NOT_SERVING");
    expect(await codeOf(health.check({ service: "vac.cas.NS" }))).toBe("NotFound");
    // A Watch that starts now gets the one status there will be, and ends.
    const statuses: string[] = [];
    for await (const { status } of health.watch({ service: "" }, { signal: AbortSignal.timeout(5_000) })) statuses.push(Status[status]);
    expect(statuses).toEqual(["NOT_SERVING"]);
  });

  it("answers `buf curl`, built from proto/ alone", { timeout: TEST_TIMEOUT }, async () => {
    const server = await start();
    const args = ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--schema", "proto", "--data", "{}", `${server.url}/grpc.health.v1.Health/Check`];
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(BUF, args, { timeout: 10_000, killSignal: "SIGKILL" }, (err, stdout, stderr) => (err ? reject(new Error(`buf curl failed: ${err.message}\n${stderr}`)) : resolve({ stdout, stderr }))),
    );
    expect(JSON.parse(stdout), stderr).toEqual({ status: "SERVING" });
  });
});
