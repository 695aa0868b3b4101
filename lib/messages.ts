import type { Message as GenMessage } from "../gen/vac/mvds/mvds_pb.js";
import { RemoteLogError } from "../core/errors.js";
import { decodeMessage, fromHex as hexToBytes, messageId, toHex as bytesToHex } from "../core/hash.js";
import { shown } from "../core/options.js";

import type { Metadata as GenMetadata } from "../gen/vac/mvds/mvds_pb.js";

/** A decoded vac.mvds.Message: groupId, timestamp (seconds), body, and optional metadata. */
export type Message = GenMessage;
/** A message's vac.mvds.Metadata: ephemeral flag and parents. */
export type Metadata = GenMetadata;

/**
 * `const id = mvdsId(message)`
 *
 * The MVDS id (H1) of a message: SHA-256 over its group id, timestamp and body, 32 bytes. Takes the
 * encoded vac.mvds.Message bytes, or the message's fields. Throws INVALID_ARGUMENT for bytes that do
 * not decode as a message, or anything else. Pure.
 *
 * @example
 * ```ts
 * toHex(mvdsId({ groupId: new TextEncoder().encode("chat"), timestamp: 1700000000n, body: new Uint8Array() }));
 * ```
 */
export function mvdsId(message: Uint8Array | Pick<Message, "groupId" | "timestamp" | "body">): Uint8Array {
  if (message instanceof Uint8Array) return messageId(decodeMessage(message, "message"));
  // A plain-JS caller's undefined, or fields of the wrong types, failed as a TypeError inside the hash.
  const fields = message as Partial<Record<"groupId" | "timestamp" | "body", unknown>> | null;
  if (fields === null || typeof fields !== "object" || !(fields.groupId instanceof Uint8Array) || typeof fields.timestamp !== "bigint" || !(fields.body instanceof Uint8Array)) {
    throw RemoteLogError.invalidArgument(`mvdsId takes an encoded message, or { groupId: Uint8Array, timestamp: bigint, body: Uint8Array }, not ${shown(message)}`);
  }
  return messageId(message);
}

/** `toHex(bytes)`: lower-case hex, as remotelog prints ids. Pure; throws nothing. */
export function toHex(bytes: Uint8Array): string {
  return bytesToHex(bytes);
}

/**
 * `fromHex(text, what?)`: the bytes of an even-length hex string (surrounding blanks ignored). Throws
 * INVALID_ARGUMENT, naming what, for anything else. Pure.
 */
export function fromHex(text: string, what = "hex"): Uint8Array {
  return hexToBytes(text, what);
}
