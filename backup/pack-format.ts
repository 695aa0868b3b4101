/*
 * Backup packs: the format of `remotelog backup` (proto/remotelog/v1/pack.proto, design §8).
 *
 * A backup is a chain of packs, newest first, each linking to the one before by its CID, as pages do
 * in a remote log but bigger (default at most 2 MiB) and typed:
 *
 *   Pack { type = PACK_TYPE, version = 1, log_name, first_seq, last_seq, count, previous,
 *          log_head?, last_id, messages[] }
 *
 * - A pack is a raw block: its address is the CIDv1 (raw, sha2-256) of its bytes (core/hash.ts
 *   addressOf), so it can live in our CAS, in Kubo (`ipfs block put --cid-codec raw`), in a
 *   directory as `<cid>.pack`-less file named by the CID, or in a CAR file, unchanged.
 * - messages are the encoded vac.mvds.Message bytes exactly as the log holds them. H1 is not stored:
 *   the pack's CID covers every byte, and restore recomputes each id (the local log does anyway), so
 *   storing 32 bytes more per message would check nothing the CID does not. last_id is the one
 *   exception, so that an incremental backup of a remote log knows where to stop its walk.
 * - The chain is contiguous: the oldest pack has first_seq 0 and no previous; each pack's first_seq is
 *   the previous pack's last_seq + 1; count = last_seq - first_seq + 1 = messages.length; every pack
 *   of a chain has the same log_name. Readers check all of it (verifyLink, decodePack).
 * - Packs are deterministic (no clocks, no randomness): the same messages and pack size give the same
 *   bytes and CIDs, so a backup killed half-way and run again writes the very same packs, and a
 *   target that has one already skips it.
 * - The body may be deflated (compression = COMPRESSION_DEFLATE_RAW, deflated_body = raw DEFLATE of a
 *   PackBody), and is only when that saves at least 5% on a sample: Huffman-only DEFLATE, which takes
 *   the narrow alphabet of encoded (base64, hex) encrypted bodies down by a quarter at ~120 MB/s, where
 *   LZ matching costs three times as long and finds nothing in encrypted bytes. Random bytes stay as
 *   they are. Inflating is bounded (inflatedBound: 8 times the deflated body, as Huffman-only DEFLATE
 *   cannot pass it), and so is splitting the body (the header's count), so a hostile pack cannot blow up
 *   a reader.
 * - type is field 1 as fixed64, so the first byte of a pack (and of a BackupHead) is 0x09, while a
 *   vac.cas.RemoteLog page starts with 0x0a, 0x12 or 0x1a: gc and verify tell them apart by it.
 */
import { promisify } from "node:util";
import { constants as zlibConstants, deflateRaw, deflateRawSync, inflateRawSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BackupHeadSchema, Compression, PackSchema, type BackupHead, type Pack } from "../gen/remotelog/v1/pack_pb.js";
import { RemoteLogError } from "../core/errors.js";
import { addressOf, addressText, decodeMessage, equalBytes, messageId, toHex, validateAddress } from "../core/hash.js";
import { encodeRepeatedBytes, repeatedBytesUnknown } from "../core/page.js";
import { fieldsEndBefore, repeatedBytesSpans } from "../core/message-decode.js";
import { varintSize } from "../core/wire-encode.js";
import type { MessageRun } from "./log-file.js";

/** "RLPack" little-endian. */
export const PACK_TYPE = 0x6b6361504c52n;
/** "RLBakHd" little-endian. */
export const BACKUP_HEAD_TYPE = 0x64486b61424c52n;
export const PACK_VERSION = 1;
/**
 * The default largest pack, in bytes (`--pack-size`). A restore checks and lays out whole packs, one
 * a thread (restore-pool.ts), so a pack is its unit of parallel work: 8 MiB packs made a 100k-message
 * backup 4 units for 2 threads, one of which starts ~100 ms late, and one thread waited ~0.1 s for the
 * other's last pack. 2 MiB packs (a dozen for 100k) share out evenly, and back up as fast.
 */
export const DEFAULT_PACK_SIZE = 2 << 20;
/** Room kept for a pack's header fields when filling it with messages. */
const HEADER_ROOM = 256;

export interface PackHeader {
  logName: string;
  firstSeq: number;
  lastSeq: number;
  count: number;
  previous: Uint8Array;
  logHead?: { page: Uint8Array; sequence: bigint };
  lastId: Uint8Array;
}

/** A pack as read back: its address, header and messages. */
export interface ReadPack extends PackHeader {
  address: Uint8Array;
  messages: Uint8Array[];
  size: number;
}

/** The most bytes a deflated body may inflate to: far more than any pack a writer makes. */
export const MAX_BODY_BYTES = 1 << 30;
const SAMPLE_BYTES = 64 * 1024;
const DEFLATE_OPTIONS = { strategy: zlibConstants.Z_HUFFMAN_ONLY };
const deflateRawAsync = promisify(deflateRaw);

/**
 * A pack's body, deflated when that pays (see the format notes), else undefined. Runs on libuv's
 * thread pool, so the bodies of several packs deflate at once while the main thread goes on.
 */
export async function deflateBody(messages: Uint8Array[]): Promise<Uint8Array | undefined> {
  // Written directly: the same bytes as toBinary(PackBodySchema), for one copy of each message instead of protobuf-es's two.
  const body = encodeRepeatedBytes(1, messages);
  const sample = body.subarray(0, SAMPLE_BYTES);
  if (deflateRawSync(sample, DEFLATE_OPTIONS).length > sample.length * 0.95) return undefined;
  // One output chunk for the whole body: with the default 16 KiB, the main thread ran a callback per chunk.
  const deflated = await deflateRawAsync(body, { ...DEFLATE_OPTIONS, chunkSize: Math.max(64 * 1024, body.length) });
  return deflated.length < body.length * 0.95 ? new Uint8Array(deflated.buffer, deflated.byteOffset, deflated.length) : undefined;
}

/** Lays out a pack; with deflated (from deflateBody of the same messages) its body is that. */
export function encodePack(header: PackHeader, messages: Uint8Array[], deflated?: Uint8Array): { address: Uint8Array; bytes: Uint8Array } {
  const pack = create(PackSchema, {
    type: PACK_TYPE,
    version: PACK_VERSION,
    logName: header.logName,
    firstSeq: BigInt(header.firstSeq),
    lastSeq: BigInt(header.lastSeq),
    count: BigInt(header.count),
    previous: header.previous,
    logHead: header.logHead,
    lastId: header.lastId,
    compression: deflated ? Compression.DEFLATE_RAW : Compression.UNSPECIFIED,
    deflatedBody: deflated,
  });
  // The messages (field 15) as one unknown field, written after the known fields 1-10, where toBinary
  // writes the list: the same bytes (deflated_body, 16, is empty then), one copy instead of two.
  if (!deflated) pack.$unknown = repeatedBytesUnknown(15, messages);
  const bytes = toBinary(PackSchema, pack);
  return { address: addressOf(bytes), bytes };
}

/**
 * Where packs of at most packSize bytes for log logName are cut, one message at a time: startsPack
 * says whether the next message goes into a new pack (it does not fit the current one). A message too
 * big for any pack goes alone into one, which is then over the limit.
 */
export function packCutter(packSize: number, logName: string): { startsPack(message: Uint8Array): boolean } {
  const room = packSize - HEADER_ROOM - Buffer.byteLength(logName);
  let size = 0;
  return {
    startsPack(message) {
      const cost = message.length + 1 + varintSize(message.length);
      const starts = size > 0 && size + cost > room;
      size = starts ? cost : size + cost;
      return starts;
    },
  };
}

/** Splits messages (seqs firstSeq, firstSeq + 1, ...) into runs that each fit a pack (packCutter). */
export function splitIntoPacks(messages: Uint8Array[], packSize: number, logName: string): number[][] {
  const cutter = packCutter(packSize, logName);
  const runs: number[][] = [];
  for (let i = 0; i < messages.length; i++) {
    // The first message starts no pack of its own accord: there is none yet.
    if (cutter.startsPack(messages[i]) || i === 0) runs.push([]);
    runs[runs.length - 1].push(i);
  }
  return runs;
}

/**
 * Checks bytes against the address that named them and decodes the pack, checking its header: type,
 * version, count against messages, last_seq against first_seq + count - 1, a previous link exactly when
 * first_seq > 0. Throws DATA_LOSS naming the pack. Does not decode the messages (see checkMessages).
 */
export function decodePack(bytes: Uint8Array, address: Uint8Array): ReadPack {
  checkAddress(bytes, address);
  const { header, pack } = decodeHeaderOf(bytes, address);
  const messages = bodyOf(pack, malformed(address));
  if (header.count !== messages.length) throw malformed(address)(`header says ${pack.count} messages, body has ${messages.length}`);
  return { ...header, messages };
}

/**
 * decodePack, with the messages where they lie in the pack's body (a MessageRun) instead of an array
 * of views, which a restore of a million messages would make and collect: what restore lays out.
 */
export function decodePackRun(bytes: Uint8Array, address: Uint8Array): ReadPackHeader & { body: MessageRun } {
  checkAddress(bytes, address);
  const { header, pack } = decodeHeaderOf(bytes, address);
  const body = bodyRunOf(pack, malformed(address));
  if (header.count !== body.spans.length / 2) throw malformed(address)(`header says ${pack.count} messages, body has ${body.spans.length / 2}`);
  return { ...header, body };
}

/** A pack's header, as decodePack reads it, without its body (restore lays bodies out on other threads). */
export type ReadPackHeader = Omit<ReadPack, "messages">;

/**
 * decodePack without the hash and the body: every check of the header, none of the bytes against the
 * address or of the body (inflating it, its count). For a caller that runs decodePack on the same
 * bytes elsewhere before it uses anything of them, as restore does on its threads. The header holds
 * no view into bytes.
 */
export function decodePackHeader(bytes: Uint8Array, address: Uint8Array): ReadPackHeader {
  return copiedHeader(decodeHeaderOf(bytes, address).header);
}

/**
 * decodePackHeader from a pack's first bytes (start) and its size in bytes, or undefined when start
 * does not hold the whole header: a writer puts the header's fields (1-10) before the body (15, 16),
 * so a restore reads a few KiB of each pack to walk a chain rather than every pack whole. Skips the
 * checks that need the body (a plain body's count); whoever reads the pack whole checks that its
 * chain shape is this one's (sameShape).
 */
export function decodePackHeaderStart(start: Uint8Array, size: number, address: Uint8Array): ReadPackHeader | undefined {
  const end = fieldsEndBefore(start, 15);
  if (end < 0) return undefined;
  return copiedHeader(decodeHeaderOf(start.subarray(0, end), address, size).header);
}

/**
 * Whether two reads of a pack give the same chain shape: where it lies in its chain (seqs, count, the
 * link) and its log. A walk from a pack's first bytes (decodePackHeaderStart) is checked against the
 * pack read whole this way; the rest of the header is taken from the pack read whole.
 */
export function sameShape(a: ReadPackHeader, b: ReadPackHeader): boolean {
  return a.firstSeq === b.firstSeq && a.lastSeq === b.lastSeq && a.count === b.count && equalBytes(a.previous, b.previous) && a.logName === b.logName;
}

/** header with copies, not views into the bytes it was read from, which the caller may move to another thread. */
function copiedHeader(header: ReadPackHeader): ReadPackHeader {
  return {
    ...header,
    previous: header.previous.slice(),
    lastId: header.lastId.slice(),
    logHead: header.logHead && { page: header.logHead.page.slice(), sequence: header.logHead.sequence },
  };
}

function checkAddress(bytes: Uint8Array, address: Uint8Array): void {
  if (!equalBytes(addressOf(bytes), address)) throw RemoteLogError.dataLoss(`pack ${addressText(address)} does not hash to its address`, undefined, { address: addressText(address) });
}

function malformed(address: Uint8Array): (why: string) => RemoteLogError {
  return (why) => RemoteLogError.dataLoss(`pack ${addressText(address)} is malformed: ${why}`, undefined, { address: addressText(address) });
}

/** size: the pack's, when bytes hold only its header (decodePackHeaderStart). */
function decodeHeaderOf(bytes: Uint8Array, address: Uint8Array, size?: number): { header: ReadPackHeader; pack: Pack } {
  const where = `pack ${addressText(address)}`;
  if (bytes[0] !== 0x09) throw RemoteLogError.dataLoss(`${where} is not a backup pack (it starts with 0x${(bytes[0] ?? 0).toString(16)}, not 0x09)`, undefined, { address: addressText(address) });
  let pack: Pack;
  try {
    pack = fromBinary(PackSchema, bytes);
  } catch (err) {
    throw RemoteLogError.dataLoss(`${where} does not decode as remotelog.v1.Pack (${(err as Error).message})`, err, { address: addressText(address) });
  }
  const bad = malformed(address);
  if (pack.type !== PACK_TYPE) throw bad(`type 0x${pack.type.toString(16)} is not a pack's`);
  if (pack.version !== PACK_VERSION) throw bad(`format version ${pack.version}; this remotelog reads version ${PACK_VERSION}`);
  const count = Number(pack.count);
  // A plain body's count is at hand; a deflated one's is checked once it is inflated (decodePack).
  const plain = pack.compression === Compression.UNSPECIFIED && size === undefined ? pack.messages.length : undefined;
  if (count < 1 || (plain !== undefined && count !== plain)) throw bad(`header says ${pack.count} messages${plain === undefined ? "" : `, body has ${plain}`}`);
  if (pack.lastSeq !== pack.firstSeq + pack.count - 1n) throw bad(`seqs ${pack.firstSeq}..${pack.lastSeq} do not hold ${count} messages`);
  if (pack.lastSeq > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`last seq ${pack.lastSeq} is too large`);
  if ((pack.previous.length === 0) !== (pack.firstSeq === 0n)) {
    throw bad(pack.firstSeq === 0n ? "the first pack of a chain links to a previous one" : `starts at seq ${pack.firstSeq} but links to no previous pack`);
  }
  if (pack.previous.length > 0) {
    try {
      validateAddress(pack.previous);
    } catch (err) {
      throw bad(`previous: ${(err as Error).message}`);
    }
  }
  if (pack.lastId.length !== 32) throw bad(`last_id is ${pack.lastId.length} bytes, not 32`);
  const header: ReadPackHeader = {
    address,
    size: size ?? bytes.length,
    logName: pack.logName,
    firstSeq: Number(pack.firstSeq),
    lastSeq: Number(pack.lastSeq),
    count,
    previous: pack.previous,
    logHead: pack.logHead ? { page: pack.logHead.page, sequence: pack.logHead.sequence } : undefined,
    lastId: pack.lastId,
  };
  return { header, pack };
}

/** A pack's messages, as views into its bytes or its inflated body. */
function bodyOf(pack: Pack, bad: (why: string) => RemoteLogError): Uint8Array[] {
  const body = inflatedBody(pack, bad);
  if (body === undefined) return pack.messages;
  const { bytes, spans } = bodyRun(body, Number(pack.count), bad);
  return Array.from({ length: spans.length / 2 }, (_, i) => bytes.subarray(spans[2 * i], spans[2 * i + 1]));
}

/** bodyOf, as a MessageRun. */
function bodyRunOf(pack: Pack, bad: (why: string) => RemoteLogError): MessageRun {
  const body = inflatedBody(pack, bad);
  return body === undefined ? runOfViews(pack.messages) : bodyRun(body, Number(pack.count), bad);
}

/**
 * An inflated body's messages, at most count of them (the header's): read no further, so that a
 * hostile body of millions of empty messages costs no more than its header says.
 */
function bodyRun(body: Uint8Array, count: number, bad: (why: string) => RemoteLogError): MessageRun {
  const run = readPackBody(body, count);
  if (!run) throw bad(`its deflated body does not inflate to a PackBody of at most ${count} messages`);
  return run;
}

/** A deflated pack's body inflated, or undefined for a plain one (its messages are in pack.messages). */
function inflatedBody(pack: Pack, bad: (why: string) => RemoteLogError): Uint8Array | undefined {
  if (pack.compression === Compression.UNSPECIFIED) {
    if (pack.deflatedBody.length > 0) throw bad("it has a deflated body but says it is not compressed");
    return undefined;
  }
  if (pack.compression !== Compression.DEFLATE_RAW) throw bad(`compression ${pack.compression} is not one this remotelog reads`);
  if (pack.messages.length > 0) throw bad("it has both a deflated body and plain messages");
  try {
    // Output chunks of twice the input (a body deflates to about 0.75 of its size): one or two chunks
    // instead of hundreds of 16 KiB ones, each a call and then a copy into the whole.
    const chunkSize = Math.min(MAX_BODY_BYTES, Math.max(64 * 1024, 2 * pack.deflatedBody.length));
    const body = inflateRawSync(pack.deflatedBody, { maxOutputLength: inflatedBound(pack.deflatedBody.length), chunkSize });
    return new Uint8Array(body.buffer, body.byteOffset, body.length);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw bad(`its ${pack.deflatedBody.length}-byte deflated body inflates past ${inflatedBound(pack.deflatedBody.length)} bytes, more than a writer's Huffman-only DEFLATE can make (a deflate bomb?)`);
    }
    throw bad(`its deflated body does not inflate to a PackBody (${(err as Error).message})`);
  }
}

/**
 * The most a deflated body of n bytes may inflate to. Writers deflate Huffman-only (deflateBody), where
 * every byte out costs at least one bit in: at most 8 bytes out a byte in, and a few for block
 * headers. A body past it was made with LZ matches, as a deflate bomb is (a 130 KB pack inflating to
 * 128 MiB of empty messages crashed restore and verify, and a server's gc), and is refused.
 */
export function inflatedBound(n: number): number {
  return Math.min(MAX_BODY_BYTES, 8 * n + 1024);
}

/**
 * Where each message of an encoded PackBody lies, read directly (field 1; any other field skipped, as
 * protobuf does), or undefined when the body is not a PackBody, or holds more than max messages.
 */
export function readPackBody(body: Uint8Array, max?: number): MessageRun | undefined {
  const spans = repeatedBytesSpans(body, 0x0a, max);
  return spans && { bytes: body, spans };
}

/** Messages decoded as views into one buffer (protobuf-es's), as a MessageRun over that buffer; copied into one when they are not. */
function runOfViews(messages: Uint8Array[]): MessageRun {
  const spans = new Uint32Array(2 * messages.length);
  const buffer = messages[0]?.buffer;
  if (messages.every((message) => message.buffer === buffer)) {
    messages.forEach((message, i) => {
      spans[2 * i] = message.byteOffset;
      spans[2 * i + 1] = message.byteOffset + message.length;
    });
    return { bytes: buffer ? new Uint8Array(buffer) : new Uint8Array(0), spans };
  }
  const bytes = new Uint8Array(messages.reduce((size, message) => size + message.length, 0));
  let at = 0;
  messages.forEach((message, i) => {
    bytes.set(message, at);
    spans[2 * i] = at;
    spans[2 * i + 1] = at += message.length;
  });
  return { bytes, spans };
}

/** Checks that older is the pack right before newer in one chain; DATA_LOSS naming both otherwise. */
export function verifyLink(newer: ReadPackHeader, older: ReadPackHeader): void {
  if (older.lastSeq + 1 !== newer.firstSeq) {
    throw RemoteLogError.dataLoss(`pack ${addressText(newer.address)} starts at seq ${newer.firstSeq}, but the pack before it, ${addressText(older.address)}, ends at ${older.lastSeq}`, undefined, {
      address: addressText(newer.address),
      seq: newer.firstSeq,
    });
  }
  if (older.logName !== newer.logName) {
    throw RemoteLogError.dataLoss(`pack ${addressText(newer.address)} is of log ${JSON.stringify(newer.logName)}, the pack before it of ${JSON.stringify(older.logName)}`, undefined, { address: addressText(newer.address) });
  }
}

/**
 * Decodes every message of a pack and recomputes its id: each must be a vac.mvds.Message, the last
 * one's id must be last_id, and no id may appear twice in the chain (seen holds the ids of the packs
 * checked so far, as latin1 strings). Returns the ids. Throws DATA_LOSS naming the pack and seq.
 */
export function checkMessages(pack: ReadPack, seen?: Set<string>): Uint8Array[] {
  const where = `pack ${addressText(pack.address)}`;
  const address = addressText(pack.address);
  const ids = pack.messages.map((bytes, i) => {
    let id: Uint8Array;
    try {
      id = messageId(decodeMessage(bytes));
    } catch (err) {
      throw RemoteLogError.dataLoss(`${where}: message at seq ${pack.firstSeq + i} is not a vac.mvds.Message`, err, { address, seq: pack.firstSeq + i });
    }
    if (seen) {
      const key = Buffer.from(id).toString("latin1");
      if (seen.has(key)) throw RemoteLogError.dataLoss(`${where}: message ${toHex(id)} at seq ${pack.firstSeq + i} appears twice in the chain`, undefined, { address, seq: pack.firstSeq + i });
      seen.add(key);
    }
    return id;
  });
  checkLastId(pack, ids[ids.length - 1]);
  return ids;
}

/** DATA_LOSS naming the pack and its last seq unless lastId, its last message's id as computed, is its header's last_id. */
export function checkLastId(pack: ReadPackHeader, lastId: Uint8Array): void {
  if (!equalBytes(lastId, pack.lastId)) {
    throw RemoteLogError.dataLoss(`pack ${addressText(pack.address)}: its last message has id ${toHex(lastId)}, but the header says ${toHex(pack.lastId)}`, undefined, {
      address: addressText(pack.address),
      seq: pack.lastSeq,
    });
  }
}

export function encodeBackupHead(head: Omit<BackupHead, "$typeName" | "type">): Uint8Array {
  return toBinary(BackupHeadSchema, create(BackupHeadSchema, { ...head, type: BACKUP_HEAD_TYPE }));
}

/** The BackupHead that content holds, or undefined when it is not one (a log's page, say). */
export function decodeBackupHead(content: Uint8Array): BackupHead | undefined {
  if (content[0] !== 0x09) return undefined;
  try {
    const head = fromBinary(BackupHeadSchema, content);
    if (head.type !== BACKUP_HEAD_TYPE) return undefined;
    validateAddress(head.pack);
    return head;
  } catch {
    return undefined;
  }
}

/** Whether a block is a backup pack, by its first byte and type (without decoding the body). */
export function looksLikePack(bytes: Uint8Array): boolean {
  return bytes.length >= 9 && bytes[0] === 0x09 && Buffer.from(bytes.buffer, bytes.byteOffset + 1, 8).readBigUInt64LE() === PACK_TYPE;
}
