import type { RemoteLog } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { addressText, isAddress, messageId, toHex } from "../core/hash.js";
import { isUtf8 } from "node:buffer";
import { utf8OrUndefined } from "../core/text.js";


function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

/**
 * One JSONL shape, both ways: a group id or a body is text when it is valid UTF-8, else base64 under
 * the key with _base64, so no byte is lost; `send --format jsonl` reads the same keys back.
 */
function textOrBase64(key: "group" | "body", bytes: Uint8Array): Record<string, string> {
  const text = utf8OrUndefined(bytes);
  return text === undefined ? { [`${key}_base64`]: base64(bytes) } : { [key]: text };
}

function textOrBase64Json(key: "group" | "body", bytes: Uint8Array): string {
  const text = utf8OrUndefined(bytes);
  return text === undefined ? `"${key}_base64":"${base64(bytes)}"` : `"${key}":${JSON.stringify(text)}`;
}

/**
 * One delivered message as a JSONL object: seq and id first, so a consumer can drop repeats. With a
 * name (a receiver following several logs), the name comes first, so lines of different logs can be
 * told apart; seq and id are then per name. A tombstone (no message) is {seq, id, redacted: true}.
 */
export function deliveryJson(seq: number, id: Uint8Array, address: Uint8Array, message: Message | undefined, name?: string): Record<string, unknown> {
  if (!message) return { ...(name === undefined ? {} : { name }), seq, id: toHex(id), redacted: true };
  return {
    ...(name === undefined ? {} : { name }),
    seq,
    id: toHex(id),
    ...textOrBase64("group", message.groupId),
    timestamp: Number(message.timestamp),
    ...textOrBase64("body", message.body),
    address: addressText(address),
  };
}

/**
 * deliveryJson as one JSONL line, built directly: `receive` prints one per message, and a generic
 * JSON.stringify of an object was a large share of a catch-up. Same keys, same order, same values.
 */
export function deliveryLine(seq: number, id: Uint8Array, address: Uint8Array, message: Message | undefined, name?: string): string {
  const prefix = name === undefined ? "" : `"name":${JSON.stringify(name)},`;
  // A tombstone: the message was redacted, and whoever holds it drops it.
  if (!message) return `{${prefix}"seq":${seq},"id":"${toHex(id)}","redacted":true}\n`;
  return `{${prefix}"seq":${seq},"id":"${toHex(id)}",${textOrBase64Json("group", message.groupId)},"timestamp":${Number(message.timestamp)},${textOrBase64Json("body", message.body)},"address":"${addressText(address)}"}\n`;
}

/** What deliveryLines needs of a delivery (actors/receiver.ts Delivery). */
export interface LineDelivery {
  seq: number;
  id: Uint8Array;
  address: Uint8Array;
  message?: Message;
}

/**
 * deliveryLine of every delivery, back to back, as the UTF-8 bytes that are written out, made in one
 * buffer: formatting was a third of a catch-up's main thread (a TextDecoder call, a JSON.stringify, a
 * hex Buffer and three template strings a message). A group id or body that is valid UTF-8 and holds
 * nothing JSON escapes (a control character, a quote, a backslash) is its own JSON string's content,
 * so it is copied as it is; any other message goes through deliveryLine. Same bytes either way
 * (test/cli/format.test.ts).
 */
export function deliveryLines(batch: readonly LineDelivery[], name?: string): Buffer {
  const open = Buffer.from(name === undefined ? '{"seq":' : `{"name":${JSON.stringify(name)},"seq":`, "utf8");
  let size = 0;
  for (const { id, message } of batch) size += LINE_OVERHEAD + open.length + 2 * id.length + (message ? message.groupId.length + message.body.length : 0);
  const out = new LineBuffer(size);
  for (const { seq, id, address, message } of batch) {
    if (!message || !plainJson(message.groupId) || !plainJson(message.body) || !isAddress(address)) {
      out.text(deliveryLine(seq, id, address, message, name));
      continue;
    }
    out.reserve(LINE_OVERHEAD + open.length + 2 * id.length + message.groupId.length + message.body.length);
    out.bytes(open);
    out.number(seq);
    out.bytes(ID_KEY);
    out.hex(id);
    out.bytes(GROUP_KEY);
    out.bytes(message.groupId);
    out.bytes(TIMESTAMP_KEY);
    out.number(Number(message.timestamp));
    out.bytes(BODY_KEY);
    out.bytes(message.body);
    out.bytes(ADDRESS_KEY);
    out.base32(address);
    out.bytes(LINE_END);
  }
  return out.done();
}

const ascii = (text: string) => Buffer.from(text, "latin1");
const ID_KEY = ascii(',"id":"');
const GROUP_KEY = ascii('","group":"');
const TIMESTAMP_KEY = ascii('","timestamp":');
const BODY_KEY = ascii(',"body":"');
const ADDRESS_KEY = ascii('","address":"');
const LINE_END = ascii('"}\n');

/** The bytes of a line besides its id, group id, body and name: keys, punctuation, numbers and address. */
const LINE_OVERHEAD = 192;

/** 1 for each byte JSON.stringify escapes in a string of valid UTF-8 (below 0x20, '"' and '\\'), 2 for each byte of a multi-byte UTF-8 character. */
const ESCAPED = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) ESCAPED[b] = 1;
ESCAPED[0x22] = 1;
ESCAPED[0x5c] = 1;
for (let b = 0x80; b < 0x100; b++) ESCAPED[b] = 2;

/** Whether bytes are valid UTF-8 holding no character JSON.stringify escapes. */
function plainJson(bytes: Uint8Array): boolean {
  // Without a branch a byte: twice as fast as stopping at the first escaped one, which is rare; four
  // bytes a step took another third off (a body is checked for every line received).
  let escaped = 0;
  const length = bytes.length;
  let i = 0;
  for (; i + 4 <= length; i += 4) escaped |= ESCAPED[bytes[i]] | ESCAPED[bytes[i + 1]] | ESCAPED[bytes[i + 2]] | ESCAPED[bytes[i + 3]];
  for (; i < length; i++) escaped |= ESCAPED[bytes[i]];
  if (escaped & 1) return false;
  // ASCII is UTF-8: only bytes of 0x80 and above need the validator (a call that cost as much as the loop).
  return escaped === 0 || isUtf8(bytes);
}

const HEX_DIGITS = Buffer.from("0123456789abcdef", "latin1");
/** 10^k for every k whose power is a safe integer: the digits of a number are the powers it reaches. */
const POWERS_OF_TEN = Array.from({ length: 16 }, (_, k) => 10 ** k);
/** The two hex digits of each byte value, back to back. */
const HEX_PAIRS = Uint8Array.from({ length: 512 }, (_, i) => HEX_DIGITS[i & 1 ? (i >>> 1) & 15 : i >>> 5]);
const BASE32_DIGITS = Buffer.from("abcdefghijklmnopqrstuvwxyz234567", "latin1");

/** A growing buffer of output bytes. */
class LineBuffer {
  private buffer: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(Math.max(size, 256));
  }

  reserve(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(2 * this.buffer.length, this.at + bytes));
    this.buffer.copy(bigger, 0, 0, this.at);
    this.buffer = bigger;
  }

  /** A number as JSON writes it (String(n)), reserved by the caller. */
  number(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      this.at += this.buffer.write(String(n), this.at, "latin1");
      return;
    }
    const buffer = this.buffer;
    let digits = 1;
    while (digits < POWERS_OF_TEN.length && n >= POWERS_OF_TEN[digits]) digits++;
    let at = this.at + digits;
    this.at = at;
    // Below 2^31 (a seq, a timestamp in seconds) in 32-bit integer steps; above, in doubles.
    if (n <= 0x7fffffff) {
      do {
        const rest = (n / 10) | 0;
        buffer[--at] = 0x30 + n - 10 * rest;
        n = rest;
      } while (n > 0);
      return;
    }
    do {
      buffer[--at] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  bytes(bytes: Uint8Array): void {
    // Short runs (the keys, a group id) byte by byte: a set() call costs more than it copies.
    if (bytes.length > 32) this.buffer.set(bytes, this.at);
    else for (let i = 0; i < bytes.length; i++) this.buffer[this.at + i] = bytes[i];
    this.at += bytes.length;
  }

  hex(bytes: Uint8Array): void {
    // Two digits a byte from one table (HEX_PAIRS): half the lookups and no shifts.
    const buffer = this.buffer;
    let at = this.at;
    for (let i = 0; i < bytes.length; i++) {
      const pair = bytes[i] << 1;
      buffer[at++] = HEX_PAIRS[pair];
      buffer[at++] = HEX_PAIRS[pair + 1];
    }
    this.at = at;
  }

  /** addressText's multibase base32 ("b", lowercase, no padding), as bytes; for a binary address (isAddress) only, any other goes through deliveryLine. */
  base32(bytes: Uint8Array): void {
    const buffer = this.buffer;
    let at = this.at;
    buffer[at++] = 0x62; // "b"
    // Five bytes are eight digits: unrolled, a group costs a few shifts where a loop over the bits
    // took a branch a digit (an address is seven groups and a byte).
    const length = bytes.length;
    let i = 0;
    for (; i + 5 <= length; i += 5) {
      const b0 = bytes[i];
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      const b3 = bytes[i + 3];
      const b4 = bytes[i + 4];
      buffer[at] = BASE32_DIGITS[b0 >>> 3];
      buffer[at + 1] = BASE32_DIGITS[((b0 & 7) << 2) | (b1 >>> 6)];
      buffer[at + 2] = BASE32_DIGITS[(b1 >>> 1) & 31];
      buffer[at + 3] = BASE32_DIGITS[((b1 & 1) << 4) | (b2 >>> 4)];
      buffer[at + 4] = BASE32_DIGITS[((b2 & 15) << 1) | (b3 >>> 7)];
      buffer[at + 5] = BASE32_DIGITS[(b3 >>> 2) & 31];
      buffer[at + 6] = BASE32_DIGITS[((b3 & 3) << 3) | (b4 >>> 5)];
      buffer[at + 7] = BASE32_DIGITS[b4 & 31];
      at += 8;
    }
    let bits = 0;
    let value = 0;
    for (; i < length; i++) {
      value = ((value << 8) | bytes[i]) & 0xfff;
      bits += 8;
      while (bits >= 5) {
        bits -= 5;
        buffer[at++] = BASE32_DIGITS[(value >>> bits) & 31];
      }
    }
    if (bits > 0) buffer[at++] = BASE32_DIGITS[(value << (5 - bits)) & 31];
    this.at = at;
  }

  /** Any text, as UTF-8, reserving what it needs. */
  text(text: string): void {
    this.reserve(Buffer.byteLength(text, "utf8"));
    this.at += this.buffer.write(text, this.at, "utf8");
  }

  done(): Buffer {
    return this.buffer.subarray(0, this.at);
  }
}

/**
 * One delivered message as a line for people: seq, time (UTC), and the body as UTF-8 text when it is
 * valid, with control characters and backslashes escaped (so one message stays one line), else every
 * byte escaped (\xNN). A tombstone says so.
 */
export function deliveryText(seq: number, message: Message | undefined, name?: string): string {
  const prefix = name === undefined ? "" : `${name}\t`;
  if (!message) return `${prefix}${seq}\t-\t(redacted)\n`;
  const seconds = Number(message.timestamp);
  // --timestamp-ms senders write milliseconds; anything past year 5138 in seconds is taken as such.
  const ms = Math.abs(seconds) > 1e11 ? seconds : seconds * 1000;
  const when = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString().replace(/\.000Z$/, "Z") : String(seconds);
  return `${prefix}${seq}\t${when}\t${escapeText(message.body)}\n`;
}

function escapeText(bytes: Uint8Array): string {
  const text = utf8OrUndefined(bytes);
  if (text === undefined) return Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f\\]/g, (c) => (c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

export function messageJson(message: Message): Record<string, unknown> {
  return {
    id: toHex(messageId(message)),
    ...textOrBase64("group", message.groupId),
    timestamp: Number(message.timestamp),
    ...textOrBase64("body", message.body),
    parents: message.metadata?.parents.map(toHex) ?? [],
    ephemeral: message.metadata?.ephemeral ?? false,
  };
}

export function pageJson(page: RemoteLog): Record<string, unknown> {
  return {
    pairs: page.pair.map((pair) => ({
      ...(page.info ? { seqid: Number(pair.seqid) } : {}),
      localHash: toHex(pair.localHash),
      ...(pair.redacted ? { redacted: true } : { remoteHash: addressText(pair.remoteHash) }),
      ...(pair.data.length > 0 ? { embeddedBytes: pair.data.length } : {}),
    })),
    tail: page.tail.length > 0 ? addressText(page.tail) : null,
    ...(page.info
      ? {
          info: {
            firstSeqid: Number(page.info.firstSeqid),
            count: page.info.count,
            number: Number(page.info.number),
            redactions: Number(page.info.redactions),
            skips: page.info.skips.map((skip) => ({ number: Number(skip.number), firstSeqid: Number(skip.firstSeqid), address: addressText(skip.address) })),
          },
        }
      : {}),
  };
}
