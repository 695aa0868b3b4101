import { cors as connectCors } from "@connectrpc/connect";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { RemoteLogError } from "../core/errors.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** What a browser may send us: Connect's headers, and a bearer token (serve --write-token-file). */
const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization"].join(", ");
const ALLOWED_METHODS = connectCors.allowedMethods.join(", ");
const EXPOSED_HEADERS = connectCors.exposedHeaders.join(", ");
/** How long a browser may reuse a preflight's answer, in seconds (Chromium caps it at 2 h). */
const PREFLIGHT_MAX_AGE = "7200";

/**
 * The Connect API's CORS (serve --cors-origin): pages of the allowed origins may call it, and pages
 * of any other origin get no CORS header, so their browser refuses them the answer. Reading is public
 * anyway; what this keeps out is other sites' pages writing, or spending their visitors' bandwidth,
 * through a server that did not ask for it. "*" allows every origin.
 *
 * Returns a function for each request, before the Connect handler sees it: it adds the headers an
 * allowed origin's response needs, and answers a preflight (OPTIONS with Access-Control-Request-Method)
 * itself, 204 for an allowed origin and 403 without CORS headers for any other, returning true then.
 */
export function corsPolicy(origins: readonly string[]): (req: Request, res: Response) => boolean {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    // Whether headers go out depends on Origin: a cache must not hand one origin's answer to another.
    res.setHeader("vary", "Origin");
    const ok = any || allowed.has(origin);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      const answer = () => {
        if (!ok) {
          res.writeHead(403, { "content-type": "text/plain; charset=utf-8" });
          res.end(`origin ${origin} may not call this server from a browser (serve --cors-origin)\n`);
          return;
        }
        res.writeHead(204, {
          "access-control-allow-origin": any ? "*" : origin,
          "access-control-allow-methods": ALLOWED_METHODS,
          "access-control-allow-headers": ALLOWED_HEADERS,
          "access-control-max-age": PREFLIGHT_MAX_AGE,
        });
        res.end();
      };
      // A preflight has no body, but Node calls it complete only once its end is read: answered before
      // that, the connection would be closed (services/server.ts closeIfAnsweredEarly), and each
      // method's preflight would cost the page a new connection. One that says it has a body is answered
      // at once, its connection closed, and its body never read.
      const declaresBody = (req.headers["content-length"] ?? "0") !== "0" || req.headers["transfer-encoding"] !== undefined;
      if (req.complete || declaresBody) answer();
      else {
        req.once("end", answer);
        req.resume();
      }
      return true;
    }
    if (ok) {
      res.setHeader("access-control-allow-origin", any ? "*" : origin);
      res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
    }
    return false;
  };
}

/**
 * An origin as a browser sends it (scheme://host[:port], no path), or "*"; INVALID_ARGUMENT for
 * anything else, which would never match a page and so would allow nothing.
 */
export function parseCorsOrigin(text: string): string {
  if (text === "*") return text;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== text) {
    const hint = url && (url.protocol === "http:" || url.protocol === "https:") ? `; the origin is ${url.origin}` : "";
    throw RemoteLogError.invalidArgument(`${JSON.stringify(text)} is not an origin (scheme://host[:port], as a browser sends it, or *)${hint}`);
  }
  return text;
}

/**
 * The CORS of IPFS's HTTP protocols (services/gateway.ts: /ipfs/, /ipns/, /routing/v1/), whatever
 * serve --cors-origin says: any origin, on every answer, errors and the routing PUT's 200 among them.
 * The routing spec asks servers to "always respond with headers that remove CORS limits"; a browser
 * client given a 404 without them sees a network error instead of "not found". What they serve is
 * public and verified by its client, as Kubo's gateway (boxo) serves it.
 */
export const ANY_ORIGIN = { "access-control-allow-origin": "*" } as const;
