import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { decodePack, verifyLink, type ReadPack, type ReadPackHeader } from "./pack-format.js";
import { inPackFile, type PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

/**
 * Reads a pack chain from its head back to its first pack and checks its shape: each link (contiguous
 * seqs, one log name) and that the chain starts at seq 0. take is given each pack's bytes as they are
 * read, newest first, and returns its header checked (decodePack, or decodePackHeader when the caller
 * checks the bytes against the address and the body elsewhere, as restore does on its threads); it
 * may keep or move the bytes. Returns what take returned, oldest first. Throws NOT_FOUND naming a
 * missing pack, DATA_LOSS naming a corrupt one or a broken link.
 */
export async function walkChain<T extends ReadPackHeader>(
  store: PackStore,
  head: Uint8Array,
  take: (bytes: Uint8Array, address: Uint8Array) => T,
  progress: Progress = silentProgress,
): Promise<T[]> {
  const newestFirst: T[] = [];
  let address: Uint8Array = head;
  let newer: T | undefined;
  for (;;) {
    const bytes = await fetchPack(store, address, newer);
    let pack: T;
    try {
      pack = take(bytes, address);
    } catch (err) {
      throw inPackFile(store, address, err);
    }
    if (newer) verifyLink(newer, pack);
    else progress.start("packs", pack.lastSeq + 1);
    newestFirst.push(pack);
    progress.advance(pack.count);
    if (pack.previous.length === 0) break;
    newer = pack;
    address = pack.previous;
  }
  progress.stop();
  return newestFirst.reverse();
}

/** One pack, fetched and checked against its address and header; NOT_FOUND when the store lacks it. */
export async function readPack(store: PackStore, address: Uint8Array, newer?: ReadPackHeader): Promise<ReadPack> {
  return (await readPackBytes(store, address, newer)).pack;
}

/** readPack, also returning the pack's bytes as stored. */
export async function readPackBytes(store: PackStore, address: Uint8Array, newer?: ReadPackHeader): Promise<{ pack: ReadPack; bytes: Uint8Array }> {
  const bytes = await fetchPack(store, address, newer);
  try {
    return { pack: decodePack(bytes, address), bytes };
  } catch (err) {
    throw inPackFile(store, address, err);
  }
}

/** A pack's bytes as stored, unchecked; NOT_FOUND naming it (and newer, the pack that links to it) when the store lacks it. */
async function fetchPack(store: PackStore, address: Uint8Array, newer?: ReadPackHeader): Promise<Uint8Array> {
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
  return bytes;
}
