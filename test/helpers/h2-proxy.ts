import http2, { type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";

/**
 * A hostile server: an h2c proxy in front of a real `remotelog serve` that passes every call on, and
 * lets a test answer a call itself (intercept) or change a unary answer on its way back (rewrite). It
 * stands for a server nobody should have to trust, or one that breaks down, as the client meets it.
 */
export interface H2Proxy {
  url: string;
  /** Calls taken so far of a method ("BlockService/GetMany", "NS/Fetch"), counted before intercept sees them. */
  calls(method: string): number;
  /**
   * Answers a call instead of the server: true when it did (or dropped it). Called with the call's
   * number among its method's calls (from 1) and its request body.
   */
  intercept: ((call: ProxiedCall, stream: ServerHttp2Stream) => boolean | Promise<boolean>) | undefined;
  /** Rewrites the body of a unary call's 200 answer; undefined passes it as it came. */
  rewrite: ((call: ProxiedCall, body: Buffer) => Buffer | undefined) | undefined;
  close(): Promise<void>;
}

export interface ProxiedCall {
  /** Service (last part of its package name) and method: "BlockService/GetMany". */
  method: string;
  /** The call's number among the calls of its method, from 1. */
  n: number;
  body: Buffer;
  headers: IncomingHttpHeaders;
}

export async function startH2Proxy(target: string): Promise<H2Proxy> {
  const upstream = http2.connect(target);
  upstream.on("error", () => {});
  const counts = new Map<string, number>();
  const sessions = new Set<ServerHttp2Session>();
  const server = http2.createServer();
  const proxy: H2Proxy = {
    url: "",
    calls: (method) => counts.get(method) ?? 0,
    intercept: undefined,
    rewrite: undefined,
    close: async () => {
      for (const session of sessions) session.destroy();
      upstream.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    const path = String(headers[":path"]);
    const [service, name] = path.split("/").slice(-2);
    const method = `${service.split(".").pop()}/${name}`;
    const n = (counts.get(method) ?? 0) + 1;
    counts.set(method, n);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      const call: ProxiedCall = { method, n, body: Buffer.concat(chunks), headers };
      void (async () => {
        if (await proxy.intercept?.(call, stream)) return;
        const forwarded: Record<string, string | string[]> = {};
        for (const [key, value] of Object.entries(headers)) if (!key.startsWith(":") && value !== undefined) forwarded[key] = value;
        const request = upstream.request({ ...forwarded, ":method": "POST", ":path": path });
        request.on("error", () => stream.destroyed || stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
        stream.on("close", () => request.destroyed || request.close());
        request.end(call.body);
        const streaming = String(headers["content-type"]).startsWith("application/connect+");
        request.on("response", (answer) => {
          const back: Record<string, string | string[] | number> = {};
          for (const [key, value] of Object.entries(answer)) if ((!key.startsWith(":") || key === ":status") && key !== "content-length" && value !== undefined) back[key] = value;
          if (streaming || !proxy.rewrite || answer[":status"] !== 200) {
            if (stream.destroyed) return;
            stream.respond(back);
            request.pipe(stream);
            return;
          }
          const body: Buffer[] = [];
          request.on("data", (chunk: Buffer) => body.push(chunk));
          request.on("end", () => {
            const original = Buffer.concat(body);
            const changed = proxy.rewrite?.(call, original) ?? original;
            if (stream.destroyed) return;
            stream.respond(back);
            stream.end(changed);
          });
        });
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
