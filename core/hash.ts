import { allocBytes, equalBytes, hexDigitsToBytes, sha256, sha256Into, sha256Matches } from "#hash";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { toBinary, fromBinary } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../gen/vac/mvds/mvds_pb.js";
import { RemoteLogError } from "./errors.js";
import { decodeCommonMessage, legacyMvdsField, newMessageSpans, readCommonMessage, type MessageSpans } from "./message-decode.js";
import { bytesFieldSize, varintSize, writeBytesField, writeVarint } from "./wire-encode.js";

/** The multicodec of raw bytes, the only codec our CAS addresses use. */
export const RAW_CODEC = 0x55;
/** The multihash code of sha2-256. */
export const SHA2_256 = 0x12;

const MESSAGE_ID_PREFIX = new TextEncoder().encode("MESSAGE_ID");

// Node built-ins come in through #hash (core/hash-node.ts, or core/hash-browser.ts in a browser).
export { equalBytes, toHex } from "#hash";

/**
 * H1, the MVDS message id, laid out as the reference Go implementation does:
 * SHA-256("MESSAGE_ID" || group_id || LE64(timestamp) || body). Metadata is not hashed.
 */
export function messageId(message: Pick<Message, "groupId" | "timestamp" | "body">): Uint8Array {
  const id = new Uint8Array(32);
  messageIdInto(message, id, 0);
  return id;
}

/** Hash input of messages up to this size is laid out in one buffer kept for the next call. */
const SCRATCH_BYTES = 64 * 1024;
let scratch = withIdPrefix(allocBytes(1024));
/** scratch.subarray(0, size) of the last call, kept: messages of one size follow each other. */
let scratchView = scratch.subarray(0, 0);

function withIdPrefix(input: Uint8Array): Uint8Array {
  input.set(MESSAGE_ID_PREFIX, 0);
  return input;
}

/** The hash input of a message of size bytes in all, its prefix written: the reused buffer while messages are small. */
function idInput(size: number): Uint8Array {
  if (scratch.length < size && size <= SCRATCH_BYTES) scratch = withIdPrefix(allocBytes(Math.min(SCRATCH_BYTES, Math.max(size, 2 * scratch.length))));
  return size <= scratch.length ? scratch : withIdPrefix(allocBytes(size));
}

/** Writes SHA-256 of input[0, size) into target at offset. */
function hashIdInput(input: Uint8Array, size: number, target: Uint8Array, offset: number): void {
  if (input !== scratch) return sha256Into(input, target, offset);
  if (scratchView.buffer !== input.buffer || scratchView.length !== size) scratchView = input.subarray(0, size);
  sha256Into(scratchView, target, offset);
}

/** messageId, written into target at offset: a restore lays each id straight into its record. */
export function messageIdInto(message: Pick<Message, "groupId" | "timestamp" | "body">, target: Uint8Array, offset: number): void {
  // One buffer, reused while messages are small, and a one-shot hash: this runs for every message checked.
  const { groupId, body } = message;
  const size = MESSAGE_ID_PREFIX.length + groupId.length + 8 + body.length;
  const input = idInput(size);
  let at = MESSAGE_ID_PREFIX.length;
  input.set(groupId, at);
  at += groupId.length;
  const timestamp = message.timestamp;
  // Most timestamps fit in 32 bits; writing the bytes avoids a BigInt conversion per message.
  if (timestamp >= 0n && timestamp < 0x1_0000_0000n) {
    writeTimestamp(input, at, Number(timestamp), 0);
  } else {
    new DataView(input.buffer, input.byteOffset + at, 8).setBigInt64(0, BigInt.asIntN(64, timestamp), true);
  }
  input.set(body, at + 8);
  hashIdInput(input, size, target, offset);
}

/**
 * messageIdInto for an encoded message in the common layout, read where it lies (readCommonMessage's
 * spans of bytes), without decoding it into objects.
 */
export function messageIdOfSpans(bytes: Uint8Array, spans: MessageSpans, target: Uint8Array, offset: number): void {
  const { groupStart, groupEnd, bodyStart, bodyEnd } = spans;
  const size = MESSAGE_ID_PREFIX.length + (groupEnd - groupStart) + 8 + (bodyEnd - bodyStart);
  const input = idInput(size);
  let at = MESSAGE_ID_PREFIX.length;
  // Group ids are short: a loop costs less than a view to copy from.
  for (let i = groupStart; i < groupEnd; i++) input[at++] = bytes[i];
  writeTimestamp(input, at, spans.timestampLo, spans.timestampHi);
  input.set(bytes.subarray(bodyStart, bodyEnd), at + 8);
  hashIdInput(input, size, target, offset);
}

/**
 * The id of an encoded message, written into target at offset: read where it lies when the message is in
 * the common layout (no message object: this runs for every message a log appends), else decoded. An
 * undecodable one is INVALID_ARGUMENT naming it as `${what} ${index}`.
 */
export function messageIdOfEncoded(data: Uint8Array, target: Uint8Array, offset: number, what: string, index: number): void {
  if (readCommonMessage(data, 0, data.length, encodedSpans)) messageIdOfSpans(data, encodedSpans, target, offset);
  else messageIdInto(decodeMessage(data, `${what} ${index}`), target, offset);
}

/** messageIdOfEncoded's spans, reused: filled and read within one call. */
const encodedSpans = newMessageSpans();

/** The 64-bit timestamp as its low and high 32 bits, little-endian, at at. */
function writeTimestamp(input: Uint8Array, at: number, lo: number, hi: number): void {
  input[at] = lo & 0xff;
  input[at + 1] = (lo >>> 8) & 0xff;
  input[at + 2] = (lo >>> 16) & 0xff;
  input[at + 3] = lo >>> 24;
  input[at + 4] = hi & 0xff;
  input[at + 5] = (hi >>> 8) & 0xff;
  input[at + 6] = (hi >>> 16) & 0xff;
  input[at + 7] = hi >>> 24;
}

/** The fixed first bytes of every address: CIDv1, raw, sha2-256, 32-byte digest. */
export const ADDRESS_PREFIX = Uint8Array.of(0x01, RAW_CODEC, SHA2_256, 0x20);

/** Whether bytes are an address in binary form: ADDRESS_PREFIX and a 32-byte digest. */
export function isAddress(bytes: Uint8Array): boolean {
  return isAddressAt(bytes, 0, bytes.length);
}

/** isAddress of bytes[start, end), without a view. */
export function isAddressAt(bytes: Uint8Array, start: number, end: number): boolean {
  return end - start === 36 && bytes[start] === 0x01 && bytes[start + 1] === RAW_CODEC && bytes[start + 2] === SHA2_256 && bytes[start + 3] === 0x20;
}

/**
 * H2, the CAS address of bytes: binary CIDv1, raw codec, sha2-256, the same CID that
 * `ipfs block put --cid-codec raw` gives. The digest comes from #hash (node:crypto on Node) because the
 * multiformats hasher is async and this runs once per message on every hot path.
 */
export function cidOf(bytes: Uint8Array): CID {
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, sha256(bytes)));
}

/**
 * The binary form of cidOf(bytes), laid out directly: the hot paths (every block stored, every message
 * checked) need only the bytes, and building a CID object per message cost more than the hash itself.
 * test/core/hash.test.ts checks that both give the same bytes.
 */
export function addressOf(bytes: Uint8Array): Uint8Array {
  const address = new Uint8Array(36);
  addressInto(bytes, address, 0);
  return address;
}

/** addressOf(bytes), written into target at offset (36 bytes): a thread addressing many blocks lays them out back to back. */
export function addressInto(bytes: Uint8Array, target: Uint8Array, offset: number): void {
  target.set(ADDRESS_PREFIX, offset);
  sha256Into(bytes, target, offset + 4);
}

/**
 * Parses a binary address and accepts only what this CAS hands out (CIDv1, raw, sha2-256 of 32 bytes);
 * anything else is INVALID_ARGUMENT, so a malformed address never reaches a store.
 */
export function parseAddress(bytes: Uint8Array): CID {
  let cid: CID;
  try {
    cid = CID.decode(bytes);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`address is not a binary CID (${(err as Error).message})`, err);
  }
  checkAddress(cid);
  return cid;
}

/**
 * parseAddress for the hot paths, returning the bytes: a valid address is exactly the 4 fixed prefix
 * bytes and a 32-byte digest, so the common case is a compare; anything else goes through parseAddress
 * for its error.
 */
export function validateAddress(bytes: Uint8Array): Uint8Array {
  if (isAddress(bytes)) return bytes;
  parseAddress(bytes);
  throw RemoteLogError.invalidArgument("address is not the 36-byte binary form of a CIDv1 raw sha2-256");
}

/** Parses a text address (base32 `bafk…` or any multibase CID string). */
export function parseAddressText(text: string): CID {
  let cid: CID;
  try {
    cid = CID.parse(text.trim());
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${JSON.stringify(text)} is not a CID (${(err as Error).message})`, err);
  }
  checkAddress(cid);
  return cid;
}

function checkAddress(cid: CID): void {
  if (cid.version !== 1 || cid.code !== RAW_CODEC || cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32) {
    throw RemoteLogError.invalidArgument(
      `address ${cid.toString()} is not a CIDv1 with the raw codec and a sha2-256 multihash`,
    );
  }
}

/** True when bytes hash to the given address. */
export function matchesAddress(bytes: Uint8Array, address: CID | Uint8Array): boolean {
  const expected = address instanceof Uint8Array ? address : address.bytes;
  return expected.length === 36 && matchesAddressAt(bytes, expected, 0);
}

/** matchesAddress of the 36-byte address at addresses[at], without a view (a worker's packed list of them). */
export function matchesAddressAt(bytes: Uint8Array, addresses: Uint8Array, at: number): boolean {
  // The digest is compared where it lies, without building the address: this runs for every message checked.
  return isAddressAt(addresses, at, at + 36) && sha256Matches(bytes, addresses, at + 4);
}

/**
 * The default text form of an address (multibase base32, "b" then lower-case RFC 4648 without
 * padding), as CID.toString() gives it. Encoded here because the receiver prints one per message and
 * the generic multibase encoder was its most expensive step; test/core/hash.test.ts checks both agree.
 * Anything that is not a 36-byte raw sha2-256 CIDv1 goes through multiformats.
 */
export function addressText(bytes: Uint8Array): string {
  if (bytes.length !== 36 || !equalBytes(bytes.subarray(0, 4), ADDRESS_PREFIX)) return CID.decode(bytes).toString();
  let text = "b";
  let buffer = 0;
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) {
    buffer = (buffer << 8) | bytes[i];
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      text += BASE32[(buffer >>> bits) & 31];
    }
  }
  if (bits > 0) text += BASE32[(buffer << (5 - bits)) & 31];
  return text;
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

export function fromHex(text: string, what = "hex"): Uint8Array {
  const clean = text.trim();
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw RemoteLogError.invalidArgument(`${what} is not hex: ${JSON.stringify(clean.slice(0, 80))}`);
  }
  return hexDigitsToBytes(clean);
}

/**
 * The encoded vac.mvds.Message. Messages without metadata or unknown fields (everything `send` makes)
 * are laid out directly, as protobuf-es lays them out (fields in number order, proto3 defaults left
 * out): its generic writer was a tenth of a `send` process's CPU, most of it a fresh 1 KiB buffer per
 * message and a copy out of it. test/core/message-decode.test.ts checks both give the same bytes.
 */
export function encodeMessage(message: Message): Uint8Array {
  if (!isPlain(message)) return toBinary(MessageSchema, message);
  // Its own buffer, as toBinary returns: a caller may keep it, or hand its buffer to another thread.
  const out = new Uint8Array(plainSize(message));
  writePlain(message, out, 0);
  return out;
}

/**
 * Messages encoded as encodeMessage encodes each, as views of one buffer: a `send` that made an
 * ArrayBuffer a message (and another a line read) spent most of its collector's time freeing them.
 * For a caller that copies the bytes on (an append does) and hands no buffer to another thread.
 */
export function encodeMessages(messages: Message[]): Uint8Array[] {
  let total = 0;
  for (const message of messages) if (isPlain(message)) total += plainSize(message);
  const all = new Uint8Array(total);
  const out: Uint8Array[] = new Array(messages.length);
  let at = 0;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (!isPlain(message)) {
      out[i] = toBinary(MessageSchema, message);
      continue;
    }
    const end = writePlain(message, all, at);
    // A view made from the buffer directly: subarray goes through the species constructor, twice the cost.
    out[i] = new Uint8Array(all.buffer, at, end - at);
    at = end;
  }
  return out;
}

/** Without metadata or unknown fields: laid out here directly, byte for byte as toBinary lays it out. */
function isPlain(message: Message): boolean {
  return message.metadata === undefined && (message.$unknown === undefined || message.$unknown.length === 0);
}

function plainSize({ groupId, body, timestamp }: Message): number {
  // int64 is written as its 64-bit two's complement varint; 0 is the default and left out.
  splitInt64(timestamp);
  const { low, high } = int64Halves;
  return bytesFieldSize(groupId) + (low === 0 && high === 0 ? 0 : 1 + varint64Size(low, high)) + bytesFieldSize(body);
}

/** Writes a plain message at `at` in out; returns where it ends. */
function writePlain({ groupId, body, timestamp }: Message, out: Uint8Array, at: number): number {
  splitInt64(timestamp);
  const { low, high } = int64Halves;
  at = writeBytesField(out, at, 0x0a, groupId);
  if (low !== 0 || high !== 0) {
    out[at++] = 0x10;
    at = writeVarint64(out, at, low, high);
  }
  return writeBytesField(out, at, 0x1a, body);
}

/** What splitInt64 made of its value last: one object for every call, where an array a call was garbage. */
const int64Halves = { low: 0, high: 0 };

/**
 * The low and high 32 bits (unsigned) of an int64's 64-bit two's complement, into int64Halves. A safe
 * non-negative value, as every real timestamp is, is split with Number arithmetic: BigInt's cost a
 * cold `send` more than the rest of each message's layout.
 */
function splitInt64(value: bigint): void {
  const n = Number(value);
  if (Number.isSafeInteger(n) && n >= 0) {
    int64Halves.low = n >>> 0;
    int64Halves.high = Math.floor(n / 0x1_0000_0000);
    return;
  }
  const bits = BigInt.asUintN(64, value);
  int64Halves.low = Number(bits & 0xffff_ffffn);
  int64Halves.high = Number(bits >> 32n);
}

/** Bytes of the varint of the 64-bit value high * 2^32 + low (both unsigned 32-bit). */
function varint64Size(low: number, high: number): number {
  if (high === 0) return varintSize(low);
  // 32 low bits take 4 full groups of 7 (28 bits) and spill 4 into the fifth; each further 7 bits of high one more.
  let size = 5;
  for (let value = high >>> 3; value > 0; value >>>= 7) size++;
  return size;
}

function writeVarint64(out: Uint8Array, at: number, low: number, high: number): number {
  if (high === 0) return writeVarint(out, at, low >>> 0);
  for (let i = 0; i < 4; i++) {
    out[at++] = (low & 0x7f) | 0x80;
    low >>>= 7;
  }
  // Bits 28-31 of low and the first three of high.
  let value = low | ((high & 0x07) << 4);
  high >>>= 3;
  if (high === 0) {
    out[at++] = value;
    return at;
  }
  out[at++] = value | 0x80;
  return writeVarint(out, at, high);
}

/** Decodes an encoded vac.mvds.Message; groupId and body may be views into bytes, not copies. */
export function decodeMessage(bytes: Uint8Array, where = "message"): Message {
  const common = decodeCommonMessage(bytes);
  if (common) return common;
  let message: Message;
  try {
    message = fromBinary(MessageSchema, bytes);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${where} is not a vac.mvds.Message (${(err as Error).message})`, err);
  }
  const legacy = legacyMvdsField(message);
  if (legacy !== undefined) {
    throw RemoteLogError.invalidArgument(
      `${where} is a legacy MVDS message (field ${legacy}: MVDS v0.0.23 or before, package mvds), not a vac.mvds.Message; remotelog does not read those: re-encode it with the current field numbers`,
    );
  }
  return message;
}

export function newMessage(groupId: Uint8Array, timestamp: bigint, body: Uint8Array): Message {
  // The object create(MessageSchema, …) makes, written out: create's generic path ran once per message sent.
  return { $typeName: "vac.mvds.Message", groupId, timestamp, body };
}
