import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { create, type KuboRPCClient } from "kubo-rpc-client";
import { RemoteLogError } from "../../core/errors.js";
import { backoffDelayMs, sleep, withRetry } from "../../core/retry.js";

/** Errors that are a node's HTTP 500 with no more telling message: maybe passing, see KuboApi.call. */
const serverErrors = new WeakSet<object>();

/** A Kubo RPC answer other than 200 to rawPost: the HTTP status and the node's Message. */
export class KuboHttpError extends Error {
  override readonly name = "KuboHttpError";

  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The HTTP status of a failed RPC answer (kubo-rpc-client's HTTPError, or rawPost's KuboHttpError); undefined for any other failure. */
export function kuboHttpStatus(err: unknown): number | undefined {
  if (err instanceof KuboHttpError) return err.status;
  const error = err as { name?: string; response?: { status?: number } } | undefined;
  return error?.name === "HTTPError" ? error.response?.status : undefined;
}

export interface KuboApiOptions {
  /** The Kubo RPC API, such as http://127.0.0.1:5001 (the /api/v0 path is added). */
  url: string;
  /** Longest wait for one request; a slower answer counts as the node being unavailable. Default 30 s. */
  timeoutMs?: number;
  /**
   * How long one operation is retried, with backoff, while the node is unreachable, slow or says it is
   * overloaded; then it fails with UNAVAILABLE naming the URL. 0 tries once. Default 10 s.
   */
  retryForMs?: number;
  /** Told about each retry, so that an operator sees why nothing moves. */
  onRetry?: (err: RemoteLogError, delayMs: number, attempt: number) => void;
}

/**
 * One Kubo RPC API as the Kubo backends see it: kubo-rpc-client calls with a timeout each, retried
 * with backoff while the node is down or slow, and every failure turned into a RemoteLogError that
 * names the URL and the command.
 */
export class KuboApi {
  readonly url: string;
  readonly client: KuboRPCClient;
  private readonly timeoutMs: number;
  private readonly retryForMs: number;
  private readonly onRetry?: KuboApiOptions["onRetry"];
  private readonly closing = new AbortController();
  private readonly target: URL;
  /**
   * Kept-alive connections for the hot read (rawPost): kubo-rpc-client's fetch cost the client about
   * 0.6 ms of CPU per `block get`, as much as a fast node spends answering it.
   */
  private readonly agent: HttpAgent;

  constructor(options: KuboApiOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http");
    } catch {
      throw RemoteLogError.invalidArgument(`Kubo API ${JSON.stringify(options.url)} is not an http:// or https:// URL`);
    }
    this.url = options.url.replace(/\/+$/, "");
    this.client = create({ url });
    this.target = url;
    this.agent = url.protocol === "https:" ? new HttpsAgent({ keepAlive: true, maxSockets: 64 }) : new HttpAgent({ keepAlive: true, maxSockets: 64 });
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retryForMs = options.retryForMs ?? 10_000;
    this.onRetry = options.onRetry;
  }

  /**
   * Runs one RPC command. `what` names it in errors (`block/get bafk…`). fn gets the signal to pass to
   * kubo-rpc-client: kubo-rpc-client 6 ignores its own timeout option, so the timeout rides on it.
   * Only idempotent commands may go through here, since a request that timed out may have been done.
   */
  async call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const once = async () => {
      if (this.closing.signal.aborted) throw RemoteLogError.internal(`Kubo API ${this.url} ${what}: the store is closed`);
      const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.closing.signal]);
      try {
        return await fn(signal);
      } catch (err) {
        throw this.errorOf(err, what, signal);
      }
    };
    // A node answers a command that failed for a passing reason (a busy datastore, under load) with the
    // same HTTP 500 as one that never will; since these commands are idempotent, a 500 is tried again
    // twice, briefly, before it counts.
    const attempt = async () => {
      for (let tries = 1; ; tries++) {
        try {
          return await once();
        } catch (err) {
          if (!serverErrors.has(err as object) || tries >= 3) throw err;
          await sleep(backoffDelayMs(tries, 50, 500), this.closing.signal);
        }
      }
    };
    if (this.retryForMs === 0) return attempt();
    return withRetry(attempt, { timeoutMs: this.retryForMs, signal: this.closing.signal, onRetry: this.onRetry });
  }

  /**
   * A kubo-rpc-client failure as one of our codes. Kubo answers every failed command with HTTP 500 and
   * a message, so the message tells a missing block or record from the rest.
   */
  errorOf(err: unknown, what: string, signal?: AbortSignal): RemoteLogError {
    if (err instanceof RemoteLogError) return err;
    const where = `Kubo API ${this.url} ${what}`;
    const error = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    const message = String(error?.message ?? err);
    if (signal?.aborted && !this.closing.signal.aborted) {
      return RemoteLogError.unavailable(`${where}: no answer within ${(this.timeoutMs / 1000).toFixed(1)} s`, err);
    }
    const status = kuboHttpStatus(err);
    if (status !== undefined) {
      // The node's own disk failing ("open …/blocks/…: no such file or directory") is not a missing
      // block or record: the node lost something it holds, and saying NOT_FOUND would hide that.
      if (/no such file or directory|input\/output error|read-only file system|no space left on device/i.test(message)) return RemoteLogError.internal(`${where}: the node's disk failed: ${message}`, err);
      if (/not found|could not find|no such (block|key|record|link|name)|not pinned/i.test(message)) return RemoteLogError.notFound(`${where}: ${message}`);
      // A routing put of a record no better than the one the node holds (Kubo's offline router, and its
      // DHT, say so in these words): another writer of the name got there first. A conditional update
      // that lost, to be tried again on the new head, not a failure of the node.
      if (/can't replace a newer (record with an older one|value with an older value)/i.test(message)) {
        return RemoteLogError.aborted(`${where}: the node holds a newer record of the name, put by another writer meanwhile (${message})`);
      }
      if (status === 502 || status === 503 || status === 504 || status === 429) return RemoteLogError.unavailable(`${where}: HTTP ${status} ${message}`, err);
      if (status === 400) return RemoteLogError.invalidArgument(`${where}: ${message}`, err);
      if (status === 404 || status === 405) {
        return RemoteLogError.internal(`${where}: HTTP ${status}: this URL does not serve the Kubo RPC command (is it a Kubo RPC API, version 0.13 or later?)`, err);
      }
      const internal = RemoteLogError.internal(`${where}: HTTP ${status} ${message}`, err);
      if (status >= 500) serverErrors.add(internal);
      return internal;
    }
    if (error?.name === "TimeoutError" || /timed out|deadline exceeded/i.test(message)) return RemoteLogError.unavailable(`${where}: ${message}`, err);
    // undici's fetch fails with a TypeError whose cause is the socket error.
    const cause = error?.cause;
    if (error?.name === "TypeError" && /fetch failed/i.test(message)) {
      return RemoteLogError.unavailable(`${where}: cannot reach the node (${cause?.code ?? cause?.message ?? message})`, err);
    }
    if (cause?.code && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(cause.code)) {
      return RemoteLogError.unavailable(`${where}: cannot reach the node (${cause.code})`, err);
    }
    return RemoteLogError.internal(`${where}: ${message}`, err);
  }

  /**
   * POSTs one RPC command (`block/get`) with its args and resolves with the whole response body, on
   * kept-alive connections. A status other than 200 rejects with a KuboHttpError carrying the node's
   * Message. For call()'s fn.
   */
  rawPost(command: string, args: string[], query: Record<string, string>, signal: AbortSignal): Promise<Uint8Array> {
    const search = new URLSearchParams(query);
    for (const arg of args) search.append("arg", arg);
    const base = this.target.pathname === "/" ? "/api/v0" : this.target.pathname.replace(/\/+$/, "");
    const send = this.target.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        { host: this.target.hostname, port: this.target.port, method: "POST", path: `${base}/${command}?${search}`, agent: this.agent, signal },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const body = Buffer.concat(chunks);
            if (res.statusCode === 200) return resolve(new Uint8Array(body.buffer, body.byteOffset, body.length));
            let message = body.toString("utf8");
            try {
              const parsed = JSON.parse(message) as { Message?: string; message?: string };
              message = parsed.Message ?? parsed.message ?? message;
            } catch {
              // not JSON: the text is the message
            }
            reject(new KuboHttpError(res.statusCode ?? 0, message));
          });
        },
      );
      // A socket error is how an unreachable node shows: as fetch does, a TypeError with the cause.
      req.on("error", (err) => reject(signal.aborted ? err : Object.assign(new TypeError("fetch failed"), { cause: err })));
      req.end();
    });
  }

  /** Ends retries and requests in flight. Idempotent. */
  close(): void {
    this.closing.abort();
    this.agent.destroy();
  }
}
