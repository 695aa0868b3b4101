import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { RemoteLogSchema, type RemoteLog, type RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { RemoteLogError, type ErrorCode, ErrorCodes } from "./errors.js";
import { decodeCommonPage } from "./message-decode.js";
import { addressOf, decodeMessage, equalBytes, messageId, validateAddress, toHex, addressText } from "./hash.js";

/**
 * How much message data a sender embeds in its pages. "all" is the draft's full replication: every
 * page carries every message. A number K embeds the newest K messages of the head page only; pages
 * sealed into the CAS reference their messages, since a sealed page can never drop data later.
 */
export type EmbedMode = "none" | "all" | number;

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
  const sizes = new Array<number>(page.pair.length);
  let total = bytesFieldSize(page.tail);
  for (let i = 0; i < page.pair.length; i++) {
    const pair = page.pair[i];
    sizes[i] = bytesFieldSize(pair.remoteHash) + bytesFieldSize(pair.localHash) + bytesFieldSize(pair.data);
    total += 1 + varintSize(sizes[i]) + sizes[i];
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < page.pair.length; i++) {
    const pair = page.pair[i];
    out[at++] = 0x0a; // field 1 (pair), length-delimited
    at = writeVarint(out, at, sizes[i]);
    at = writeBytesField(out, at, 0x0a, pair.remoteHash);
    at = writeBytesField(out, at, 0x12, pair.localHash);
    at = writeBytesField(out, at, 0x1a, pair.data);
  }
  writeBytesField(out, at, 0x12, page.tail); // field 2 (tail)
  return out;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function bytesFieldSize(bytes: Uint8Array): number {
  return bytes.length === 0 ? 0 : 1 + varintSize(bytes.length) + bytes.length;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

function writeBytesField(out: Uint8Array, at: number, tag: number, bytes: Uint8Array): number {
  if (bytes.length === 0) return at;
  out[at++] = tag;
  at = writeVarint(out, at, bytes.length);
  out.set(bytes, at);
  return at + bytes.length;
}

/**
 * Decodes and checks a page (its bytes fields may be views into bytes): every pair has a 32-byte H1 and a valid H2, and the tail is empty or a
 * valid address. code says whose fault a bad page is: INVALID_ARGUMENT for input, DATA_LOSS for a
 * page fetched from a store.
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
      try {
        validateAddress(pair.remoteHash);
      } catch (err) {
        throw new Error(`pair ${i} remoteHash: ${(err as Error).message}`);
      }
    });
  } catch (err) {
    throw new RemoteLogError(code, `${where} is malformed: ${(err as Error).message}`, { cause: err });
  }
  return page;
}

const EMPTY = new Uint8Array(0);

// Literals rather than create(): protobuf-es messages are plain objects, and the reflective create()
// cost more than the hashing for a page of small messages.
function pairOf(entry: LogEntry, embed: boolean): RemoteLog_Pair {
  return { $typeName: "vac.cas.RemoteLog.Pair", remoteHash: entry.address, localHash: entry.id, data: embed ? entry.data : EMPTY };
}

/** A page with its entries newest first, as the draft lays them out. */
/**
 * What a page is planned from: a message whose bytes this writer has (a LogEntry: embedded or
 * referenced as the embed mode says), or a pair published by another writer of the same name, whose
 * message this writer may not have, carried over as it is.
 */
export type PageItem = LogEntry | RemoteLog_Pair;

function isCarried(item: PageItem): item is RemoteLog_Pair {
  return "$typeName" in item;
}

function pageOf(itemsOldestFirst: PageItem[], tail: Uint8Array, embedNewest: number, referenced: LogEntry[]): RemoteLog {
  const pair: RemoteLog_Pair[] = new Array(itemsOldestFirst.length);
  const n = itemsOldestFirst.length;
  for (let i = 0; i < n; i++) {
    const entry = itemsOldestFirst[n - 1 - i];
    if (isCarried(entry)) {
      pair[i] = entry;
      continue;
    }
    const embed = i < embedNewest;
    // An empty message encodes to no bytes, which reads as "not embedded": it must be in the CAS too.
    if (!embed || entry.data.length === 0) referenced.push(entry);
    pair[i] = pairOf(entry, embed);
  }
  return { $typeName: "vac.cas.RemoteLog", pair, tail };
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
 * Lays out entries that start where the current head page starts. Full pages are sealed (encoded,
 * addressed, linked by tail), and what is left becomes the new head. A full head stays the head until
 * the next append, so that a head is never empty. Cost is O(entries), which is O(k + page size) when
 * the caller passes the old head's entries plus k new ones.
 */
export function planPages(entriesOldestFirst: PageItem[], tail: Uint8Array, pageSize: number, embed: EmbedMode): PagePlan {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw RemoteLogError.invalidArgument(`page size must be a positive integer, not ${pageSize}`);
  const sealed: SealedPage[] = [];
  const referenced: LogEntry[] = [];
  const sealedEmbed = embed === "all" ? Infinity : 0;
  let start = 0;
  let link = tail;
  while (entriesOldestFirst.length - start > pageSize) {
    const bytes = encodePage(pageOf(entriesOldestFirst.slice(start, start + pageSize), link, sealedEmbed, referenced));
    link = addressOf(bytes);
    sealed.push({ address: link, bytes });
    start += pageSize;
  }
  const headEmbed = embed === "all" ? Infinity : embed === "none" ? 0 : embed;
  return { sealed, head: pageOf(entriesOldestFirst.slice(start), link, headEmbed, referenced), referenced };
}

/**
 * Checks fetched or embedded message bytes against their pair: H2 against the bytes, H1 against the
 * decoded message. Returns the message, or throws DATA_LOSS naming the pair.
 */
export function verifyPairData(pair: Pick<RemoteLog_Pair, "remoteHash" | "localHash">, data: Uint8Array, where: string): Message {
  if (!equalBytes(addressOf(data), pair.remoteHash)) {
    throw RemoteLogError.dataLoss(`${where}: bytes of message ${toHex(pair.localHash)} do not hash to its address ${addressText(pair.remoteHash)}`);
  }
  let message: Message;
  try {
    message = decodeMessage(data, where);
  } catch (err) {
    throw RemoteLogError.dataLoss(`${where}: data at ${addressText(pair.remoteHash)} is not a vac.mvds.Message`, err);
  }
  if (!equalBytes(messageId(message), pair.localHash)) {
    throw RemoteLogError.dataLoss(`${where}: message at ${addressText(pair.remoteHash)} has id ${toHex(messageId(message))}, not ${toHex(pair.localHash)} as the page says`);
  }
  return message;
}
