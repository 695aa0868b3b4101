/**
 * The byte primitives of core/hash.ts on Node (package.json "imports" #hash): node:crypto's one-shot
 * SHA-256 and Buffer's native compare and hex, which is what kept the hot paths (every block stored,
 * every message checked) fast. core/hash-browser.ts is the same interface without Node built-ins;
 * test/core/hash-platforms.test.ts checks that both give the same bytes.
 */
import { hash } from "node:crypto";

/** SHA-256 of bytes, 32 bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  const digest = hash("sha256", bytes, "buffer") as unknown as Buffer;
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.length);
}

/** Writes SHA-256 of bytes into target at offset (32 bytes). */
export function sha256Into(bytes: Uint8Array, target: Uint8Array, offset: number): void {
  (hash("sha256", bytes, "buffer") as unknown as Buffer).copy(target, offset);
}

/** Whether SHA-256 of bytes is expected[offset, offset + 32), compared where it lies. */
export function sha256Matches(bytes: Uint8Array, expected: Uint8Array, offset: number): boolean {
  const digest = hash("sha256", bytes, "buffer") as unknown as Buffer;
  return digest.compare(expected, offset, offset + 32) === 0;
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
