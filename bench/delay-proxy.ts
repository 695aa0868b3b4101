/**
 * A TCP proxy on loopback that holds every chunk for half a round-trip time in each direction, so that
 * benchmarks and tests can see how the actors behave over a real network's latency. Bandwidth is not
 * limited and order is kept. It belongs to the test and bench harness only.
 */
import { spawn } from "node:child_process";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export interface DelayProxy {
  /** http://127.0.0.1:<port>, to be used in place of the target's URL. */
  url: string;
  close(): Promise<void>;
}

/** Proxies 127.0.0.1:<new port> to target (a URL such as http://127.0.0.1:7420) with rttMs round trips. */
export async function startDelayProxy(target: string, rttMs: number): Promise<DelayProxy> {
  const { hostname, port } = new URL(target);
  const oneWay = rttMs / 2;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: hostname, port: Number(port) });
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    delayed(client, upstream, oneWay);
    delayed(upstream, client, oneWay);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("proxy has no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Copies from → to, each chunk delayMs after it arrived, in order. */
function delayed(from: Socket, to: Socket, delayMs: number): void {
  const queue: { at: number; chunk: Buffer }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0].at <= now) to.write(queue.shift()!.chunk);
    if (queue.length > 0) timer = setTimeout(flush, queue[0].at - now);
    else if (ended) to.end();
  };
  from.on("data", (chunk: Buffer) => {
    queue.push({ at: performance.now() + delayMs, chunk });
    if (!timer) timer = setTimeout(flush, delayMs);
  });
  from.on("end", () => {
    ended = true;
    if (!timer) flush();
  });
}

/**
 * The same proxy in a process of its own, so that its copying does not share an event loop (or look
 * like part of the cost) of a client measured in-process beside a peer whose client is a process.
 */
export async function startDelayProxyProcess(target: string, rttMs: number): Promise<DelayProxy> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), target, String(rttMs)], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`delay proxy exited with ${code}`)));
  });
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

// `node dist/bench/delay-proxy.js TARGET_URL RTT_MS`: prints the proxy's URL, runs until killed.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const proxy = await startDelayProxy(process.argv[2], Number(process.argv[3]));
  process.stdout.write(`${proxy.url}\n`);
  process.once("SIGTERM", () => void proxy.close().then(() => process.exit(0)));
}
