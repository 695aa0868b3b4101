import { ErrorCodes, isRemoteLogError, RemoteLogError } from "../core/errors.js";
import { addressText, decodeMessage } from "../core/hash.js";
import { encodeRecords, idOf, type EncodedRecords, type MessageRun } from "./log-file.js";
import { checkLastId, decodePackRun, sameShape, type ReadPackHeader } from "./pack-format.js";

/**
 * One pack of a restore, checked and laid out as log.bin records: its bytes against its address, its
 * header and body (decodePackRun), and every message (it decodes; its id is computed into its record).
 * Runs on a restore thread (restore-worker.ts) or, without one, on the caller's. DATA_LOSS naming the
 * pack (details: address), and the seq of a message that does not decode (details: seq). shared: as
 * encodeRecords. walked: the header the restore's walk read (from the pack's first bytes), whose
 * address bytes must hash to and whose chain shape the pack's own must be: the chain was walked by
 * it. The last message's id must be the header's last_id (checkLastId).
 */
export function layOutPack(bytes: Uint8Array, walked: ReadPackHeader, shared: boolean): EncodedRecords {
  const { address } = walked;
  const pack = decodePackRun(bytes, address);
  if (!sameShape(pack, walked)) {
    throw RemoteLogError.dataLoss(`pack ${addressText(address)} read whole does not say what its first bytes said of its place in the chain (was it replaced during the restore?)`, undefined, {
      address: addressText(address),
    });
  }
  try {
    const records = encodeRecords(pack.body, pack.firstSeq, shared);
    checkLastId(pack, idOf(records, pack.count - 1));
    return records;
  } catch (err) {
    if (!isRemoteLogError(err, ErrorCodes.INVALID_ARGUMENT)) throw err;
    const at = firstUndecodable(pack.body);
    throw RemoteLogError.dataLoss(`pack ${addressText(address)}: ${err.message}`, err, { address: addressText(address), ...(at === undefined ? {} : { seq: pack.firstSeq + at }) });
  }
}

/**
 * The index of the first message of run that does not decode, found again once encodeRecords has
 * failed: its error names the seq in its text only, and the loop that lays out every message of a
 * restore is kept free of the bookkeeping.
 */
function firstUndecodable(run: MessageRun): number | undefined {
  for (let i = 0; i < run.spans.length / 2; i++) {
    try {
      decodeMessage(run.bytes.subarray(run.spans[2 * i], run.spans[2 * i + 1]));
    } catch {
      return i;
    }
  }
  return undefined;
}

/** bytes in an ArrayBuffer of their own, which a postMessage can move rather than copy. */
export function wholeBuffer(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes : bytes.slice();
}
