import { constants } from "node:fs";
import { link, open, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { RemoteLogError, isRemoteLogError } from "../../core/errors.js";
import { decodeNameKey, encodeNameKey, type PrivateKey } from "../../core/names.js";
import { fsyncDir, ioError, tmpPathFor } from "./atomic.js";

// A protobuf Ed25519 private key is 68 bytes; anything much larger is not a key file.
const MAX_KEY_FILE_BYTES = 4096;

/**
 * Writes key to a new file at path (protobuf-encoded, as libp2p and Kubo store keys), readable by its
 * owner only. Throws CONFLICT if path exists (a key is never overwritten: the name it had would be lost
 * for good), NOT_FOUND if its directory does not exist, INVALID_ARGUMENT for a key that is not
 * Ed25519, INTERNAL on other I/O failures. A crash leaves either no file at path or the whole key.
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
    if (code === "ENOENT") throw RemoteLogError.notFound(`cannot write key file ${path}: its directory does not exist`);
    if (code === "EACCES" || code === "EPERM") throw RemoteLogError.permissionDenied(`cannot write key file ${path}: ${(err as Error).message}`);
    throw ioError(`cannot write key file ${path}`, err);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await fsyncDir(dirname(path));
}

/**
 * Reads a key file written by saveKeyFile (or any protobuf-encoded libp2p Ed25519 private key). Throws
 * NOT_FOUND if path does not exist, PERMISSION_DENIED if its group or others have any access to it
 * (as ssh refuses such private keys) or it cannot be read, INVALID_ARGUMENT if it does not hold an
 * Ed25519 private key, INTERNAL on other I/O failures.
 */
export async function loadKeyFile(path: string): Promise<PrivateKey> {
  let bytes: Uint8Array;
  try {
    // One handle for the checks and the read, so that they are about the same file; non-blocking so
    // that a FIFO given by mistake is refused instead of waited on.
    const handle = await open(path, constants.O_RDONLY | (process.platform === "win32" ? 0 : constants.O_NONBLOCK));
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw RemoteLogError.invalidArgument(`key file ${path} is not a file`);
      if (process.platform !== "win32" && (stats.mode & 0o077) !== 0) {
        const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
        throw RemoteLogError.permissionDenied(`key file ${path} is open to group or others (mode ${mode}); run: chmod 600 ${path}`);
      }
      if (stats.size > MAX_KEY_FILE_BYTES) throw RemoteLogError.invalidArgument(`key file ${path} holds ${stats.size} bytes, too many for a key`);
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (isRemoteLogError(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw RemoteLogError.notFound(`key file ${path} does not exist`);
    if (code === "EACCES" || code === "EPERM") throw RemoteLogError.permissionDenied(`cannot read key file ${path}: ${(err as Error).message}`);
    if (code === "ENOTDIR" || code === "EISDIR") throw RemoteLogError.invalidArgument(`key file ${path} is not a file`);
    throw ioError(`cannot read key file ${path}`, err);
  }
  return decodeNameKey(bytes, `key file ${path}`);
}

