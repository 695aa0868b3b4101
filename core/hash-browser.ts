/**
 * The byte primitives of core/hash.ts in a browser (package.json "imports" #hash, "browser"
 * condition): SHA-256 from @noble/hashes, which is synchronous as the callers need (WebCrypto's digest
 * is not), and plain loops where Node has Buffer. Same interface as core/hash-node.ts;
 * test/core/hash-platforms.test.ts checks that both give the same bytes.
 */
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

/** SHA-256 of bytes, 32 bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  return nobleSha256(bytes);
}

/** Writes SHA-256 of bytes into target at offset (32 bytes). */
export function sha256Into(bytes: Uint8Array, target: Uint8Array, offset: number): void {
  target.set(nobleSha256(bytes), offset);
}

/** Whether SHA-256 of bytes is expected[offset, offset + 32), compared where it lies. */
export function sha256Matches(bytes: Uint8Array, expected: Uint8Array, offset: number): boolean {
  if (expected.length < offset + 32) return false;
  const digest = nobleSha256(bytes);
  for (let i = 0; i < 32; i++) if (digest[i] !== expected[offset + i]) return false;
  return true;
}

/** Uninitialised bytes, for a buffer that is written whole before it is read. */
export function allocBytes(length: number): Uint8Array {
  return new Uint8Array(length);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

/** Lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += HEX[bytes[i]];
  return text;
}

/** The bytes of text, which the caller has checked is even-length hex. */
export function hexDigitsToBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
