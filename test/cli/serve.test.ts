import { describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CAS, NS } from "../../gen/vac/cas/cas_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { run } from "../../cli/serve.js";
import type { Io } from "../../cli/command.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";

/** Starts `remotelog serve ARGS` in this process; returns its URL, its stderr so far, and a stop function. */
async function serve(...args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let err = "";
  stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
  const controller = new AbortController();
  const io: Io = { stdin: new PassThrough(), stdout, stderr, env: {}, signal: controller.signal };
  const exited = run(args, io);
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
      const match = /listening on (\S+)\n/.exec(out);
      if (match) resolve(match[1]);
    });
    exited.then((code) => reject(new Error(`serve exited with ${code}: ${err}`)), reject);
  });
  return {
    url,
    stderr: () => err,
    stop: async () => {
      controller.abort();
      return exited;
    },
  };
}

describe("cli - serve --require-signed", () => {
  it("refuses unsigned names with PermissionDenied and accepts signed updates", async () => {
    const server = await serve("--memory", "--listen", "127.0.0.1:0", "--require-signed");
    try {
      expect(server.stderr()).toContain("signed names only");
      const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      const err = await ns.update({ name: "chat", content: new Uint8Array([1]) }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.PermissionDenied);
      await expect(ns.fetch({ name: "chat" })).rejects.toMatchObject({ code: Code.NotFound });

      const key = await generateNameKey();
      const content = new Uint8Array([2]);
      const record = await createNameRecord(key, content, 1n);
      expect((await ns.update({ name: keyName(key), content, record })).version).toBe(1n);
      expect(await ns.fetch({ name: keyName(key) })).toMatchObject({ data: content, version: 1n, record });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it("without the flag, free-form names stay open", async () => {
    const server = await serve("--memory", "--listen", "127.0.0.1:0");
    try {
      expect(server.stderr()).not.toContain("signed names only");
      const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      expect((await ns.update({ name: "chat", content: new Uint8Array([1]) })).version).toBe(1n);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});

interface LogLine {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

/** stderr as pino's JSON lines; fails on any line that is not one. */
function logLines(stderr: string): LogLine[] {
  return stderr
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as LogLine);
}

// pino's numeric levels.
const DEBUG = 20;
const INFO = 30;
const ERROR = 50;

describe("cli - serve logs and metrics", () => {
  async function someCalls(url: string): Promise<void> {
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
    await createClient(CAS, transport).add({ data: new Uint8Array([1]) });
    await expect(createClient(NS, transport).fetch({ name: "nobody" })).rejects.toMatchObject({ code: Code.NotFound });
    await createClient(Health, transport).check({ service: "" });
  }

  it("--log-level debug writes one JSON line per RPC, with method, code and duration", { timeout: 15_000 }, async () => {
    const server = await serve("--memory", "--listen", "127.0.0.1:0", "--log-level", "debug");
    await someCalls(server.url);
    expect(await server.stop()).toBe(0);
    const lines = logLines(server.stderr());
    const rpcs = lines.filter((line) => line.msg === "rpc");
    expect(rpcs.map(({ level, method, code }) => ({ level, method, code }))).toEqual([
      { level: DEBUG, method: "vac.cas.CAS/Add", code: "OK" },
      { level: DEBUG, method: "vac.cas.NS/Fetch", code: "NotFound" },
      { level: DEBUG, method: "grpc.health.v1.Health/Check", code: "OK" },
    ]);
    for (const rpc of rpcs) expect(rpc.ms).toBeGreaterThanOrEqual(0);
    expect(lines[0]).toMatchObject({ level: INFO, url: server.url, services: ["CAS", "NS"], store: "memory", maxBlockBytes: 1 << 20, metrics: `${server.url}/metrics` });
    expect(lines.at(-1)).toMatchObject({ level: INFO, msg: "stopping" });
    expect(lines.length).toBe(rpcs.length + 2);
  });

  it("logs only the start and the stop at the default level, and nothing with --log-level silent", { timeout: 15_000 }, async () => {
    const info = await serve("--memory", "--listen", "127.0.0.1:0");
    await someCalls(info.url);
    expect(await info.stop()).toBe(0);
    expect(logLines(info.stderr()).map((line) => line.level)).toEqual([INFO, INFO]);

    const silent = await serve("--memory", "--listen", "127.0.0.1:0", "--log-level", "silent");
    await someCalls(silent.url);
    expect(await silent.stop()).toBe(0);
    expect(silent.stderr()).toBe("");
  });

  it("serves /metrics unless --no-metrics", { timeout: 15_000 }, async () => {
    const on = await serve("--memory", "--listen", "127.0.0.1:0");
    try {
      await someCalls(on.url);
      const res = await fetch(`${on.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('remotelog_rpc_requests_total{method="vac.cas.NS/Fetch",code="NotFound"} 1');
    } finally {
      expect(await on.stop()).toBe(0);
    }
    const off = await serve("--memory", "--listen", "127.0.0.1:0", "--no-metrics");
    try {
      const res = await fetch(`${off.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
      await res.text();
      expect(res.status).toBe(404);
      expect(logLines(off.stderr())[0]).toMatchObject({ metrics: false });
    } finally {
      expect(await off.stop()).toBe(0);
    }
  });

  it("logs each Internal failure at error level with its method and cause", { timeout: 15_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "remotelog-serve-log-"));
    try {
      const server = await serve("--data", dir, "--listen", "127.0.0.1:0", "--log-level", "warn");
      try {
        // Where packs are written is no longer a directory: the next write fails, and not for the client's fault.
        await rm(join(dir, "cas", "packs"), { recursive: true });
        await writeFile(join(dir, "cas", "packs"), "not a directory");
        const cas = createClient(CAS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
        const err = await cas.add({ data: new Uint8Array([7]) }).catch((e: unknown) => ConnectError.from(e));
        expect((err as ConnectError).code).toBe(Code.Internal);
        expect((err as ConnectError).rawMessage).toBe("internal error");
      } finally {
        expect(await server.stop()).toBe(0);
      }
      const lines = logLines(server.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: ERROR, method: "vac.cas.CAS/Add", msg: "vac.cas.CAS/Add failed" });
      // The cause the client never saw: the store's error, with the path that failed and a stack.
      const cause = lines[0].err as { message: string; stack: string };
      expect(cause.message).toContain(join(dir, "cas", "packs"));
      expect(cause.stack).toMatch(/\n\s+at /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses an unknown --log-level with exit code 2", async () => {
    const stderr = new PassThrough();
    let err = "";
    stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
    const io: Io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr, env: {}, signal: new AbortController().signal };
    expect(await run(["--memory", "--listen", "127.0.0.1:0", "--log-level", "loud"], io)).toBe(2);
    expect(err).toMatch(/trace, debug, info, warn, error, silent/);
  });
});
