import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A lying gateway: a real HTTP proxy in front of a real server that passes every request on and may
 * rewrite a response body on its way back. It stands for a gateway nobody should have to trust, so
 * that a test can show that a client catches what it changes.
 */
export interface TamperProxy {
  url: string;
  /** Rewrites the body of each response to a request whose path and query match; undefined passes it. */
  rewrite: ((pathAndQuery: string, body: Buffer) => Buffer | undefined) | undefined;
  /** When true for a POST, its answer is cut off: headers, then half the body, then the connection drops. */
  cut: ((pathAndQuery: string) => boolean) | undefined;
  close(): Promise<void>;
}

export async function startTamperProxy(target: string): Promise<TamperProxy> {
  const upstream = new URL(target);
  const proxy: TamperProxy = { url: "", rewrite: undefined, cut: undefined, close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const forward = http.request(
        // Host stays the proxy's: a server that names itself by the address it was reached at names the proxy.
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          const body: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => body.push(chunk));
          answer.on("end", () => {
            const original = Buffer.concat(body);
            const changed = proxy.rewrite?.(req.url ?? "/", original) ?? original;
            const headers = { ...answer.headers, "content-length": String(changed.length) };
            delete headers["transfer-encoding"];
            res.writeHead(answer.statusCode ?? 502, headers);
            if (req.method === "POST" && proxy.cut?.(req.url ?? "/")) {
              // The headers go first, alone, so that the client's fetch has answered before the body breaks off.
              res.flushHeaders();
              setTimeout(() => res.write(changed.subarray(0, changed.length >> 1), () => res.destroy()), 50);
              return;
            }
            res.end(req.method === "HEAD" ? undefined : changed);
          });
        },
      );
      forward.on("error", () => res.destroy());
      forward.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/** The bytes with one bit flipped at index (from the end when negative). */
export function flipBit(bytes: Buffer, index: number): Buffer {
  const copy = Buffer.from(bytes);
  const at = index < 0 ? copy.length + index : index;
  copy[at] ^= 0x01;
  return copy;
}
