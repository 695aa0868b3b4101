import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll } from "vitest";

const HARNESS = resolve("test/ipfs-harness");

/** An IPFS RPC API for a test file: the js-ipfs harness on loopback, or a real Kubo at $KUBO_API. */
export interface IpfsNode {
  url: string;
  /** True when the tests run against $KUBO_API rather than the harness they started. */
  external: boolean;
  stop(): Promise<void>;
}

/**
 * Starts the harness (test/ipfs-harness/server.mjs) on 127.0.0.1, on a free port and a fresh repo, and
 * waits for it to answer; or, with KUBO_API set, uses that node and starts nothing. Fails, rather than
 * skipping, when the harness is not installed: a suite that quietly runs nothing proves nothing.
 */
export async function startIpfs(timeoutMs = 45_000): Promise<IpfsNode> {
  const external = process.env.KUBO_API;
  if (external) return { url: external.replace(/\/+$/, ""), external: true, stop: async () => {} };
  if (!existsSync(join(HARNESS, "node_modules", "ipfs-core"))) {
    throw new Error("the js-ipfs harness is not installed: run `npm ci --prefix test/ipfs-harness` (or set KUBO_API to a Kubo RPC API)");
  }
  const dir = await mkdtemp(join(tmpdir(), "remotelog-ipfs-"));
  // stdin stays a pipe: the harness exits when it closes, so it never outlives the test process.
  const child = spawn(process.execPath, [join(HARNESS, "server.mjs"), "--repo", join(dir, "repo")], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += String(chunk)));
  const stop = async () => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const url = await new Promise<string>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`the IPFS harness did not start within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
      child.once("exit", (code) => reject(new Error(`the IPFS harness exited with ${code}: ${stderr}`)));
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const match = /^listening on (http:\/\/\S+)$/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolvePromise(match[1]);
        }
      });
    });
    return { url, external: false, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolvePromise) => child.once("exit", () => resolvePromise()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** How a proxy changes what passes: each hook sees one RPC command (`block/get`) and the bytes. */
export interface ProxyHooks {
  /** While this says true, every connection is dropped unanswered, as by a node that is down. */
  down?: () => boolean;
  request?: (command: string, body: Buffer) => Buffer;
  response?: (command: string, body: Buffer) => Buffer;
  /** Answers a command itself, without asking the node: a status and a body, as a failing node would. */
  answer?: (command: string) => { status: number; body: string } | undefined;
}

/**
 * A loopback HTTP proxy in front of an IPFS RPC API that can alter requests and responses: a stand-in
 * for a faulty node or a corrupting link, to provoke what a healthy node never does.
 */
export async function startProxy(target: string, hooks: ProxyHooks): Promise<{ url: string; close(): Promise<void> }> {
  const to = new URL(target);
  const server: Server = createServer(async (req, res) => {
    if (hooks.down?.()) {
      req.socket.destroy();
      return;
    }
    const body = await readAll(req);
    const command = (req.url ?? "").replace(/^\/api\/v0\//, "").replace(/\?.*$/, "");
    const own = hooks.answer?.(command);
    if (own) {
      res.writeHead(own.status, { "content-type": "application/json" });
      res.end(own.body);
      return;
    }
    const sent = hooks.request ? hooks.request(command, body) : body;
    const headers = { ...req.headers, host: to.host, "content-length": String(sent.length) };
    delete headers["transfer-encoding"];
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, async (answer) => {
      const data = await readAll(answer);
      const out = hooks.response ? hooks.response(command, data) : data;
      const outHeaders = { ...answer.headers, "content-length": String(out.length) };
      delete outHeaders["transfer-encoding"];
      delete outHeaders.trailer;
      res.writeHead(answer.statusCode ?? 502, outHeaders);
      res.end(out);
    });
    upstream.on("error", () => {
      res.writeHead(502);
      res.end();
    });
    upstream.end(sent);
  });
  await new Promise<void>((resolvePromise) => server.listen(0, "127.0.0.1", resolvePromise));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolvePromise) => {
        server.closeAllConnections();
        server.close(() => resolvePromise());
      }),
  };
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolvePromise(Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}

/**
 * The IPFS node of a test file: started before its tests, stopped after them. Returns a getter, since
 * the node exists only once beforeAll has run.
 */
export function useIpfs(): () => IpfsNode {
  let node: IpfsNode | undefined;
  beforeAll(async () => {
    node = await startIpfs();
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
  });
  return () => node!;
}
