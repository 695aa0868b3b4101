/**
 * The byte primitives of core/hash.ts on Node (package.json "imports" #hash): node:crypto's one-shot
 * SHA-256 and Buffer's native compare and hex, which is what kept the hot paths (every block stored,
 * every message checked) fast. core/hash-browser.ts is the same interface without Node built-ins;
 * test/core/hash-platforms.test.ts checks that both give the same bytes.
 */
import { hash } from "node:crypto";

/*
 * The digest comes back as a latin1 ("binary") string rather than a Buffer: a Buffer digest is a fresh
 * off-heap ArrayBuffer a call, which cost more than hashing a 300-byte message (a restore's top frame).
 */

/** SHA-256 of bytes, 32 bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  const digest = new Uint8Array(32);
  sha256Into(bytes, digest, 0);
  return digest;
}

/** Writes SHA-256 of bytes into target at offset (32 bytes). */
export function sha256Into(bytes: Uint8Array, target: Uint8Array, offset: number): void {
  const digest = hash("sha256", bytes, "binary");
  for (let i = 0; i < 32; i++) target[offset + i] = digest.charCodeAt(i);
}

/** Whether SHA-256 of bytes is expected[offset, offset + 32), compared where it lies. */
export function sha256Matches(bytes: Uint8Array, expected: Uint8Array, offset: number): boolean {
  if (expected.length < offset + 32) return false;
  const digest = hash("sha256", bytes, "binary");
  for (let i = 0; i < 32; i++) if (digest.charCodeAt(i) !== expected[offset + i]) return false;
  return true;
}

/** Uninitialised bytes, for a buffer that is written whole before it is read. */
export function allocBytes(length: number): Uint8Array {
  return Buffer.allocUnsafe(length);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}

/** The bytes of text, which the caller has checked is even-length hex. */
export function hexDigitsToBytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}
