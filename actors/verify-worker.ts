/**
 * The thread behind VerifyPool (verify-pool.ts): checks messages against their pairs (H2 against the
 * bytes, H1 against the decoded message) and answers a verdict per message, 0 for a good one. Hashing
 * is most of what a receiver does, and here it runs beside the thread that fetches and delivers.
 */
import { parentPort } from "node:worker_threads";
import { verifyPairData } from "../core/page.js";

export interface VerifyRequest {
  id: number;
  /** Where the messages lie: message i is bytes[spans[2i], spans[2i + 1]). */
  bytes: Uint8Array;
  spans: Uint32Array;
  /** 36 bytes an H2 each, then 32 bytes an H1 each. */
  remote: Uint8Array;
  local: Uint8Array;
}

export interface VerifyResponse {
  id: number;
  /** Per message, 0 when it checks out, 1 when not (the caller checks that one again for its error). */
  verdicts: Uint8Array;
}

parentPort?.on("message", (request: VerifyRequest) => {
  const count = request.spans.length / 2;
  const verdicts = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const pair = { remoteHash: request.remote.subarray(36 * i, 36 * i + 36), localHash: request.local.subarray(32 * i, 32 * i + 32) };
    try {
      verifyPairData(pair, request.bytes.subarray(request.spans[2 * i], request.spans[2 * i + 1]), "message");
    } catch {
      verdicts[i] = 1;
    }
  }
  const response: VerifyResponse = { id: request.id, verdicts };
  parentPort!.postMessage(response, [verdicts.buffer]);
});
