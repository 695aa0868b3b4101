import { fromBinary, toBinary, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  RemoteLogSchema,
  RemoteLog_PageInfoSchema,
  type RemoteLog,
  type RemoteLog_PageInfo,
  type RemoteLog_Pair,
  type RemoteLog_Skip,
} from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { RemoteLogError, type ErrorCode, ErrorCodes } from "./errors.js";
import { decodeCommonPage, newMessageSpans, readCommonMessage, scanCommonPage } from "./message-decode.js";
import { addressOf, decodeMessage, equalBytes, isAddress, isAddressAt, matchesAddress, matchesAddressAt, messageId, messageIdOfSpans, validateAddress, toHex, addressText } from "./hash.js";
import { allocBytes } from "#hash";
import { bytesFieldSize, varintSize, writeBytesField, writeVarint } from "./wire-encode.js";

/**
 * How much message data a sender embeds in its pages. "all" is the draft's full replication: every
 * page carries every message. A number K embeds the newest K messages of the head page only (a sender
 * keeps up to 2K - 1 there, actors/sender.ts headEmbed); pages sealed into the CAS reference their
 * messages, since a sealed page can never drop data later.
 */
export type EmbedMode = "none" | "all" | number;

/**
 * What a sender embeds unless told otherwise: the newest 8 messages of the head page. A follower woken
 * by a pushed head then has a new message in hand without fetching anything (follow latency p50 8.4-9.2 ms
 * against 10-13 ms with every message only in the CAS; bench/README.md), while the head stays small
 * and sealed pages reference their messages as before. Such a message lives only in the head until it
 * leaves the embedded newest (8 to 15): LogReader.embeddedMessage finds it there.
 */
export const DEFAULT_EMBED: EmbedMode = 8;

/**
 * The most message bytes a head embeds for a number K: a message that would take the head's embedded
 * data past this stays in the CAS, as an older one does. Without it two messages of 600 KB, each under
 * the CAS's block limit, made a head over the NS's limit of 1 MiB, and every later publish laid out
 * the same head and failed the same way until more messages pushed them out.
 */
export const EMBED_MAX_BYTES = 256 * 1024;

/**
 * The most pairs `send --page-size` takes. A pair without message data is 74 to 80 bytes (an address,
 * an id, a seqid, their tags and lengths: PAIR_LEAST_BYTES, PAIR_MOST_BYTES), so a page of 8192 is at
 * most ~650 KB, inside the 1 MiB block limit of remotelog serve, the draft's CAS and Kubo; one of
 * ~13,000 is over it, and could never be stored.
 */
export const MAX_PAGE_SIZE = 8192;
/** The fewest bytes a pair takes in a page: a 36-byte address and a 32-byte id, each and the pair with a tag and a one-byte length. */
export const PAIR_LEAST_BYTES = 74;
/** The most bytes a pair without message data takes: PAIR_LEAST_BYTES and a seqid below 2^35. */
export const PAIR_MOST_BYTES = 80;

/** One message of a log as pages need it. data is the encoded vac.mvds.Message. */
export interface LogEntry {
  id: Uint8Array;
  address: Uint8Array;
  data: Uint8Array;
}

export function parseEmbed(text: string): EmbedMode {
  if (text === "none" || text === "all") return text;
  if (/^\d+$/.test(text)) return Number(text);
  throw RemoteLogError.invalidArgument(`--embed takes none, all or a count, not ${JSON.stringify(text)}`);
}

/**
 * Encodes a page exactly as toBinary(RemoteLogSchema, page) does (fields in number order, empty bytes
 * left out, no unknown fields), written directly into one buffer: a sender encodes a page per 256
 * messages, and the generic encoder was a fifth of a publish. test/core/page.test.ts checks that both
 * give the same bytes; a page carrying unknown fields goes through the generic encoder.
 */
export function encodePage(page: RemoteLog): Uint8Array {
  if (page.$unknown?.length || page.pair.some((pair) => pair.$unknown?.length)) return toBinary(RemoteLogSchema, page);
  const pairs = page.pair;
  const sizes = new Array<number>(pairs.length);
  let pairBytes = 0;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i];
    sizes[i] = pairSize(pair.remoteHash, pair.localHash, pair.data, Number(pair.seqid), pair.redacted);
    pairBytes += 1 + varintSize(sizes[i]) + sizes[i];
  }
  const { out, at: end } = pageBuffer(pairBytes, page.tail, page.info);
  let at = 0;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i];
    at = writePair(out, at, sizes[i], pair.remoteHash, pair.localHash, pair.data, Number(pair.seqid), pair.redacted);
  }
  if (at !== end) throw new Error(`page encoder wrote ${at} bytes of pairs, not ${end}`);
  return out;
}

/**
 * encodePage(pageOf(entries, tail, embed ? Infinity : 0, referenced, position)) for a page of this
 * writer's own entries, laid out from the entries without the pair objects and seqid BigInts between:
 * a sender seals a page per 256 messages, and making and reading those was most of sealing one.
 * referenced gets the entries that carry no data, as pageOf gives them. test/core/page.test.ts checks
 * both give the same bytes.
 */
function encodeEntriesPage(entriesOldestFirst: LogEntry[], tail: Uint8Array, embed: boolean, referenced: LogEntry[], position: PagePosition | null): Uint8Array {
  const n = entriesOldestFirst.length;
  const first = position?.firstSeqid ?? 0;
  const sizes = new Array<number>(n);
  let pairBytes = 0;
  for (let i = 0; i < n; i++) {
    const entry = entriesOldestFirst[n - 1 - i];
    sizes[i] = pairSize(entry.address, entry.id, embed ? entry.data : EMPTY, position ? first + n - 1 - i : 0, false);
    pairBytes += 1 + varintSize(sizes[i]) + sizes[i];
  }
  const { out } = pageBuffer(pairBytes, tail, position ? pageInfo(position, n) : undefined);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const entry = entriesOldestFirst[n - 1 - i];
    // An empty message encodes to no bytes, which reads as "not embedded": it must be in the CAS too.
    if (!embed || entry.data.length === 0) referenced.push(entry);
    at = writePair(out, at, sizes[i], entry.address, entry.id, embed ? entry.data : EMPTY, position ? first + n - 1 - i : 0, false);
  }
  return out;
}

/** Bytes of a pair's fields (without its own tag and length). */
function pairSize(remoteHash: Uint8Array, localHash: Uint8Array, data: Uint8Array, seqid: number, redacted: boolean): number {
  return bytesFieldSize(remoteHash) + bytesFieldSize(localHash) + bytesFieldSize(data) + (seqid === 0 ? 0 : 1 + varintSize(seqid)) + (redacted ? 2 : 0);
}

/** A pair (field 1 of the page) of size bytes at at; returns where it ends. */
function writePair(out: Uint8Array, at: number, size: number, remoteHash: Uint8Array, localHash: Uint8Array, data: Uint8Array, seqid: number, redacted: boolean): number {
  out[at++] = 0x0a; // field 1 (pair), length-delimited
  at = writeVarint(out, at, size);
  at = writeBytesField(out, at, 0x0a, remoteHash);
  at = writeBytesField(out, at, 0x12, localHash);
  at = writeBytesField(out, at, 0x1a, data);
  if (seqid !== 0) {
    out[at++] = 0x20; // field 4 (seqid), varint
    at = writeVarint(out, at, seqid);
  }
  if (redacted) {
    out[at++] = 0x28; // field 5 (redacted), varint
    out[at++] = 1;
  }
  return at;
}

/**
 * The buffer of a page whose pairs take pairBytes, with its tail and info written after them; at is
 * where the pairs end (they are written from 0).
 */
function pageBuffer(pairBytes: number, tail: Uint8Array, info: RemoteLog_PageInfo | undefined): { out: Uint8Array; at: number } {
  const infoBytes = info ? toBinary(RemoteLog_PageInfoSchema, info) : undefined;
  const out = new Uint8Array(pairBytes + bytesFieldSize(tail) + (infoBytes ? 1 + varintSize(infoBytes.length) + infoBytes.length : 0));
  let at = writeBytesField(out, pairBytes, 0x12, tail); // field 2 (tail)
  if (infoBytes) {
    out[at++] = 0x1a; // field 3 (info), length-delimited, even when empty: its presence says the page is indexed
    at = writeVarint(out, at, infoBytes.length);
    out.set(infoBytes, at);
  }
  return { out, at: pairBytes };
}

/**
 * A repeated bytes field of a message (number fieldNo, below 16), every element written into one
 * buffer, as the single unknown field that protobuf-es's toBinary then writes as it is: the same bytes
 * on the wire as the list in its field, for one allocation and copy instead of two chunks per element.
 * A client sending 10,000 blocks in AddMany spent more on the generic list encoding than on hashing
 * them. Binary encoding only: JSON leaves unknown fields out, so a JSON transport must send the list.
 * Placed with `$unknown`, after the known fields, which protobuf parsers accept in any order.
 */
export function repeatedBytesUnknown(fieldNo: number, list: Uint8Array[]): UnknownField[] {
  if (list.length === 0) return [];
  const out = encodeRepeatedBytes(fieldNo, list);
  // An unknown field is its tag, then its data: here the first element's length and bytes, then every other element whole.
  return [{ no: fieldNo, wireType: WireType.LengthDelimited, data: out.subarray(1) }];
}

/** A repeated bytes field (number fieldNo, below 16) encoded whole, into one buffer: tag, length and bytes of each element. */
export function encodeRepeatedBytes(fieldNo: number, list: Uint8Array[]): Uint8Array {
  const tag = (fieldNo << 3) | WireType.LengthDelimited;
  let total = 0;
  for (const item of list) total += 1 + varintSize(item.length) + item.length;
  // Not zeroed first: every byte is written below.
  const out = allocBytes(total);
  let at = 0;
  for (const item of list) {
    out[at++] = tag;
    at = writeVarint(out, at, item.length);
    out.set(item, at);
    at += item.length;
  }
  return out;
}

/**
 * Decodes and checks a page (its bytes fields may be views into bytes): every pair has a 32-byte H1
 * and a valid H2 (none on a tombstone), the tail is empty or a valid address, and page info, when
 * there is any, agrees with the pairs, the tail and the skip links every page of its number must have.
 * code says whose fault a bad page is: INVALID_ARGUMENT for input, DATA_LOSS for a page fetched from
 * a store.
 */
export function decodePage(bytes: Uint8Array, where: string, code: ErrorCode = ErrorCodes.INVALID_ARGUMENT): RemoteLog {
  let page: RemoteLog | undefined = decodeCommonPage(bytes);
  if (!page) {
    try {
      page = fromBinary(RemoteLogSchema, bytes);
    } catch (err) {
      throw new RemoteLogError(code, `${where} is not a vac.cas.RemoteLog page (${(err as Error).message})`, { cause: err });
    }
  }
  try {
    if (page.tail.length > 0) validateAddress(page.tail);
    page.pair.forEach((pair, i) => {
      if (pair.localHash.length !== 32) throw new Error(`pair ${i} has a ${pair.localHash.length}-byte localHash, not 32`);
      if (pair.redacted) {
        if (pair.remoteHash.length > 0 || pair.data.length > 0) throw new Error(`pair ${i} is redacted but still has an address or data`);
        return;
      }
      try {
        validateAddress(pair.remoteHash);
      } catch (err) {
        throw new Error(`pair ${i} remoteHash: ${(err as Error).message}`);
      }
    });
    if (page.info) checkInfo(page, page.info);
  } catch (err) {
    throw new RemoteLogError(code, `${where} is malformed: ${(err as Error).message}`, { cause: err });
  }
  return page;
}

/** A page's tail and info, as decodePageLinks gives them. */
export interface PageLinks {
  tail: Uint8Array;
  info?: RemoteLog_PageInfo;
}

/**
 * decodePage's tail and info, after every check decodePage makes, without building the pairs: what a
 * collection keeps of a page it does not hold (core/chain.ts), which it reads again whole if it needs
 * it. Pairs are checked where they lie (a 32-byte H1; a valid H2, or none and no data on a
 * tombstone; seqids counting down to the info's first), and anything this is not sure of (another
 * layout, a failed check) goes through decodePage, which decides and names the fault.
 */
export function decodePageLinks(bytes: Uint8Array, where: string, code: ErrorCode = ErrorCodes.INVALID_ARGUMENT): PageLinks {
  const seqids = scannedSeqids;
  seqids.length = 0;
  const scanned = scanCommonPage(bytes, (pair) => {
    // An absent field's span is (-1, -1): empty.
    if (pair.localEnd - pair.localStart !== 32) return false;
    if (pair.redacted === 1) {
      if (pair.remoteEnd > pair.remoteStart || pair.dataEnd > pair.dataStart) return false;
    } else if (!isAddressAt(bytes, pair.remoteStart, pair.remoteEnd)) {
      return false;
    }
    seqids.push(pair.seqid === -1 ? 0 : pair.seqid);
    return true;
  });
  const info = scanned?.info;
  if (scanned && info && (scanned.tail.length === 0 || isAddress(scanned.tail)) && info.count === seqids.length && seqidsCountDown(seqids, info.firstSeqid)) {
    try {
      checkLinks(scanned.tail, info);
      return scanned;
    } catch {
      // decodePage names it.
    }
  }
  const page = decodePage(bytes, where, code);
  return { tail: page.tail, info: page.info };
}

/** The seqids decodePageLinks saw, reused from page to page. */
const scannedSeqids: number[] = [];

/** Whether seqids[k] is first + (count - 1 - k) for every k, in safe integers (else: not sure). */
function seqidsCountDown(seqids: number[], first: bigint): boolean {
  const count = seqids.length;
  if (first + BigInt(count) > BigInt(Number.MAX_SAFE_INTEGER)) return false;
  const last = Number(first) + count - 1;
  for (let k = 0; k < count; k++) if (seqids[k] !== last - k) return false;
  return true;
}

function checkInfo(page: RemoteLog, info: RemoteLog_PageInfo): void {
  if (info.count !== page.pair.length) throw new Error(`its info counts ${info.count} pairs, and it holds ${page.pair.length}`);
  const first = info.firstSeqid;
  const count = page.pair.length;
  for (let k = 0; k < count; k++) {
    const expected = first + BigInt(count - 1 - k);
    if (page.pair[k].seqid !== expected) throw new Error(`pair ${k} has seqid ${page.pair[k].seqid}, not ${expected}`);
  }
  checkLinks(page.tail, info);
}

/** checkInfo's checks of the page's number, tail and skip links. */
function checkLinks(tail: Uint8Array, info: RemoteLog_PageInfo): void {
  const first = info.firstSeqid;
  if (info.number > BigInt(Number.MAX_SAFE_INTEGER) || first > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("its info is out of range");
  const number = Number(info.number);
  if ((number === 0) !== (tail.length === 0)) {
    throw new Error(number === 0 ? "it is page 0 and has a tail" : `it is page ${number} and has no tail`);
  }
  const expected = skipNumbers(number);
  if (info.skips.length !== expected.length) throw new Error(`page ${number} must have ${expected.length} skip links, not ${info.skips.length}`);
  info.skips.forEach((skip, i) => {
    if (Number(skip.number) !== expected[i] || skip.number !== BigInt(expected[i])) throw new Error(`skip link ${i} names page ${skip.number}, not ${expected[i]}`);
    if (skip.firstSeqid >= (i === 0 ? first : info.skips[i - 1].firstSeqid)) throw new Error(`skip link ${i} has seqid ${skip.firstSeqid}, not below the newer one`);
    try {
      validateAddress(skip.address);
    } catch (err) {
      throw new Error(`skip link ${i}: ${(err as Error).message}`);
    }
  });
  if (number > 0 && !equalBytes(info.skips[0].address, tail)) throw new Error("its first skip link is not its tail");
  if (number > 0 && info.skips[expected.length - 1].firstSeqid !== 0n) throw new Error("its link to page 0 does not start at seqid 0");
}

/**
 * The page numbers a page links to, newest first: for j = 0, 1, ... the newest page before it whose
 * number is a multiple of 2^j, down to page 0. Every one is in the page before's links or is that page.
 */
export function skipNumbers(number: number): number[] {
  const numbers: number[] = [];
  if (number === 0) return numbers;
  const previous = number - 1;
  for (let step = 1; ; step *= 2) {
    const m = Math.floor(previous / step) * step;
    if (numbers[numbers.length - 1] !== m) numbers.push(m);
    if (m === 0) return numbers;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Where the next page laid out from here starts: its first seqid, its number and skip links, and the
 * log's redaction count. null for a log whose pages carry no info (written by a draft sender):
 * its pages stay without info, since a seqid can only be known by counting from the first page.
 */
export interface PagePosition {
  firstSeqid: number;
  number: number;
  skips: RemoteLog_Skip[];
  redactions: number;
}

export const FIRST_POSITION: PagePosition = { firstSeqid: 0, number: 0, skips: [], redactions: 0 };

/** The position a page laid out in place of this one (a new head over the same tail) starts from. */
export function positionOf(page: RemoteLog): PagePosition | null {
  if (page.info) {
    return { firstSeqid: Number(page.info.firstSeqid), number: Number(page.info.number), skips: page.info.skips, redactions: Number(page.info.redactions) };
  }
  return page.pair.length === 0 && page.tail.length === 0 ? FIRST_POSITION : null;
}

/** The position of the page after a sealed page that started at position and held count pairs. */
export function positionAfter(position: PagePosition, address: Uint8Array, count: number): PagePosition {
  const sealed: RemoteLog_Skip = { $typeName: "vac.cas.RemoteLog.Skip", address, firstSeqid: BigInt(position.firstSeqid), number: BigInt(position.number) };
  const byNumber = new Map<number, RemoteLog_Skip>([[position.number, sealed]]);
  for (const skip of position.skips) byNumber.set(Number(skip.number), skip);
  const number = position.number + 1;
  return {
    firstSeqid: position.firstSeqid + count,
    number,
    skips: skipNumbers(number).map((n) => byNumber.get(n)!),
    redactions: position.redactions,
  };
}

// Literals rather than create(): protobuf-es messages are plain objects, and the reflective create()
// cost more than the hashing for a page of small messages.
function pairOf(entry: LogEntry, embed: boolean, seqid: bigint): RemoteLog_Pair {
  return { $typeName: "vac.cas.RemoteLog.Pair", remoteHash: entry.address, localHash: entry.id, data: embed ? entry.data : EMPTY, seqid, redacted: false };
}

/**
 * What a page is planned from: a message whose bytes this writer has (a LogEntry: embedded or
 * referenced as the embed mode says), or a pair published by another writer of the same name, whose
 * message this writer may not have (or a tombstone), carried over as it is.
 */
export type PageItem = LogEntry | RemoteLog_Pair;

function isCarried(item: PageItem): item is RemoteLog_Pair {
  return "$typeName" in item;
}

/** A page with its entries newest first, as the draft lays them out. */
function pageOf(itemsOldestFirst: PageItem[], tail: Uint8Array, embedNewest: number, referenced: LogEntry[], position: PagePosition | null): RemoteLog {
  const pair: RemoteLog_Pair[] = new Array(itemsOldestFirst.length);
  const n = itemsOldestFirst.length;
  const first = position?.firstSeqid ?? 0;
  // "all" is full replication, asked for as such; a number K embeds at most EMBED_MAX_BYTES.
  let embedBytesLeft = embedNewest === Infinity ? Infinity : EMBED_MAX_BYTES;
  for (let i = 0; i < n; i++) {
    const entry = itemsOldestFirst[n - 1 - i];
    const seqid = position ? BigInt(first + n - 1 - i) : 0n;
    if (isCarried(entry)) {
      pair[i] = entry.seqid === seqid ? entry : { ...entry, seqid };
      continue;
    }
    const embed = i < embedNewest && entry.data.length <= embedBytesLeft;
    if (embed) embedBytesLeft -= entry.data.length;
    // An empty message encodes to no bytes, which reads as "not embedded": it must be in the CAS too.
    if (!embed || entry.data.length === 0) referenced.push(entry);
    pair[i] = pairOf(entry, embed, seqid);
  }
  return { $typeName: "vac.cas.RemoteLog", pair, tail, info: position ? pageInfo(position, n) : undefined };
}

/** The info of a page of count pairs at position. */
function pageInfo(position: PagePosition, count: number): RemoteLog_PageInfo {
  return {
    $typeName: "vac.cas.RemoteLog.PageInfo",
    firstSeqid: BigInt(position.firstSeqid),
    count,
    number: BigInt(position.number),
    skips: position.skips,
    redactions: BigInt(position.redactions),
  };
}

export interface SealedPage {
  address: Uint8Array;
  bytes: Uint8Array;
}

export interface PagePlan {
  /** Pages that became full, oldest first, each to be stored in the CAS before the head is published. */
  sealed: SealedPage[];
  head: RemoteLog;
  /** Entries whose pair carries no data in these pages: they must be in the CAS before a page names them. */
  referenced: LogEntry[];
}

/**
 * Lays out entries that start where the current head page starts (position: that page's, from
 * positionOf; FIRST_POSITION for a new log). Full pages are sealed (encoded, addressed, linked by
 * tail and skip links), and what is left becomes the new head. A full head stays the head until the
 * next append, so that a head is never empty. Cost is O(entries + log pages), which is O(k + page
 * size) when the caller passes the old head's entries plus k new ones.
 */
export function planPages(
  entriesOldestFirst: PageItem[],
  tail: Uint8Array,
  pageSize: number,
  embed: EmbedMode,
  position: PagePosition | null = FIRST_POSITION,
): PagePlan {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw RemoteLogError.invalidArgument(`page size must be a positive integer, not ${pageSize}`);
  if (position && (position.number === 0) !== (tail.length === 0)) {
    throw RemoteLogError.invalidArgument(`a page at position ${position.number} ${tail.length === 0 ? "needs" : "cannot have"} a tail`);
  }
  const sealed: SealedPage[] = [];
  const referenced: LogEntry[] = [];
  const sealedEmbed = embed === "all" ? Infinity : 0;
  let start = 0;
  let link = tail;
  let at = position;
  while (entriesOldestFirst.length - start > pageSize) {
    const items = entriesOldestFirst.slice(start, start + pageSize);
    // A page of this writer's own entries (every sealed page of a long publish but the first) is laid out from them directly.
    const bytes = items.some(isCarried)
      ? encodePage(pageOf(items, link, sealedEmbed, referenced, at))
      : encodeEntriesPage(items as LogEntry[], link, sealedEmbed === Infinity, referenced, at);
    link = addressOf(bytes);
    sealed.push({ address: link, bytes });
    if (at) at = positionAfter(at, link, pageSize);
    start += pageSize;
  }
  const headEmbed = embed === "all" ? Infinity : embed === "none" ? 0 : embed;
  return { sealed, head: pageOf(entriesOldestFirst.slice(start), link, headEmbed, referenced, at), referenced };
}

const checkedSpans = newMessageSpans();
const checkedId = new Uint8Array(32);

/**
 * Whether data is the message its pair names, as verifyPairData checks it, but with no message object
 * and no error made: H2 against the bytes, then H1 of the message where it lies in them. The H2 is the
 * 36 bytes of remote at remoteAt, the H1 the 32 of local at localAt, so that a thread can take them
 * packed. Every message a receiver fetches goes through this, on its own thread or a verify thread
 * (actors/verify-worker.ts); a false one is checked again with verifyPairData, for its error.
 */
export function pairDataChecksOut(data: Uint8Array, remote: Uint8Array, remoteAt: number, local: Uint8Array, localAt: number): boolean {
  if (remote.length < remoteAt + 36 || local.length < localAt + 32 || !matchesAddressAt(data, remote, remoteAt)) return false;
  if (readCommonMessage(data, 0, data.length, checkedSpans)) {
    messageIdOfSpans(data, checkedSpans, checkedId, 0);
    for (let k = 0; k < 32; k++) if (checkedId[k] !== local[localAt + k]) return false;
    return true;
  }
  // A message in a layout readCommonMessage does not take: the whole check.
  try {
    verifyPairData({ remoteHash: remote.subarray(remoteAt, remoteAt + 36), localHash: local.subarray(localAt, localAt + 32) }, data);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks fetched or embedded message bytes against their pair: H2 against the bytes, H1 against the
 * decoded message. Returns the message, or throws DATA_LOSS naming the pair (after where, when given).
 */
export function verifyPairData(pair: Pick<RemoteLog_Pair, "remoteHash" | "localHash">, data: Uint8Array, where?: string): Message {
  return messageOfPair(pair, checkBlock(data, pair.remoteHash, where), where);
}

/**
 * A block's bytes checked once against the address they were fetched by (H2), and the message they
 * decode to with its id: what every pair naming that address is then checked against (messageOfPair).
 */
export interface CheckedBlock {
  address: Uint8Array;
  hashesToAddress: boolean;
  /** Undefined when the bytes do not hash to address, or are not a message (notMessage says why). */
  message?: Message;
  id?: Uint8Array;
  notMessage?: unknown;
}

/** data checked against address and decoded (CheckedBlock); where names what is decoded in a decoding error. */
export function checkBlock(data: Uint8Array, address: Uint8Array, where?: string): CheckedBlock {
  if (!matchesAddress(data, address)) return { address, hashesToAddress: false };
  try {
    const message = decodeMessage(data, where ?? "message");
    return { address, hashesToAddress: true, message, id: messageId(message) };
  } catch (err) {
    return { address, hashesToAddress: true, notMessage: err };
  }
}

/** The message of pair, whose address block was checked at; or DATA_LOSS naming the pair (after where, when given). */
export function messageOfPair(pair: Pick<RemoteLog_Pair, "localHash">, block: CheckedBlock, where?: string): Message {
  // The texts are made only for an error: this runs for every message a receiver checks.
  const at = () => (where ? `${where}: ` : "");
  if (!block.hashesToAddress) {
    const address = addressText(block.address);
    throw RemoteLogError.dataLoss(`${at()}bytes of message ${toHex(pair.localHash)} do not hash to its address ${address}`, undefined, { address });
  }
  if (!block.message || !block.id) {
    const address = addressText(block.address);
    throw RemoteLogError.dataLoss(`${at()}data at ${address} is not a vac.mvds.Message`, block.notMessage, { address });
  }
  if (!equalBytes(block.id, pair.localHash)) {
    const address = addressText(block.address);
    throw RemoteLogError.dataLoss(`${at()}message at ${address} has id ${toHex(block.id)}, not ${toHex(pair.localHash)} as the page says`, undefined, { address });
  }
  return block.message;
}
