import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { decodePack, decodePackHeader, decodePackHeaderStart, verifyLink, type ReadPack, type ReadPackHeader } from "./pack-format.js";
import { inPackFile, type PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

/** A pack's header as a walk read it, with the pack's bytes when the store gave them whole. */
export type WalkedPack = ReadPackHeader & { bytes?: Uint8Array };

/** Bytes read from the start of each pack for its header; a header needs ~200 plus its log name. */
const HEADER_READ_BYTES = 4096;

/**
 * Reads a pack chain's headers from its head back to its first pack and checks its shape: each link
 * (contiguous seqs, one log name) and that the chain starts at seq 0. Each pack's header is checked
 * (decodePackHeader) but not its bytes against its address, nor its body: the caller reads each pack
 * whole and checks it before using anything of it, as restore does on its threads. From a store that
 * reads part of a pack (readStart: a directory) only the packs' first bytes are read, so a chain of
 * any length is walked in little memory; elsewhere each pack comes whole, with its bytes, which the
 * caller may keep or move. Returns the packs oldest first. Throws NOT_FOUND naming a missing pack,
 * DATA_LOSS naming a corrupt one or a broken link.
 */
export async function walkChain(store: PackStore, head: Uint8Array, progress: Progress = silentProgress): Promise<WalkedPack[]> {
  const newestFirst: WalkedPack[] = [];
  let address: Uint8Array = head;
  let newer: WalkedPack | undefined;
  for (;;) {
    const pack = await readHeader(store, address, newer);
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

/** A pack's header: from its first bytes where the store reads them, else from the whole pack, kept. */
async function readHeader(store: PackStore, address: Uint8Array, newer?: ReadPackHeader): Promise<WalkedPack> {
  // Any trouble with the first bytes (missing, unreadable, not a header) is reported by reading the
  // pack whole below, which says what is wrong with it as every other reader does.
  const start = await store.readStart?.(address, HEADER_READ_BYTES).catch(() => undefined);
  if (start) {
    try {
      const header = decodePackHeaderStart(start.bytes, start.size, address);
      if (header) return header;
    } catch {
      // read whole below
    }
  }
  const bytes = await fetchPack(store, address, newer);
  try {
    return { ...decodePackHeader(bytes, address), bytes };
  } catch (err) {
    throw inPackFile(store, address, err);
  }
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
export async function fetchPack(store: PackStore, address: Uint8Array, newer?: ReadPackHeader): Promise<Uint8Array> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await store.get(address);
  } catch (err) {
    // A CAS that re-hashes on read reports a damaged block as DATA_LOSS itself.
    if (isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw RemoteLogError.dataLoss(`pack ${addressText(address)} is corrupt: ${err.text}`, err);
    throw err;
  }
  const named = newer ? `, the pack before ${addressText(newer.address)} (seqs up to ${newer.firstSeq - 1}),` : "";
  if (!bytes) throw RemoteLogError.notFound(`pack ${addressText(address)}${named} is missing from ${store.where}`);
  return bytes;
}
