/**
 * The thread behind VerifyPool (verify-pool.ts): checks messages against their pairs (H2 against the
 * bytes, H1 against the message) and answers a verdict per message, 0 for a good one. Hashing
 * is most of what a receiver does, and here it runs beside the thread that fetches and delivers.
 */
import { parentPort } from "node:worker_threads";
import { addressInto } from "../core/hash.js";
import { pairDataChecksOut } from "../core/page.js";

export interface VerifyRequest {
  id: number;
  /** Where the messages lie: message i is bytes[spans[2i], spans[2i + 1]). */
  bytes: Uint8Array;
  spans: Uint32Array;
  /** 36 bytes an H2 each, then 32 bytes an H1 each; absent when the request asks for the addresses instead. */
  remote?: Uint8Array;
  local?: Uint8Array;
}

export interface VerifyResponse {
  id: number;
  /**
   * Per message, 0 when it checks out, 1 when not (the caller checks that one again for its error); for
   * a request of addresses, the address of each block, 36 bytes each, back to back.
   */
  verdicts: Uint8Array;
}

parentPort?.on("message", (request: VerifyRequest) => {
  const { bytes, remote, local } = request;
  const count = request.spans.length / 2;
  if (!remote || !local) {
    // A sender's blocks, to be addressed (addressOf, written in place).
    const addresses = new Uint8Array(36 * count);
    for (let i = 0; i < count; i++) addressInto(bytes.subarray(request.spans[2 * i], request.spans[2 * i + 1]), addresses, 36 * i);
    const response: VerifyResponse = { id: request.id, verdicts: addresses };
    parentPort!.postMessage(response, [addresses.buffer]);
    return;
  }
  const verdicts = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    if (!pairDataChecksOut(bytes.subarray(request.spans[2 * i], request.spans[2 * i + 1]), remote, 36 * i, local, 32 * i)) verdicts[i] = 1;
  }
  const response: VerifyResponse = { id: request.id, verdicts };
  parentPort!.postMessage(response, [verdicts.buffer]);
});
