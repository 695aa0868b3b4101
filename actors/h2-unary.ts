/**
 * Connect unary calls made straight on an HTTP/2 stream of connect-node's session manager, for the
 * Node transport (actors/transport-node.ts); streaming calls stay with connect-node.
 *
 * The Connect protocol's unary call is one POST: the binary message as the body, the answer as the
 * body of a 200, an error as JSON under another status. connect-node's generic client spent ~0.5 ms of
 * CPU on each call around that (a linked AbortController, an AbortSignal and DOMException, a
 * ConnectError made at every stream's close, Headers objects, async iterables over one buffer):
 * against a real `serve`, Remote.fetchName took 0.67-0.76 ms of the client's CPU back to back and
 * 1.0-1.2 ms with 5 ms between calls (p50 1.55-1.91 ms) through connect-node, and 0.38-0.44 and
 * 0.68-0.76 ms (p50 1.37-1.48 ms) made this way. Every unary call pays it, a follow delivery's name
 * update included. What an answer means is still decided by connect's rules: a 200 with the binary
 * content type is the message; a server's usual JSON error becomes the error connect's
 * errorFromJsonBytes would make (plainErrorAnswer); anything else goes through connect's own
 * validateResponseWithCompression and errorFromJsonBytes. test/actors/h2-unary.test.ts holds each
 * kind of answer against connect-node's transport.
 */
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { codeFromString, codeToString, errorFromJsonBytes, validateResponseWithCompression } from "@connectrpc/connect/protocol-connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { bearerValue } from "./connect-auth.js";
import { concatBytes } from "../core/bytes.js";
import { UNARY_IDLE_MS } from "../core/retry.js";

export interface DirectUnaryOptions {
  baseUrl: string;
  session: Http2SessionManager;
  /** Sent as `Authorization: Bearer token`. */
  token?: string;
  /** The largest answer taken, as connect's readMaxBytes. */
  readMaxBytes: number;
  /** How long a call may go without a byte of its answer (UNARY_IDLE_MS by default). */
  idleTimeoutMs?: number;
}

/** transport with its unary calls made by directUnary; its streaming calls as they are. */
export function withDirectUnary(transport: Transport, options: DirectUnaryOptions): Transport {
  const basePath = new URL(options.baseUrl).pathname.replace(/\/$/, "");
  return {
    unary: (method, signal, timeoutMs, header, input) => directUnary(options, basePath, method, signal, timeoutMs, header, input),
    stream: (method, signal, timeoutMs, header, input, contextValues) => transport.stream(method, signal, timeoutMs, header, input, contextValues),
  };
}

async function directUnary<I extends DescMessage, O extends DescMessage>(
  options: DirectUnaryOptions,
  basePath: string,
  method: DescMethodUnary<I, O>,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  header: ConstructorParameters<typeof Headers>[0] | undefined,
  input: MessageInitShape<I>,
) {
  const message = isMessage(input, method.input) ? input : create(method.input, input);
  const body = toBinary(method.input, message);
  const headers: OutgoingHttpHeaders = {};
  if (header !== undefined) new Headers(header).forEach((value, key) => (headers[key] = value));
  // As connect's requestHeader: a timeout of 0 or less is none.
  if (timeoutMs !== undefined && timeoutMs > 0) headers["connect-timeout-ms"] = String(timeoutMs);
  headers["content-type"] = "application/proto";
  headers["connect-protocol-version"] = "1";
  headers["user-agent"] ??= "connect-es/2.1.2";
  if (options.token !== undefined) headers.authorization = bearerValue(options.token);
  const answer = await exchange(options, `${basePath}/${method.parent.typeName}/${method.name}`, headers, body, signal, timeoutMs);
  const status = Number(answer.headers[":status"] ?? 0);
  const encoding = answer.headers["content-encoding"];
  if (!(status === 200 && answer.headers["content-type"] === "application/proto" && (encoding === undefined || encoding === "identity"))) {
    const plain = plainErrorAnswer(status, answer);
    if (plain) throw plain;
    // Anything else is read as connect reads it: its status, content type and encoding (none is
    // accepted), then a JSON error.
    const all = answerMetadata(answer.headers);
    const { isUnaryError, unaryError } = validateResponseWithCompression("unary", [], true, status, all);
    if (isUnaryError) throw errorFromJsonBytes(answer.body, all, unaryError!);
  }
  return {
    stream: false as const,
    service: method.parent,
    method,
    message: parse(method.output, answer.body),
    // Made only when a caller asks (call options onHeader / onTrailer), which ours never do.
    get header() {
      return webHeaders(answer.headers, false);
    },
    get trailer() {
      return webHeaders(answer.headers, true);
    },
  };
}

/** The answer's message; bytes that do not parse are INTERNAL, as connect's own parse says. */
function parse<O extends DescMessage>(schema: O, bytes: Uint8Array) {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
}

/**
 * A server's usual error answer (not a 200, JSON, no encoding, a known code, no details) as connect's
 * validateResponse and errorFromJsonBytes read it, made without a Headers: connect's ConnectError
 * makes one in its constructor, and the first Headers of a process loads Node's bundled undici (55 ms
 * of a `send` process here: its first Fetch of a new name is NOT_FOUND). undefined for any other answer.
 */
function plainErrorAnswer(status: number, answer: { headers: IncomingHttpHeaders; body: Uint8Array }): AnsweredError | undefined {
  const { headers } = answer;
  if (status === 200 || (headers["content-encoding"] !== undefined && headers["content-encoding"].toLowerCase() !== "identity")) return undefined;
  if (!/^application\/json(?:; ?charset=utf-?8)?$/i.test(headers["content-type"] ?? "")) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(answer.body));
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const { code, message, details } = json as { code?: unknown; message?: unknown; details?: unknown };
  const known = typeof code === "string" ? codeFromString(code) : undefined;
  if (known === undefined || (message != null && typeof message !== "string") || (Array.isArray(details) && details.length > 0)) return undefined;
  return new AnsweredError(known, (message as string | null | undefined) ?? "", headers);
}

/**
 * What errorFromJsonBytes makes of a plain error answer, without its Headers until asked: connect's
 * ConnectError[Symbol.hasInstance] takes an error of this shape for one (name, code, metadata,
 * details, rawMessage, cause), so `instanceof ConnectError` and ConnectError.from see it as made.
 */
class AnsweredError extends Error {
  override readonly name = "ConnectError";
  readonly details: ConnectError["details"] = [];
  override readonly cause: unknown = undefined;
  private headers?: Headers;

  constructor(
    readonly code: Code,
    readonly rawMessage: string,
    private readonly answerHeaders: IncomingHttpHeaders,
  ) {
    super(rawMessage.length > 0 ? `[${codeToString(code)}] ${rawMessage}` : `[${codeToString(code)}]`);
  }

  /** The answer's headers and trailers, as connect's error carries them. */
  get metadata(): Headers {
    return (this.headers ??= answerMetadata(this.answerHeaders));
  }
}

/** An answer's headers and its Connect unary trailers in one Headers, as connect's errors carry them. */
function answerMetadata(headers: IncomingHttpHeaders): Headers {
  const all = webHeaders(headers, false);
  webHeaders(headers, true).forEach((value, key) => all.append(key, value));
  return all;
}

/** A response's headers as web Headers: the ordinary ones, or the Connect unary trailers (trailer-*) without their prefix. */
function webHeaders(headers: IncomingHttpHeaders, trailers: boolean): Headers {
  const result = new Headers();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || value === undefined || key.startsWith("trailer-") !== trailers) continue;
    const name = trailers ? key.slice("trailer-".length) : key;
    for (const one of Array.isArray(value) ? value : [value]) result.append(name, one);
  }
  return result;
}

/** Sends body on a new stream and gathers the answer; transport failures become ConnectErrors, as connect-node's. */
function exchange(
  options: DirectUnaryOptions,
  path: string,
  headers: OutgoingHttpHeaders,
  body: Uint8Array,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): Promise<{ headers: IncomingHttpHeaders; body: Uint8Array }> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const idleMs = options.idleTimeoutMs ?? UNARY_IDLE_MS;
    const onIdle = () => fail(new ConnectError(`no answer for ${idleMs / 1000} s`, Code.Unavailable), h2.NGHTTP2_CANCEL);
    const idle = setTimeout(onIdle, idleMs);
    // Refreshed, not made again, on every chunk of the answer: it runs once per 16 KiB read.
    const heard = () => void idle.refresh();
    const onAbort = () => fail(new ConnectError("the operation was aborted", Code.Canceled, undefined, undefined, signal?.reason), h2.NGHTTP2_CANCEL);
    const settle = () => {
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      clearTimeout(idle);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (error: ConnectError, rstCode: number = h2.NGHTTP2_INTERNAL_ERROR) => {
      if (settled) return;
      settle();
      if (stream && !stream.closed) stream.close(rstCode);
      reject(error);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort);
    if (timeoutMs !== undefined && timeoutMs > 0) {
      timer = setTimeout(() => fail(new ConnectError(`the operation timed out after ${timeoutMs} ms`, Code.DeadlineExceeded), h2.NGHTTP2_CANCEL), timeoutMs);
    }
    options.session.request("POST", path, headers, {}).then(
      (opened) => {
        stream = opened;
        if (settled) {
          opened.close(h2.NGHTTP2_CANCEL);
          return;
        }
        let responseHeaders: IncomingHttpHeaders | undefined;
        // Into a plain Uint8Array, as connect reads it: the message's bytes fields are views of it, and
        // a Buffer's would be Buffers, whose slice() does not copy. With the length announced, each
        // chunk is copied in as it comes, so that it dies young and its memory is used again for the
        // next: fresh memory costs ~4 ms a MB on this VM, and a 100k catch-up reads 30 MB.
        let gathered: Uint8Array | undefined;
        let chunks: Uint8Array[] = [];
        let length = 0;
        opened.on("response", (received) => {
          heard();
          responseHeaders = received;
          // As connect's readAllBytes: an announced length over the limit fails before any byte is read.
          const announced = Number(received["content-length"]);
          if (announced > options.readMaxBytes) {
            fail(new ConnectError(`message size ${announced} is larger than configured readMaxBytes ${options.readMaxBytes}`, Code.ResourceExhausted), h2.NGHTTP2_CANCEL);
          } else if (Number.isSafeInteger(announced) && announced > 0) {
            gathered = new Uint8Array(announced);
          }
        });
        opened.on("data", (chunk: Buffer) => {
          heard();
          options.session.notifyResponseByteRead(opened);
          if (length + chunk.length > options.readMaxBytes) {
            fail(new ConnectError(`message size is larger than configured readMaxBytes ${options.readMaxBytes}`, Code.ResourceExhausted), h2.NGHTTP2_CANCEL);
            return;
          }
          if (gathered && length + chunk.length > gathered.length) {
            // More than announced (nghttp2 resets such a stream; this is not left to it): gathered as it comes.
            chunks = [gathered.subarray(0, length)];
            gathered = undefined;
          }
          if (gathered) gathered.set(chunk, length);
          else chunks.push(chunk);
          length += chunk.length;
        });
        opened.on("end", () => {
          // Ended without an answer (the server's connection went away): "close" says how, with its reset code.
          if (settled || !responseHeaders) return;
          settle();
          const body = gathered ? (length === gathered.length ? gathered : gathered.slice(0, length)) : concatBytes(chunks, length);
          resolve({ headers: responseHeaders, body });
        });
        // An answered stream may still error (its connection closed before its close event): nothing
        // waits on it then. The errors are made only when needed: a ConnectError captures a stack and
        // makes a Headers, and the first Headers of a process loads Node's bundled undici.
        opened.on("error", (err: Error) => settled || fail(fromNodeReason(err)));
        // After "end" when all went well; otherwise a stream cut short, by its reset code: NO_ERROR too,
        // which connect-node leaves unanswered. Each is a failure on the way, which a caller may retry.
        opened.on("close", () => settled || fail(fromResetCode(opened.rstCode)));
        opened.end(body);
      },
      (err: unknown) => fail(err instanceof ConnectError ? err : fromNodeReason(err)),
    );
  });
}

/**
 * A Node error on the way as connect-node reports it (node-error.ts connectErrorFromNodeReason): a
 * reset connection as Aborted, a refused or unresolvable one as Unavailable, the rest as Internal;
 * the Node error stays the cause, which is how actors/remote.ts tells a failure on the way from an answer.
 */
function fromNodeReason(reason: unknown): ConnectError {
  const codes = new Set<string>();
  for (let cause: unknown = reason; cause instanceof Error && codes.size < 16; cause = cause.cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === "string") codes.add(code);
  }
  const has = (...names: string[]) => names.some((name) => codes.has(name));
  // nghttp2's "Protocol error": what an HTTP/1.1 server (a mistyped port, a proxy without h2c) answers.
  if (has("ERR_HTTP2_ERROR")) {
    const error = new ConnectError(`${(reason as Error).message}: the answer is not HTTP/2 (is this a remotelog server, or a proxy without h2c?)`, Code.Unavailable);
    error.cause = reason;
    return error;
  }
  const code = has("ERR_STREAM_WRITE_AFTER_END", "ERR_STREAM_DESTROYED", "ERR_HTTP2_INVALID_STREAM", "ECONNRESET")
    ? Code.Aborted
    : has("ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED")
      ? Code.Unavailable
      : Code.Internal;
  const error = ConnectError.from(reason, code);
  if (error !== reason) error.cause = reason;
  return error;
}

/** A stream closed before its answer ended, by its HTTP/2 reset code (connect-node's connectErrorFromH2ResetCode). */
function fromResetCode(rstCode: number | undefined): ConnectError {
  const text = `http/2 stream closed with error code ${RESET_NAMES[rstCode ?? 0] ?? "NO_ERROR"} (0x${(rstCode ?? 0).toString(16)})`;
  switch (rstCode) {
    case h2.NGHTTP2_REFUSED_STREAM:
      return new ConnectError(text, Code.Unavailable);
    case h2.NGHTTP2_CANCEL:
      return new ConnectError(text, Code.Canceled);
    case h2.NGHTTP2_ENHANCE_YOUR_CALM:
      return new ConnectError(text, Code.ResourceExhausted);
    case h2.NGHTTP2_INADEQUATE_SECURITY:
    case h2.NGHTTP2_HTTP_1_1_REQUIRED:
      return new ConnectError(text, Code.PermissionDenied);
    default:
      return new ConnectError(text, Code.Internal);
  }
}

/** The names of the HTTP/2 reset codes a stream may close with, by code (RFC 9113, 7), from node's constants. */
const RESET_NAMES: Record<number, string> = Object.fromEntries(
  (
    "PROTOCOL_ERROR INTERNAL_ERROR FLOW_CONTROL_ERROR SETTINGS_TIMEOUT STREAM_CLOSED FRAME_SIZE_ERROR REFUSED_STREAM " +
    "CANCEL COMPRESSION_ERROR CONNECT_ERROR ENHANCE_YOUR_CALM INADEQUATE_SECURITY HTTP_1_1_REQUIRED"
  )
    .split(" ")
    .map((name) => [(h2 as unknown as Record<string, number>)[`NGHTTP2_${name}`], name]),
);
