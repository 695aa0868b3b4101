// First: protobuf-es looks for Uint8Array.prototype.toBase64 as it loads (see native-base64.ts).
import "./native-base64.js";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { CAS, NS } from "../gen/vac/cas/cas_pb.js";
import { BlockService } from "../gen/remotelog/v1/blocks_pb.js";
import { NameListService, NameWatchService } from "../gen/remotelog/v1/names_pb.js";
import type { ContentStore } from "../core/content-store.js";
import type { NameStore } from "../core/name-store.js";
import { CasService } from "./cas-service.js";
import type { ReadBudget } from "./read-budget.js";
import { BlockServiceImpl, defaultBlockLimits, type BlockLimits } from "./block-service.js";
import { NsService, defaultNsLimits, type NsLimits } from "./ns-service.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { asConnectError, withConnectErrors, withUndecodableAsInvalidArgument, type CallObserver, type CodeName } from "./connect-errors.js";
import { isRemoteLogError, RemoteLogError } from "../core/errors.js";
import { HealthService } from "./health-service.js";
import { ServerInfoService } from "../gen/remotelog/v1/info_pb.js";
import { ServerInfoServiceImpl } from "./info-service.js";
import { GcService } from "../gen/remotelog/v1/gc_pb.js";
import { GcServiceImpl } from "./gc-service.js";
import { canSweep } from "../core/content-store.js";
import { canList } from "../core/name-store.js";
import { ServerMetrics } from "./metrics.js";
import { CONNECTION_WINDOW, STREAM_WINDOW } from "../core/http2-windows.js";
import { openFilesLimit } from "../core/descriptors.js";
import { BodyBudget, defaultBodyLimits, type BodyLimits } from "./body-budget.js";
import { corsPolicy } from "./cors.js";
import { Gateway, HeadIndex, type GatewayOptions, type HttpService } from "./gateway.js";
import { Authority, peerKey, type WritePolicy } from "./auth.js";
import { Explorer, type ExplorerOptions } from "./explorer.js";
import { DEFAULT_LIST_PAGE, NameListServiceImpl } from "./name-list-service.js";
import { createContextValues } from "@connectrpc/connect";
import { H2UnaryRoutes } from "./h2-unary.js";
import { clientOf } from "./client-address.js";

/** Every limit the services enforce; see each service for what it means. */
export interface Limits extends BlockLimits, NsLimits {}

export const defaultLimits: Limits = { ...defaultBlockLimits, ...defaultNsLimits };

/** The largest request body a server reads: room for a batch of many blocks. */
export const DEFAULT_READ_MAX_BYTES = 64 << 20;

export interface RouteDeps {
  /** Serves vac.cas.CAS and remotelog.v1.BlockService when given. */
  content?: ContentStore;
  /** Serves vac.cas.NS when given. */
  names?: NameStore;
  limits?: Partial<Limits>;
  /** Bytes of blocks read per client address per second (services/read-budget.ts): the same one listen() holds calls back by. */
  readBudget?: ReadBudget;
  /** Who may write and how much (services/auth.ts); open to all when absent. */
  write?: WritePolicy;
  /** Shorthand for write.requireSigned. */
  requireSigned?: boolean;
  /** Admin tokens that may call gc on this listener; without one gc is refused here (see adminRoutes). */
  adminTokens?: string[];
  /** gc's grace in milliseconds, the server's setting: a request may lengthen it, never shorten it. */
  gcGraceMs?: number;
  /** The largest request body the server reads (ListenOptions.readMaxBytes), as advertised to clients. */
  readMaxBytes?: number;
  /** Told about every failure that reaches a client as Internal, whose cause the client never sees. */
  onInternalError?: (err: Error, method: string) => void;
  /** Told about every call once it ends, with its final code ("OK", "NotFound") and duration. */
  onCallEnd?: (method: string, code: CodeName, seconds: number) => void;
  /**
   * Also answer IPFS's HTTP protocols on the same port (services/gateway.ts): the Trustless Gateway
   * (/ipfs/, /ipns/) and Delegated Routing V1 (/routing/v1/), whose PUT is NS.Update itself.
   */
  gateway?: boolean;
  /** Serve the live log explorer's page at /explorer (services/explorer.ts) from these built files. */
  explorer?: ExplorerOptions;
  /**
   * Mount remotelog.v1.NameListService: the NS's names, a bounded page at a time (what the explorer
   * lists). Off by default: it makes the names enumerable, which an operator may not want.
   */
  listNames?: boolean;
}

/** What listen() tells the routes about the server they are mounted on. */
export interface ServerContext {
  /** Aborted as soon as the server starts closing. */
  closing: AbortSignal;
  /** The server's metrics, when it keeps any. */
  metrics?: ServerMetrics;
  /** Serves a plain HTTP service beside Connect, for the paths it claims (the IPFS gateway). */
  mountHttp?: (service: HttpService) => void;
}

/**
 * The services to mount on a Connect router, each wrapped so that what it throws reaches the client
 * with the code of services/connect-errors.ts. Only the services whose store is given are mounted, so
 * that a CAS and an NS can run as separate processes; grpc.health.v1.Health is always mounted, and
 * reports the others SERVING until the server starts closing. Mounted by listen(), every call is
 * counted in the server's metrics and the stores' sizes are reported there.
 */
export function routes(deps: RouteDeps): (router: ConnectRouter, server?: ServerContext) => void {
  const limits = { ...defaultLimits, ...deps.limits };
  // The gateway finds head pages by CID: every service writes names through its index.
  const heads = deps.gateway && deps.names ? new HeadIndex(deps.names) : undefined;
  if (heads) deps = { ...deps, names: heads.store };
  return (router, server) => {
    const metrics = server?.metrics;
    if (heads?.replaced) metrics?.watchReplacedHeads(heads.replaced);
    const onCallEnd = metrics
      ? (method: string, code: CodeName, seconds: number) => {
          metrics.observeCall(method, code, seconds);
          deps.onCallEnd?.(method, code, seconds);
        }
      : deps.onCallEnd;
    const observer: CallObserver = { onInternal: deps.onInternalError, onCallEnd, onLimit: metrics && ((limit) => metrics.limitHit(limit)) };
    const mounted: string[] = [];
    let updateName: GatewayOptions["updateName"];
    const content = deps.content;
    const storedBytes = content?.stats && (() => content.stats!().bytes);
    const authority = new Authority({ requireSigned: deps.requireSigned, ...deps.write, adminTokens: deps.adminTokens, storedBytes });
    const blocks = deps.content ? new BlockServiceImpl(deps.content, limits, { authority, names: deps.names, readBudget: deps.readBudget }) : undefined;
    if (deps.content) {
      router.service(CAS, withConnectErrors(CAS, new CasService(deps.content, limits, authority, deps.readBudget), observer));
      router.service(BlockService, withConnectErrors(BlockService, blocks!, observer));
      mounted.push(CAS.typeName, BlockService.typeName);
      metrics?.watchContent(deps.content);
    }
    if (deps.names) {
      const ns = new NsService(deps.names, limits, {
        authority,
        closing: server?.closing,
        addBlocks: blocks && ((list) => blocks.storeBlocks(list)),
        onWatchesEvicted: metrics && ((watches) => metrics.watchesEvicted(watches)),
      });
      router.service(NS, withConnectErrors(NS, ns, observer));
      router.service(NameWatchService, withConnectErrors(NameWatchService, { watchMany: (request, context) => ns.watchMany(request, context) }, observer));
      mounted.push(NS.typeName, NameWatchService.typeName);
      updateName = (request, context) => ns.update(request, context);
      metrics?.watchNames(deps.names);
    }
    // gc runs in the process that holds the stores (remotelog gc --server); only the fs CAS supports it.
    // On this listener it is for admin-token holders only; adminRoutes() serves it to all who reach that one.
    if (canSweep(deps.content) && canList(deps.names)) {
      const gc = new GcServiceImpl(deps.content, deps.names, deps.gcGraceMs);
      const guarded: typeof gc = Object.assign(Object.create(gc) as typeof gc, {
        collect: (request: Parameters<typeof gc.collect>[0], context?: HandlerContext) => {
          authority.checkAdmin(context, "GcService/Collect");
          return gc.collect(request);
        },
      });
      router.service(GcService, withConnectErrors(GcService, guarded, observer));
    }
    if (deps.listNames && canList(deps.names)) {
      router.service(NameListService, withConnectErrors(NameListService, new NameListServiceImpl(deps.names, DEFAULT_LIST_PAGE, limits.maxNameBytes), observer));
      mounted.push(NameListService.typeName);
    }
    if (deps.explorer) server?.mountHttp?.(new Explorer(deps.explorer));
    if (deps.gateway) {
      const budget = deps.readBudget;
      const chargeRead = budget ? (req: http.IncomingMessage | http2.Http2ServerRequest, bytes: number) => budget.charge(peerAddress(req), bytes) : undefined;
      server?.mountHttp?.(new Gateway({ content: deps.content, names: deps.names, heads, updateName, maxNameBytes: limits.maxNameBytes, onInternalError: deps.onInternalError, chargeRead }));
    }
    const info = new ServerInfoServiceImpl({
      maxBlockBytes: deps.content ? limits.maxBlockBytes : 0,
      maxBatchBlocks: deps.content ? limits.maxBatchBlocks : 0,
      maxResponseBytes: deps.content ? Math.max(limits.maxResponseBytes, limits.maxBlockBytes) : 0,
      maxRequestBytes: deps.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
      maxWatchNames: deps.names ? limits.maxWatchNames : 0,
    });
    router.service(ServerInfoService, withConnectErrors(ServerInfoService, info, observer));
    router.service(Health, withConnectErrors(Health, new HealthService(mounted, server?.closing, deps.content?.stats && (() => deps.content!.stats!().quarantinedPacks ?? 0)), observer));
  };
}

/**
 * The operator's listener (serve --admin-listen): gc, health and the server's limits, to whoever
 * reaches it, which is why it listens on loopback or a Unix socket only.
 */
export function adminRoutes(deps: Pick<RouteDeps, "content" | "names" | "gcGraceMs" | "onInternalError" | "onCallEnd">): (router: ConnectRouter, server?: ServerContext) => void {
  return (router, server) => {
    const observer: CallObserver = { onInternal: deps.onInternalError, onCallEnd: deps.onCallEnd };
    const mounted: string[] = [];
    if (canSweep(deps.content) && canList(deps.names)) {
      router.service(GcService, withConnectErrors(GcService, new GcServiceImpl(deps.content, deps.names, deps.gcGraceMs), observer));
      mounted.push(GcService.typeName);
    }
    router.service(Health, withConnectErrors(Health, new HealthService(mounted, server?.closing), observer));
  };
}

/** The connection limits of listen(); each is a serve flag. */
export interface ConnectionLimits {
  /** Connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Connections open at once from one client address; more from it are closed as they arrive. */
  maxConnectionsPerAddress: number;
  /** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /** How long an HTTP/1.1 request may take to send its headers. */
  headersTimeoutMs: number;
  /** How long a connection with no request in flight stays open. */
  idleTimeoutMs: number;
  /** Connections the kernel queues before they are accepted (capped by net.core.somaxconn). */
  backlog: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  maxConnections: 10_000,
  // Half the server: one address cannot take it all, and a burst of 5,000 from one address still gets in.
  maxConnectionsPerAddress: 5_000,
  maxConcurrentStreams: 256,
  headersTimeoutMs: 20_000,
  idleTimeoutMs: 60_000,
  backlog: 8_192,
};

/**
 * The connection budgets listen() takes where not told: defaultConnectionLimits, but never more
 * connections than half the descriptors this process may open (openFiles), nor from one client
 * address more than a quarter. Past the descriptor limit the server can accept no one and open no
 * pack, so a stranger's idle connections filled it for every client (under `ulimit -n 256`, 300 from
 * one address did). The other half is left to packs, the NS and writes.
 */
export function connectionLimitsFor(openFiles: number | undefined): Pick<ConnectionLimits, "maxConnections" | "maxConnectionsPerAddress"> {
  const forConnections = openFiles === undefined ? Infinity : Math.max(2, Math.floor(openFiles / 2));
  return {
    maxConnections: Math.min(defaultConnectionLimits.maxConnections, forConnections),
    maxConnectionsPerAddress: Math.min(defaultConnectionLimits.maxConnectionsPerAddress, Math.floor(forConnections / 2)),
  };
}

export interface ListenOptions extends Partial<ConnectionLimits>, Partial<BodyLimits> {
  /** Address to bind; 127.0.0.1 unless the services are meant to be reachable from elsewhere. */
  host: string;
  /** 0 picks a free port; the one bound is in the result. */
  port: number;
  /** A Unix socket to listen on instead of host and port. */
  path?: string;
  /** Serve HTTPS (HTTP/2 through ALPN, HTTP/1.1 beside it) with this certificate chain and key, PEM. */
  tls?: { cert: Buffer | string; key: Buffer | string };
  /** The largest response message written; larger ones fail with ResourceExhausted. */
  writeMaxBytes?: number;
  /**
   * Requests that will be refused whatever they carry (an anonymous Add on a server closed to anonymous
   * writes, services/auth.ts refusesUnread): answered from their headers alone, before their body is
   * read (the method sees an empty message and refuses it), and the rest of the body is refused too:
   * HTTP/2 resets the stream (NO_ERROR, RFC 9113 8.1), HTTP/1.1 closes the connection. A flood of them
   * costs the server their headers only.
   */
  refusesUnread?: (path: string, authorization: string | undefined) => boolean;
  /** Mounts the services; routes() gives one. Called once, with what it needs to know about this server. */
  routes: (router: ConnectRouter, server: ServerContext) => void;
  /**
   * Keep Prometheus metrics of this server's calls and stores, and of the process, and serve them to
   * a GET of /metrics on the same port, over HTTP/1.1 and HTTP/2. Default off.
   */
  metrics?: boolean;
  /** Told when a scrape of /metrics fails (a store that cannot be read); the scraper gets a 500. */
  onMetricsError?: (err: Error) => void;
  /** The largest request body read; larger ones fail with ResourceExhausted. Default 64 MiB. */
  readMaxBytes?: number;
  /**
   * Holds back a call that reads blocks (GetMany, CAS Get) of a client address in debt to this budget,
   * before its body is read, until the debt is paid back; the handlers charge what they read.
   */
  readBudget?: ReadBudget;
  /** How long close() lets calls in flight finish before it cuts their connections. Default 2 s. */
  closeGraceMs?: number;
  /** How long a new connection may take to send its first bytes. Default 10 s. */
  firstBytesTimeoutMs?: number;
  /** Told about failures to accept connections (out of file descriptors, say); the server carries on. */
  onError?: (err: Error) => void;
  /**
   * Origins whose pages may call the Connect API from a browser (services/cors.ts), or "*" for all.
   * Default none: no CORS header is sent, so browsers refuse pages of other origins the answers.
   */
  corsOrigins?: readonly string[];
  /**
   * Answer plain binary Connect unary calls over HTTP/2 on their stream (services/h2-unary.ts), the
   * rest through connect-node. Default true; false sends every call through connect-node (to compare
   * the two, or to rule the direct path out).
   */
  directUnary?: boolean;
}

export interface Listening {
  port: number;
  /** http://host:port (https:// with TLS), the base URL clients use whatever protocol they speak; unix:PATH on a Unix socket. */
  url: string;
  /**
   * Stops accepting connections, closes idle keep-alive connections and HTTP/2 sessions at once, lets
   * calls in flight finish for up to closeGraceMs, then cuts what is left. Idempotent.
   */
  close(): Promise<void>;
  /** Calls answered on their HTTP/2 stream so far (ListenOptions.directUnary): how a test knows which path answered. */
  directUnaryCalls(): number;
}

function ignoreStreamError(): void {}

/** How long an address past its budget of refused HTTP/1.1 bodies waits for each refusal (see refusesUnread). */
const REFUSAL_PENALTY_MS = 250;

/** How long a client waiting on a stream has to answer the server's PING before its connection is dropped (at most idleTimeoutMs). */
const PING_TIMEOUT_MS = 20_000;

/** Bytes of a refused HTTP/1.1 body read and dropped before the connection is closed on the rest (see refusesUnread). */
const SMALL_BODY_BYTES = 64 << 10;

/** New connections whose first bytes are read per turn of the event loop (a read, a look at them). */
const PER_TURN_ADMITTED = 64;
/**
 * New connections handed to the HTTP server per turn of the event loop (or, with TLS, whose handshakes
 * start). Each costs about half a millisecond of CPU to answer its first request, so a turn holds
 * about 2 ms of such work before the calls of open connections get their turn. make bench-abuse's
 * burst on 2 cores, honest p99 against quiet: 16 a turn 3.2-4.5x, 8 a turn 2.7-3.2x, 4 a turn
 * 2.0-2.8x, with all 5,000 answered either way.
 */
const PER_TURN_SERVED = 4;

/**
 * Items waiting their turn, by client address: each turn of the event loop (setImmediate) runs up to
 * perTurn of them, taking one from each address in line in turn. run() says whether an item counted
 * (false: it was skipped, say a socket closed while it waited).
 */
class TurnQueue<T> {
  private readonly waiting = new Map<string, { items: T[]; next: number }>();
  private scheduled = false;

  constructor(
    private readonly perTurn: number,
    private readonly run: (item: T) => boolean,
  ) {}

  push(address: string, item: T): void {
    let queue = this.waiting.get(address);
    if (!queue) this.waiting.set(address, (queue = { items: [], next: 0 }));
    queue.items.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.turn);
    }
  }

  /** Empties the queue, returning what waited. */
  clear(): T[] {
    const left = [...this.waiting.values()].flatMap((queue) => queue.items.slice(queue.next));
    this.waiting.clear();
    return left;
  }

  private readonly turn = () => {
    let ran = 0;
    while (ran < this.perTurn && this.waiting.size > 0) {
      // The first address in line gives one item and goes to the back of the line.
      const [address, queue] = this.waiting.entries().next().value!;
      const item = queue.items[queue.next++];
      this.waiting.delete(address);
      if (queue.next < queue.items.length) this.waiting.set(address, queue);
      if (this.run(item)) ran++;
    }
    this.scheduled = this.waiting.size > 0;
    if (this.scheduled) setImmediate(this.turn);
  };
}

/**
 * The longest deadline a client may ask for: the most a Node timer holds (~24.8 days). A longer one
 * (valid on the wire: `connect-timeout-ms` takes 10 digits, `grpc-timeout` 8 digits of hours) became a
 * 1 ms timer, with a TimeoutOverflowWarning on the server's stderr, and the call ended at once.
 * Longer is InvalidArgument, saying this limit.
 */
const MAX_DEADLINE_MS = 2 ** 31 - 1;

/** The methods that read blocks for their caller, and so are held back by a ReadBudget. */
const READS_BLOCKS = new Set([`/${BlockService.typeName}/GetMany`, `/${CAS.typeName}/Get`]);

/** The client address of a connection: what the limits per address count by (auth.ts Peer.address). */
/** The client a socket's per-address limits count (clientOf: an IPv6 client by its /64). */
function addressOf(socket: net.Socket | undefined): string {
  return clientOf(socket?.remoteAddress);
}

/** The client address of a request, as the services see it. */
function peerAddress(req: http.IncomingMessage | http2.Http2ServerRequest): string {
  return addressOf(req.socket);
}

// Every HTTP/2 connection with prior knowledge starts with these 24 bytes (RFC 9113, 3.4).
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Serves the routes over Connect, gRPC and gRPC-Web on one port, over HTTP/1.1 and cleartext HTTP/2
 * (prior knowledge) alike. Node's cleartext HTTP/2 server does not fall back to HTTP/1.1, so a plain
 * TCP server looks at the first bytes of each connection and hands it to whichever server speaks
 * its protocol; both share one Connect handler.
 */
export async function listen(options: ListenOptions): Promise<Listening> {
  const graceMs = options.closeGraceMs ?? 2_000;
  const firstBytesTimeoutMs = options.firstBytesTimeoutMs ?? 10_000;
  const closing = new AbortController();
  const metrics = options.metrics ? new ServerMetrics() : undefined;
  const httpServices: HttpService[] = [];
  const limits = { ...defaultConnectionLimits, ...connectionLimitsFor(openFilesLimit()), ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as ConnectionLimits;
  const limitHit = (limit: string, times = 1) => metrics?.limitHit(limit, times);
  const readMaxBytes = options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  // Who is calling, for the limits per client address and per connection (services/auth.ts Peer).
  const peerValues = (address: string, connection: object) => createContextValues().set(peerKey, { address, connection });
  const direct =
    options.directUnary === false
      ? undefined
      : new H2UnaryRoutes({
          readMaxBytes,
          writeMaxBytes: options.writeMaxBytes,
          maxTimeoutMs: MAX_DEADLINE_MS,
          contextValues: (stream) => peerValues(addressOf(stream.session?.socket as net.Socket | undefined), stream.session ?? stream),
        });
  const connectHandler = connectNodeAdapter({
    contextValues: (req) => peerValues(peerAddress(req), ("stream" in req ? req.stream.session ?? req.socket : req.socket) as object),
    writeMaxBytes: options.writeMaxBytes,
    maxTimeoutMs: MAX_DEADLINE_MS,
    // No compression either way. Blocks are mostly encrypted, so compressing them buys nothing, and
    // connect-node's default (gzip and brotli at brotli's top quality) let any caller who sends
    // `Accept-Encoding: br` buy ~0.4 s of server CPU per MiB of response: seconds per GetMany.
    // Compressed requests are refused (Unimplemented, naming the encoding) rather than inflated.
    acceptCompression: [],
    routes: (router) => {
      options.routes(direct ? direct.recording(router) : router, { closing: closing.signal, metrics, mountHttp: (service) => httpServices.push(service) });
      // connectNodeAdapter reads router.handlers after routes() returns, so replacing them here wraps
      // every method, whichever service mounted it.
      router.handlers.forEach((handler, index) => (router.handlers[index] = withUndecodableAsInvalidArgument(handler)));
    },
    readMaxBytes,
  });
  const bodiesRead = new RefusedBodyBudget();
  const bodies = new BodyBudget(
    { maxBodyBytes: options.maxBodyBytes ?? defaultBodyLimits.maxBodyBytes, maxBodyBytesPerAddress: options.maxBodyBytesPerAddress ?? defaultBodyLimits.maxBodyBytesPerAddress },
    (limit) => limitHit(limit),
    // As long as a connection may sit idle: a body that sends nothing for as long is not coming.
    limits.idleTimeoutMs,
  );
  const cors = options.corsOrigins && options.corsOrigins.length > 0 ? corsPolicy(options.corsOrigins) : undefined;
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (res instanceof http.ServerResponse) closeIfAnsweredEarly(req as http.IncomingMessage, res);
    if (metrics && (req.method === "GET" || req.method === "HEAD") && pathOf(req.url) === METRICS_PATH) {
      serveMetrics(metrics, req.method, res, options.onMetricsError);
      return;
    }
    const path = pathOf(req.url);
    const service = httpServices.find((candidate) => candidate.handles(path));
    if (service) {
      // A body (the gateway's routing PUT) is read and counted as a call's is: see readBody.
      if (req.method !== "GET" && req.method !== "HEAD" && req.method !== "OPTIONS") readFirst(req, res, service.maxBodyBytes ?? readMaxBytes, asServiceError);
      // A gateway's block read waits its turn as GetMany does: it bypassed the budget.
      if (service.readsBlocks?.(path)) admitRead(path, peerAddress(req), res, () => service.handle(req, res), true);
      else service.handle(req, res);
      return;
    }
    // Before any refusal, so that a page of an allowed origin can read why it was refused.
    if (cors?.(req, res)) return;
    if (options.refusesUnread?.(path, req.headers.authorization)) {
      // HTTP/1.1 cannot leave a body unread without closing the connection, and a client still writing
      // it may then meet the reset before the answer. So up to 64 KiB of a refused body is read and
      // dropped (a whole one for the first few of an address, so that a client that forgot its token
      // hears why), and the answer goes out once the body ends or passes that: then the connection is
      // closed with the rest unread. Past its budget, an address waits REFUSAL_PENALTY_MS for each
      // such answer, reading nothing meanwhile, so that a flood of them slows to a trickle. A client
      // that sent "Expect: 100-continue" never sends its body.
      if (req instanceof http.IncomingMessage && !req.headers.expect && !req.complete) {
        const address = peerAddress(req);
        discardBody(req, SMALL_BODY_BYTES)
          .then((ended) => ended || (bodiesRead.take(address) ? discardBody(req, readMaxBytes) : new Promise((resolve) => setTimeout(resolve, REFUSAL_PENALTY_MS))))
          .then(() => {
            refuseUnread(req, res);
            dispatchToConnect(req, res);
          });
        return;
      }
      refuseUnread(req, res);
    } else {
      readFirst(req, res, readMaxBytes, asConnectError);
    }
    admitRead(path, peerAddress(req), res, () => dispatchToConnect(req, res));
  };
  /**
   * Reads req's body now, before the request waits its turn (admitRead), counted in the body budget
   * until the answer is out (see readBody), for its reader to take as withBody gives it.
   */
  const readFirst = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, limit: number, failure: (err: unknown) => unknown) => {
    withBody(req, bodies.read(req, peerAddress(req), limit, res).chunks, failure);
    closeUnreadAfterAnswer(req, res);
  };
  /** Runs serve, at once unless path reads blocks for an address in debt to the read budget. */
  const admitRead = (path: string, address: string, closes: { once(event: "close", listener: () => void): unknown }, serve: () => void, readsBlocks = READS_BLOCKS.has(path)) => {
    if (options.readBudget && readsBlocks) {
      const { held, ticket } = options.readBudget.admit(address, serve);
      // Over when the answer is sent or the stream is cut; a caller gone while held never starts.
      closes.once("close", ticket.finish);
      if (held) limitHit("read-rate-per-address");
      return;
    }
    serve();
  };
  const dispatchToConnect = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    try {
      connectHandler(req, res);
    } catch {
      // The adapter throws, outside any promise, on a request it cannot place, such as HTTP/1.0
      // without a Host header. Left alone that would take the whole process down.
      if (!res.headersSent) res.writeHead(400);
      res.end();
    }
  };

  const h1 = http.createServer(
    { headersTimeout: limits.headersTimeoutMs, keepAliveTimeout: limits.idleTimeoutMs, connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs) },
    handler,
  );
  // A client that asks before sending its body (Expect: 100-continue, as curl does for large ones) is
  // told to go on, unless the request is refused whatever its body: then it never sends it.
  const checkContinue = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (!options.refusesUnread?.(pathOf(req.url), req.headers.authorization)) res.writeContinue();
    handler(req, res);
  };
  h1.on("checkContinue", checkContinue);
  // Node's own answer to a client error, plus a count of the timeouts in /metrics.
  h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
    if (timeout) limitHit("headers-timeout");
    if (socket.writable && !(socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
      const status = timeout ? "408 Request Timeout" : err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy();
  });
  // Node starts tracking connections (idle ones for closeIdleConnections, slow ones for
  // headersTimeout and requestTimeout) on 'listening'; this server never listens itself.
  h1.emit("listening");
  // Flow-control windows that hold a round trip's worth of uploads at full speed.
  const h2 = http2.createServer({ settings: { initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: limits.maxConcurrentStreams } }, handler);
  h2.on("checkContinue", checkContinue);
  // Node's compatibility layer is the h2 server's one "stream" listener (it emits "request"). With
  // directUnary, the plain unary calls it would pass on are answered on their stream instead, after the
  // same checks as handler's: not a path of an HTTP service, nothing refused unread, the read budget.
  const compatListeners = h2.listeners("stream");
  if (direct && compatListeners.length === 1) {
    const toCompat = compatListeners[0] as (...args: unknown[]) => void;
    h2.removeListener("stream", toCompat);
    h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      const route = direct.routeOf(headers);
      const path = headers[":path"] ?? "";
      if (route === undefined || httpServices.some((service) => service.handles(path)) || options.refusesUnread?.(path, headers.authorization)) {
        toCompat(stream, headers, ...rest);
        return;
      }
      // A reset connection errors its streams. The call ends at the stream's close either way, but an
      // error nobody listens for ends the process: Node's compatibility layer listens for it on the
      // streams it takes, and so must this.
      stream.on("error", ignoreStreamError);
      const address = addressOf(stream.session?.socket as net.Socket | undefined);
      // Read now, before the request waits its turn (admitRead): see readBody.
      const { chunks, release } = bodies.read(stream, address, direct.readMaxBytes, stream);
      admitRead(path, address, stream, () => {
        direct
          .serve(route, stream, headers, chunks)
          .catch(() => {
            if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
          })
          .finally(release);
      });
    });
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.setLocalWindowSize(CONNECTION_WINDOW);
    session.once("close", () => sessions.delete(session));
    // Idle means no stream open: a quiet Watch stream is a client waiting, not an idle connection.
    let open = 0;
    // nghttp2 refuses a stream past maxConcurrentStreams itself (RST_STREAM REFUSED_STREAM) and Node is
    // never told; the client's stream ids, odd and increasing, show it: the ids skipped before the next
    // stream that is served were refused. (Those refused after the last one served go uncounted.)
    let lastStreamId = -1;
    session.on("stream", (stream) => {
      const id = stream.id ?? lastStreamId + 2;
      const skipped = (id - lastStreamId) / 2 - 1;
      if (skipped > 0) limitHit("max-concurrent-streams", skipped);
      lastStreamId = id;
      open++;
      stream.once("close", () => open--);
    });
    // session.setTimeout's callback is a once listener, and the timer is armed again only by stream
    // activity: a session whose first quiet spell came with a Watch open was never timed out again, and
    // was never closed when idle later. A listener of its own, and the timer armed again by hand.
    session.setTimeout(limits.idleTimeoutMs);
    session.on("timeout", () => {
      if (open === 0) {
        limitHit("idle-timeout");
        session.close();
        return;
      }
      // A client waiting on a stream is asked whether it is still there. One gone without a word (a NAT
      // mapping dropped, a laptop shut) held its watches, counted against max-watches-per-address,
      // until the server restarted. An answer arms the timer for the next quiet spell.
      const gone = setTimeout(() => {
        limitHit("idle-timeout");
        session.destroy();
      }, Math.min(limits.idleTimeoutMs, PING_TIMEOUT_MS)).unref();
      const answered = (err: Error | null) => {
        clearTimeout(gone);
        if (!err && !session.closed && !session.destroyed) session.setTimeout(limits.idleTimeoutMs);
      };
      try {
        if (!session.ping(answered)) clearTimeout(gone);
      } catch {
        clearTimeout(gone); // closed meanwhile
      }
    });
  });
  // A broken HTTP/2 connection concerns that client alone; the session is destroyed either way.
  h2.on("sessionError", () => {});

  const sockets = new Set<net.Socket>();
  const sniffing = new Set<net.Socket>();
  const perAddress = new Map<string, number>();
  // A burst of thousands of connections arrives within a few turns of the event loop. Read and served
  // at once, their first requests would all be answered before any other connection's next one,
  // stalling every call in flight for a second or more. So new connections wait their turn twice, in
  // queues that serve a few a turn, round-robin by client address, between which the calls of open
  // connections go on: accepted paused (pauseOnConnect), they are admitted (their first bytes read)
  // PER_TURN_ADMITTED a turn; sniffed, they are handed to the HTTP/1.1 or HTTP/2 server, where their
  // requests cost the most, PER_TURN_SERVED a turn. A burst from one address does not hold up another
  // address's new connections either.
  const admission = new TurnQueue<net.Socket>(options.tls ? PER_TURN_SERVED : PER_TURN_ADMITTED, (socket) => {
    if (closing.signal.aborted || socket.destroyed) return false;
    if (tlsServer) tlsServer.emit("connection", socket);
    else dispatch(socket);
    return true;
  });
  const handOff = new TurnQueue<{ socket: net.Socket; isHttp2: boolean }>(PER_TURN_SERVED, ({ socket, isHttp2 }) => {
    if (closing.signal.aborted || socket.destroyed) return false;
    if (isHttp2) {
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
    return true;
  });
  const onConnection = (socket: net.Socket) => {
    const address = addressOf(socket);
    const fromAddress = perAddress.get(address) ?? 0;
    const refusedBy = sockets.size >= limits.maxConnections ? "max-connections" : fromAddress >= limits.maxConnectionsPerAddress ? "max-connections-per-address" : undefined;
    if (refusedBy !== undefined || closing.signal.aborted) {
      if (refusedBy !== undefined) limitHit(refusedBy);
      socket.destroy();
      return;
    }
    sockets.add(socket);
    perAddress.set(address, fromAddress + 1);
    socket.once("close", () => {
      sockets.delete(socket);
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left === 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
    admission.push(address, socket);
  };
  // Nagle's algorithm holds back the small frames of a unary call until the last ones are acked, which
  // on loopback cost about a millisecond per call; calls here are latency-bound, never many tiny writes.
  const tcp = net.createServer({ noDelay: true, pauseOnConnect: true }, onConnection);
  let tlsServer: tls.Server | undefined;
  if (options.tls) {
    // Never listens itself: it takes the connections the accept queue admits. ALPN picks the
    // protocol, so no sniffing: h2 to the HTTP/2 server, anything else to HTTP/1.1.
    tlsServer = tls.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: ["h2", "http/1.1"],
      handshakeTimeout: firstBytesTimeoutMs,
      noDelay: true,
    } as tls.TlsOptions);
    tlsServer.on("secureConnection", (socket: tls.TLSSocket) => {
      if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
      else h1.emit("connection", socket);
    });
    tlsServer.on("tlsClientError", (err: NodeJS.ErrnoException) => {
      if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT") limitHit("first-bytes-timeout");
    });
  }

  function dispatch(socket: net.Socket): void {
    sniffing.add(socket);
    let seen: Buffer = Buffer.alloc(0);
    const done = () => {
      sniffing.delete(socket);
      socket.off("data", onData);
      socket.off("end", onGone);
      socket.off("error", onGone);
      socket.off("timeout", onGone);
      socket.setTimeout(0);
    };
    const onGone = () => {
      done();
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, HTTP2_PREFACE.length);
      const isHttp2 = seen.compare(HTTP2_PREFACE, 0, n, 0, n) === 0;
      // A preface may arrive in pieces: wait until it is whole or has stopped matching.
      if (isHttp2 && seen.length < HTTP2_PREFACE.length) return;
      done();
      // Paused, so that the bytes put back wait for the new owner instead of flowing to no listener.
      // The HTTP/2 session reads them on its next tick; the HTTP/1.1 server needs the flow restarted.
      socket.pause();
      socket.unshift(seen);
      handOff.push(addressOf(socket), { socket, isHttp2 });
    };
    socket.on("data", onData);
    // Accepted paused (pauseOnConnect): its first bytes are read from now on.
    socket.resume();
    socket.once("end", onGone);
    socket.once("error", onGone);
    socket.setTimeout(firstBytesTimeoutMs);
    socket.once("timeout", () => {
      limitHit("first-bytes-timeout");
      onGone();
    });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      const where = options.path !== undefined ? { path: options.path } : { port: options.port, host: options.host };
      // A deep backlog, so that a burst of connections waits to be accepted instead of being reset.
      tcp.listen({ ...where, backlog: limits.backlog }, () => {
        tcp.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    h1.close();
    throw err;
  }
  // After listen, an 'error' is a failed accept: it costs one connection, and must not end the process.
  tcp.on("error", (err) => options.onError?.(err));
  const port = options.path !== undefined ? 0 : (tcp.address() as net.AddressInfo).port;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const url = options.path !== undefined ? `unix:${options.path}` : `${options.tls ? "https" : "http"}://${host}:${port}`;

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      // First, so that health watchers hear NOT_SERVING while their connections are still open.
      closing.abort();
      const drained = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const socket of sniffing) socket.destroy();
      for (const socket of admission.clear()) socket.destroy();
      for (const { socket } of handOff.clear()) socket.destroy();
      for (const session of sessions) session.close();
      // Keep-alive connections busy now turn idle later: keep closing them while calls finish.
      h1.closeIdleConnections();
      const sweeper = setInterval(() => h1.closeIdleConnections(), 20);
      const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([drained, grace]);
      clearInterval(sweeper);
      h1.close();
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      await drained;
    })());

  return { port, url, close, directUnaryCalls: () => direct?.calls ?? 0 };
}

const METRICS_PATH = "/metrics";

/**
 * Reads a request body, keeping none of it, until it ends (true) or passes maxBytes more (false: the
 * rest is left unread, the request paused).
 */
function discardBody(req: http.IncomingMessage, maxBytes: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (req.complete) return resolve(true);
    let bytes = 0;
    const done = (ended: boolean) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onEnd);
      req.off("error", onEnd);
      resolve(ended);
    };
    const onEnd = () => done(true);
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        req.pause();
        done(false);
      }
    };
    req.on("data", onData);
    req.resume();
    req.once("end", onEnd);
    req.once("close", onEnd);
    req.once("error", onEnd);
  });
}

/**
 * How many refused HTTP/1.1 request bodies each client address gets read whole per minute (see
 * refusesUnread in listen). Counted in fixed windows: the whole count starts again each minute.
 */
class RefusedBodyBudget {
  private readonly used = new Map<string, number>();
  private windowStart = 0;

  constructor(
    private readonly perWindow = 8,
    private readonly windowMs = 60_000,
  ) {}

  take(address: string, now = Date.now()): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.used.clear();
      this.windowStart = now;
    }
    const used = this.used.get(address) ?? 0;
    if (used >= this.perWindow) return false;
    this.used.set(address, used + 1);
    return true;
  }
}

/**
 * Lets Connect answer a request from its headers alone (withEmptyBody), and refuses the body's rest
 * once the answer is out. HTTP/2: RST_STREAM with NO_ERROR, which asks the client to stop sending
 * without making the answer an error (RFC 9113 8.1). HTTP/1.1: the answer says "Connection: close"
 * (closeIfAnsweredEarly) and Node closes the connection once it is written, reading nothing more.
 * A client told "100-continue" is never told to send its body at all (see checkContinue in listen).
 */
function refuseUnread(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  withEmptyBody(req);
  closeUnreadAfterAnswer(req, res);
}

/**
 * HTTP/2: once the answer is out, RST_STREAM NO_ERROR for a request whose body was left unread (it
 * asks the client to stop sending it without making the answer an error, RFC 9113 8.1). HTTP/1.1
 * closes the connection instead (closeIfAnsweredEarly).
 */
function closeUnreadAfterAnswer(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  if (req instanceof http.IncomingMessage) return;
  const stream = req.stream;
  res.once("finish", () => {
    if (!stream.destroyed && !stream.closed && !req.complete) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  });
}

/**
 * Makes the request's reader (connect-node, or an HTTP service) read the body readBody already read,
 * or its refusal as failure() says it, in place of the request's own async iterator, which destroys
 * the stream once left early.
 */
function withBody(req: http.IncomingMessage | http2.Http2ServerRequest, chunks: Promise<Uint8Array[]>, failure: (err: unknown) => unknown): void {
  (req as unknown as { [Symbol.asyncIterator]: () => AsyncGenerator<Uint8Array> })[Symbol.asyncIterator] = async function* () {
    let read: Uint8Array[];
    try {
      read = await chunks;
    } catch (err) {
      throw failure(err);
    }
    yield* read;
  };
}

/** A body's refusal as an HTTP service answers it: ours by their code, a client gone as ABORTED (not an internal error). */
const asServiceError = (err: unknown) => (isRemoteLogError(err) ? err : RemoteLogError.aborted("the client went away before the end of its request"));

/**
 * Makes Connect read an empty message instead of the request's body, in the request's own framing:
 * the 5-byte envelope of a gRPC or gRPC-Web message of length 0, `{}` for JSON, and no bytes for
 * binary Connect, whose real body is never read (refuseUnread).
 */
function withEmptyBody(req: http.IncomingMessage | http2.Http2ServerRequest): void {
  const type = String(req.headers["content-type"] ?? "");
  const body = type.startsWith("application/grpc") ? Buffer.alloc(5) : type.includes("json") ? Buffer.from("{}") : Buffer.alloc(0);
  delete req.headers["content-length"];
  (req as unknown as { [Symbol.asyncIterator]: () => AsyncGenerator<Buffer> })[Symbol.asyncIterator] = async function* () {
    if (body.length > 0) yield body;
  };
}

function pathOf(url: string | undefined): string {
  const query = url?.indexOf("?") ?? -1;
  return query === -1 ? (url ?? "") : url!.slice(0, query);
}

function serveMetrics(
  metrics: ServerMetrics,
  method: string,
  res: http.ServerResponse | http2.Http2ServerResponse,
  onError: ((err: Error) => void) | undefined,
): void {
  const reply = (status: number, contentType: string, text: string) => {
    const body = Buffer.from(text, "utf8");
    // The scraper may be gone by now; what Node throws then concerns nobody, and thrown from this
    // promise's callback it would end the process.
    try {
      if (!res.headersSent) res.writeHead(status, { "content-type": contentType, "content-length": body.length });
      if (method === "HEAD") res.end();
      else res.end(body);
    } catch {
      res.destroy();
    }
  };
  metrics.text().then(
    (text) => reply(200, metrics.contentType, text),
    (err: unknown) => {
      onError?.(err instanceof Error ? err : new Error(String(err)));
      reply(500, "text/plain; charset=utf-8", "cannot collect metrics\n");
    },
  );
}

/**
 * An HTTP/1.1 response that starts before its request body was read to the end (a body over
 * readMaxBytes, refused as soon as its size is known) leaves the rest of that body unread on the
 * connection, which then can carry nothing else: a client reusing it would wait until keepAliveTimeout.
 * Such a response says "Connection: close", so the client opens a new connection and Node closes this
 * one once the response is out.
 */
function closeIfAnsweredEarly(req: http.IncomingMessage, res: http.ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
    if (!req.complete) this.setHeader("connection", "close");
    return writeHead.apply(this, args);
  } as typeof writeHead;
}
