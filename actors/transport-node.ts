/**
 * The Connect transport of a Remote on Node (package.json "imports" #transport): connect-node over
 * HTTP/2, one multiplexed connection per base URL with wide flow-control windows.
 * actors/transport-browser.ts is the same interface over fetch.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type * as http2 from "node:http2";
import { CONNECTION_WINDOW, STREAM_WINDOW } from "../core/http2-windows.js";
import { bearer } from "./connect-auth.js";
import { withDirectUnary } from "./h2-unary.js";

/** The largest answer a call takes. */
const READ_MAX_BYTES = 256 << 20;

export interface TransportOptions {
  /** A bearer token sent with every call (serve --write-token-file, --admin-token-file). */
  token?: string;
  /** PEM certificates to trust for https:// URLs besides the system's (a private CA). */
  ca?: Buffer | string;
}

/** A transport, and how to release what it holds (its connection). */
export interface OpenTransport {
  transport: Transport;
  close(): void;
}

/** Opens the connection-level window too, which Node only lets a session set once it exists. */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.ClientHttp2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW);
    }
    return stream;
  }
}

export function openTransport(baseUrl: string, options: TransportOptions): OpenTransport {
  const session = new WideWindowSessionManager(
    baseUrl,
    { idleConnectionTimeoutMs: 5_000 },
    { settings: { initialWindowSize: STREAM_WINDOW }, ...(options.ca !== undefined ? { ca: options.ca } : {}) },
  );
  // No compression: message bodies are usually encrypted and so incompressible, and gzip of a batch
  // cost more CPU than the whole rest of a catch-up on loopback.
  const streaming = createConnectTransport({
    baseUrl,
    httpVersion: "2",
    sessionManager: session,
    readMaxBytes: READ_MAX_BYTES,
    acceptCompression: [],
    interceptors: options.token === undefined ? [] : [bearer(options.token)],
  });
  // Unary calls on the same connection, without connect-node's per-call machinery (actors/h2-unary.ts).
  const transport = withDirectUnary(streaming, { baseUrl, session, token: options.token, readMaxBytes: READ_MAX_BYTES });
  return { transport, close: () => session.abort() };
}
