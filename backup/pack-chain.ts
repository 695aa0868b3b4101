import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { checkAddressAsync, checkMessages, decodePack, verifyLink, type ReadPack } from "./pack-format.js";
import type { PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

export interface ChainOptions {
  /** Also decode every message and recompute its id. */
  readData?: boolean;
  /**
   * Hash each pack on the thread pool instead of before decoding it: the walk (and the caller) go on
   * at once, and `checked` says how the hashes came out. Only for callers that use nothing of the chain
   * before awaiting checked, as restore writes into a scratch directory.
   */
  hashLater?: boolean;
  progress?: Progress;
}

/**
 * Reads a pack chain from its head back to its first pack and checks it whole: every pack against
 * its CID, its header, each link (contiguous seqs, one log name), that the chain starts at seq 0, and
 * with readData every message (decodes, ids distinct, last_id). Returns the packs oldest first, and
 * `checked`, which rejects if a hash did not match (already settled unless hashLater). Throws
 * NOT_FOUND naming a missing pack, DATA_LOSS naming a corrupt one or a broken link. Holds every pack
 * in memory: restore needs all of them before it moves a log into place.
 */
export async function readChain(store: PackStore, head: Uint8Array, options: ChainOptions = {}): Promise<{ packs: ReadPack[]; checked: Promise<void> }> {
  const progress = options.progress ?? silentProgress;
  const newestFirst: ReadPack[] = [];
  const hashes: Promise<void>[] = [];
  let address: Uint8Array = head;
  let newer: ReadPack | undefined;
  for (;;) {
    const pack = await readPack(store, address, newer, options.hashLater ? hashes : undefined);
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
  const checked = Promise.all(hashes).then(() => {});
  checked.catch(() => {}); // the caller awaits it; this only keeps an early failure from being unhandled
  return { packs, checked };
}

/** One pack, fetched and checked against its address and header; NOT_FOUND when the store lacks it. */
export async function readPack(store: PackStore, address: Uint8Array, newer?: ReadPack, hashLater?: Promise<void>[]): Promise<ReadPack> {
  return (await readPackBytes(store, address, newer, hashLater)).pack;
}

/** readPack, also returning the pack's bytes as stored. */
export async function readPackBytes(store: PackStore, address: Uint8Array, newer?: ReadPack, hashLater?: Promise<void>[]): Promise<{ pack: ReadPack; bytes: Uint8Array }> {
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
  if (hashLater) {
    const hashing = checkAddressAsync(bytes, address);
    // Awaited with the others once the chain is read; when this pack or a later one fails to decode first,
    // nobody awaits it, and its rejection must not surface as an unhandled-rejection trace after the DATA_LOSS.
    hashing.catch(() => {});
    hashLater.push(hashing);
  }
  return { pack: decodePack(bytes, address, { hashed: hashLater !== undefined }), bytes };
}
