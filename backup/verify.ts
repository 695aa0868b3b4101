import { addressText } from "../core/hash.js";
import { checkMessages, verifyLink, type ReadPack } from "./pack-format.js";
import { readPack } from "./pack-chain.js";
import { inPackFile, type PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";
import { faultOf, type Fault, type VerifyReport } from "./verify-log.js";

export { verifyRemoteLog, type Fault, type VerifyReport } from "./verify-log.js";

/**
 * Checks a pack chain from head: each pack is present, hashes to its CID, has a sound header and
 * links to the previous one with contiguous seqs, down to seq 0 (the structure, which needs every
 * pack's bytes since the link is inside them); with readData also every message (decodes, distinct
 * ids, last_id). Stops at the first pack it cannot read, since the rest of the chain hangs off it;
 * every fault found is in the report, none is thrown.
 */
export async function verifyPackChain(store: PackStore, head: Uint8Array, options: { readData?: boolean; progress?: Progress } = {}): Promise<VerifyReport> {
  const started = performance.now();
  const progress = options.progress ?? silentProgress;
  const faults: Fault[] = [];
  const seen = new Set<string>();
  let newer: ReadPack | undefined;
  let address = head;
  let objects = 0;
  let messages = 0;
  let bytes = 0;
  for (;;) {
    let pack: ReadPack;
    try {
      pack = await readPack(store, address, newer);
      if (newer) verifyLink(newer, pack);
    } catch (err) {
      faults.push(faultOf(addressText(address), err));
      break;
    }
    if (!newer) progress.start("packs", pack.lastSeq + 1);
    objects++;
    messages += pack.count;
    bytes += pack.size;
    if (options.readData) {
      try {
        checkMessages(pack, seen);
      } catch (err) {
        faults.push(faultOf(addressText(address), inPackFile(store, address, err)));
      }
    }
    progress.advance(pack.count);
    if (pack.previous.length === 0) break;
    newer = pack;
    address = pack.previous;
  }
  progress.stop();
  return { kind: "backup", head: addressText(head), ok: faults.length === 0, faults, objects, messages, bytes, readData: options.readData ?? false, ms: Math.round(performance.now() - started) };
}

