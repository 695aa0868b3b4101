import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { checkMessages, decodePack, verifyLink, type ReadPack } from "./pack-format.js";
import type { PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

export interface ChainOptions {
  /** Also decode every message and recompute its id (restore always does). */
  readData?: boolean;
  progress?: Progress;
}

/**
 * Reads a pack chain from its head back to its first pack and checks it whole: every pack against
 * its CID, its header, each link (contiguous seqs, one log name), that the chain starts at seq 0, and
 * with readData every message (decodes, ids distinct, last_id). Returns the packs oldest first.
 * Throws NOT_FOUND naming a missing pack, DATA_LOSS naming a corrupt one or a broken link.
 * Holds every pack in memory: restore needs all of them before it writes anything.
 */
export async function readChain(store: PackStore, head: Uint8Array, options: ChainOptions = {}): Promise<ReadPack[]> {
  const progress = options.progress ?? silentProgress;
  const newestFirst: ReadPack[] = [];
  let address: Uint8Array = head;
  let newer: ReadPack | undefined;
  for (;;) {
    const pack = await readPack(store, address, newer);
    if (newer) verifyLink(newer, pack);
    else progress.start("packs", pack.lastSeq + 1);
    newestFirst.push(pack);
    progress.advance(pack.count);
    if (pack.previous.length === 0) break;
    newer = pack;
    address = pack.previous;
  }
  progress.stop();
  const packs = newestFirst.reverse();
  if (options.readData) {
    const seen = new Set<string>();
    for (const pack of packs) checkMessages(pack, seen);
  }
  return packs;
}

/** One pack, fetched and checked against its address and header; NOT_FOUND when the store lacks it. */
export async function readPack(store: PackStore, address: Uint8Array, newer?: ReadPack): Promise<ReadPack> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await store.get(address);
  } catch (err) {
    // A CAS that re-hashes on read reports a damaged block as DATA_LOSS itself.
    if (isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw RemoteLogError.dataLoss(`pack ${addressText(address)} is corrupt: ${err.message}`, err);
    throw err;
  }
  const named = newer ? `, the pack before ${addressText(newer.address)} (seqs up to ${newer.firstSeq - 1}),` : "";
  if (!bytes) throw RemoteLogError.notFound(`pack ${addressText(address)}${named} is missing from ${store.where}`);
  return decodePack(bytes, address);
}
