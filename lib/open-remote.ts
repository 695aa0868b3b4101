import { Remote } from "../actors/remote.js";
import type { LogReadRemote, LogRemote, NameLister } from "../core/log-remote.js";
import { GatewayRemote } from "../actors/gateway-remote.js";
import { RemoteLogError } from "../core/errors.js";
import { checkWholeNumber, shown } from "../core/options.js";

/** Where the services are: one URL of a combined CAS and NS (`remotelog serve`), or one for each. */
export type Endpoints = string | { cas: string; ns: string };

/**
 * `const remote = openRemote(url | { cas, ns })`
 *
 * A client of remotelog's services over Connect: the CAS and NS of a `remotelog serve`, or of any server
 * speaking the draft's vac.cas.CAS and vac.cas.NS. On Node over HTTP/2; in a browser (remotelog/browser)
 * over the page's fetch, which needs the server to allow the page's origin (serve --cors-origin). Connects lazily: nothing is sent
 * until the first call, so an unreachable server shows up as UNAVAILABLE from that call, not here.
 *
 * listNames() pages through the names the NS holds, where it lets them be listed (`serve` does while its
 * explorer is on); undefined from one that does not.
 *
 * Every method of the returned client throws RemoteLogError: UNAVAILABLE when a service cannot be
 * reached (worth retrying; see withRetry), NOT_FOUND for a missing block, ABORTED for a conditional
 * update that lost a race, and the server's other refusals by their code. Call close() when done;
 * close() is idempotent.
 *
 * A call that gets no answer for options.idleTimeoutMs (30 s) fails UNAVAILABLE: nothing waits forever.
 *
 * Throws INVALID_ARGUMENT for a URL that is not http:// or https://, or an idleTimeoutMs that is not
 * a whole number of milliseconds above 0 (or a readMaxBytes not a whole number above 0). Idempotent: each call opens a new, independent client.
 *
 * @example
 * ```ts
 * const remote = openRemote("http://127.0.0.1:7420");
 * const split = openRemote({ cas: "http://127.0.0.1:7421", ns: "http://127.0.0.1:7422" });
 * ```
 */
export function openRemote(endpoints: Endpoints, options: OpenRemoteOptions = {}): LogRemote & NameLister {
  if (typeof endpoints !== "string" && (endpoints === null || typeof endpoints !== "object" || typeof endpoints.cas !== "string" || typeof endpoints.ns !== "string")) {
    // A plain-JS caller's undefined failed as a TypeError on destructuring.
    throw RemoteLogError.invalidArgument(`openRemote takes a server URL, or { cas, ns } URLs, not ${shown(endpoints)}`);
  }
  const { cas, ns } = typeof endpoints === "string" ? { cas: endpoints, ns: endpoints } : endpoints;
  checkWholeNumber("idleTimeoutMs", options.idleTimeoutMs, 1);
  checkWholeNumber("readMaxBytes", options.readMaxBytes, 1);
  return new Remote({ casUrl: httpUrl(cas, "CAS"), nsUrl: httpUrl(ns, "NS"), idleTimeoutMs: options.idleTimeoutMs, readMaxBytes: options.readMaxBytes });
}

/** How openRemote's client waits. */
export interface OpenRemoteOptions {
  /**
   * How long a call may go without a byte of its answer (a wedged server, a dead connection) before it
   * fails UNAVAILABLE, which withRetry and follow() retry as an outage. Default 30 s. Pushed heads
   * (follow's Watch) may be quiet for longer: only their start is bounded so.
   */
  idleTimeoutMs?: number;
  /**
   * The largest answer one call takes, in bytes; a larger one fails TOO_LARGE rather than
   * being read into memory. Default 256 MiB. A remotelog server answers within its own cap
   * (max_response_bytes, 8 MiB by default); this bounds a server that does not.
   */
  readMaxBytes?: number;
}

/** How openGateway reads. */
export interface OpenGatewayOptions {
  /** A Delegated Routing V1 HTTP API for names (/routing/v1/ipns/{name}); without one, names come from the gateway's /ipns/{name}. */
  router?: string;
  /** Longest wait for one request, in milliseconds. Default 30 s. */
  timeoutMs?: number;
  /** Block requests in flight at once. Default 16. */
  concurrency?: number;
  /** The largest block taken. Default 2 MiB, the trustless gateway spec's limit for clients. */
  maxBlockBytes?: number;
}

/**
 * `const remote = openGateway(url, { router })`
 *
 * The read side of the client port over IPFS's own HTTP protocols: blocks from any Trustless Gateway
 * (`remotelog serve`, a Kubo gateway, a public one), names from the gateway's `/ipns/{name}` or from a
 * Delegated Routing V1 router. Nothing from either is trusted: a name's signed IPNS record is verified
 * with the name's key before the page it names is fetched, and a Receiver checks every page and
 * message by its hash, as over Connect. Key names only (IPNS holds no other kind); nothing is pushed,
 * so a follower polls. Read-only: give it to a Receiver, not a Sender.
 *
 * Throws INVALID_ARGUMENT for a URL that is not http:// or https://, or an option that is not a whole
 * number from 1. Its reads throw NOT_FOUND for a
 * missing block, UNAVAILABLE for a gateway that cannot be reached or answers 5xx or 429 (and for a name
 * whose head moved on at each of a few reads: a gateway may serve a head page only while it is the
 * head, `serve`'s for 10 s after), TOO_LARGE for
 * a block over maxBlockBytes, and a record's own faults (PERMISSION_DENIED, CONFLICT, INVALID_ARGUMENT).
 * Idempotent: each call opens a new client; close() aborts its requests and is idempotent.
 *
 * @example
 * ```ts
 * const remote = openGateway("http://127.0.0.1:7420", { router: "http://127.0.0.1:7420" });
 * ```
 */
export function openGateway(url: string, options: OpenGatewayOptions = {}): LogReadRemote & Pick<LogRemote, "watchName" | "close"> {
  checkClientOptions(options);
  checkWholeNumber("maxBlockBytes", options.maxBlockBytes, 1);
  const router = options.router === undefined ? undefined : httpUrl(options.router, "router");
  return new GatewayRemote({ ...options, gateway: httpUrl(url, "gateway"), router });
}

/**
 * The options openGateway and openKubo share: a timeout or concurrency of 0 or less left every request
 * timing out at once, or none ever started.
 */
export function checkClientOptions(options: { timeoutMs?: number; concurrency?: number }): void {
  checkWholeNumber("timeoutMs", options.timeoutMs, 1);
  checkWholeNumber("concurrency", options.concurrency, 1);
}

/** url without its trailing slashes; INVALID_ARGUMENT, naming what, for anything not http:// or https://. */
export function httpUrl(url: string, what: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw RemoteLogError.invalidArgument(`the ${what} URL ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw RemoteLogError.invalidArgument(`the ${what} URL ${JSON.stringify(url)} is not http:// or https://`);
  return url.replace(/\/+$/, "");
}
