import type { IPNSRecord } from "ipns";
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyFromProtobuf, publicKeyToProtobuf } from "@libp2p/crypto/keys";
import { CID } from "multiformats/cid";
import { base36 } from "multiformats/bases/base36";
import { bases } from "multiformats/basics";
import { peerIdFromPublicKey, peerIdFromString } from "@libp2p/peer-id";
import { RemoteLogError } from "./errors.js";
import { cidOf, equalBytes } from "./hash.js";

/*
 * Names are keys (design/remote-log.md §5): a name is the IPNS name of an Ed25519 public key, and each
 * update of it carries an IPNS record signed by that key whose value is /ipfs/<CID of the head page>.
 * Records are V2-only: the V1 signature covers fewer fields, nobody verifies it any more, and it
 * would be one more thing in the record that is not checked.
 */

/** The key types, taken from @libp2p/crypto's own signatures so that we need not depend on @libp2p/interface. */
export type PrivateKey = Parameters<typeof privateKeyToProtobuf>[0];
/** An Ed25519 public key (libp2p's type); keyName gives the name it signs. */
export type PublicKey = Parameters<typeof publicKeyToProtobuf>[0];

/** IPNS's own limit on a marshalled record (ipns/validator MAX_RECORD_SIZE). */
/**
 * ipns is loaded when a record is first made or read: loading it (and the libp2p loggers it sets up) was
 * the largest frame of module start-up in a cold `send --unsigned` process, which never touches a record.
 */
function loadIpns(): Promise<typeof import("ipns")> {
  return import("ipns");
}

export const MAX_RECORD_BYTES = 10 * 1024;
/** A remote log must stay readable while its sender is away for weeks. */
export const DEFAULT_VALIDITY_MS = 90 * 24 * 3600 * 1000;
export const DEFAULT_TTL_MS = 60 * 1000;
/**
 * The shortest validity a sender (send, redact, Sender, redact()) signs a record for. A record must
 * outlast its trip to the NS and a clock a little off, and then be readable for a while: one of 1 ms
 * was refused by every NS as expired, every time, with advice to publish it again.
 */
export const MIN_VALIDITY_MS = 60 * 1000;

const LIBP2P_KEY_CODEC = 0x72;
const IDENTITY_MULTIHASH = 0x00;
// What an IPNS V2 signature covers: this prefix, then the record's CBOR data (IPNS record spec).
const SIGNATURE_V2_PREFIX = new TextEncoder().encode("ipns-signature:");
const MAX_UINT64 = (1n << 64n) - 1n;
// An Ed25519 key's CID is 40 bytes (version, codec, identity multihash of the 36-byte protobuf key). No
// multibase writes a byte in less than one byte of UTF-8, and each adds a prefix, so no string of fewer
// UTF-8 bytes spells one: short free-form names are turned away without the throw of a failed parse,
// which was most of an unsigned update's own CPU on the server.
const SHORTEST_KEY_SPELLING = 41;

function tooShortForKey(name: string): boolean {
  if (name.length >= SHORTEST_KEY_SPELLING) return false;
  // The identity multibase spells bytes as UTF-8 text, so count bytes, not characters.
  let bytes = 0;
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    bytes += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit < 0xe000) ? 2 : 3;
  }
  return bytes < SHORTEST_KEY_SPELLING;
}

/**
 * The public key a canonical key name stands for, or undefined. Canonical means exactly what keyName()
 * would print for that key: base36 lower case, CIDv1, libp2p-key codec, identity multihash of a
 * protobuf Ed25519 public key. Other spellings of the same key are refused, so that one key never
 * has two names in the NS.
 */
function decodeKeyName(name: string): PublicKey | undefined {
  if (typeof name !== "string" || !name.startsWith("k") || tooShortForKey(name) || name.length > 100) return undefined;
  try {
    const cid = CID.parse(name, base36);
    if (cid.version !== 1 || cid.code !== LIBP2P_KEY_CODEC || cid.multihash.code !== IDENTITY_MULTIHASH) return undefined;
    const key = publicKeyFromProtobuf(cid.multihash.digest);
    if (key.type !== "Ed25519") return undefined;
    return key.toCID().toString(base36) === name ? key : undefined;
  } catch {
    return undefined;
  }
}

/** True only for a canonical base36 CIDv1 libp2p-key of an Ed25519 key ("k51…"). Never throws. */
export function isKeyName(name: string): boolean {
  return decodeKeyName(name) !== undefined;
}

/**
 * Refuses a free-form name where the reader did not say it reads one on purpose (unsigned): nothing
 * vouches for such a name's heads. The message ends with anyway, what would read it all the same
 * ("pass --unsigned to read it anyway"); more: others refused with it, named in the message too.
 */
export function checkVouched(names: readonly string[], unsigned: boolean | undefined, anyway: string, wrap = RemoteLogError.invalidArgument): void {
  if (unsigned) return;
  const free = names.filter((name) => !isKeyName(name));
  if (free.length === 0) return;
  const more = free.length > 1 ? ` (and ${free.length - 1} more: ${free.slice(1, 4).map((name) => JSON.stringify(name)).join(", ")}${free.length > 4 ? ", …" : ""})` : "";
  throw wrap(`${JSON.stringify(free[0])} is not a key name (k51…), so nothing vouches for its heads${more}; ${anyway}`);
}

/**
 * The canonical name (k51…) of an Ed25519 key written another way: upper case, another multibase, a
 * libp2p peer id (12D3KooW…). Undefined when name is canonical already or names no Ed25519 key.
 * Never throws.
 */
export function canonicalKeyName(name: string): string | undefined {
  if (typeof name !== "string" || tooShortForKey(name) || name.length > 200 || isKeyName(name)) return undefined;
  try {
    let publicKey: PublicKey | undefined;
    if (/^(12D3Koo|Qm)/.test(name)) {
      publicKey = peerIdFromString(name).publicKey;
    } else {
      const base = baseOf(name);
      if (!base) return undefined;
      const cid = CID.parse(name, base);
      if (cid.code === LIBP2P_KEY_CODEC && cid.multihash.code === IDENTITY_MULTIHASH) publicKey = publicKeyFromProtobuf(cid.multihash.digest);
    }
    return publicKey?.type === "Ed25519" ? keyName(publicKey) : undefined;
  } catch {
    return undefined;
  }
}

/** The multibase a CID string is written in, by its prefix character. */
function baseOf(text: string) {
  return Object.values(bases).find((base) => text.startsWith(base.prefix))?.decoder;
}

/** The Ed25519 public key of a key name. Throws INVALID_ARGUMENT when name is not a canonical key name. */
export function parseKeyName(name: string): PublicKey {
  const key = decodeKeyName(name);
  if (key === undefined) {
    throw RemoteLogError.invalidArgument(`${quote(name)} is not a key name (a base36 CIDv1 libp2p-key of an Ed25519 key, k51…)`);
  }
  return key;
}

/**
 * The libp2p peer id form (12D3KooW…) of a key name: the same key, as IPFS routing keys and older
 * resolvers (js-ipfs) spell it. Throws INVALID_ARGUMENT when name is not a canonical key name.
 */
export function peerIdOfKeyName(name: string): string {
  return peerIdFromPublicKey(parseKeyName(name)).toString();
}

/** The name (k51…) of a key, or of a private key's public half. Throws INVALID_ARGUMENT for a key that is not Ed25519. */
export function keyName(key: PrivateKey | PublicKey): string {
  const publicKey = "publicKey" in key ? key.publicKey : key;
  if (publicKey.type !== "Ed25519") throw RemoteLogError.invalidArgument(`a ${publicKey.type} key cannot name a log: names are Ed25519 keys`);
  return publicKey.toCID().toString(base36);
}

/** A new Ed25519 key. */
export async function generateNameKey(): Promise<PrivateKey> {
  return generateKeyPair("Ed25519");
}

/**
 * A name key as a key file holds it: protobuf-encoded, as libp2p and Kubo store keys. Throws
 * INVALID_ARGUMENT for a key that is not Ed25519.
 */
export function encodeNameKey(key: PrivateKey): Uint8Array {
  if (key.type !== "Ed25519") throw RemoteLogError.invalidArgument(`a ${key.type} key cannot name a log: names are Ed25519 keys`);
  return privateKeyToProtobuf(key);
}

/**
 * The name key in bytes of encodeNameKey (a key file's). Throws INVALID_ARGUMENT, naming where they
 * came from, for bytes that hold no Ed25519 private key, or one whose public half does not match.
 */
export async function decodeNameKey(bytes: Uint8Array, where: string): Promise<PrivateKey> {
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${where} is not a key (${(err as Error).message})`, err);
  }
  if (key.type !== "Ed25519") throw RemoteLogError.invalidArgument(`${where} holds a ${key.type} key; names are Ed25519 keys`);
  // Both halves are stored; a damaged public half would sign records for a name nobody can verify.
  // WebCrypto (in a browser) refuses to sign with such a key at all, where Node's signs and fails to verify.
  const probe = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const matches = await (async () => key.publicKey.verify(probe, await key.sign(probe)))().catch(() => false);
  if (!matches) throw RemoteLogError.invalidArgument(`${where} is damaged: its public key does not match its private key`);
  return key;
}

/**
 * A marshalled IPNS record (V2 signature) for key's name, saying the name points at content: its
 * value is /ipfs/<cidOf(content)>. Throws INVALID_ARGUMENT for a sequence outside 0..2^64-1, a
 * validity or TTL that is not a positive (validity) or non-negative (TTL) finite number of
 * milliseconds, or a key that is not Ed25519.
 */
export async function createNameRecord(
  key: PrivateKey,
  content: Uint8Array,
  sequence: bigint,
  options: { validityMs?: number; ttlMs?: number } = {},
): Promise<Uint8Array> {
  if (key.type !== "Ed25519") throw RemoteLogError.invalidArgument(`a ${key.type} key cannot name a log: names are Ed25519 keys`);
  if (sequence < 0n || sequence > MAX_UINT64) throw RemoteLogError.invalidArgument(`sequence ${sequence} is not a 64-bit unsigned integer`);
  const validityMs = options.validityMs ?? DEFAULT_VALIDITY_MS;
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isFinite(validityMs) || validityMs <= 0) throw RemoteLogError.invalidArgument(`validity of ${validityMs} ms is not a positive duration`);
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 0) throw RemoteLogError.invalidArgument(`TTL of ${ttlMs} ms is not a non-negative whole number`);
  const { createIPNSRecord, marshalIPNSRecord } = await loadIpns();
  const record = await createIPNSRecord(key, `/ipfs/${cidOf(content).toString()}`, sequence, validityMs, {
    v1Compatible: false,
    ttlNs: BigInt(ttlMs) * 1_000_000n,
  });
  return marshalIPNSRecord(record);
}

/** How verifyNameRecord judges a record. */
export interface RecordCheckOptions {
  /** The time expiry is judged at; default the current time. */
  now?: Date;
  /** The record comes to be stored (an NS's update): an expired one was signed so, and its sender is told to check its clock. */
  update?: boolean;
}

/** What a record that passed verifyNameRecord says, all of it covered by the name's signature. */
export interface VerifiedRecord {
  sequence: bigint;
  /** When the record expires. */
  validity: Date;
  /** /ipfs/<CID of the content>. */
  value: string;
  ttlMs: number;
}

/**
 * Checks that record is a valid IPNS record of name for content: signed (V2) by the key the name
 * stands for, not expired at `now` (default: the current time), and pointing at /ipfs/<cidOf(content)>.
 * Nothing the record says about itself is trusted: the key comes from the name, and every field read
 * comes from the signed data.
 *
 * Throws RemoteLogError, naming the name and what failed:
 * - TOO_LARGE: record over MAX_RECORD_BYTES;
 * - INVALID_ARGUMENT: name is not a key name; the record is empty, does not unmarshal, lacks V2
 *   signature data, or holds fields of the wrong type; its value is not /ipfs/<cid>, or names another
 *   CID than content's;
 * - PERMISSION_DENIED: the signature does not verify with the name's key, or the record embeds a
 *   public key that is not the name's;
 * - CONFLICT: the record expired before `now` (worded for its sender with options.update).
 */
export async function verifyNameRecord(
  name: string,
  record: Uint8Array,
  content: Uint8Array,
  options: RecordCheckOptions = {},
): Promise<VerifiedRecord> {
  const { cid, ...verified } = await verifySignedRecord(name, record, options);
  const expected = cidOf(content);
  if (!equalBytes(cid.bytes, expected.bytes)) {
    throw RemoteLogError.invalidArgument(`record for name ${quote(name)} points at ${cid.toString()}, but the content's CID is ${expected.toString()}`);
  }
  return verified;
}

/**
 * verifyNameRecord without the content: every check but the last, and the CID the record's value
 * names. For a reader that learns the content from the record (an IPNS resolver), so that it fetches
 * only what a valid signature vouches for; it must still check the content against the CID. Throws
 * as verifyNameRecord does.
 */
export async function verifySignedRecord(name: string, record: Uint8Array, options: RecordCheckOptions = {}): Promise<VerifiedRecord & { cid: CID }> {
  const of = `record for name ${quote(name)}`;
  if (record.length > MAX_RECORD_BYTES) throw RemoteLogError.tooLarge(`${of} is ${record.length} bytes, over IPNS's limit of ${MAX_RECORD_BYTES}`);
  const key = parseKeyName(name);
  if (record.length === 0) throw RemoteLogError.invalidArgument(`${of} is empty`);

  let parsed: IPNSRecord;
  try {
    // Throws SignatureVerificationError for missing V2 data or V1 fields that contradict the V2 data,
    // UnsupportedValidityError, InvalidValueError, and protobuf or CBOR decode errors: all malformed input.
    parsed = (await loadIpns()).unmarshalIPNSRecord(record);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${of} is not an IPNS record with V2 signature data (${describe(err)})`, err);
  }

  // Only a record of another key embeds a different one; an Ed25519 name needs none, since the name is the key.
  if (parsed.pubKey != null && !equalBytes(parsed.pubKey, publicKeyToProtobuf(key))) {
    throw RemoteLogError.permissionDenied(`${of} embeds a public key that is not the name's key`);
  }
  let signed = false;
  try {
    const signedBytes = new Uint8Array(SIGNATURE_V2_PREFIX.length + parsed.data.length);
    signedBytes.set(SIGNATURE_V2_PREFIX, 0);
    signedBytes.set(parsed.data, SIGNATURE_V2_PREFIX.length);
    signed = await key.verify(signedBytes, parsed.signatureV2);
  } catch {
    signed = false;
  }
  if (!signed) throw RemoteLogError.permissionDenied(`signature of the ${of} does not verify with the name's key`);

  // Signed, so the fields are the key holder's; they may still be of the wrong type.
  const sequence = parsed.sequence as unknown;
  if (typeof sequence !== "bigint" || sequence < 0n || sequence > MAX_UINT64) {
    throw RemoteLogError.invalidArgument(`${of} has a sequence that is not a 64-bit unsigned integer`);
  }
  const ttl = parsed.ttl as unknown;
  if (typeof ttl !== "bigint" || ttl < 0n || ttl > MAX_UINT64) throw RemoteLogError.invalidArgument(`${of} has a TTL that is not a 64-bit unsigned integer`);
  const validity = parseValidity(parsed.validity);
  if (validity === undefined) throw RemoteLogError.invalidArgument(`${of} has a validity that is not an RFC 3339 time: ${quote(String(parsed.validity))}`);
  const now = options.now ?? new Date();
  if (validity.getTime() < now.getTime()) {
    // Its signer is the one reading this in an update, and publishing again is what it just did.
    throw RemoteLogError.conflict(
      options.update
        ? `${of} arrived already expired: it is valid until ${validity.toISOString()}, and this NS's clock says ${now.toISOString()}; the sender's clock is behind or its validity (send --validity) too short: check both, then publish again`
        : `${of} expired at ${validity.toISOString()} (now ${now.toISOString()}); the sender must publish it again`,
    );
  }

  const value = String(parsed.value);
  const match = /^\/ipfs\/([^/]+)$/.exec(value);
  let cid: CID | undefined;
  try {
    cid = match ? CID.parse(match[1]) : undefined;
  } catch {
    cid = undefined;
  }
  if (cid === undefined) throw RemoteLogError.invalidArgument(`${of} has value ${quote(value)}, not /ipfs/<cid>`);
  return { sequence, validity, value, ttlMs: Number(ttl / 1_000_000n), cid };
}

// RFC 3339 as IPNS writes it (Go's RFC3339Nano): up to nine fractional digits, Z or an offset.
// Date.parse takes at most milliseconds portably, so the fraction is cut to three digits.
const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

function parseValidity(text: unknown): Date | undefined {
  if (typeof text !== "string") return undefined;
  const match = RFC3339.exec(text);
  if (!match) return undefined;
  const millis = Date.parse(`${match[1]}.${(match[2] ?? "").padEnd(3, "0").slice(0, 3)}${match[3]}`);
  return Number.isNaN(millis) ? undefined : new Date(millis);
}

function quote(name: string): string {
  const text = String(name);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** The longest free-form (unsigned) name, in UTF-8 bytes. */
export const MAX_FREE_FORM_NAME_BYTES = 256;

// Invisible or direction-changing characters make two names that print alike but differ, or a name that
// prints as another ("chat\u202Egnp.exe"): zero-width spaces and joiners, the word joiner, the BOM, and
// every bidirectional mark, embedding, override and isolate.
const ZERO_WIDTH = /[\u200B-\u200D\u2060\uFEFF]/u;
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
// Controls, format characters other than the above, unpaired surrogates, private use, unassigned code
// points, and U+FFFD (what bytes that were not UTF-8 decode to) print as nothing or as something else.
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\uFFFD\p{Zl}\p{Zp}]/u;

/**
 * The rule a free-form name must meet, shared by every NS and every client so that a name one accepts
 * the others accept too; undefined when it does, else the rule it breaks, as a sentence fragment
 * ("holds a path separator"). Key names (k51…) always meet it.
 */
export function freeFormNameProblem(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > MAX_FREE_FORM_NAME_BYTES) return `is ${bytes} bytes long, over the limit of ${MAX_FREE_FORM_NAME_BYTES} bytes`;
  if (/[/\\]/.test(name)) return "holds a path separator (/ or \\)";
  if (name === "." || name === "..") return "is a relative path (. or ..)";
  if (BIDI.test(name)) return "holds a bidirectional control character";
  if (ZERO_WIDTH.test(name)) return "holds a zero-width character";
  if (NOT_PRINTABLE.test(name)) return "holds a character that is not printable";
  if (name.trim() !== name) return "starts or ends with white space";
  return undefined;
}

/** INVALID_ARGUMENT naming the rule a free-form name breaks (freeFormNameProblem). */
export function checkFreeFormName(name: string): void {
  const problem = freeFormNameProblem(name);
  if (problem !== undefined) {
    throw new RemoteLogError("INVALID_ARGUMENT", `name ${JSON.stringify(name.length > 80 ? name.slice(0, 80) + "…" : name)} ${problem}`, { details: { name: name.slice(0, 256) } });
  }
}
