import { decodeNameKey, encodeNameKey, generateNameKey, keyName as nameOfKey, type PrivateKey, type PublicKey } from "../core/names.js";

export type { PrivateKey, PublicKey } from "../core/names.js";

/**
 * `const key = await generateKey()`
 *
 * A new Ed25519 key. Its name, keyName(key), is the name of the log it signs (k51…), and only the
 * holder of the key can update that name: keep it (saveKey). Throws nothing of ours. Not idempotent:
 * every call makes a new key.
 */
export function generateKey(): Promise<PrivateKey> {
  return generateNameKey();
}

/**
 * `const name = keyName(key)`
 *
 * The name (k51…, the IPNS name) of a key, or of a private key's public half. Throws INVALID_ARGUMENT
 * for a key that is not Ed25519. Pure.
 */
export function keyName(key: PrivateKey | PublicKey): string {
  return nameOfKey(key);
}

/**
 * `const bytes = keyToBytes(key)`
 *
 * The key as a key file holds it (protobuf, as libp2p and Kubo store keys; `remotelog key gen` writes
 * the same bytes), for keeping it where a file cannot go, such as a page's IndexedDB. Anyone holding
 * the bytes can update the name: keep them as a secret. Throws INVALID_ARGUMENT for a key that is not
 * Ed25519. Pure.
 */
export function keyToBytes(key: PrivateKey): Uint8Array {
  return encodeNameKey(key);
}

/**
 * `const key = await keyFromBytes(bytes)`
 *
 * The key in bytes of keyToBytes, or of a key file. Throws INVALID_ARGUMENT for bytes that hold no
 * Ed25519 private key, or one whose public half does not match its private half. Pure.
 */
export function keyFromBytes(bytes: Uint8Array): Promise<PrivateKey> {
  return decodeNameKey(bytes, "the key bytes");
}
