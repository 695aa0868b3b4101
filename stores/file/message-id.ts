import { hash } from "node:crypto";
import { decodeMessage } from "../../core/hash.js";

/*
 * H1 of an encoded vac.mvds.Message, as core/hash.ts messageId(decodeMessage(bytes)) computes it, about
 * ten times faster: a sender appends its whole backlog at once, and there the generic protobuf decode
 * (~2 µs) and a hash object per message (~3 µs) were most of the cost of an append of 10,000 messages.
 *
 * The fast path reads the wire format directly, for the layout every encoder produces: fields 1-4 at
 * most once each with their declared wire types, and a Metadata of fields 1 and 2 only. Anything else
 * (a repeated field, an unknown field, a packed or odd varint) goes to decodeMessage, which decides.
 * So the result is the same as the core functions for every input; test/stores/message-id.test.ts
 * checks that with generated messages and random bytes.
 */

const PREFIX = Buffer.from("MESSAGE_ID", "latin1");
let scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * The message id of encoded bytes, as a latin1 string of the 32 digest bytes (one char per byte: the
 * cheapest form both to get from node:crypto and to use as a Map key). Throws INVALID_ARGUMENT, naming
 * where, when the bytes are not a vac.mvds.Message.
 */
export function messageIdKey(bytes: Uint8Array, where = "message"): string {
  return fastKey(bytes) ?? slowKey(bytes, where);
}

/** The fast path; undefined when the bytes are not in the common layout (valid or not). */
function fastKey(bytes: Uint8Array): string | undefined {
  const end = bytes.length;
  let pos = 0;
  let groupStart = 0;
  let groupEnd = 0;
  let bodyStart = 0;
  let bodyEnd = 0;
  let lo = 0;
  let hi = 0;
  let seen = 0;
  while (pos < end) {
    const tag = bytes[pos++];
    if (tag === 0x0a || tag === 0x1a || tag === 0x22) {
      const field = tag >>> 3;
      if (seen & (1 << field)) return undefined;
      seen |= 1 << field;
      // Lengths of up to 4 varint bytes (256 MiB) cover every message we store.
      let length = 0;
      let shift = 0;
      let byte: number;
      do {
        if (pos >= end || shift > 21) return undefined;
        byte = bytes[pos++];
        length |= (byte & 0x7f) << shift;
        shift += 7;
      } while (byte & 0x80);
      if (pos + length > end) return undefined;
      if (field === 1) [groupStart, groupEnd] = [pos, pos + length];
      else if (field === 3) [bodyStart, bodyEnd] = [pos, pos + length];
      else if (!metadataIsPlain(bytes, pos, pos + length)) return undefined;
      pos += length;
    } else if (tag === 0x10) {
      if (seen & (1 << 2)) return undefined;
      seen |= 1 << 2;
      // The int64's 64 bits, as two 32-bit halves: no BigInt needed to lay them out little-endian.
      lo = 0;
      hi = 0;
      let byte = 0;
      let i = 0;
      for (; i < 10; i++) {
        if (pos >= end) return undefined;
        byte = bytes[pos++];
        const bits = byte & 0x7f;
        if (i < 4) lo |= bits << (7 * i);
        else if (i === 4) {
          lo |= (bits & 0x0f) << 28;
          hi |= bits >>> 4;
        } else hi |= bits << (7 * i - 32);
        if (!(byte & 0x80)) break;
      }
      // An 11-byte varint, or a tenth byte beyond bit 63: let the real decoder judge it.
      if (i === 10 || (i === 9 && byte > 1)) return undefined;
    } else {
      return undefined;
    }
  }
  const groupLength = groupEnd - groupStart;
  const bodyLength = bodyEnd - bodyStart;
  const size = 18 + groupLength + bodyLength;
  // One reused buffer for the hash input; a rare large message gets its own, so the scratch stays small.
  const input = size <= scratch.length ? scratch : size <= 1024 * 1024 ? (scratch = Buffer.allocUnsafe(size * 2)) : Buffer.allocUnsafe(size);
  PREFIX.copy(input, 0);
  input.set(bytes.subarray(groupStart, groupEnd), 10);
  input.writeUInt32LE(lo >>> 0, 10 + groupLength);
  input.writeUInt32LE(hi >>> 0, 14 + groupLength);
  input.set(bytes.subarray(bodyStart, bodyEnd), 18 + groupLength);
  return hash("sha256", input.subarray(0, size), "binary");
}

/** Whether bytes[start, end) is a Metadata of fields 1 (bytes) and 2 (a short varint) only. */
function metadataIsPlain(bytes: Uint8Array, start: number, end: number): boolean {
  let pos = start;
  while (pos < end) {
    const tag = bytes[pos++];
    if (tag === 0x0a) {
      let length = 0;
      let shift = 0;
      let byte: number;
      do {
        if (pos >= end || shift > 21) return false;
        byte = bytes[pos++];
        length |= (byte & 0x7f) << shift;
        shift += 7;
      } while (byte & 0x80);
      pos += length;
      if (pos > end) return false;
    } else if (tag === 0x10) {
      let byte: number;
      let count = 0;
      do {
        if (pos >= end || ++count > 10) return false;
        byte = bytes[pos++];
      } while (byte & 0x80);
      if (count === 10 && byte > 1) return false;
    } else {
      return false;
    }
  }
  return true;
}

function slowKey(bytes: Uint8Array, where: string): string {
  const message = decodeMessage(bytes, where);
  const groupLength = message.groupId.length;
  const size = 18 + groupLength + message.body.length;
  const buffer = Buffer.allocUnsafe(size);
  PREFIX.copy(buffer, 0);
  buffer.set(message.groupId, 10);
  buffer.writeBigInt64LE(BigInt.asIntN(64, message.timestamp), 10 + groupLength);
  buffer.set(message.body, 18 + groupLength);
  return hash("sha256", buffer, "binary");
}
