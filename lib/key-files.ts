import type { PrivateKey } from "../core/names.js";
import { loadKeyFile, saveKeyFile } from "../stores/file/key-file.js";

// Apart from keys.ts, which browsers import too (lib/browser.ts): these need Node's file system.

/**
 * `await saveKey(path, key)`
 *
 * Writes key to a new file readable by its owner only, durably. Throws CONFLICT if path exists (a key
 * is never overwritten: the name it had would be lost for good), NOT_FOUND if its directory does not
 * exist, INVALID_ARGUMENT for a key that is not Ed25519 or when a file stands where its directory must
 * be, PERMISSION_DENIED or INTERNAL on other I/O failures. A crash leaves either no file at path or the
 * whole key. Not idempotent: a second call with the same path is CONFLICT.
 */
export function saveKey(path: string, key: PrivateKey): Promise<void> {
  return saveKeyFile(path, key);
}

/**
 * `const key = await loadKey(path)`
 *
 * Reads a key file written by saveKey (or `remotelog key gen`). Throws NOT_FOUND if path does not
 * exist, PERMISSION_DENIED if its group or others may read it (as ssh refuses such keys) or it cannot
 * be read, INVALID_ARGUMENT if it holds no Ed25519 private key, INTERNAL on other I/O failures.
 * Idempotent; reads only.
 */
export function loadKey(path: string): Promise<PrivateKey> {
  return loadKeyFile(path);
}
