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

/** One request's share of a BodyBudget. */
export interface BodyHolding {
  /** Counts n more bytes of the body as held; throws TOO_LARGE (ResourceExhausted to a Connect client, 413 over HTTP) naming the limit it would pass, counting nothing. */
  take(n: number): void;
  /** Gives every byte taken back; idempotent. Called once the request is answered or its stream is gone. */
  release(): void;
}

/**
 * The bytes of request bodies the server holds at once: read, and not yet answered. A body is read
 * whole before its call runs, and up to 64 MiB (readMaxBytes) of it is taken; without a budget, a
 * stranger's streams that each send most of a body and never end it made the server hold them all
 * (4 HTTP/2 connections of 256 such streams: 1.3 GB). A body that would pass the server's budget,
 * or its client address's share, is refused (ResourceExhausted), and the rest of it is read and
 * dropped (readBody).
 */
export class BodyBudget {
  private held = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly limits: BodyLimits,
    private readonly onRefused?: (limit: "max-body-bytes" | "max-body-bytes-per-address") => void,
  ) {}

  /**
   * Reads stream's body now (readBody, up to limit), counted against address's share until closes
   * emits "close" (the answer is out, or the stream gone) or release() is called, whichever comes first.
   */
  read(stream: Readable, address: string, limit: number, closes: { once(event: "close", listener: () => void): unknown }): { chunks: Promise<Uint8Array[]>; release: () => void } {
    const holding = this.holding(address);
    closes.once("close", holding.release);
    const chunks = readBody(stream, limit, holding);
    // Awaited by whoever answers; one that never does (a caller gone while held) must not be unhandled.
    chunks.catch(() => {});
    return { chunks, release: holding.release };
  }

  private holding(address: string): BodyHolding {
    let mine = 0;
    let released = false;
    return {
      take: (n) => {
        if (released) return;
        const fromAddress = this.byAddress.get(address) ?? 0;
        const alone = Math.min(this.limits.maxBodyBytes, this.limits.maxBodyBytesPerAddress);
        if (mine + n > alone) {
          // Waiting cannot help this one: it is bigger than the server holds, whatever else it holds.
          const limit = alone === this.limits.maxBodyBytesPerAddress ? "max-body-bytes-per-address" : "max-body-bytes";
          this.onRefused?.(limit);
          throw RemoteLogError.tooLarge(`a request body of more than ${alone} bytes is more than this server holds of a request at once`, { limit, value: alone });
        }
        if (fromAddress + n > this.limits.maxBodyBytesPerAddress) {
          this.onRefused?.("max-body-bytes-per-address");
          throw RemoteLogError.tooLarge(`request bodies being read from ${address} hold ${fromAddress} bytes; ${n} more is over the limit of ${this.limits.maxBodyBytesPerAddress} per client address: try again once those are answered`, {
            limit: "max-body-bytes-per-address",
            value: this.limits.maxBodyBytesPerAddress,
          });
        }
        if (this.held + n > this.limits.maxBodyBytes) {
          this.onRefused?.("max-body-bytes");
          throw RemoteLogError.tooLarge(`request bodies being read hold ${this.held} bytes, the most this server holds at once (${this.limits.maxBodyBytes}): try again once those are answered`, {
            limit: "max-body-bytes",
            value: this.limits.maxBodyBytes,
          });
        }
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
 * A request body's chunks as they came, up to its end, or up to the first chunk past limit bytes
 * (for connect's readAllBytes to judge as it judges a body connect-node read), or the budget's
 * refusal (holding.take). In the last two cases the rest of the body is read and dropped until the
 * answer's RST_STREAM stops it (dropTheRest). The stream's own async iterator is not used: it
 * destroys the stream on an error, so a refused body got no answer.
 *
 * The server reads every body this way as soon as its request arrives, before the request waits its
 * turn (the read budget): an unread body left its bytes in the server's HTTP/2 flow-control windows
 * (16 MiB a stream, 64 MiB a connection), uncounted.
 */
export function readBody(stream: Readable, limit: number, holding?: BodyHolding): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let length = 0;
    const finish = (error?: Error) => {
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
