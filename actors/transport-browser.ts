/**
 * The Connect transport of a Remote in a browser (package.json "imports" #transport, "browser"
 * condition): connect-web over the page's fetch, binary Connect protocol. Same interface as
 * actors/transport-node.ts. The server must allow the page's origin (serve --cors-origin).
 */
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RemoteLogError } from "../core/errors.js";
import { concatBytes } from "../core/bytes.js";
import { READ_MAX_BYTES, UNARY_IDLE_MS } from "../core/retry.js";
import { bearer } from "./connect-auth.js";

export interface TransportOptions {
  /** A bearer token sent with every call (serve --write-token-file, --admin-token-file). */
  token?: string;
  /** Not in a browser: it trusts the certificates its user's system trusts. */
  ca?: unknown;
  /** How long a unary call may go without a byte of its answer before it fails UNAVAILABLE (core/retry.ts UNARY_IDLE_MS). */
  idleTimeoutMs?: number;
  /**
   * The largest unary answer a call takes (core/retry.ts READ_MAX_BYTES), as Node's transport: a
   * larger one fails TOO_LARGE as soon as it is known to be, and is read no further.
   */
  readMaxBytes?: number;
}

/** A transport, and how to release what it holds (nothing: fetch keeps no connection of ours). */
export interface OpenTransport {
  transport: Transport;
  close(): void;
  /** Never here: a page's fetch has no PING to time (transport-node.ts has). */
  roundTripMs?(): Promise<number | undefined>;
  /**
   * Streams (a follower's Watch) this transport may hold open at once without starving its other
   * calls, where it has a bound: over http:// a browser opens 6 HTTP/1.1 connections a host, and each
   * stream holds one for as long as it runs.
   */
  maxStreams?: number;
}

/**
 * Streams a page holds to one http:// server at most: 6 of them took the browser's last connection to
 * the host, and every other call of the page (a sync, a send) waited behind them for good. Two are
 * left for those calls. A Remote keeps one of these for WatchMany, which carries every watch past the
 * others (actors/shared-name-watch.ts). Over https:// the server speaks HTTP/2, one connection for all.
 */
export const HTTP1_MAX_STREAMS = 4;

export function openTransport(baseUrl: string, options: TransportOptions): OpenTransport {
  if (options.ca !== undefined) throw RemoteLogError.invalidArgument("a browser trusts its own certificate authorities: ca is for Node only");
  const transport = createConnectTransport({
    baseUrl,
    useBinaryFormat: true,
    fetch: withIdleLimit(options.idleTimeoutMs ?? UNARY_IDLE_MS, options.readMaxBytes ?? READ_MAX_BYTES),
    interceptors: options.token === undefined ? [] : [bearer(options.token)],
  });
  return { transport, close: () => {}, ...(new URL(baseUrl).protocol === "http:" ? { maxStreams: HTTP1_MAX_STREAMS } : {}) };
}

/**
 * fetchOrUnavailable, with a unary call whose server says nothing for idleMs (no headers, then no byte
 * of the answer) aborted as UNAVAILABLE, as Node's transport does (actors/h2-unary.ts): a page's fetch
 * has no deadline of its own, so a wedged server or a dead connection held sync() and send() forever.
 * A streaming answer (a Watch) may be quiet for hours: only its headers are waited for so.
 */
function withIdleLimit(idleMs: number, readMaxBytes: number): typeof fetch {
  return async (input, init) => {
    const controller = new AbortController();
    const callerSignal = init?.signal ?? undefined;
    const onCallerAbort = () => controller.abort(callerSignal!.reason);
    if (callerSignal?.aborted) onCallerAbort();
    callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new ConnectError(`${String(input)}: no answer for ${idleMs / 1000} s`, Code.Unavailable)), idleMs);
    };
    const done = () => {
      clearTimeout(timer);
      callerSignal?.removeEventListener("abort", onCallerAbort);
    };
    arm();
    let response: Response;
    try {
      response = await fetchOrUnavailable(input, { ...init, signal: controller.signal });
    } catch (err) {
      done();
      throw err;
    }
    // connect-web reads an answer, or a stream's message, whole however large (it has no readMaxBytes): bounded here.
    const tooLarge = (announced?: number) =>
      new ConnectError(`${String(input)}: the answer${announced ? ` of ${announced} bytes` : ""} is larger than the ${readMaxBytes} bytes this client takes (readMaxBytes)`, Code.ResourceExhausted);
    const streaming = (new Headers(init?.headers).get("content-type") ?? "").startsWith("application/connect+");
    if (streaming || !response.body) {
      const body = response.body;
      if (!body) {
        done();
        return response;
      }
      // A stream's caller stops it by its signal, which must still reach the fetch until the stream
      // ends: that is what closes its connection. Cut off at the headers, a stopped Watch held its
      // HTTP/1.1 connection until the server ended it (never, while the name is quiet), and once six
      // were held every call of the page waited for good.
      clearTimeout(timer);
      let checked: ReadableStream<Uint8Array> | undefined;
      Object.defineProperty(response, "body", { get: () => (checked ??= messagesWithin(body, readMaxBytes, tooLarge, done)) });
      return response;
    }
    const announced = Number(response.headers.get("content-length") ?? 0);
    if (announced > readMaxBytes) {
      done();
      void response.body.cancel().catch(() => undefined);
      throw tooLarge(announced);
    }
    arm();
    // The body read chunk by chunk (fetchOrUnavailable's, which fails UNAVAILABLE when it breaks off),
    // each chunk re-arming the limit: an answer that keeps coming is never cut.
    let whole: Promise<Uint8Array> | undefined;
    const readWhole = () =>
      (whole ??= (async () => {
        const reader = response.body!.getReader();
        const chunks: Uint8Array[] = [];
        let length = 0;
        try {
          for (;;) {
            const { done: ended, value } = await reader.read();
            if (ended) break;
            chunks.push(value);
            length += value.length;
            if (length > readMaxBytes) {
              void reader.cancel().catch(() => undefined);
              throw tooLarge();
            }
            arm();
          }
        } finally {
          done();
        }
        return concatBytes(chunks, length);
      })());
    Object.defineProperties(response, {
      arrayBuffer: { value: async () => (await readWhole()).buffer },
      json: { value: async () => JSON.parse(new TextDecoder().decode(await readWhole())) },
    });
    return response;
  };
}

/**
 * A Connect stream's body as it comes, failing with tooLarge(length) at the first message whose
 * envelope (a flags byte and a 4-byte big-endian length) says it is over readMaxBytes, before any of
 * it is held: a Watch's server could otherwise announce a message of gigabytes and send it forever.
 */
function messagesWithin(body: ReadableStream<Uint8Array>, readMaxBytes: number, tooLarge: (announced: number) => Error, ended: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  // The envelope being read: its header bytes so far, then the bytes of its message still to come.
  const header = new Uint8Array(5);
  let headerBytes = 0;
  let messageLeft = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        ended();
        controller.error(err);
        return;
      }
      if (chunk.done) {
        ended();
        controller.close();
        return;
      }
      const bytes = chunk.value;
      for (let at = 0; at < bytes.length; ) {
        if (messageLeft > 0) {
          const taken = Math.min(messageLeft, bytes.length - at);
          messageLeft -= taken;
          at += taken;
          continue;
        }
        header[headerBytes++] = bytes[at++];
        if (headerBytes < 5) continue;
        headerBytes = 0;
        messageLeft = new DataView(header.buffer).getUint32(1);
        if (messageLeft > readMaxBytes) {
          ended();
          void reader.cancel().catch(() => undefined);
          controller.error(tooLarge(messageLeft));
          return;
        }
      }
      controller.enqueue(bytes);
    },
    cancel: (reason) => {
      ended();
      return reader.cancel(reason);
    },
  });
}

/**
 * fetch, with a request that got no answer (server down, connection refused, or refused by CORS, which
 * a page cannot tell apart) failing as Unavailable, which callers retry, as connect-node reports a
 * refused connection; the page's fetch says only TypeError, which Connect would call Unknown. An
 * answer whose body breaks off (the connection dropped mid-way) fails as Unavailable too: Connect
 * would call that Internal, which nobody retries.
 */
async function fetchOrUnavailable(input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> {
  const unavailable = (err: unknown, what: string) =>
    init?.signal?.aborted || !(err instanceof TypeError) ? err : new ConnectError(`${String(input)}: ${what}${err.message}`, Code.Unavailable, undefined, undefined, err);
  let response: Response;
  try {
    response = await globalThis.fetch(input, init);
  } catch (err) {
    throw unavailable(err, "");
  }
  // Every answer is read through body: a stream's by Connect, a unary one's by withIdleLimit, whose
  // arrayBuffer() and json() read it (Chromium's own reject with a TypeError of their own whatever the
  // body failed with).
  const brokeOff = (err: unknown) => unavailable(err, "the answer broke off: ");
  const body = response.body;
  // Made when first asked for: Connect asks twice.
  let relayedBody: ReadableStream<Uint8Array> | undefined;
  // Configurable: withIdleLimit wraps a stream's body again (messagesWithin).
  Object.defineProperty(response, "body", { get: () => body && (relayedBody ??= relayed(body, brokeOff)), configurable: true });
  return response;
}

/** A stream of what body yields, whose failure is the one failed(error) gives. */
function relayed(body: ReadableStream<Uint8Array>, failed: (err: unknown) => unknown): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(failed(err));
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
