import type { PrivateKey } from "../../core/names.js";

/*
 * Hand-built IPNS records for hostile-input tests: the ipns package only builds well-formed ones, and
 * these let a test sign data that is wrong in one precise way (a negative sequence, a bad validity),
 * or leave out a field the package always writes.
 */

/** The fields of an IpnsEntry (ipns.proto); absent ones are not written. */
export interface RawEntry {
  value?: Uint8Array;
  signatureV1?: Uint8Array;
  validityType?: number;
  validity?: Uint8Array;
  sequence?: bigint;
  ttl?: bigint;
  pubKey?: Uint8Array;
  signatureV2?: Uint8Array;
  data?: Uint8Array;
}

export function encodeEntry(entry: RawEntry): Uint8Array {
  const out: number[] = [];
  const bytesField = (field: number, bytes: Uint8Array | undefined) => {
    if (bytes === undefined) return;
    varint(out, BigInt((field << 3) | 2));
    varint(out, BigInt(bytes.length));
    out.push(...bytes);
  };
  const intField = (field: number, value: bigint | number | undefined) => {
    if (value === undefined) return;
    varint(out, BigInt(field << 3));
    varint(out, BigInt(value));
  };
  bytesField(1, entry.value);
  bytesField(2, entry.signatureV1);
  intField(3, entry.validityType);
  bytesField(4, entry.validity);
  intField(5, entry.sequence);
  intField(6, entry.ttl);
  bytesField(7, entry.pubKey);
  bytesField(8, entry.signatureV2);
  bytesField(9, entry.data);
  return Uint8Array.from(out);
}

function varint(out: number[], value: bigint): void {
  let v = BigInt.asUintN(64, value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** A CBOR value as the V2 data holds it: text keys, byte strings, text, integers. */
export type CborValue = Uint8Array | string | bigint | number;

/** Encodes a map with text keys in the given order (enough for IPNS data; not canonical CBOR). */
export function encodeCborMap(fields: Record<string, CborValue>): Uint8Array {
  const out: number[] = [];
  head(out, 5, BigInt(Object.keys(fields).length));
  for (const [key, value] of Object.entries(fields)) {
    item(out, key);
    item(out, value);
  }
  return Uint8Array.from(out);
}

function item(out: number[], value: CborValue): void {
  if (value instanceof Uint8Array) {
    head(out, 2, BigInt(value.length));
    out.push(...value);
  } else if (typeof value === "string") {
    const bytes = new TextEncoder().encode(value);
    head(out, 3, BigInt(bytes.length));
    out.push(...bytes);
  } else {
    const n = BigInt(value);
    if (n >= 0n) head(out, 0, n);
    else head(out, 1, -1n - n);
  }
}

function head(out: number[], major: number, n: bigint): void {
  const m = major << 5;
  if (n < 24n) out.push(m | Number(n));
  else if (n < 0x100n) out.push(m | 24, Number(n));
  else if (n < 0x10000n) out.push(m | 25, Number(n >> 8n), Number(n & 0xffn));
  else if (n < 0x100000000n) out.push(m | 26, ...[24n, 16n, 8n, 0n].map((s) => Number((n >> s) & 0xffn)));
  else out.push(m | 27, ...[56n, 48n, 40n, 32n, 24n, 16n, 8n, 0n].map((s) => Number((n >> s) & 0xffn)));
}

const PREFIX = new TextEncoder().encode("ipns-signature:");

/** A V2 signature over data, by key, as IPNS computes it. */
export async function signV2(key: PrivateKey, data: Uint8Array): Promise<Uint8Array> {
  const signed = new Uint8Array(PREFIX.length + data.length);
  signed.set(PREFIX, 0);
  signed.set(data, PREFIX.length);
  return key.sign(signed);
}

/** An RFC 3339 time as IPNS writes validities. */
export function rfc3339(date: Date): Uint8Array {
  return new TextEncoder().encode(date.toISOString().replace(/\.(\d{3})Z$/, ".$1000000Z"));
}

/**
 * A V2-only record signed by key over the given data fields (defaults: a valid record for value, a
 * day of validity, sequence 1, a minute of TTL), for building records wrong in one field.
 */
export async function signedRecord(
  key: PrivateKey,
  fields: Partial<Record<"Value" | "Validity" | "ValidityType" | "Sequence" | "TTL", CborValue>> & { Value: CborValue },
  extra: Partial<RawEntry> = {},
): Promise<Uint8Array> {
  const data = encodeCborMap({
    Value: fields.Value,
    Validity: fields.Validity ?? rfc3339(new Date(Date.now() + 86_400_000)),
    ValidityType: fields.ValidityType ?? 0,
    Sequence: fields.Sequence ?? 1n,
    TTL: fields.TTL ?? 60_000_000_000n,
  });
  return encodeEntry({ signatureV2: await signV2(key, data), data, ...extra });
}
