/**
 * A restore thread (restore-pool.ts): checks and lays out one pack at a time (restore-layout.ts), so
 * that the packs of a chain are hashed, inflated and decoded, and their ids computed, on every core
 * while the restoring thread reads the chain and writes the log.
 */
import { parentPort } from "node:worker_threads";
import { isRemoteLogError } from "../core/errors.js";
import type { ReadPackHeader } from "./pack-format.js";
import { layOutPack } from "./restore-layout.js";

export interface LayoutRequest {
  id: number;
  bytes: Uint8Array;
  /** The pack's header as the restore's walk read it (its address too). */
  header: ReadPackHeader;
}

export type LayoutResponse =
  | { ready: true }
  | { id: number; bytes: Uint8Array; ids: Uint8Array }
  | { id: number; error: { code?: string; text: string; details?: Record<string, unknown> } };

parentPort?.on("message", (request: LayoutRequest) => {
  let response: LayoutResponse;
  try {
    // Shared with the restoring thread, not moved: moving (detaching) an ArrayBuffer throws away every
    // optimised function of this thread that reads typed arrays (V8's detaching protector), and the
    // first pack's answer did just that to the layout loop, compiled again on the core it shares.
    const records = layOutPack(request.bytes, request.header, true);
    response = { id: request.id, bytes: records.bytes, ids: records.ids };
    parentPort!.postMessage(response);
    return;
  } catch (err) {
    response = isRemoteLogError(err)
      ? { id: request.id, error: { code: err.code, text: err.text, details: { ...err.details } } }
      : { id: request.id, error: { text: err instanceof Error ? (err.stack ?? err.message) : String(err) } };
  }
  parentPort!.postMessage(response);
});

// Loaded: from now on a pack sent here is laid out at once, not queued behind the loading.
parentPort?.postMessage({ ready: true } satisfies LayoutResponse);
