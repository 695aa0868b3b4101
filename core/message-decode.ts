import { fromBinary } from "@bufbuild/protobuf";
import { RemoteLog_PageInfoSchema, type RemoteLog, type RemoteLog_PageInfo, type RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";

/*
 * A direct reader of encoded vac.mvds.Messages, for the layout every encoder writes: fields 1-3 at
 * most once each, with their declared wire types, and no metadata. Every message a receiver checks
 * and every message a sender appends goes through here, and the generic protobuf-es decoder was the
 * largest cost of both after hashing. Anything else (metadata, a repeated or unknown field, an odd
 * varint, truncation) returns undefined, and the caller uses the generic decoder, which decides.
 * test/core/message-decode.test.ts checks that both agree on generated, altered and random input.
 */

/**
 * The message, with groupId and body as views into bytes (no copy), or undefined when the bytes are
 * not in the common layout, whether or not they are valid.
 */
export function decodeCommonMessage(bytes: Uint8Array): Message | undefined {
  const spans = decodedSpans;
  if (!readCommonMessage(bytes, 0, bytes.length, spans)) return undefined;
  const { timestampLo: lo, timestampHi: hi } = spans;
  return {
    $typeName: "vac.mvds.Message",
    groupId: spans.groupEnd > spans.groupStart ? bytes.subarray(spans.groupStart, spans.groupEnd) : EMPTY,
    timestamp: hi === 0 ? BigInt(lo >>> 0) : BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)),
    body: spans.bodyEnd > spans.bodyStart ? bytes.subarray(spans.bodyStart, spans.bodyEnd) : EMPTY,
    metadata: undefined,
  };
}

/** Where the fields of a message in the common layout lie in its bytes (an absent field is an empty span), and its timestamp's 64 bits. */
export interface MessageSpans {
  groupStart: number;
  groupEnd: number;
  bodyStart: number;
  bodyEnd: number;
  /** The timestamp's low and high 32 bits (0 when absent). */
  timestampLo: number;
  timestampHi: number;
}

export function newMessageSpans(): MessageSpans {
  return { groupStart: 0, groupEnd: 0, bodyStart: 0, bodyEnd: 0, timestampLo: 0, timestampHi: 0 };
}

const decodedSpans = newMessageSpans();

/**
 * decodeCommonMessage without objects: fills spans with where the message in bytes[start, end) keeps
 * its fields and returns true, or returns false when it is not in the common layout. A restore reads
 * every message of a pack where it lies.
 */
export function readCommonMessage(bytes: Uint8Array, start: number, end: number, spans: MessageSpans): boolean {
  let pos = start;
  let seen = 0; // bits 1, 2, 4: group_id, timestamp, body
  spans.groupStart = spans.groupEnd = spans.bodyStart = spans.bodyEnd = start;
  spans.timestampLo = spans.timestampHi = 0;
  while (pos < end) {
    const tag = bytes[pos++];
    if (tag === 0x0a || tag === 0x1a) {
      const bit = tag === 0x0a ? 1 : 4;
      if (seen & bit) return false;
      seen |= bit;
      const length = readLength(bytes, pos, end);
      if (length < 0) return false;
      if (tag === 0x0a) {
        spans.groupStart = readTo;
        spans.groupEnd = readTo + length;
      } else {
        spans.bodyStart = readTo;
        spans.bodyEnd = readTo + length;
      }
      pos = readTo + length;
    } else if (tag === 0x10) {
      if (seen & 2) return false;
      seen |= 2;
      // The int64's 64 bits as two 32-bit halves, so that BigInt is touched once.
      let lo = 0;
      let hi = 0;
      let byte = 0;
      let i = 0;
      for (; i < 10; i++) {
        if (pos >= end) return false;
        byte = bytes[pos++];
        const bits = byte & 0x7f;
        if (i < 4) lo |= bits << (7 * i);
        else if (i === 4) {
          lo |= (bits & 0x0f) << 28;
          hi |= bits >>> 4;
        } else hi |= bits << (7 * i - 32);
        if (!(byte & 0x80)) break;
      }
      // An 11-byte varint, or a tenth byte beyond bit 63: the generic decoder judges it.
      if (i === 10 || (i === 9 && byte > 1)) return false;
      spans.timestampLo = lo;
      spans.timestampHi = hi;
    } else {
      return false;
    }
  }
  return true;
}

const EMPTY = new Uint8Array(0);

/*
 * MVDS v0.0.23 and before (`package mvds`) numbered the same fields 5001-5004 (Payload) and 6001-6003
 * (Message). To the current decoder such bytes are a valid, empty vac.mvds.Message with unknown
 * fields, whose id is the empty message's: a silent wrong answer. We read no legacy messages, so they
 * are refused by name (design/remote-log.md §2: a legacy decoder, if ever, is explicit, never a guess).
 */
const LEGACY_FIELDS = new Set([5001, 5002, 5003, 5004, 6001, 6002, 6003]);

/** The first legacy MVDS field number among a decoded message's unknown fields, or undefined. */
export function legacyMvdsField(message: Pick<Message, "$unknown">): number | undefined {
  return message.$unknown?.find((field) => LEGACY_FIELDS.has(field.no))?.no;
}

/*
 * The same for pages (vac.cas.RemoteLog): pairs of fields 1-5 at most once each, a tail and page info
 * at most once each, nothing else. A receiver decodes a page per round trip while walking, and the generic decoder's
 * objects were most of its garbage.
 */

/**
 * Where each element of a repeated bytes field lies in bytes: element i is bytes[spans[2i], spans[2i + 1]).
 * tag is the field's one-byte tag; other fields are skipped, as protobuf skips unknown fields. undefined
 * for bytes that are not protobuf of that shape (the field with another wire type, a group, a length past
 * the end or over 256 MiB) and for more than max elements, which are not counted on: a hostile pack's
 * body of a million empty messages stops at its header's count. A restore reads every pack body this way
 * (backup/pack-format.ts readPackBody).
 */
export function repeatedBytesSpans(bytes: Uint8Array, tag: number, max = 0xffffffff): Uint32Array | undefined {
  const spans: number[] = [];
  const end = bytes.length;
  const field = tag >> 3;
  let pos = 0;
  while (pos < end) {
    if (bytes[pos] === tag) {
      if (spans.length >= 2 * max) return undefined;
      const length = readLength(bytes, pos + 1, end);
      if (length < 0) return undefined;
      spans.push(readTo, readTo + length);
      pos = readTo + length;
      continue;
    }
    const key = readSmallVarint(bytes, pos, end);
    const number = Math.floor(key / 8);
    if (key < 0 || number === field || number === 0 || number > 0x1fffffff) return undefined;
    pos = skipValue(bytes, readTo, end, key % 8);
    if (pos < 0) return undefined;
  }
  return Uint32Array.from(spans);
}

/**
 * Where the first top-level field numbered from or more starts in bytes, the first bytes of an encoded
 * message: every field before it lies whole in bytes. -1 when bytes end before one starts, or are not
 * protobuf. A restore reads a pack's header from its first bytes this way (backup/pack-format.ts
 * decodePackHeaderStart), the body (fields 15 and 16) coming after it.
 */
export function fieldsEndBefore(bytes: Uint8Array, from: number): number {
  const end = bytes.length;
  let pos = 0;
  while (pos < end) {
    const key = readSmallVarint(bytes, pos, end);
    if (key < 8) return -1;
    if (Math.floor(key / 8) >= from) return pos;
    pos = skipValue(bytes, readTo, end, key % 8);
    if (pos < 0) return -1;
  }
  return -1;
}

/** Where a field's value of wireType that starts at pos ends, or -1 when it runs past end or is a group. */
function skipValue(bytes: Uint8Array, pos: number, end: number, wireType: number): number {
  switch (wireType) {
    case 0: {
      // A varint of up to 10 bytes.
      let n = 0;
      while (pos < end && bytes[pos] & 0x80 && n < 9) pos++, n++;
      return pos >= end || bytes[pos] & 0x80 ? -1 : pos + 1;
    }
    case 1:
      return pos + 8 > end ? -1 : pos + 8;
    case 2: {
      const length = readLength(bytes, pos, end);
      return length < 0 ? -1 : readTo + length;
    }
    case 5:
      return pos + 4 > end ? -1 : pos + 4;
    default:
      return -1;
  }
}

/**
 * Where the value read last by readLength or readSmallVarint ends: set by them instead of returned in a
 * tuple, since decoding a page called them five times a pair and the tuples were a third of a catch-up's
 * allocations (they are not optimised away in every caller).
 */
let readTo = 0;

/**
 * Reads a length varint at pos; returns the length, with the value starting at readTo, or -1 when the
 * length runs past end. Up to 4 varint bytes (256 MiB) cover every message and page a store accepts.
 */
function readLength(bytes: Uint8Array, pos: number, end: number): number {
  let length = 0;
  let shift = 0;
  let byte: number;
  do {
    if (pos >= end || shift > 21) return -1;
    byte = bytes[pos++];
    length |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  readTo = pos;
  return pos + length > end ? -1 : length;
}

/** Reads a varint of up to 7 bytes (2^49) at pos; returns the value, with the next pos in readTo, or -1. */
function readSmallVarint(bytes: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    if (pos >= end) return -1;
    const byte = bytes[pos++];
    value += (byte & 0x7f) * scale;
    if (!(byte & 0x80)) {
      readTo = pos;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

/** Where a pair in the common layout keeps its bytes fields (start -1: absent), its seqid and whether it is redacted. */
export interface PairSpans {
  remoteStart: number;
  remoteEnd: number;
  localStart: number;
  localEnd: number;
  dataStart: number;
  dataEnd: number;
  /** -1 when absent (0 to the decoder). */
  seqid: number;
  /** -1 when absent (false to the decoder), else 0 or 1. */
  redacted: number;
}

function newPairSpans(): PairSpans {
  return { remoteStart: -1, remoteEnd: -1, localStart: -1, localEnd: -1, dataStart: -1, dataEnd: -1, seqid: -1, redacted: -1 };
}

/** decodeCommonPair without objects: fills spans and returns true, or returns false when bytes[start, end) is not a pair in the common layout. */
function readCommonPair(bytes: Uint8Array, start: number, end: number, spans: PairSpans): boolean {
  spans.remoteStart = spans.remoteEnd = spans.localStart = spans.localEnd = spans.dataStart = spans.dataEnd = -1;
  spans.seqid = spans.redacted = -1;
  let pos = start;
  while (pos < end) {
    const tag = bytes[pos++];
    if (tag === 0x20 || tag === 0x28) {
      if ((tag === 0x20 ? spans.seqid : spans.redacted) !== -1) return false;
      const value = readSmallVarint(bytes, pos, end);
      if (value < 0) return false;
      pos = readTo;
      if (tag === 0x20) spans.seqid = value;
      else if (value > 1) return false;
      else spans.redacted = value;
      continue;
    }
    if (tag !== 0x0a && tag !== 0x12 && tag !== 0x1a) return false;
    const length = readLength(bytes, pos, end);
    if (length < 0) return false;
    const at = readTo;
    pos = at + length;
    if (tag === 0x0a) {
      if (spans.remoteStart !== -1) return false;
      spans.remoteStart = at;
      spans.remoteEnd = pos;
    } else if (tag === 0x12) {
      if (spans.localStart !== -1) return false;
      spans.localStart = at;
      spans.localEnd = pos;
    } else {
      if (spans.dataStart !== -1) return false;
      spans.dataStart = at;
      spans.dataEnd = pos;
    }
  }
  return true;
}

const pairSpans = newPairSpans();

function decodeCommonPair(bytes: Uint8Array, start: number, end: number): RemoteLog_Pair | undefined {
  const spans = pairSpans;
  if (!readCommonPair(bytes, start, end, spans)) return undefined;
  return {
    $typeName: "vac.cas.RemoteLog.Pair",
    remoteHash: spans.remoteStart === -1 ? EMPTY : bytes.subarray(spans.remoteStart, spans.remoteEnd),
    localHash: spans.localStart === -1 ? EMPTY : bytes.subarray(spans.localStart, spans.localEnd),
    data: spans.dataStart === -1 ? EMPTY : bytes.subarray(spans.dataStart, spans.dataEnd),
    seqid: spans.seqid === -1 ? 0n : BigInt(spans.seqid),
    redacted: spans.redacted === 1,
  };
}

/**
 * The page, with every bytes field a view into bytes, or undefined when not in the common layout.
 * Page info (small, once a page) goes through the generic decoder.
 */
export function decodeCommonPage(bytes: Uint8Array): RemoteLog | undefined {
  const pair: RemoteLog_Pair[] = [];
  const read = readCommonPage(bytes, (start, end) => {
    const decoded = decodeCommonPair(bytes, start, end);
    if (!decoded) return false;
    pair.push(decoded);
    return true;
  });
  return read && { $typeName: "vac.cas.RemoteLog", pair, tail: read.tail, info: read.info };
}

/**
 * A page in the common layout without a pair object: its tail and info, each pair's spans handed to
 * pairOk (which may refuse it) in order. undefined when the page is not in the common layout or
 * pairOk refused a pair. The spans are reused from one pair to the next.
 */
export function scanCommonPage(bytes: Uint8Array, pairOk: (spans: PairSpans) => boolean): { tail: Uint8Array; info?: RemoteLog_PageInfo } | undefined {
  const spans = pairSpans;
  return readCommonPage(bytes, (start, end) => readCommonPair(bytes, start, end, spans) && pairOk(spans));
}

/**
 * A page's info as it lies, its pairs not looked at: what a server following a chain's links for a
 * reader needs (GetMany linked_pages), since the reader checks every page it is sent. Undefined for
 * bytes that are not a page of the common layout, or a page without info.
 */
export function pageInfoUnchecked(bytes: Uint8Array): RemoteLog_PageInfo | undefined {
  return readCommonPage(bytes, () => true)?.info;
}

/** The walk of decodeCommonPage and scanCommonPage: tail and info here, each pair's bytes to onPair, which may refuse it. */
function readCommonPage(bytes: Uint8Array, onPair: (start: number, end: number) => boolean): { tail: Uint8Array; info?: RemoteLog_PageInfo } | undefined {
  const end = bytes.length;
  let tail: Uint8Array | undefined;
  let info: RemoteLog_PageInfo | undefined;
  let pos = 0;
  while (pos < end) {
    const tag = bytes[pos++];
    if (tag !== 0x0a && tag !== 0x12 && tag !== 0x1a) return undefined;
    const length = readLength(bytes, pos, end);
    if (length < 0) return undefined;
    const at = readTo;
    pos = at + length;
    if (tag === 0x0a) {
      if (!onPair(at, pos)) return undefined;
    } else if (tag === 0x12) {
      if (tail) return undefined;
      tail = bytes.subarray(at, pos);
    } else {
      if (info) return undefined;
      try {
        info = fromBinary(RemoteLog_PageInfoSchema, bytes.subarray(at, pos));
      } catch {
        return undefined;
      }
      if (info.$unknown?.length || info.skips.some((skip) => skip.$unknown?.length)) return undefined;
    }
  }
  return { tail: tail ?? EMPTY, info };
}
