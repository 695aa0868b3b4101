import type { Readable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { RemoteLogError } from "../core/errors.js";

/** The limits of BodyBudget; each is a serve flag. */
export interface BodyLimits {
  /** Bytes of request bodies the server holds at once, read but not yet answered, from all clients. */
  maxBodyBytes: number;
  /** The same, from one client address. */
  maxBodyBytesPerAddress: number;
}

export const defaultBodyLimits: BodyLimits = {
  // Four times a client address's share: a few addresses at their limit, and the server still has room.
  maxBodyBytes: 512 << 20,
  // Four times what an honest uploader holds in flight (Remote.putBlocks: 4 calls of at most 8 MiB),
  // and twice the largest request the server reads (64 MiB).
  maxBodyBytesPerAddress: 128 << 20,
};

/** One request's (or one answer's) share of a HeldBytes budget. */
export interface BodyHolding {
  /** Counts n more bytes as held; throws TOO_LARGE (ResourceExhausted to a Connect client, 413 over HTTP) naming the limit it would pass, counting nothing. */
  take(n: number): void;
  /** Gives every byte taken back; idempotent. Called once the request is answered or its stream is gone. */
  release(): void;
}

/** What a HeldBytes budget says when it refuses: the limit passed, and the words of its TOO_LARGE. */
export interface HeldBytesRefusals<Limit extends string> {
  /** The limit names of the server-wide and the per-address budget (serve flags, /metrics labels). */
  limits: { total: Limit; perAddress: Limit };
  /** One holding bigger than the server holds at once, whatever else it holds. */
  alone(most: number): string;
  /** Address's holdings, held bytes, would pass its share with n more. */
  address(address: string, held: number, n: number, most: number): string;
  /** Everyone's holdings, held bytes, would pass the server-wide budget with n more. */
  total(held: number, n: number, most: number): string;
}

/**
 * Bytes the server holds at once for its clients (request bodies read and not yet answered, answers
 * written and not yet taken by the client), server-wide and per client address, each under a limit:
 * a stranger's streams that each hold some and never end are refused past their address's share, and
 * everyone's past the server's, where they once held the server's memory.
 */
export class HeldBytes<Limit extends string> {
  private held = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly most: { total: number; perAddress: number },
    private readonly refusals: HeldBytesRefusals<Limit>,
    private readonly onRefused?: (limit: Limit) => void,
  ) {}

  holding(address: string): BodyHolding {
    let mine = 0;
    let released = false;
    const { total, perAddress } = this.most;
    const refuse = (limit: Limit, text: string, value: number) => {
      this.onRefused?.(limit);
      throw RemoteLogError.tooLarge(text, { limit, value });
    };
    return {
      take: (n) => {
        if (released) return;
        const fromAddress = this.byAddress.get(address) ?? 0;
        const alone = Math.min(total, perAddress);
        // Waiting cannot help this one: it is bigger than the server holds, whatever else it holds.
        if (mine + n > alone) refuse(alone === perAddress ? this.refusals.limits.perAddress : this.refusals.limits.total, this.refusals.alone(alone), alone);
        if (fromAddress + n > perAddress) refuse(this.refusals.limits.perAddress, this.refusals.address(address, fromAddress, n, perAddress), perAddress);
        if (this.held + n > total) refuse(this.refusals.limits.total, this.refusals.total(this.held, n, total), total);
        this.held += n;
        mine += n;
        this.byAddress.set(address, fromAddress + n);
      },
      release: () => {
        if (released) return;
        released = true;
        if (mine === 0) return;
        this.held -= mine;
        const left = (this.byAddress.get(address) ?? mine) - mine;
        if (left > 0) this.byAddress.set(address, left);
        else this.byAddress.delete(address);
      },
    };
  }
}

/**
 * What an open request is counted as while its body is being read, besides the body's bytes: its
 * stream, its request and answer objects and their listeners, ~18 KB in Node. A stranger's HTTP/2
 * streams that each sent one byte of a body and never ended it were counted one byte each: 102,400
 * of them from one address held 1.9 GB, and stalled the server's thread for 27 s.
 */
export const OPEN_REQUEST_BYTES = 16 << 10;

/**
 * The bytes of request bodies the server holds at once: read, and not yet answered. A body is read
 * whole before its call runs, and up to 64 MiB (readMaxBytes) of it is taken; without a budget, a
 * stranger's streams that each send most of a body and never end it made the server hold them all
 * (4 HTTP/2 connections of 256 such streams: 1.3 GB). A body that would pass the server's budget,
 * or its client address's share, is refused (ResourceExhausted), and the rest of it is read and
 * dropped (readBody). Each request also counts OPEN_REQUEST_BYTES until its body ends, and a body
 * that sends nothing for bodyIdleMs is cut: so the requests an address keeps open without finishing
 * them are bounded too, and none is held for ever.
 */
export class BodyBudget {
  private readonly bytes: HeldBytes<"max-body-bytes" | "max-body-bytes-per-address">;

  constructor(
    limits: BodyLimits,
    private readonly onRefused?: (limit: "max-body-bytes" | "max-body-bytes-per-address" | "body-idle-timeout") => void,
    private readonly bodyIdleMs = 0,
  ) {
    this.bytes = new HeldBytes({ total: limits.maxBodyBytes, perAddress: limits.maxBodyBytesPerAddress }, BODY_REFUSALS, onRefused);
  }

  /**
   * Reads stream's body now (readBody, up to limit), counted against address's share until closes
   * emits "close" (the answer is out, or the stream gone) or release() is called, whichever comes first.
   */
  read(stream: Readable, address: string, limit: number, closes: { once(event: "close", listener: () => void): unknown }): { chunks: Promise<Uint8Array[]>; release: () => void } {
    const holding = this.bytes.holding(address);
    const opening = this.bytes.holding(address);
    const release = () => {
      holding.release();
      opening.release();
    };
    closes.once("close", release);
    let chunks: Promise<Uint8Array[]>;
    try {
      opening.take(OPEN_REQUEST_BYTES);
      chunks = readBody(stream, limit, holding, this.bodyIdleMs, () => this.onRefused?.("body-idle-timeout"));
      // An ended body is a request like any other in flight, bounded by what answering it costs.
      chunks.then(opening.release, opening.release);
    } catch (err) {
      dropTheRest(stream);
      chunks = Promise.reject(err);
    }
    // Awaited by whoever answers; one that never does (a caller gone while held) must not be unhandled.
    chunks.catch(() => {});
    return { chunks, release };
  }
}

const BODY_REFUSALS: HeldBytesRefusals<"max-body-bytes" | "max-body-bytes-per-address"> = {
  limits: { total: "max-body-bytes", perAddress: "max-body-bytes-per-address" },
  alone: (most) => `a request body of more than ${most} bytes is more than this server holds of a request at once`,
  address: (address, held, n, most) => `request bodies being read from ${address} hold ${held} bytes; ${n} more is over the limit of ${most} per client address: try again once those are answered`,
  total: (held, _n, most) => `request bodies being read hold ${held} bytes, the most this server holds at once (${most}): try again once those are answered`,
};

/**
 * A request body's chunks as they came, up to its end, or up to the first chunk past limit bytes
 * (for connect's readAllBytes to judge as it judges a body connect-node read), or the budget's
 * refusal (holding.take). In the last two cases the rest of the body is read and dropped until the
 * answer's RST_STREAM stops it (dropTheRest). The stream's own async iterator is not used: it
 * destroys the stream on an error, so a refused body got no answer.
 *
 * A body that sends nothing for idleMs (0: no limit) is cut: the stream is destroyed (onIdle told
 * first), and the call ends Canceled.
 *
 * The server reads every body this way as soon as its request arrives, before the request waits its
 * turn (the read budget): an unread body left its bytes in the server's HTTP/2 flow-control windows
 * (16 MiB a stream, 64 MiB a connection), uncounted.
 */
export function readBody(stream: Readable, limit: number, holding?: BodyHolding, idleMs = 0, onIdle?: () => void): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let length = 0;
    // A body that sends nothing for idleMs is cut, stream and all: HTTP/2 has no request timeout of its
    // own, and a connection whose streams are open is never idle (its PINGs are answered).
    let idle: NodeJS.Timeout | undefined;
    const stillHere = () => {
      if (idleMs <= 0) return;
      clearTimeout(idle);
      idle = setTimeout(() => {
        onIdle?.();
        stream.destroy();
      }, idleMs);
      idle.unref();
    };
    stillHere();
    const finish = (error?: Error) => {
      clearTimeout(idle);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
      if (error) reject(error);
      else resolve(chunks);
    };
    const onData = (chunk: Buffer) => {
      try {
        holding?.take(chunk.length);
      } catch (err) {
        finish(err as Error);
        dropTheRest(stream);
        return;
      }
      // A copy: an HTTP/2 chunk of 16 KiB is a view of a 64 KiB buffer, which it kept whole, so the
      // bytes held were up to four times the bytes counted.
      chunks.push(new Uint8Array(chunk));
      length += chunk.length;
      stillHere();
      if (length > limit) {
        finish();
        dropTheRest(stream);
      }
    };
    const onEnd = () => finish();
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new ConnectError("the client reset the stream before the end of its request", Code.Canceled));
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
    stream.once("close", onClose);
  });
}

/**
 * Reads what comes of a body no longer wanted and keeps none of it. Left paused, its bytes stayed in
 * the connection's flow-control window, unread: a stranger's refused streams filled the server's
 * memory that way, and past Node's per-session memory limit its answers stopped going out. The
 * answer's RST_STREAM (closeUnreadAfterAnswer, H2UnaryRoutes.serve) then asks the client to stop.
 */
function dropTheRest(stream: Readable): void {
  stream.on("data", ignoreChunk);
  stream.resume();
}

function ignoreChunk(): void {}
