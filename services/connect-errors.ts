import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { connectCodeOf } from "../core/connect-codes.js";
import { ErrorCodes, RemoteLogError } from "../core/errors.js";

/**
 * The one place where our error codes become Connect codes. A ConnectError passes through as it is.
 * Internal failures (our INTERNAL, or anything that is not a RemoteLogError) reach the client as a bare
 * "internal error": paths, stack traces and driver messages stay on the server, in `cause`.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof RemoteLogError && err.code !== ErrorCodes.INTERNAL) {
    // The client adds its own code prefix; keeping ours too would print the code twice.
    return new ConnectError(err.text, connectCodeOf[err.code], undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** Ours (a RemoteLogError) as toConnectError says it; anything else, connect's own errors among them, as it is. */
export function asConnectError(err: unknown): unknown {
  return err instanceof RemoteLogError ? toConnectError(err) : err;
}

/** The name of a call's final code, as gRPC tooling spells it: "OK" for success, else Connect's Code names ("NotFound"). */
export type CodeName = "OK" | keyof typeof Code;

export function codeName(code: Code | undefined): CodeName {
  return code === undefined ? "OK" : (Code[code] as keyof typeof Code);
}

/** Told about the calls of a wrapped service; every hook is optional. */
export interface CallObserver {
  /** A failure that reaches the client as Internal, whose cause the client never sees. */
  onInternal?: (err: ConnectError, method: string) => void;
  /**
   * Every call once it ends (a server stream once its last message is out, or it failed or was
   * cancelled), with its final code and how long the method ran. method is "package.Service/Method".
   */
  onCallEnd?: (method: string, code: CodeName, seconds: number) => void;
  /** A limit that refused the call, by the name in its RemoteLogError's details.limit ("max-watches"). */
  onLimit?: (limit: string) => void;
}

/**
 * Wraps every method of a service implementation so that what it throws leaves as a ConnectError,
 * reports Internal ones, and reports each call's outcome. A wrapper rather than an interceptor, so that
 * whoever mounts the services (connectNodeAdapter, createRouterTransport, a framework plugin) gets the
 * right codes without having to remember to configure one. A request refused before it reaches the
 * method (a body over readMaxBytes, one that does not decode) is not seen here.
 *
 * observer may be a bare function, taken as onInternal.
 */
export function withConnectErrors<T extends DescService>(
  service: T,
  impl: ServiceImpl<T>,
  observer?: CallObserver | ((err: ConnectError, method: string) => void),
): ServiceImpl<T> {
  const { onInternal, onCallEnd, onLimit } = typeof observer === "function" ? { onInternal: observer, onCallEnd: undefined, onLimit: undefined } : (observer ?? {});
  const wrapped: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = `${service.typeName}/${method.name}`;
    const fn = (impl as unknown as Record<string, (...args: unknown[]) => unknown>)[method.localName].bind(impl);
    const failed = (err: unknown): ConnectError => {
      if (err instanceof RemoteLogError && err.details.limit !== undefined) onLimit?.(err.details.limit);
      const error = toConnectError(err);
      if (error.code === Code.Internal) onInternal?.(error, path);
      return error;
    };
    const ended = (started: number, code: CodeName) => onCallEnd?.(path, code, (performance.now() - started) / 1000);
    if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
      // Connect reads a streaming method's result as an async iterable at once, not as a promise of one.
      wrapped[method.localName] = async function* (...args: unknown[]) {
        const started = performance.now();
        // A generator closed before its end (the client went away) runs only its finally.
        let code: CodeName = "Canceled";
        try {
          yield* fn(...args) as AsyncIterable<unknown>;
          // A stream that ends because its client went away or its deadline passed did not succeed.
          const signal = (args[1] as HandlerContext | undefined)?.signal;
          code = signal?.aborted ? codeName(ConnectError.from(signal.reason, Code.Canceled).code) : "OK";
        } catch (err) {
          const error = failed(err);
          code = codeName(error.code);
          throw error;
        } finally {
          ended(started, code);
        }
      };
    } else {
      wrapped[method.localName] = async (...args: unknown[]) => {
        const started = performance.now();
        try {
          const result = await fn(...args);
          ended(started, "OK");
          return result;
        } catch (err) {
          const error = failed(err);
          ended(started, codeName(error.code));
          throw error;
        }
      };
    }
  }
  return wrapped as ServiceImpl<T>;
}

// connect-es reports a binary request body that does not decode as Internal ("parse binary: ...",
// protocol/serialization.ts), before any interceptor or handler runs, while its JSON path reports
// InvalidArgument. An undecodable request is the caller's fault, and Internal would send operators
// looking for a bug, so the wire forms of that one error are rewritten below; so is its answer to an
// envelope flagged compressed, when no compression was agreed (also the caller's doing).
const PARSE_FAILURE = "parse binary:";
const COMPRESSED_ENVELOPE = "received compressed envelope, but do not know how to decompress";
const INVALID_ARGUMENT_HTTP_STATUS = 400;

/**
 * Makes a request body that does not decode as the method's input message fail with InvalidArgument
 * instead of Internal, over Connect, gRPC and gRPC-Web. Responses other than that one failure pass
 * through untouched; the check costs one comparison per response.
 */
export function withUndecodableAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    const contentType = res.header?.get("content-type") ?? "";
    const what = handler.method.input.typeName;
    if (contentType.startsWith("application/grpc-web")) return fixGrpcWeb(res, what);
    if (contentType.startsWith("application/grpc")) return fixGrpc(res, what);
    if (res.status === 500 && contentType.startsWith("application/json")) return fixConnectUnary(res, what);
    if (contentType.startsWith("application/connect+")) return fixConnectStream(res, what);
    return res;
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

/**
 * The error of a binary request body that does not decode as `what`, as withUndecodableAsInvalidArgument
 * makes it on the wire: for a call answered beside connect (services/h2-unary.ts). Others as they are.
 */
export function undecodableAsInvalidArgument(error: ConnectError, what: string): ConnectError {
  const detail = error.code === Code.Internal ? parseFailureMessage(error.rawMessage) : undefined;
  return detail === undefined ? error : new ConnectError(invalidRequestMessage(detail, what), Code.InvalidArgument);
}

function parseFailureMessage(message: string | undefined): string | undefined {
  return message?.startsWith(PARSE_FAILURE) || message === COMPRESSED_ENVELOPE ? message : undefined;
}

function invalidRequestMessage(detail: string, what: string): string {
  if (detail === COMPRESSED_ENVELOPE) return `request message is flagged compressed, but no compression was agreed (no ${what} can be read from it): send it uncompressed`;
  return `request body is not a ${what}: ${detail.slice(PARSE_FAILURE.length).trim()}`;
}

// Connect unary: an error is one small JSON body with an HTTP status.
async function fixConnectUnary(res: UniversalServerResponse, what: string): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  if (res.body && Symbol.asyncIterator in res.body) for await (const chunk of res.body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let error: { code?: string; message?: string } | undefined;
  try {
    error = JSON.parse(bytes.toString("utf8")) as { code?: string; message?: string };
  } catch {
    error = undefined;
  }
  const detail = error?.code === "internal" ? parseFailureMessage(error.message) : undefined;
  if (detail === undefined) return { ...res, body: oneChunk(bytes) };
  const body = Buffer.from(JSON.stringify({ code: "invalid_argument", message: invalidRequestMessage(detail, what) }));
  res.header?.set("content-length", String(body.length));
  return { ...res, status: INVALID_ARGUMENT_HTTP_STATUS, body: oneChunk(body) };
}

// gRPC: the status travels in HTTP trailers. The handler resolves only once the first response chunk
// exists or the call has failed, and a body that does not decode fails it before any chunk, so the
// trailers already hold that failure here.
function fixGrpc(res: UniversalServerResponse, what: string): UniversalServerResponse {
  const trailer = res.trailer;
  if (trailer?.get("grpc-status") !== String(Code.Internal)) return res;
  const detail = parseFailureMessage(decodeGrpcMessage(trailer.get("grpc-message")));
  if (detail === undefined) return res;
  trailer.set("grpc-status", String(Code.InvalidArgument));
  trailer.set("grpc-message", encodeURIComponent(invalidRequestMessage(detail, what)));
  return res;
}

// Connect streaming: the error travels in the end-of-stream envelope (flag 0x02, JSON) of a 200 answer.
// A request that fails to decode produces no message, so that envelope is the first chunk.
function fixConnectStream(res: UniversalServerResponse, what: string): UniversalServerResponse {
  return rewriteFirstChunk(res, (chunk) => {
    const body = envelopeBody(chunk, 0x02);
    if (body === undefined) return chunk;
    let end: { error?: { code?: string; message?: string } };
    try {
      end = JSON.parse(body.toString("utf8")) as typeof end;
    } catch {
      return chunk;
    }
    const detail = end.error?.code === "internal" ? parseFailureMessage(end.error.message) : undefined;
    if (detail === undefined) return chunk;
    return envelope(0x02, Buffer.from(JSON.stringify({ ...end, error: { code: "invalid_argument", message: invalidRequestMessage(detail, what) } }), "utf8"));
  });
}

/** The response with its body's first chunk passed through fix, the rest as it is. */
function rewriteFirstChunk(res: UniversalServerResponse, fix: (chunk: Uint8Array) => Uint8Array): UniversalServerResponse {
  if (!res.body || !(Symbol.asyncIterator in res.body)) return res;
  const body = res.body;
  return {
    ...res,
    body: (async function* () {
      let first = true;
      for await (const chunk of body) {
        yield first ? fix(chunk) : chunk;
        first = false;
      }
    })(),
  };
}

// gRPC-Web: the status travels in a final, uncompressed envelope (flag 0x80) of the body. A request that
// fails to decode produces no message, so that envelope is the first chunk; only that case is looked at.
function fixGrpcWeb(res: UniversalServerResponse, what: string): UniversalServerResponse {
  return rewriteFirstChunk(res, (chunk) => fixGrpcWebTrailer(chunk, what));
}

function fixGrpcWebTrailer(chunk: Uint8Array, what: string): Uint8Array {
  const body = envelopeBody(chunk, 0x80);
  if (body === undefined) return chunk;
  const fields = new Map<string, string>();
  const text = body.toString("latin1");
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  if (fields.get("grpc-status") !== String(Code.Internal)) return chunk;
  const detail = parseFailureMessage(decodeGrpcMessage(fields.get("grpc-message") ?? null));
  if (detail === undefined) return chunk;
  fields.set("grpc-status", String(Code.InvalidArgument));
  fields.set("grpc-message", encodeURIComponent(invalidRequestMessage(detail, what)));
  return envelope(0x80, Buffer.from([...fields].map(([key, value]) => `${key}: ${value}\r\n`).join(""), "latin1"));
}

/** The body of chunk when it is exactly one envelope (flags byte, 4-byte length, body) with these flags. */
function envelopeBody(chunk: Uint8Array, flags: number): Buffer | undefined {
  if (chunk.length < 5 || chunk[0] !== flags) return undefined;
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  return bytes.length === 5 + bytes.readUInt32BE(1) ? bytes.subarray(5) : undefined;
}

/** One envelope of data with these flags. */
function envelope(flags: number, data: Buffer): Buffer {
  const out = Buffer.alloc(5 + data.length);
  out[0] = flags;
  out.writeUInt32BE(data.length, 1);
  data.copy(out, 5);
  return out;
}

function decodeGrpcMessage(value: string | null): string | undefined {
  if (value === null) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
