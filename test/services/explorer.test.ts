import http from "node:http";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openRemote } from "../../lib/index.js";
import { cleanup, startServer, stop, type Server } from "../helpers/processes.js";

/*
 * serve's /explorer (services/explorer.ts) as a browser and a stranger meet it: a real `remotelog serve`
 * process, plain HTTP/1.1 requests with raw paths (no client-side normalising of "..") and HTTP/2.
 */

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, path: string, method = "GET"): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

let server: Server;

beforeAll(async () => {
  server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
});

afterAll(cleanup);

describe("serve - the explorer's page", () => {
  it("serves the page, its script and its stylesheet with their content types and a strict policy", async () => {
    const page = await request(server.url, "/explorer");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.body).toContain("<title>remotelog explorer</title>");
    expect(page.body).toContain('src="/explorer/explorer.js"');
    expect((await request(server.url, "/explorer/")).body).toBe(page.body);

    const script = await request(server.url, "/explorer/explorer.js");
    expect(script.status).toBe(200);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    // The library's one reader is in the bundle (method names survive minifying): the page verifies what it shows itself.
    expect(script.body.length).toBeGreaterThan(10_000);
    expect(script.body.includes("messageDataAllowingMissing"), "LogReader in the bundle").toBe(true);
    expect(script.body.includes("listNames"), "the name list client in the bundle").toBe(true);
    const style = await request(server.url, "/explorer/explorer.css");
    expect(style.status).toBe(200);
    expect(style.headers["content-type"]).toBe("text/css; charset=utf-8");

    const head = await request(server.url, "/explorer/explorer.js", "HEAD");
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect(Number(head.headers["content-length"])).toBe(Buffer.byteLength(script.body));
  });

  it("answers GET and HEAD only, and nothing outside its own files, whatever the path says", async () => {
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const answer = await request(server.url, "/explorer", method);
      expect(answer.status, method).toBe(405);
      expect(answer.headers.allow).toBe("GET, HEAD");
    }
    for (const path of ["/explorer/../package.json", "/explorer/%2e%2e/%2e%2e/package.json", "/explorer/..%2f..%2fpackage.json", "/explorer/index.html/..", "/explorer//etc/passwd", "/explorer/main.ts", "/explorer/explorer.js.map"]) {
      const answer = await request(server.url, path);
      expect(answer.status, path).toBe(404);
      expect(answer.body, path).not.toContain('"name": "remotelog"');
    }
  });

  it("serves the page over HTTP/2 too", async () => {
    const session = http2.connect(server.url);
    try {
      const answer = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
        const stream = session.request({ ":path": "/explorer/", ":method": "GET" });
        let status = 0;
        let type = "";
        let body = "";
        stream.on("response", (headers) => {
          status = Number(headers[":status"]);
          type = String(headers["content-type"]);
        });
        stream.setEncoding("utf8");
        stream.on("data", (chunk: string) => (body += chunk));
        stream.on("end", () => resolve({ status, type, body }));
        stream.on("error", reject);
      });
      expect(answer).toMatchObject({ status: 200, type: "text/html; charset=utf-8" });
      expect(answer.body).toContain("remotelog explorer");
    } finally {
      session.close();
    }
  });

  it("--no-explorer serves no page (404) and lists no names; --no-list-names keeps the page and lists none", async () => {
    const off = await startServer(["--listen", "127.0.0.1:0", "--memory", "--no-explorer"]);
    const quiet = await startServer(["--listen", "127.0.0.1:0", "--memory", "--no-list-names"]);
    const listing = await startServer(["--listen", "127.0.0.1:0", "--memory", "--no-explorer", "--list-names"]);
    const remotes = [off, quiet, listing].map((s) => openRemote(s.url));
    try {
      for (const path of ["/explorer", "/explorer/", "/explorer/explorer.js"]) expect((await request(off.url, path)).status, path).toBe(404);
      expect(await remotes[0].listNames()).toBeUndefined();
      expect((await request(quiet.url, "/explorer")).status).toBe(200);
      expect(await remotes[1].listNames()).toBeUndefined();
      expect((await request(listing.url, "/explorer")).status).toBe(404);
      expect(await remotes[2].listNames()).toEqual({ names: [], next: undefined });
    } finally {
      for (const remote of remotes) remote.close();
      await Promise.all([off, quiet, listing].map((s) => stop(s.process)));
    }
  });
});
