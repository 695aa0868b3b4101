/**
 * The Connect transport of a Remote on Node (package.json "imports" #transport): connect-node over
 * HTTP/2, one multiplexed connection per base URL with wide flow-control windows.
 * actors/transport-browser.ts is the same interface over fetch.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type * as http2 from "node:http2";
import { CONNECTION_WINDOW, STREAM_WINDOW } from "../core/http2-windows.js";
import { READ_MAX_BYTES } from "../core/retry.js";
import { bearer } from "./connect-auth.js";
import { withDirectUnary } from "./h2-unary.js";

export interface TransportOptions {
  /** A bearer token sent with every call (serve --write-token-file, --admin-token-file). */
  token?: string;
  /** PEM certificates to trust for https:// URLs besides the system's (a private CA). */
  ca?: Buffer | string;
  /** How long a unary call may go without a byte of its answer before it fails UNAVAILABLE (core/retry.ts UNARY_IDLE_MS). */
  idleTimeoutMs?: number;
  /** The largest answer a call takes (core/retry.ts READ_MAX_BYTES); a larger one fails TOO_LARGE. */
  readMaxBytes?: number;
}

/** A transport, and how to release what it holds (its connection). */
export interface OpenTransport {
  transport: Transport;
  close(): void;
  /**
   * The round trip to the server in ms, measured by an HTTP/2 PING on the open connection (no server
   * work in it, unlike a call's); undefined when no connection is open or the transport cannot tell.
   */
  roundTripMs?(): Promise<number | undefined>;
  /** Never bounded here: HTTP/2 carries every stream on one connection (transport-browser.ts has a bound). */
  maxStreams?: number;
}

/** How long a PING may go unanswered before the round trip counts as this long. */
const PING_LIMIT_MS = 2_000;

/** Opens the connection-level window too, which Node only lets a session set once it exists. */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.ClientHttp2Session>();
  /** The session of the latest stream: what roundTripMs pings. */
  private current?: http2.ClientHttp2Session;

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW);
      // connect-node listens for a session's errors only while the session is in use, and takes its
      // listener off at the first. A peer that is not an HTTP/2 server (an HTTP/1.1 one on a mistyped
      // port, a proxy without h2c) makes the session emit a second error as it closes, which Node
      // throws when no one listens: an uncatchable crash of the app. The calls have their error already.
      session.on("error", () => {});
    }
    this.current = session;
    return stream;
  }

  /**
   * Closes the connection, and any stream still open on it (a call the caller gave up on, or one whose
   * answer is in and whose close event is not) with a plain error. abort's own reason is a
   * ConnectError, whose constructor makes a Headers, and the first Headers of a process loads all of
   * Node's bundled undici: 15-40 ms at the end of every `receive`, `send` and `backup`.
   */
  close(): void {
    this.abort(new Error("the connection was closed"));
  }

  roundTripMs(): Promise<number | undefined> {
    const session = this.current;
    if (!session || session.closed || session.destroyed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      // A peer that never answers is a slow one, and the caller must not wait on it for long. The timer
      // is not unref'd: an idle session is, and a process with nothing else to do would exit with the
      // caller's await unsettled.
      const timer = setTimeout(() => resolve(PING_LIMIT_MS), PING_LIMIT_MS);
      const done = (ms: number | undefined) => {
        clearTimeout(timer);
        resolve(ms);
      };
      try {
        if (!session.ping((err, duration) => done(err ? undefined : duration))) done(undefined);
      } catch {
        done(undefined); // closed in between
      }
    });
  }
}

/** How long a connection with a stream open may be quiet before it is pinged (connect-node's keepalive). */
export const KEEPALIVE_MS = 15_000;
/** How long a ping may go unanswered before the connection and its streams are closed, and the next call opens another. */
export const KEEPALIVE_TIMEOUT_MS = 10_000;

export function openTransport(baseUrl: string, options: TransportOptions): OpenTransport {
  const readMaxBytes = options.readMaxBytes ?? READ_MAX_BYTES;
  const session = new WideWindowSessionManager(
    baseUrl,
    // A connection a stream waits on is asked whether it is still there when nothing has come for
    // KEEPALIVE_MS: one dropped without a word (a NAT or load balancer forgetting it, a laptop resumed)
    // kept a follower waiting on it for good, its retries going to the same dead connection.
    { idleConnectionTimeoutMs: 5_000, pingIntervalMs: KEEPALIVE_MS, pingTimeoutMs: KEEPALIVE_TIMEOUT_MS },
    { settings: { initialWindowSize: STREAM_WINDOW }, ...(options.ca !== undefined ? { ca: options.ca } : {}) },
  );
  // No compression: message bodies are usually encrypted and so incompressible, and gzip of a batch
  // cost more CPU than the whole rest of a catch-up on loopback.
  const streaming = createConnectTransport({
    baseUrl,
    httpVersion: "2",
    sessionManager: session,
    readMaxBytes,
    acceptCompression: [],
    interceptors: options.token === undefined ? [] : [bearer(options.token)],
  });
  // Unary calls on the same connection, without connect-node's per-call machinery (actors/h2-unary.ts).
  const transport = withDirectUnary(streaming, { baseUrl, session, token: options.token, readMaxBytes, idleTimeoutMs: options.idleTimeoutMs });
  return { transport, close: () => session.close(), roundTripMs: () => session.roundTripMs() };
}
