/**
 * A restore thread (restore-pool.ts): checks and lays out one pack at a time (restore-layout.ts), so
 * that the packs of a chain are hashed, inflated and decoded, and their ids computed, on every core
 * while the restoring thread reads the chain and writes the log.
 */
import { parentPort } from "node:worker_threads";
import { isRemoteLogError } from "../core/errors.js";
import { layOutPack, wholeBuffer } from "./restore-layout.js";

export interface LayoutRequest {
  id: number;
  bytes: Uint8Array;
  address: Uint8Array;
}

export type LayoutResponse =
  | { id: number; bytes: Uint8Array; idOffsets: Uint32Array }
  | { id: number; error: { code?: string; text: string; details?: Record<string, unknown> } };

parentPort?.on("message", (request: LayoutRequest) => {
  let response: LayoutResponse;
  try {
    const records = layOutPack(request.bytes, request.address);
    // A small pack's records may lie in Buffer's shared pool, which must not be moved.
    const bytes = wholeBuffer(records.bytes);
    response = { id: request.id, bytes, idOffsets: records.idOffsets };
    parentPort!.postMessage(response, [bytes.buffer as ArrayBuffer, records.idOffsets.buffer as ArrayBuffer]);
    return;
  } catch (err) {
    response = isRemoteLogError(err)
      ? { id: request.id, error: { code: err.code, text: err.text, details: { ...err.details } } }
      : { id: request.id, error: { text: err instanceof Error ? (err.stack ?? err.message) : String(err) } };
  }
  parentPort!.postMessage(response);
});
