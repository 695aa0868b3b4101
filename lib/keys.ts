import { generateNameKey, keyName as nameOfKey, type PrivateKey, type PublicKey } from "../core/names.js";

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
