import { ErrorCodes, isRemoteLogError, RemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { encodeRecords, type EncodedRecords } from "./log-file.js";
import { decodePackRun } from "./pack-format.js";

/**
 * One pack of a restore, checked and laid out as log.bin records: its bytes against its address, its
 * header and body (decodePackRun), and every message (it decodes; its id is computed into its record).
 * Runs on a restore thread (restore-worker.ts) or, without one, on the caller's. DATA_LOSS naming the
 * pack, and the seq of a message that does not decode. shared: as encodeRecords.
 */
export function layOutPack(bytes: Uint8Array, address: Uint8Array, shared = false): EncodedRecords {
  const pack = decodePackRun(bytes, address);
  try {
    return encodeRecords(pack.body, pack.firstSeq, shared);
  } catch (err) {
    if (isRemoteLogError(err, ErrorCodes.INVALID_ARGUMENT)) throw RemoteLogError.dataLoss(`pack ${addressText(address)}: ${err.message}`, err, { address: addressText(address) });
    throw err;
  }
}

/** bytes in an ArrayBuffer of their own, which a postMessage can move rather than copy. */
export function wholeBuffer(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes : bytes.slice();
}
