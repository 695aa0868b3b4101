/**
 * The protobuf wire pieces that remotelog's hand-written encoders share (pages in core/page.ts, messages
 * in core/hash.ts, repeated bytes fields): what protobuf-es's writer would put there, byte for byte.
 */

/** Bytes of n (an unsigned integer below 2^53) as a protobuf varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes n as a varint into out at at; returns where it ends. */
export function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** Bytes of a proto3 bytes field (one-byte tag): 0 when empty (the default, left out), else tag, length and bytes. */
export function bytesFieldSize(bytes: Uint8Array): number {
  return bytes.length === 0 ? 0 : 1 + varintSize(bytes.length) + bytes.length;
}

/** Writes a proto3 bytes field with a one-byte tag, nothing when empty; returns where it ends. */
export function writeBytesField(out: Uint8Array, at: number, tag: number, bytes: Uint8Array): number {
  if (bytes.length === 0) return at;
  out[at++] = tag;
  at = writeVarint(out, at, bytes.length);
  out.set(bytes, at);
  return at + bytes.length;
}
