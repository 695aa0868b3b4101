import { createHash } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext, type HandlerContext } from "@connectrpc/connect";
import { addBlock, blockLength, close as closeCar, createWriter, headerLength } from "@ipld/car/buffer-writer";
import { unmarshalIPNSRecord } from "ipns";
import { CID } from "multiformats/cid";
import { bases } from "multiformats/basics";
import type { MultibaseDecoder } from "multiformats/bases/interface";
import { NS, NameUpdateSchema, type NameUpdate } from "../gen/vac/cas/cas_pb.js";
import type { ContentStore } from "../core/content-store.js";
import { canList, type ListOptions, type NameEntry, type NameStore, type PutOptions } from "../core/name-store.js";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressOf, matchesAddress, RAW_CODEC, SHA2_256 } from "../core/hash.js";
import { httpStatusOf } from "../core/http-status.js";
import { checkName, MAX_NAME_BYTES } from "../core/name-checks.js";
import { canonicalKeyName, generateNameKey, isKeyName, keyName, MAX_RECORD_BYTES, peerIdOfKeyName, verifySignedRecord } from "../core/names.js";
import { peerKey } from "./auth.js";
import { clientOf } from "./client-address.js";
import { ANY_ORIGIN } from "./cors.js";
import { REPLACED_HEAD_LIMITS, ReplacedHeads, type ReplacedHeadLimits, type Replacement } from "./replaced-heads.js";

/*
 * IPFS's own HTTP protocols over our stores (design/remote-log.md §10), beside Connect on the same port:
 * - the Trustless Gateway (specs.ipfs.tech/http-gateways/trustless-gateway): GET and HEAD of
 *   /ipfs/{cid} as a raw block or a CAR, and of /ipns/{name} as the signed IPNS record the NS holds;
 * - the Delegated Routing V1 HTTP API (specs.ipfs.tech/routing/http-routing-v1): GET and PUT of
 *   /routing/v1/ipns/{name}, and /routing/v1/providers/{cid}, which names this server itself as an
 *   HTTP gateway provider of the blocks it holds, so that Helia fetches them from here.
 * Everything served is verifiable by its client without trusting us: blocks by their CID, records by
 * the name's key. It is read-only but for the routing PUT, which is NS.Update itself (the same checks
 * and the same write rules).
 */

/** A plain HTTP service mounted beside Connect on listen()'s port (services/server.ts ServerContext.mountHttp). */
export interface HttpService {
  /** Whether this service answers requests for path (the URL's path, without the query). */
  handles(path: string): boolean;
  handle(req: HttpRequest, res: HttpResponse): void;
  /** Whether a request for path reads stored blocks, and so waits its turn in the server's read budget. */
  readsBlocks?(path: string): boolean;
  /** The most of a request body the server reads for this service before it answers (readMaxBytes when absent). */
  readonly maxBodyBytes?: number;
}

export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;

export const RAW_TYPE = "application/vnd.ipld.raw";
export const CAR_TYPE = "application/vnd.ipld.car";
export const IPNS_RECORD_TYPE = "application/vnd.ipfs.ipns-record";
/** The transfer protocol a Delegated Routing provider record names for a Trustless Gateway. */
export const GATEWAY_PROTOCOL = "transport-ipfs-gateway-http";

const IDENTITY_MULTIHASH = 0x00;
// A year: what Kubo and boxo give immutable responses.
const IMMUTABLE = "public, max-age=29030400, immutable";
// Routing answers change as blocks arrive; a short life, as the routing spec suggests for few results.
const ROUTING_CACHE = "public, max-age=15";
const PREFIXES = ["/ipfs/", "/ipns/", "/routing/v1/"];

/**
 * The current head page of every name, found by its CID. The NS keeps a name's head page beside the
 * name rather than in the CAS, yet the name's record says /ipfs/<CID of that page>, and an IPFS client
 * that resolved the name asks for that CID next. Every put through `store` is indexed as it happens;
 * names stored before this process started are indexed by one pass over the store's list(), the first
 * time a CID is found in neither the CAS nor the index. A store that cannot list (IPNS) keeps its head
 * pages in Kubo's blockstore, which is the CAS then.
 *
 * A page a name moved on from is served a little longer (ReplacedHeads, within `limits`): a reader
 * that read the name's record just before asks for that page next. Its bytes are read from the store
 * as the put that replaces it begins, and kept in memory; older replaced heads are 404, as an unpinned
 * block would be.
 */
export class HeadIndex {
  /** The name store to mount in place of the one given: the same store, whose puts are indexed. */
  readonly store: NameStore;
  /** The names whose current head page has each CID: several names may share one page. */
  private readonly namesOfCid = new Map<string, Set<string>>();
  private readonly cidOfName = new Map<string, string>();
  private scanned?: Promise<void>;
  /** Pages names moved on from, still served a while; none for a store that cannot list (its heads are in the CAS). */
  readonly replaced?: ReplacedHeads;

  /** limits bound the replaced heads kept; now is their clock (milliseconds, monotonic). */
  constructor(
    private readonly names: NameStore,
    { limits, now }: { limits?: Partial<ReplacedHeadLimits>; now?: () => number } = {},
  ) {
    if (canList(names)) this.replaced = new ReplacedHeads({ ...REPLACED_HEAD_LIMITS, ...limits }, now);
    this.store = {
      get: (name) => names.get(name),
      put: async (name: string, content: Uint8Array, options?: PutOptions) => {
        // Findable before the put ends: a store serves the new record before its put resolves, and a
        // reader that got it asks for its page next (find checks the store, so an early entry is safe).
        const key = this.add(name, content);
        // Kept before the put begins, for the same reason: a reader of the record before asks for its page.
        const replacement = await this.keepReplaced(name, key);
        let version: bigint;
        try {
          version = await names.put(name, content, options);
        } catch (err) {
          if (this.cidOfName.get(name) !== key) this.remove(name, key);
          if (replacement) this.replaced!.withdraw(replacement);
          throw err;
        }
        this.note(name, content);
        return version;
      },
      close: () => names.close(),
      ...(names.count ? { count: () => names.count!() } : {}),
      ...(names.list ? { list: (options?: ListOptions) => names.list!(options) } : {}),
      ...(names.drop
        ? {
            drop: async (name: string) => {
              const dropped = await names.drop!(name);
              this.forget(name);
              // A dropped name's pages go from the gateway now, its recent ones too.
              this.replaced?.forget(name);
              return dropped;
            },
          }
        : {}),
    };
  }

  /** The bytes of the current or a recently replaced head page whose raw CID is address (binary), or undefined. */
  async find(address: Uint8Array): Promise<Uint8Array | undefined> {
    const key = Buffer.from(address).toString("latin1");
    const kept = this.replaced?.find(key);
    if (kept) return kept;
    if (!this.namesOfCid.has(key) && canList(this.names)) {
      await (this.scanned ??= this.scan().catch((err: unknown) => {
        this.scanned = undefined;
        throw err;
      }));
    }
    for (const name of [...(this.namesOfCid.get(key) ?? [])]) {
      // The index may be a step behind the store; the store's entry is the truth.
      const entry = await this.names.get(name);
      if (entry && matchesAddress(entry.content, address)) return entry.content;
    }
    return undefined;
  }

  /**
   * Keeps the page name is on, before a put moves it to the page whose key is key; the replacement,
   * or undefined when there is none (no page yet, the same page) or nothing is kept.
   */
  private async keepReplaced(name: string, key: string): Promise<Replacement | undefined> {
    if (!this.replaced) return undefined;
    let current: NameEntry | undefined;
    try {
      current = await this.names.get(name);
    } catch {
      // A name the store cannot read is not this put's to refuse: NsService reads it itself where that matters.
      return undefined;
    }
    if (!current) return undefined;
    const currentKey = Buffer.from(addressOf(current.content)).toString("latin1");
    return currentKey === key ? undefined : this.replaced.add(name, currentKey, current.content);
  }

  private note(name: string, content: Uint8Array, onlyIfNew = false): void {
    if (onlyIfNew && this.cidOfName.has(name)) return;
    this.forget(name);
    this.cidOfName.set(name, this.add(name, content));
  }

  /** Puts name on content's page (besides the one it is on), and returns the page's key. */
  private add(name: string, content: Uint8Array): string {
    const key = Buffer.from(addressOf(content)).toString("latin1");
    let names = this.namesOfCid.get(key);
    if (!names) this.namesOfCid.set(key, (names = new Set()));
    names.add(name);
    return key;
  }

  /** Takes name off the page it was on. */
  private forget(name: string): void {
    const old = this.cidOfName.get(name);
    if (old !== undefined) this.remove(name, old);
    this.cidOfName.delete(name);
  }

  private remove(name: string, key: string): void {
    const sharing = this.namesOfCid.get(key);
    sharing?.delete(name);
    // Gone only when no name is left on it: another name's head may be the same page.
    if (sharing?.size === 0) this.namesOfCid.delete(key);
  }

  private async scan(): Promise<void> {
    // A put during the pass is newer than what the pass read: it wins.
    for await (const [name, entry] of this.names.list!()) this.note(name, entry.content, true);
  }
}

/** The CAS address (raw CIDv1) of the block any sha2-256 CID names, or undefined for other hashes. */
function blockAddress(cid: CID): Uint8Array | undefined {
  if (cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32) return undefined;
  return cid.version === 1 && cid.code === RAW_CODEC ? cid.bytes : CID.createV1(RAW_CODEC, cid.multihash).bytes;
}

export interface GatewayOptions {
  content?: ContentStore;
  names?: NameStore;
  /** Finds head pages by CID (they are not in the CAS); mount heads.store as the NS's store. */
  heads?: HeadIndex;
  /**
   * NS.Update itself (services/ns-service.ts NsService.update), which PUT /routing/v1/ipns calls, so
   * that it obeys the same checks and write rules; without it, PUT is refused.
   */
  updateName?: (update: NameUpdate, context: HandlerContext) => Promise<unknown>;
  /** The longest name taken, in UTF-8 bytes. */
  maxNameBytes?: number;
  /** Told about failures that reach a client as a bare 500. */
  onInternalError?: (err: Error, what: string) => void;
  /** Charges the bytes of a block read for req to its client's read budget, as CAS.Get and GetMany are. */
  chargeRead?: (req: HttpRequest, bytes: number) => void;
}

/** A response being made: status, headers, body (omitted for HEAD). */
export interface Reply {
  status: number;
  headers: Record<string, string | number>;
  body?: Uint8Array | string;
}

/**
 * The gateway and routing endpoints as one HttpService. Every answer is whole before it is written
 * (a block, a one-block CAR, a record or a short JSON list), so a response costs at most one block.
 */
export class Gateway implements HttpService {
  /** A routing PUT's record, and one byte more, for readBody (putRecord) to see it is over. */
  readonly maxBodyBytes = MAX_RECORD_BYTES + 1;
  private readonly maxNameBytes: number;
  private peerId?: Promise<string>;

  constructor(private readonly options: GatewayOptions) {
    this.maxNameBytes = options.maxNameBytes ?? MAX_NAME_BYTES;
  }

  handles(path: string): boolean {
    return PREFIXES.some((prefix) => path.startsWith(prefix)) || path === "/ipfs" || path === "/ipns";
  }

  readsBlocks(path: string): boolean {
    return path.startsWith("/ipfs/");
  }

  handle(req: HttpRequest, res: HttpResponse): void {
    const sendAnyOrigin = (reply: Reply) => send(req, res, { ...reply, headers: { ...reply.headers, ...ANY_ORIGIN } });
    this.answer(req).then(sendAnyOrigin, (err: unknown) => sendAnyOrigin(this.errorReply(err, req)));
  }

  private async answer(req: HttpRequest): Promise<Reply> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const path = url.pathname;
    const method = req.method ?? "GET";
    if (method === "OPTIONS") return preflight(path);
    if (path.startsWith("/routing/v1/")) return this.routing(req, method, url);
    if (method !== "GET" && method !== "HEAD") return text(405, `${method} is not served here: the gateway is read-only (GET, HEAD)`, { allow: "GET, HEAD, OPTIONS" });
    const [, namespace, id, ...rest] = path.split("/");
    if (!id) return text(400, `give a ${namespace === "ipns" ? "name" : "CID"}: /${namespace}/{${namespace === "ipns" ? "name" : "cid"}}`);
    if (namespace === "ipfs") return this.ipfs(req, url, decodeSegment(id), rest);
    return this.ipns(req, url, decodeSegment(id), rest);
  }

  /** GET /ipfs/{cid}: the block, or a CAR of it. */
  private async ipfs(req: HttpRequest, url: URL, id: string, rest: string[]): Promise<Reply> {
    const cid = parseCid(id);
    if (typeof cid === "string") return text(400, cid);
    const wanted = negotiate(url, req.headers.accept, ["raw", "car"], (format, params) => {
      const car = format === "car" ? carParameters(url, params) : undefined;
      return typeof car === "string" ? car : undefined;
    });
    if (wanted.status) return text(wanted.status, wanted.message);
    if (rest.length > 0 && rest.some((segment) => segment !== "")) {
      return text(400, `no paths under a CID here: every block this gateway holds is raw, with no links to follow`);
    }
    const car = wanted.format === "car" ? carParameters(url, wanted.params) : undefined;
    if (typeof car === "string") return text(wanted.fromQuery ? 400 : 406, car);

    const cidText = cid.toString();
    const etag = car ? `"${cidText}.car.${car.scope}.${car.order}.${car.dups}${car.entityBytes ? `.${car.entityBytes}` : ""}"` : `"${cidText}.raw"`;
    const common = {
      "x-content-type-options": "nosniff",
      "cache-control": IMMUTABLE,
      "x-ipfs-path": `/ipfs/${cidText}`,
      "x-ipfs-roots": cidText,
      vary: "Accept",
    };
    // The ETag names the block by its CID, so a 304 needs to know only that the block is here, not its
    // bytes: the client that sent it has them already.
    if (notModified(req, etag)) return (await this.holds(cid, req)) ? { status: 304, headers: { ...common, etag } } : notHere(req, cid);
    // HEAD reads and checks the block as GET does, so that it answers the same (Content-Length, or a
    // 500 for a damaged block), and so it is charged the same.
    const bytes = await this.block(cid, req);
    if (bytes === undefined) return notHere(req, cid);
    if (!car) {
      return {
        status: 200,
        headers: {
          ...common,
          "content-type": RAW_TYPE,
          "content-disposition": `attachment; filename="${cidText}.bin"`,
          ...(wanted.fromQuery ? {} : { "content-location": `/ipfs/${cidText}?format=raw` }),
          etag,
        },
        body: bytes,
      };
    }
    return {
      status: 200,
      headers: {
        ...common,
        "content-type": `${CAR_TYPE}; version=1; order=${car.order}; dups=${car.dups}`,
        "content-disposition": `attachment; filename="${cidText}.car"`,
        ...(wanted.fromQuery ? {} : { "content-location": `/ipfs/${cidText}?format=car` }),
        etag,
      },
      body: oneBlockCar(cid, bytes),
    };
  }

  /**
   * A block's bytes by any CID of its sha2-256 multihash (raw, dag-pb, CIDv0: the bytes are the same),
   * from the CAS or, for a name's head page, the head index; identity CIDs hold their bytes themselves.
   * Undefined when it is stored nowhere here.
   */
  private async block(cid: CID, req: HttpRequest): Promise<Uint8Array | undefined> {
    if (cid.multihash.code === IDENTITY_MULTIHASH) return cid.multihash.digest;
    const address = blockAddress(cid);
    if (address === undefined) return undefined;
    const [stored] = (await this.options.content?.getMany([address])) ?? [undefined];
    const bytes = stored ?? (await this.options.heads?.find(address));
    // Whatever the answer sends of them (HEAD, a refused PUT: nothing), the bytes were read and hashed.
    if (bytes !== undefined) this.options.chargeRead?.(req, bytes.length);
    return bytes;
  }

  /** Whether block(cid) would find it, reading (and charging) a block only when the CAS does not hold it. */
  private async holds(cid: CID, req: HttpRequest): Promise<boolean> {
    const address = blockAddress(cid);
    if (address !== undefined && (await this.options.content?.has(address))) return true;
    return (await this.block(cid, req)) !== undefined;
  }

  /** GET /ipns/{name}: the signed record, the only verifiable answer; this gateway deserializes nothing. */
  private async ipns(req: HttpRequest, url: URL, id: string, rest: string[]): Promise<Reply> {
    const wanted = negotiate(url, req.headers.accept, ["ipns-record"]);
    if (wanted.status) return text(wanted.status, wanted.message);
    if (rest.some((segment) => segment !== "")) return text(400, "no paths under a name here: ask for the name's record alone");
    return this.record(req, id, false);
  }

  /** The record of a key name, however it is spelled, with the headers both specs ask for. */
  private async record(req: HttpRequest, id: string, routing: boolean): Promise<Reply> {
    const name = keyNameOf(id, this.maxNameBytes);
    if (typeof name !== "string") return text(400, name.message);
    const entry = this.options.names ? await this.options.names.get(name) : undefined;
    if (!entry || entry.record.length === 0) {
      // The routing spec: "When record was not found (HTTP 404) ... SHOULD default to max-age=60".
      return text(404, this.options.names ? `name ${name} has no record here` : "this server holds no names", { "cache-control": "public, max-age=60", vary: "Accept" });
    }
    const etag = `"${createHash("sha256").update(entry.record).digest("hex")}"`;
    const headers: Record<string, string> = {
      "content-type": IPNS_RECORD_TYPE,
      "x-content-type-options": "nosniff",
      vary: "Accept",
      etag,
      ...recordCacheHeaders(entry.record),
      ...(routing ? {} : { "x-ipfs-path": `/ipns/${name}`, "content-disposition": `attachment; filename="${name}.ipns-record"` }),
    };
    if (notModified(req, etag)) return { status: 304, headers };
    return { status: 200, headers, body: entry.record };
  }

  private async routing(req: HttpRequest, method: string, url: URL): Promise<Reply> {
    const [kind, ...ids] = url.pathname.slice("/routing/v1/".length).split("/");
    const id = ids.length === 1 ? decodeSegment(ids[0]) : "";
    if (kind === "ipns" && id) {
      if (method === "PUT") return this.putRecord(req, id);
      if (method !== "GET" && method !== "HEAD") return text(501, `${method} of /routing/v1/ipns is not implemented (GET, PUT)`, { allow: "GET, HEAD, PUT, OPTIONS" });
      if (!accepts(req.headers.accept, IPNS_RECORD_TYPE)) return text(406, `ask for the record with Accept: ${IPNS_RECORD_TYPE}`);
      return this.record(req, id, true);
    }
    if (kind === "providers" && id) {
      if (method !== "GET" && method !== "HEAD") return text(501, `${method} of /routing/v1/providers is not implemented (GET)`);
      return this.providers(req, url, id);
    }
    if (kind === "peers" && id) {
      if (method !== "GET" && method !== "HEAD") return text(501, `${method} of /routing/v1/peers is not implemented (GET)`);
      return this.peers(req, url, id);
    }
    if (kind === "dht") return text(501, "this router does not search the DHT");
    return text(400, `unknown routing path ${JSON.stringify(url.pathname)}: this router answers /routing/v1/ipns/{name}, /routing/v1/providers/{cid} and /routing/v1/peers/{peer-id}`);
  }

  /** PUT /routing/v1/ipns/{name}: the record goes through NS.Update with the head page it names. */
  private async putRecord(req: HttpRequest, id: string): Promise<Reply> {
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== IPNS_RECORD_TYPE) return text(406, `send the record with Content-Type: ${IPNS_RECORD_TYPE}`);
    if (!this.options.updateName) return text(501, "this server holds no names to publish to");
    const name = keyNameOf(id, this.maxNameBytes);
    if (typeof name !== "string") return text(400, name.message);
    const record = await readBody(req, MAX_RECORD_BYTES);
    // Only what the name's key signed is looked up: a forged record costs a signature check, no read.
    const { cid } = await verifySignedRecord(name, record).catch((err: unknown) => {
      // The routing spec has one answer for a record it will not take, whatever is wrong with it: "400
      // (Bad Request): the provided IPNS Record or IPNS Name are not valid". NS.Update's 403 stays for
      // a valid record of a key this server does not let publish (--allow-keys).
      throw isRemoteLogError(err, "PERMISSION_DENIED") ? RemoteLogError.invalidArgument(err.text) : err;
    });
    const content = await this.block(cid, req);
    if (content === undefined) {
      return text(400, `the record points at ${cid.toString()}, which is not stored here: store the head page in the CAS, then publish its record`);
    }
    await this.options.updateName(create(NameUpdateSchema, { name, content, record }), handlerContext(req, "PUT"));
    return { status: 200, headers: { "cache-control": "no-store" } };
  }

  /** GET /routing/v1/providers/{cid}: this server, when it holds the block, as a Trustless Gateway. */
  private async providers(req: HttpRequest, url: URL, id: string): Promise<Reply> {
    const cid = parseCid(id);
    if (typeof cid === "string") return text(422, cid);
    const filter = url.searchParams.get("filter-protocols");
    const wantsGateway = filter === null || filter.toLowerCase().split(",").includes(GATEWAY_PROTOCOL);
    const held = wantsGateway && (await this.holds(cid, req));
    return this.peerList(req, "Providers", held ? [await this.self(req)] : []);
  }

  /** GET /routing/v1/peers/{peer-id}: this server's own record, for a client that looks it up by ID. */
  private async peers(req: HttpRequest, _url: URL, id: string): Promise<Reply> {
    const self = await this.self(req);
    return this.peerList(req, "Peers", id === self.ID || canonicalKeyName(id) === canonicalKeyName(self.ID) ? [self] : []);
  }

  /**
   * No records is a 200 with an empty list, not the 404 the routing spec first asked for: IPIP-0513
   * (ratified 2025-12) has servers answer 200, since a 404 shows as an error in a browser's console,
   * and has clients take a 404 as an empty list, so either works with every client.
   */
  private peerList(req: HttpRequest, field: "Providers" | "Peers", records: object[]): Reply {
    const headers = { "cache-control": ROUTING_CACHE, vary: "Accept" };
    if (accepts(req.headers.accept, "application/x-ndjson", true)) {
      return { status: 200, headers: { ...headers, "content-type": "application/x-ndjson" }, body: records.map((r) => JSON.stringify(r) + "\n").join("") };
    }
    return { status: 200, headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify({ [field]: records }) + "\n" };
  }

  /** This server as a peer record: a peer ID of its own, and the address the client reached it at. */
  private async self(req: HttpRequest): Promise<{ Schema: string; ID: string; Protocols: string[]; Addrs: string[] }> {
    // A libp2p peer ID is what the schema needs; nothing is signed with its key.
    const id = await (this.peerId ??= generateNameKey().then((key) => peerIdOfKeyName(keyName(key))));
    return { Schema: "peer", ID: id, Protocols: [GATEWAY_PROTOCOL], Addrs: [multiaddrOf(req)] };
  }

  private errorReply(err: unknown, req: HttpRequest): Reply {
    if (isRemoteLogError(err) && err.code !== "INTERNAL" && err.code !== "DATA_LOSS") return text(httpStatusOf[err.code], err.text);
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.onInternalError?.(error, `${req.method} ${pathOnly(req.url)}`);
    // A damaged block is never served, and the client is not told where it lies.
    return text(500, isRemoteLogError(err, "DATA_LOSS") ? "the block is damaged in this server's store" : "internal error");
  }
}

/** Writes a whole reply (no body for HEAD); a client already gone is let go. */
export function send(req: HttpRequest, res: HttpResponse, reply: Reply): void {
  try {
    if (res.headersSent || res.destroyed) return;
    const body = reply.body === undefined ? undefined : typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
    const headers = { ...reply.headers, ...(body !== undefined ? { "content-length": body.length } : {}) };
    res.writeHead(reply.status, headers);
    if (req.method === "HEAD" || body === undefined) res.end();
    else res.end(body);
  } catch {
    // The client may be gone; what Node throws then concerns nobody.
    res.destroy();
  }
}

/**
 * The answer for a block held nowhere here: 404, or 412 to a client that asked for what is at hand
 * alone (Cache-Control: only-if-cached; trustless gateway spec: "SHOULD return HTTP 412 if the root
 * block is not immediately available").
 */
function notHere(req: HttpRequest, cid: CID): Reply {
  const onlyIfCached = (req.headers["cache-control"] ?? "").split(",").some((directive) => directive.trim().toLowerCase() === "only-if-cached");
  return text(onlyIfCached ? 412 : 404, `block ${cid.toString()} is not stored here`, { "cache-control": "no-store" });
}

/** A plain-text reply. */
export function text(status: number, message: string, headers: Record<string, string> = {}): Reply {
  return { status, headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff", ...headers }, body: message + "\n" };
}

function preflight(path: string): Reply {
  const put = path.startsWith("/routing/v1/ipns/");
  return {
    status: 204,
    headers: {
      "access-control-allow-methods": put ? "GET, HEAD, PUT, OPTIONS" : "GET, HEAD, OPTIONS",
      "access-control-allow-headers": "Accept, Content-Type, If-None-Match",
      "access-control-max-age": 86400,
    },
  };
}

function pathOnly(url: string | undefined): string {
  return (url ?? "").split("?")[0];
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A CID in any multibase and version, or why it is not one. */
function parseCid(text: string): CID | string {
  if (text.length > 512) return "CID is too long";
  try {
    // CIDv0 (Qm…) has no multibase prefix; CID.parse reads it without a decoder.
    return CID.parse(text, DECODERS.get(text[0]));
  } catch (err) {
    return `${JSON.stringify(text)} is not a CID (${(err as Error).message})`;
  }
}

const DECODERS = new Map(Object.values(bases).map((base) => [base.prefix as string, base.decoder as MultibaseDecoder<string>]));

/** The canonical key name (k51…) of any spelling of an Ed25519 key's name, or why there is none. */
function keyNameOf(id: string, maxNameBytes: number): string | Error {
  try {
    checkName(id, maxNameBytes);
  } catch (err) {
    return err as Error;
  }
  if (isKeyName(id)) return id;
  return canonicalKeyName(id) ?? new Error(`${JSON.stringify(id.length > 80 ? id.slice(0, 80) + "…" : id)} is not the IPNS name of an Ed25519 key (k51…, bafzaa…, or a 12D3KooW… peer ID)`);
}

type Format = "raw" | "car" | "ipns-record";
const TYPE_OF: Record<Format, string> = { raw: RAW_TYPE, car: CAR_TYPE, "ipns-record": IPNS_RECORD_TYPE };

type Negotiated =
  | { status?: undefined; format: Format; fromQuery: boolean; params: Map<string, string> }
  | { status: 400 | 406; message: string };

/**
 * The response format: ?format= wins over Accept (trustless-gateway spec). A request that names none
 * is 400 (this gateway is strictly trustless: it never deserializes); one that names only formats we
 * do not serve is 406. The Accept list is a list of preferences (RFC 9110 §12.5.1): its media ranges
 * are tried most preferred first, and the first one whose type is served and whose parameters
 * `refuses` (why a format cannot be served with them, or undefined) takes, so that
 * `car;order=foo, car;order=dfs;q=0.5` gets the dfs CAR; 406 only when none can be served.
 */
function negotiate(url: URL, accept: string | undefined, served: Format[], refuses?: (format: Format, params: Map<string, string>) => string | undefined): Negotiated {
  const listed = served.map((format) => `?format=${format} or Accept: ${TYPE_OF[format]}`).join(", or ");
  const query = url.searchParams.get("format");
  if (query !== null) {
    if ((served as string[]).includes(query)) return { format: query as Format, fromQuery: true, params: new Map() };
    return { status: 406, message: `format ${JSON.stringify(query)} is not served here; this trustless gateway serves ${listed}` };
  }
  const types = parseAccept(accept);
  const named = types.filter((t) => t.type !== "*/*" && t.type !== "application/*");
  let refused: string | undefined;
  for (const t of named) {
    const format = served.find((f) => TYPE_OF[f] === t.type);
    if (!format) continue;
    const why = refuses?.(format, t.params);
    if (why === undefined) return { format, fromQuery: false, params: t.params };
    refused ??= why;
  }
  if (named.length === 0) return { status: 400, message: `say which verifiable response you want: ${listed}` };
  if (refused !== undefined) return { status: 406, message: `no type accepted can be served: ${refused}` };
  return { status: 406, message: `none of the types accepted (${named.map((t) => t.type).join(", ")}) is served here; this trustless gateway serves ${listed}` };
}

interface MediaRange {
  type: string;
  params: Map<string, string>;
  q: number;
}

/** An Accept header's media ranges, most preferred first, without those of q=0. */
function parseAccept(accept: string | undefined): MediaRange[] {
  if (!accept) return [];
  const ranges: MediaRange[] = [];
  for (const part of accept.split(",")) {
    const [type, ...rawParams] = part.split(";").map((piece) => piece.trim());
    if (!type) continue;
    const params = new Map<string, string>();
    for (const param of rawParams) {
      const eq = param.indexOf("=");
      if (eq > 0) params.set(param.slice(0, eq).trim().toLowerCase(), param.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"));
    }
    const q = params.has("q") ? Number(params.get("q")) : 1;
    if (!(q > 0)) continue;
    ranges.push({ type: type.toLowerCase(), params, q });
  }
  return ranges.sort((a, b) => b.q - a.q);
}

function accepts(accept: string | undefined, type: string, strict = false): boolean {
  const ranges = parseAccept(accept);
  if (!strict && ranges.length === 0) return false;
  return ranges.some((range) => range.type === type || (!strict && (range.type === "*/*" || range.type === "application/*")));
}

interface CarParameters {
  scope: string;
  order: string;
  dups: string;
  entityBytes?: string;
}

/**
 * What a CAR request asks, from the query (which wins) and the Accept parameters, or why it cannot be
 * served. Every block here is raw, with no links: whatever the scope, the CAR holds the root block
 * alone, which is also the whole DAG in depth-first order, with no duplicates.
 */
function carParameters(url: URL, accepted: Map<string, string>): CarParameters | string {
  const get = (name: string) => url.searchParams.get(`car-${name}`) ?? accepted.get(name);
  const version = get("version") ?? "1";
  if (version !== "1") return `CAR version ${JSON.stringify(version)} is not served here; only version=1`;
  const order = get("order") ?? "dfs";
  if (order !== "dfs" && order !== "unk") return `CAR order ${JSON.stringify(order)} is not served here; order=dfs or unk`;
  const dups = get("dups") ?? "n";
  if (dups !== "y" && dups !== "n") return `CAR dups ${JSON.stringify(dups)} is not y or n`;
  const scope = url.searchParams.get("dag-scope") ?? "all";
  if (!["block", "entity", "all"].includes(scope)) return `dag-scope ${JSON.stringify(scope)} is not block, entity or all`;
  const entityBytes = url.searchParams.get("entity-bytes") ?? undefined;
  if (entityBytes !== undefined && !/^-?\d+:(-?\d+|\*)$/.test(entityBytes)) return `entity-bytes ${JSON.stringify(entityBytes)} is not FROM:TO`;
  return { scope: entityBytes ? "entity" : scope, order, dups, entityBytes };
}

/** A CARv1 whose root is cid, holding its block (none for an identity CID, whose bytes are in the CID). */
function oneBlockCar(cid: CID, bytes: Uint8Array): Uint8Array {
  const blocks = cid.multihash.code === IDENTITY_MULTIHASH ? [] : [{ cid, bytes }];
  const size = headerLength({ roots: [cid] }) + blocks.reduce((sum, block) => sum + blockLength(block), 0);
  const writer = createWriter(new ArrayBuffer(size), { roots: [cid] });
  for (const block of blocks) addBlock(writer, block);
  return closeCar(writer);
}

function notModified(req: HttpRequest, etag: string): boolean {
  const match = req.headers["if-none-match"];
  return typeof match === "string" && match.split(",").some((tag) => tag.trim() === etag || tag.trim() === `W/${etag}`);
}

/** Cache-Control and Expires of a record: its TTL, and its validity (IPNS routing spec). */
function recordCacheHeaders(record: Uint8Array): Record<string, string> {
  try {
    const parsed = unmarshalIPNSRecord(record);
    const ttlSeconds = Number((parsed.ttl ?? 0n) / 1_000_000_000n);
    const validity = new Date(String(parsed.validity));
    const left = Math.max(0, Math.floor((validity.getTime() - Date.now()) / 1000));
    if (Number.isNaN(left)) throw new Error("validity");
    return {
      "cache-control": `public, max-age=${ttlSeconds > 0 ? Math.min(ttlSeconds, left) : Math.min(60, left)}, stale-while-revalidate=${left}, stale-if-error=${left}`,
      expires: validity.toUTCString(),
      "last-modified": new Date().toUTCString(),
    };
  } catch {
    return { "cache-control": "public, max-age=60" };
  }
}

/** The address the client reached this server at, as a multiaddr (from Host, else the socket). */
function multiaddrOf(req: HttpRequest): string {
  const socket = req.socket as TLSSocket | undefined;
  const scheme = socket?.encrypted ? "https" : "http";
  const host = (("authority" in req && req.authority) || req.headers.host || "") as string;
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(host);
  const port = match?.[3] ?? (match ? (scheme === "https" ? "443" : "80") : String(socket?.localPort ?? 0));
  const name = match ? (match[1] ?? match[2]) : (socket?.localAddress ?? "127.0.0.1");
  const kind = name.includes(":") ? "ip6" : /^\d+\.\d+\.\d+\.\d+$/.test(name) ? "ip4" : "dns";
  return `/${kind}/${name}/tcp/${port}/${scheme}`;
}

/** The request body, at most max bytes: TOO_LARGE past that, read no further. */
async function readBody(req: HttpRequest, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers["content-length"]);
  if (declared > max) throw RemoteLogError.tooLarge(`a record of ${declared} bytes is over IPNS's limit of ${max} bytes`, { limit: "record bytes", value: max });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw RemoteLogError.tooLarge(`a record over IPNS's limit of ${max} bytes`, { limit: "record bytes", value: max });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The context NS.Update sees for a routing PUT: its method, URL and headers (a bearer token among them). */
function handlerContext(req: HttpRequest, method: string): HandlerContext {
  const requestHeader = new Headers();
  for (const [key, value] of Object.entries(req.headers)) {
    if (key.startsWith(":") || value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) requestHeader.append(key, one);
  }
  return createHandlerContext({
    service: NS,
    method: NS.method.update,
    protocolName: "routing-v1",
    requestMethod: method,
    url: req.url ?? "/",
    requestHeader,
    // The client address, as a Connect call's context has it, for the quotas per address.
    contextValues: createContextValues().set(peerKey, { address: clientOf(req.socket?.remoteAddress), connection: req.socket }),
  });
}
