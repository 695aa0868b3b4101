import { createReadStream, createWriteStream } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CarWriter } from "@ipld/car/writer";
import { CarBlockIterator } from "@ipld/car/iterator";
import { CID } from "multiformats/cid";
import { RemoteLogError } from "../core/errors.js";
import { addressOf, addressText, equalBytes, RAW_CODEC, SHA2_256 } from "../core/hash.js";
import { LogReader } from "../core/log-reader.js";
import type { LogReadRemote } from "../core/log-remote.js";
import { dirname } from "node:path";
import { fsyncDir, ioError, removeKilledSiblings, requireDirOf, TMP_SUFFIX, tmpPathFor } from "../stores/file/atomic.js";
import { readPackBytes } from "./pack-chain.js";
import { decodePackHeader, verifyLink, type PackHeader, type ReadPack } from "./pack-format.js";
import type { BackupHeadInfo, PackStore } from "./pack-store.js";
import { silentProgress, type Progress } from "./progress.js";

/*
 * CAR v1 files (https://ipld.io/specs/transport/car/carv1/) of backups and logs, with @ipld/car. Every
 * block is raw (CIDv1, codec 0x55, sha2-256), exactly as our CAS and Kubo's `block put --cid-codec raw`
 * address it, so `ipfs dag import` takes the file; the root is the head (a pack, or a log's head page).
 */

export interface CarSummary {
  file: string;
  root: string;
  blocks: number;
  bytes: number;
  ms: number;
}

type Put = (address: Uint8Array, bytes: Uint8Array) => Promise<void>;

/**
 * Writes a CAR file whose root is root and whose blocks are what fill() puts, replacing file
 * atomically (temporary file, fsync, rename) so that a failed export leaves no half file.
 */
async function writeCar(file: string, root: Uint8Array, fill: (put: Put) => Promise<void>): Promise<CarSummary> {
  const started = performance.now();
  const { writer, out } = CarWriter.create([CID.decode(root)]);
  await requireDirOf(file, "CAR file");
  // A killed export's temporary CAR (tmpPathFor), as big as the CAR, stayed beside it for good.
  await removeKilledSiblings(file, ".", TMP_SUFFIX);
  const tmp = tmpPathFor(file);
  const output = createWriteStream(tmp, { flags: "wx" });
  const written = pipeline(Readable.from(out), output);
  // A write that fails (a full disk) ends the export at once, where the writer would wait on it for
  // ever, and is never an unhandled rejection.
  const writeFailed = new Promise<never>((_, reject) => void written.catch(reject));
  writeFailed.catch(() => {});
  let blocks = 0;
  let bytes = 0;
  try {
    await Promise.race([
      fill(async (address, block) => {
        await writer.put({ cid: CID.decode(address), bytes: block });
        blocks++;
        bytes += block.length;
      }),
      writeFailed,
    ]);
    await writer.close();
    await written;
    const handle = await open(tmp, "r+");
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  } catch (err) {
    await writer.close().catch(() => {});
    await written.catch(() => {});
    await unlink(tmp).catch(() => {});
    throw ioError(`cannot write ${file}`, err, file);
  }
  return { file, root: addressText(root), blocks, bytes, ms: Math.round(performance.now() - started) };
}

/** A pack chain from head, every pack checked (CID, header, link) on the way. */
export async function exportPackChain(store: PackStore, head: Uint8Array, file: string, progress: Progress = silentProgress): Promise<CarSummary> {
  return writeCar(file, head, async (put) => {
    let address = head;
    let newer: ReadPack | undefined;
    for (;;) {
      const { pack, bytes } = await readPackBytes(store, address, newer);
      if (newer) verifyLink(newer, pack);
      else progress.start("packs", pack.lastSeq + 1);
      await put(address, bytes);
      progress.advance(pack.count);
      if (pack.previous.length === 0) break;
      newer = pack;
      address = pack.previous;
    }
    progress.stop();
  });
}

/**
 * A remote log: the head page (the root: the NS holds it, so the CAR carries it as a block too), every
 * older page, and every message not embedded in its page, each checked by its hashes first, read as
 * every verb reads a log (core/log-reader.ts): the head's record against minSequence, at most maxPages.
 */
export async function exportRemoteLog(
  remote: LogReadRemote,
  name: string,
  file: string,
  progress: Progress = silentProgress,
  options: { maxPages?: number; minSequence?: bigint } = {},
): Promise<CarSummary> {
  const reader = new LogReader(remote, name, { maxPages: options.maxPages });
  const head = await reader.require({ floor: options.minSequence });
  return writeCar(file, head.address, async (put) => {
    progress.start("pages", 0);
    const seen = new Set<string>();
    for await (const { page, address, bytes } of reader.pages(head.page)) {
      await put(address ?? head.address, bytes ?? head.entry.content);
      const referenced = page.pair.filter((pair) => pair.data.length === 0 && !pair.redacted);
      const { pairs, data } = await reader.readMessages(referenced);
      for (let i = 0; i < pairs.length; i++) {
        const key = addressText(pairs[i].remoteHash);
        if (seen.has(key)) continue;
        seen.add(key);
        await put(pairs[i].remoteHash, data[i]);
      }
      progress.advance(1);
    }
    progress.stop();
  });
}

export interface ImportSummary {
  file: string;
  roots: string[];
  blocks: number;
  bytes: number;
  ms: number;
  /** The pack the store's head now names, when asked for a head. */
  head?: string;
}

/**
 * Loads every block of a CAR file into store, checking each against its CID first: only CIDv1 raw
 * sha2-256 blocks are taken (what our CAS and packs use; INVALID_ARGUMENT otherwise), and a block
 * whose bytes do not hash to its CID is DATA_LOSS naming it. Nothing is stored before a batch is
 * checked; blocks are stored in batches of about 8 MiB. With options.headName (the store's head name,
 * for messages), the store's head is then pointed at the CAR's root, which must be a pack.
 */
export async function importCar(
  file: string,
  store: Pick<PackStore, "put" | "get" | "readHead" | "writeHead">,
  progress: Progress = silentProgress,
  options: { headName?: string } = {},
): Promise<ImportSummary> {
  const started = performance.now();
  let iterator: CarBlockIterator;
  const input = createReadStream(file);
  try {
    iterator = await CarBlockIterator.fromIterable(input);
  } catch (err) {
    input.destroy();
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw RemoteLogError.notFound(`${file} does not exist`, { file });
    throw RemoteLogError.invalidArgument(`${file} is not a CAR file: ${(err as Error).message}`, err);
  }
  const rootCids = await iterator.getRoots();
  const roots = rootCids.map((cid) => cid.toString());
  // With a head name, the head it holds now is read before any block goes in, to be moved only onto a
  // chain that still reaches it (see nameImportedPack).
  let headRoot: Uint8Array | undefined;
  let previousHead: BackupHeadInfo | undefined;
  let rootBytes: Uint8Array | undefined;
  const packLinks = new Map<string, Uint8Array>();
  if (options.headName !== undefined) {
    if (rootCids.length !== 1) {
      input.destroy();
      throw RemoteLogError.invalidArgument(`${file} has ${rootCids.length} roots; a backup's CAR has one, its head pack`);
    }
    headRoot = rootCids[0].bytes;
    previousHead = await store.readHead().catch((err: unknown) => {
      input.destroy();
      throw err;
    });
  }
  let batch: { address: Uint8Array; bytes: Uint8Array }[] = [];
  let batchBytes = 0;
  let blocks = 0;
  let bytes = 0;
  progress.start("blocks", 0);
  const flush = async () => {
    if (batch.length === 0) return;
    await store.put(batch);
    progress.advance(batch.length);
    batch = [];
    batchBytes = 0;
  };
  try {
    for await (const block of iterator) {
      const cid = block.cid;
      if (cid.version !== 1 || cid.code !== RAW_CODEC || cid.multihash.code !== SHA2_256) {
        throw RemoteLogError.invalidArgument(`${file}: block ${cid.toString()} is not a CIDv1 raw sha2-256 block, the only kind a remotelog CAS holds`);
      }
      if (!equalBytes(addressOf(block.bytes), cid.bytes)) throw RemoteLogError.dataLoss(`${file}: block ${cid.toString()} does not hash to its CID`, undefined, { file, address: cid.toString() });
      if (headRoot && equalBytes(cid.bytes, headRoot)) rootBytes = block.bytes;
      // Each pack's link, to walk the chain without reading it again; a pack's first byte is 0x09 (pack-format.ts).
      if (previousHead && block.bytes[0] === 0x09) {
        const previous = previousOf(block.bytes, cid.bytes);
        if (previous) packLinks.set(keyOf(cid.bytes), previous);
      }
      batch.push({ address: cid.bytes, bytes: block.bytes });
      batchBytes += block.bytes.length;
      blocks++;
      bytes += block.bytes.length;
      if (batchBytes >= 8 << 20 || batch.length >= 4096) await flush();
    }
  } catch (err) {
    if (err instanceof RemoteLogError) throw err;
    throw RemoteLogError.invalidArgument(`${file} is not a valid CAR file: ${(err as Error).message}`, err);
  } finally {
    input.destroy();
  }
  await flush();
  progress.stop();
  const summary: ImportSummary = { file, roots, blocks, bytes, ms: Math.round(performance.now() - started) };
  if (!headRoot) return summary;
  return { ...summary, head: await nameImportedPack(store, options.headName!, headRoot, rootBytes, previousHead, packLinks) };
}

const keyOf = (address: Uint8Array) => addressText(address);

/** A pack's previous link, or undefined for bytes that are not a pack. */
function previousOf(bytes: Uint8Array, address: Uint8Array): Uint8Array | undefined {
  try {
    return decodePackHeader(bytes, address).previous;
  } catch {
    return undefined;
  }
}

/**
 * Whether the chain from pack `from` reaches pack `target` by previous links: those the import read
 * (links), else the store's packs. A backup's chain ends at a pack with no previous.
 */
async function chainReaches(store: Pick<PackStore, "get">, from: Uint8Array, target: Uint8Array, links: Map<string, Uint8Array>): Promise<boolean> {
  let at = from;
  // Bounded whatever a store serves: content addresses cannot loop, a lying store could.
  for (let steps = 0; steps < 10_000_000; steps++) {
    if (equalBytes(at, target)) return true;
    let previous = links.get(keyOf(at));
    if (!previous) {
      const bytes = await store.get(at);
      previous = bytes && previousOf(bytes, at);
    }
    if (!previous || previous.length === 0) return false;
    at = previous;
  }
  return false;
}

/**
 * Points the store's head at an imported pack, so that the backup is reachable from a name and gc
 * keeps it. The root must be a pack (a log's head page has no BackupHead). A name already on it is
 * left (an import run again changes nothing); one on another pack moves only when the imported chain
 * reaches that pack (a newer backup of the same log), else CONFLICT: moved, it would leave the backup
 * it names to gc.
 */
async function nameImportedPack(
  store: Pick<PackStore, "get" | "writeHead">,
  headName: string,
  root: Uint8Array,
  rootBytes: Uint8Array | undefined,
  previous: BackupHeadInfo | undefined,
  links: Map<string, Uint8Array>,
): Promise<string> {
  const text = addressText(root);
  const bytes = rootBytes ?? (await store.get(root));
  if (!bytes) throw RemoteLogError.notFound(`root ${text} is neither in the CAR nor in the store, so no head can name it`);
  let header: PackHeader;
  try {
    header = decodePackHeader(bytes, root);
  } catch (err) {
    throw RemoteLogError.invalidArgument(
      `root ${text} is not a backup's head pack (${err instanceof RemoteLogError ? err.text : String(err)}): a head name records backups; its blocks are stored, and gc removes them after its grace unless a name reaches them (a log's CAR: mirror the log instead)`,
      err,
    );
  }
  if (previous && equalBytes(previous.pack, root)) return text;
  if (previous && !(await chainReaches(store, root, previous.pack, links))) {
    throw RemoteLogError.conflict(
      `name ${JSON.stringify(headName)} holds another backup (head pack ${addressText(previous.pack)}), which the chain of ${text} does not reach; moved, it would leave that backup to gc: import under a new --head-name (the blocks are stored; gc removes them after its grace unless a name reaches them)`,
    );
  }
  await store.writeHead({ pack: root, logName: header.logName, lastSeq: header.lastSeq }, previous);
  return text;
}
