import { constants } from "node:fs";
import { RemoteLogError, isRemoteLogError } from "../../core/errors.js";
import { ioError, openRegularFile } from "./atomic.js";

/**
 * Reads a file that holds a secret (a key, a bearer token), what it is named in errors. Throws
 * NOT_FOUND if path does not exist, PERMISSION_DENIED if its group or others have any access to it
 * (as ssh refuses such private keys: anyone who can read it can act as its owner) or it cannot be
 * read, INVALID_ARGUMENT if it is not a file or holds more than maxBytes, INTERNAL on other I/O failures.
 */
export async function readPrivateFile(path: string, what: string, maxBytes: number): Promise<Uint8Array> {
  try {
    // One handle for the checks and the read, so that they are about the same file; a FIFO given by
    // mistake is refused, not waited on.
    const handle = await openRegularFile(path, constants.O_RDONLY, what);
    try {
      const stats = await handle.stat();
      if (process.platform !== "win32" && (stats.mode & 0o077) !== 0) {
        const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
        throw RemoteLogError.permissionDenied(`${what} ${path} is open to group or others (mode ${mode}); run: chmod 600 ${path}`, { file: path });
      }
      if (stats.size > maxBytes) throw RemoteLogError.invalidArgument(`${what} ${path} holds ${stats.size} bytes, more than a ${what} may (${maxBytes})`);
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (isRemoteLogError(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw RemoteLogError.notFound(`${what} ${path} does not exist`, { file: path });
    if (code === "EACCES" || code === "EPERM") throw RemoteLogError.permissionDenied(`cannot read ${what} ${path}: ${(err as Error).message}`, { file: path });
    if (code === "ENOTDIR" || code === "EISDIR") throw RemoteLogError.invalidArgument(`${what} ${path} is not a file`, err, { file: path });
    throw ioError(`cannot read ${what} ${path}`, err, path);
  }
}
