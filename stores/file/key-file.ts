import { link, open, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { RemoteLogError } from "../../core/errors.js";
import { decodeNameKey, encodeNameKey, type PrivateKey } from "../../core/names.js";
import { fsyncDir, tmpPathFor, userPathError } from "./atomic.js";
import { readPrivateFile } from "./private-file.js";

// A protobuf Ed25519 private key is 68 bytes; anything much larger is not a key file.
const MAX_KEY_FILE_BYTES = 4096;

/**
 * Writes key to a new file at path (protobuf-encoded, as libp2p and Kubo store keys), readable by its
 * owner only. Throws CONFLICT if path exists (a key is never overwritten: the name it had would be lost
 * for good), NOT_FOUND if its directory does not exist, INVALID_ARGUMENT for a key that is not
 * Ed25519 or when a file stands where its directory must be, PERMISSION_DENIED when the directory may
 * not be written, INTERNAL on other I/O failures. A crash leaves either no file at path or the whole key.
 */
export async function saveKeyFile(path: string, key: PrivateKey): Promise<void> {
  const bytes = encodeNameKey(key);
  // Written whole and synced under a temporary name created 0600 (never readable by others, not even
  // for a moment), then hard-linked to path: link(2), unlike rename(2), fails when path exists, so a
  // key file that appears meanwhile is not replaced.
  const tmp = tmpPathFor(path);
  try {
    const handle = await open(tmp, "wx", 0o600);
    try {
      await handle.writeFile(bytes);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await link(tmp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw RemoteLogError.conflict(`key file ${path} exists; a key is never overwritten`);
    if (code === "ENOENT") throw RemoteLogError.notFound(`cannot write key file ${path}: its directory does not exist`, { file: path });
    // A file where its directory must be (--out FILE/k.key) is the user's mistake, as is a path not theirs to write.
    throw userPathError(`cannot write key file ${path}`, err, path);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await fsyncDir(dirname(path));
}

/**
 * Reads a key file written by saveKeyFile (or any protobuf-encoded libp2p Ed25519 private key). Throws
 * as readPrivateFile does, and INVALID_ARGUMENT if it does not hold an Ed25519 private key.
 */
export async function loadKeyFile(path: string): Promise<PrivateKey> {
  return decodeNameKey(await readPrivateFile(path, "key file", MAX_KEY_FILE_BYTES), `key file ${path}`);
}
