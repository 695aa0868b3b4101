import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
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
    const prefix = `${err.code}: `;
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return new ConnectError(message, connectCodeOf[err.code], undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/**
 * Wraps every method of a service implementation so that what it throws leaves as a ConnectError, and
 * reports Internal ones to onInternal. A wrapper rather than an interceptor, so that whoever mounts the
 * services (connectNodeAdapter, createRouterTransport, a framework plugin) gets the right codes
 * without having to remember to configure one.
 */
export function withConnectErrors<T extends DescService>(
  service: T,
  impl: ServiceImpl<T>,
  onInternal?: (err: ConnectError, method: string) => void,
): ServiceImpl<T> {
  const wrapped: Record<string, unknown> = {};
  for (const method of service.methods) {
    const fn = (impl as unknown as Record<string, (...args: unknown[]) => unknown>)[method.localName].bind(impl);
    wrapped[method.localName] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        const error = toConnectError(err);
        if (error.code === Code.Internal) onInternal?.(error, `${service.typeName}/${method.name}`);
        throw error;
      }
    };
  }
  return wrapped as ServiceImpl<T>;
}

// connect-es reports a binary request body that does not decode as Internal ("parse binary: ...",
// protocol/serialization.ts), before any interceptor or handler runs, while its JSON path reports
// InvalidArgument. An undecodable request is the caller's fault, and Internal would send operators
// looking for a bug, so the three wire forms of that one error are rewritten below.
const PARSE_FAILURE = "parse binary:";
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

function parseFailureMessage(message: string | undefined): string | undefined {
  return message?.startsWith(PARSE_FAILURE) ? message : undefined;
}

function invalidRequestMessage(detail: string, what: string): string {
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

// gRPC-Web: the status travels in a final, uncompressed envelope (flag 0x80) of the body. A request that
// fails to decode produces no message, so that envelope is the first chunk; only that case is looked at.
function fixGrpcWeb(res: UniversalServerResponse, what: string): UniversalServerResponse {
  if (!res.body || !(Symbol.asyncIterator in res.body)) return res;
  const body = res.body;
  return {
    ...res,
    body: (async function* () {
      let first = true;
      for await (const chunk of body) {
        yield first ? fixGrpcWebTrailer(chunk, what) : chunk;
        first = false;
      }
    })(),
  };
}

function fixGrpcWebTrailer(chunk: Uint8Array, what: string): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== 0x80) return chunk;
  const length = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).readUInt32BE(1);
  if (chunk.length !== 5 + length) return chunk;
  const fields = new Map<string, string>();
  const text = Buffer.from(chunk.subarray(5)).toString("latin1");
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  if (fields.get("grpc-status") !== String(Code.Internal)) return chunk;
  const detail = parseFailureMessage(decodeGrpcMessage(fields.get("grpc-message") ?? null));
  if (detail === undefined) return chunk;
  fields.set("grpc-status", String(Code.InvalidArgument));
  fields.set("grpc-message", encodeURIComponent(invalidRequestMessage(detail, what)));
  const data = Buffer.from([...fields].map(([key, value]) => `${key}: ${value}\r\n`).join(""), "latin1");
  const envelope = Buffer.alloc(5 + data.length);
  envelope[0] = 0x80;
  envelope.writeUInt32BE(data.length, 1);
  data.copy(envelope, 5);
  return envelope;
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
