/**
 * Connect unary calls answered straight on their HTTP/2 stream, beside connect-node's adapter: the
 * server's half of actors/h2-unary.ts.
 *
 * connect-node reaches a handler through Node's HTTP/2 compatibility API and its own conversions
 * (Http2ServerRequest and Response, a URL parsed twice, web Headers each way, async iterables over
 * one buffer, an AbortController whose abort at every stream's close makes a DOMException). Against
 * a real `serve` on this 2-core machine, a NS Fetch of one name cost the server 1.62-2.04 ms of CPU a
 * call back to back that way, and 0.93-1.37 ms this way (bench/README.md, session 15); a follower's
 * delivery waits on one such call (the name update).
 *
 * Only the plainest call is taken here: HTTP/2, POST to a unary method's path, the binary content
 * type, no compression, no Origin (CORS stays with server.ts), nothing the listener refuses unread.
 * Everything else, from a GET to gRPC, goes to connect-node as before. What a call means is still
 * decided by connect's own code: its serialization (and so its size limits and parse errors), its
 * handler context, invokeUnaryImplementation, its timeout parsing, and for a failure its
 * codeToHttpStatus and errorToJsonBytes, as in its unary handler. test/services/h2-unary.test.ts
 * holds each kind of answer against connect-node's.
 */
import { constants, type ServerHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { Code, ConnectError, createHandlerContext, createServiceImplSpec, type ConnectRouter, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import {
  createAsyncIterable,
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  readAllBytes,
  validateUniversalHandlerOptions,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout, trailerMux } from "@connectrpc/connect/protocol-connect";
import type { DescMessage } from "@bufbuild/protobuf";
import { asConnectError, undecodableAsInvalidArgument } from "./connect-errors.js";

/** A unary method this takes, as connect's router mounted it. */
interface UnaryRoute {
  spec: MethodImplSpec & { kind: "unary" };
  serialization: MethodSerializationLookup<DescMessage, DescMessage>;
}

export interface H2UnaryOptions {
  /** As connectNodeAdapter's: the largest request and answer bodies. */
  readMaxBytes?: number;
  writeMaxBytes?: number;
  /** As connectNodeAdapter's: the longest deadline a client may ask for (longer is InvalidArgument). */
  maxTimeoutMs?: number;
  /** The context values of a call on this stream, as connectNodeAdapter's contextValues gives for a request. */
  contextValues: (stream: ServerHttp2Stream) => ContextValues;
}

/** The reason a call's context is aborted with once it has been answered: connect's own abort() makes a DOMException each time. */
const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

export class H2UnaryRoutes {
  /** The largest request body read, as connect-node's adapter reads it (H2UnaryOptions.readMaxBytes, validated). */
  get readMaxBytes(): number {
    return this.handlerOptions.readMaxBytes;
  }

  /** Calls served here so far. */
  calls = 0;
  private readonly routes = new Map<string, UnaryRoute>();
  private readonly handlerOptions: ReturnType<typeof validateUniversalHandlerOptions>;

  constructor(private readonly options: H2UnaryOptions) {
    // The same validation connectNodeAdapter gives its options, with the same inputs (listen()'s).
    this.handlerOptions = validateUniversalHandlerOptions({ readMaxBytes: options.readMaxBytes, writeMaxBytes: options.writeMaxBytes, maxTimeoutMs: options.maxTimeoutMs, acceptCompression: [] });
  }

  /**
   * router, with each service mounted through it also recorded here. A service mounted with options
   * of its own (interceptors, say) is left to connect alone.
   */
  recording(router: ConnectRouter): ConnectRouter {
    const record: ConnectRouter["service"] = (service, impl, serviceOptions) => {
      if (serviceOptions === undefined) {
        const spec = createServiceImplSpec(service, impl);
        for (const method of Object.values(spec.methods)) {
          if (method.kind !== "unary") continue;
          const { binaryOptions, jsonOptions } = this.handlerOptions;
          this.routes.set(`/${service.typeName}/${method.method.name}`, {
            spec: method,
            serialization: createMethodSerializationLookup(method.method, binaryOptions, jsonOptions, this.handlerOptions),
          });
        }
      }
      router.service(service, impl, serviceOptions);
      return recorder;
    };
    const recorder: ConnectRouter = Object.create(router, { service: { value: record } }) as ConnectRouter;
    return recorder;
  }

  /** The route that answers this stream here, or undefined when connect-node's adapter must. */
  routeOf(headers: IncomingHttpHeaders): UnaryRoute | undefined {
    if (headers[":method"] !== "POST" || headers["content-type"] !== "application/proto") return undefined;
    const route = this.routes.get(headers[":path"] ?? "");
    if (route === undefined) return undefined;
    // Compression (refused with its own answer by connect), a CORS caller, a client that waits before
    // its body, and a request connect-node cannot place (no authority) are connect's to answer.
    if (headers["content-encoding"] !== undefined || headers.origin !== undefined || headers.expect !== undefined || headers[":authority"] === undefined) return undefined;
    const timeout = headers["connect-timeout-ms"];
    if (timeout !== undefined && (typeof timeout !== "string" || parseTimeout(timeout, this.handlerOptions.maxTimeoutMs).error)) return undefined;
    return route;
  }

  /**
   * Answers the call on stream: route is routeOf(headers), and body what readBody (body-budget.ts)
   * reads of the stream, begun by the caller, with this.readMaxBytes, as soon as the stream came.
   */
  async serve(route: UnaryRoute, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, body: Promise<Uint8Array[]>): Promise<void> {
    const { spec, serialization } = route;
    this.calls++;
    const requestAbort = new AbortController();
    let answered = false;
    // The client gone before its answer: what connect-node's adapter does at a stream's close, then.
    stream.once("close", () => answered || requestAbort.abort(new ConnectError("the client went away", Code.Canceled)));
    const timeout = headers["connect-timeout-ms"];
    const context = createHandlerContext({
      ...spec,
      service: spec.method.parent,
      requestMethod: "POST",
      protocolName: "connect",
      timeoutMs: typeof timeout === "string" ? parseTimeout(timeout, this.handlerOptions.maxTimeoutMs).timeoutMs : undefined,
      shutdownSignal: this.handlerOptions.shutdownSignal,
      requestSignal: requestAbort.signal,
      requestHeader: webHeaders(headers),
      url: `${"encrypted" in stream.session!.socket ? "https" : "http"}://${headers[":authority"]}${headers[":path"]}`,
      responseHeader: { "content-type": "application/proto" },
      contextValues: this.options.contextValues(stream),
    });
    let status = 200;
    let answerBody: Uint8Array;
    try {
      const length = headers["content-length"];
      // The budget's refusal is ours (TOO_LARGE), answered as connect answers its own.
      const chunks = await body.catch((err: unknown) => {
        throw asConnectError(err);
      });
      const bytes = await readAllBytes(createAsyncIterable(chunks), this.handlerOptions.readMaxBytes, typeof length === "string" ? length : null);
      let input;
      try {
        input = serialization.getI(true).parse(bytes);
      } catch (err) {
        throw err instanceof ConnectError ? undecodableAsInvalidArgument(err, spec.method.input.typeName) : err;
      }
      const output = await invokeUnaryImplementation(spec, context, input, this.handlerOptions.interceptors);
      answerBody = serialization.getO(true).serialize(output);
      context.abort(CALL_ENDED);
    } catch (err) {
      // As connect's unary handler answers a failure.
      context.abort(err);
      const error = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
      status = codeToHttpStatus(error.code);
      context.responseHeader.set("content-type", "application/json");
      error.metadata.forEach((value, key) => context.responseHeader.set(key, value));
      answerBody = errorToJsonBytes(error, this.handlerOptions.jsonOptions);
    }
    answered = true;
    if (stream.destroyed || stream.closed) return;
    const answer: OutgoingHttpHeaders = { ":status": status };
    trailerMux(context.responseHeader, context.responseTrailer).forEach((value, key) => (answer[key] = value));
    answer["content-length"] = String(answerBody.byteLength);
    // As Node's compatibility layer dates every answer (Http2ServerResponse.sendDate).
    answer.date = new Date().toUTCString();
    try {
      stream.respond(answer);
      // A body not read to its end (refused by the budget, or past readMaxBytes: readBody drops the
      // rest) could go on for as long as the client likes: RST_STREAM NO_ERROR once the answer is out
      // asks it to stop sending without making the answer an error (RFC 9113 8.1).
      stream.end(answerBody, () => {
        if (!stream.readableEnded && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
      });
    } catch {
      // Reset by the client between the check above and here: nobody is left to answer.
    }
  }
}

/** A request's headers as web Headers, HTTP/2's pseudo-headers left out: as connect-node gives a handler. */
function webHeaders(headers: IncomingHttpHeaders): Headers {
  const web = new Headers();
  for (const key in headers) {
    if (key.startsWith(":")) continue;
    const value = headers[key];
    if (typeof value === "string") web.append(key, value);
    else if (Array.isArray(value)) for (const each of value) web.append(key, each);
  }
  return web;
}
