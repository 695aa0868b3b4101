/*
 * Garbage collection of the embedded fs CAS (stores/fs), by mark and sweep.
 *
 * Roots: every name in the NS beside it (a log's head page, or a BackupHead naming a pack). Mark
 * follows, from each root: a page's tail, its skip links (info.skips[].address) and its pairs'
 * remoteHash (messages are leaves; a redacted pair has none); a pack's previous link. Missing blocks
 * are reported and not followed. A reachable page or pack that does not decode stops gc (DATA_LOSS
 * naming it and the name that reaches it) before anything is swept. Sweep rewrites every pack holding
 * unmarked blocks without them, through the store's sweep capability (core/content-store.ts
 * BlockSweeper); gc runs only on stores that have it.
 *
 * Safe against writers at the same time, by this rule: a block is deleted only if it was unreachable
 * when marked, AND its pack was written more than `graceMs` before the mark began, AND it was not put
 * (not even again, as a duplicate) in that grace period or since the mark began. So a sender's upload
 * is never collected while the sender is still on its way to publishing the head that names it, as long
 * as it publishes within the grace period (default 1 h) of uploading. In addition, the roots are read
 * again once the mark is done, and whatever a name points at by then is marked too.
 */
import type { BlockSweeper, ContentStore } from "../core/content-store.js";
import type { NameEntry } from "../core/name-store.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { addressOf, addressText } from "../core/hash.js";
import { decodePage } from "../core/page.js";
import { decodeBackupHead, decodePack } from "./pack-format.js";
import { silentProgress, type Progress } from "./progress.js";

/** Names and their entries, all of them: a NameStore with the list capability (core/name-store.ts canList). */
export interface NameLister {
  list(): AsyncIterable<[string, NameEntry]>;
}

export interface GcOptions {
  /** A content store with the sweep capability (core/content-store.ts canSweep). */
  store: Pick<ContentStore, "getMany"> & { readonly sweeper: BlockSweeper };
  names: NameLister;
  /** Packs and puts younger than this at the mark's start are never swept. Default 1 h. */
  graceMs?: number;
  /** Mark and report, delete nothing. */
  dryRun?: boolean;
  progress?: Progress;
}

export interface GcSummary {
  roots: number;
  marked: number;
  packs: number;
  /** Packs rewritten or removed. */
  sweptPacks: number;
  removedBlocks: number;
  freedBytes: number;
  /** Blocks a root reaches that are not stored (a broken chain): reported, never fatal. */
  missing: string[];
  dryRun: boolean;
  ms: number;
}

export const DEFAULT_GRACE_MS = 3_600_000;

const keyOf = (address: Uint8Array) => Buffer.from(address.buffer, address.byteOffset, address.length).toString("latin1");

/** A block the mark must read and follow: what it must be, and the name that reaches it. */
interface Reached {
  address: Uint8Array;
  kind: "page" | "pack";
  name: string;
}

/**
 * Marks what every name reaches, then sweeps the rest. A reachable page or pack that does not decode
 * (or does not match its address) stops gc with DATA_LOSS naming it and the name that reaches it, before
 * anything is swept: what hangs off it cannot be known, and is exactly what a user would need.
 */
export async function collectGarbage(options: GcOptions): Promise<GcSummary> {
  const started = performance.now();
  const { store } = options;
  const sweeper = store.sweeper;
  const progress = options.progress ?? silentProgress;
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const guard = sweeper.beginGc();
  try {
    const since = guard.startedMs - graceMs;
    sweeper.forgetPutsBefore(since - graceMs);
    const marked = new Set<string>();
    // The pages and packs read and followed (by kind), apart from marked: a block marked as a leaf (some page's
    // message) may be a page too. Skipping every marked block let a stranger's page name a victim's
    // older page as its "message", ahead of the victim's head in the order names are listed, so that
    // the victim's page was never read and all older than it swept.
    const followed = new Set<string>();
    const missing: string[] = [];
    const seenRoots = new Map<string, string>();

    // Follows everything reachable from some blocks, fetching only pages and packs (messages are leaves).
    const markFrom = async (start: Reached[]) => {
      let frontier = start;
      while (frontier.length > 0) {
        const next: Reached[] = [];
        const fresh = frontier.filter(({ address, kind }) => {
          const key = keyOf(address);
          // By kind too: a pack that a page links as a page must still be followed as a pack.
          if (followed.has(kind + key)) return false;
          followed.add(kind + key);
          marked.add(key);
          return true;
        });
        let blocks: (Uint8Array | undefined)[];
        try {
          blocks = await store.getMany(fresh.map((reached) => reached.address));
        } catch (err) {
          if (!isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw err;
          // Stored bytes that no longer match their address: find which, to name it.
          for (const reached of fresh) await store.getMany([reached.address]).catch((one: unknown) => {
            throw isRemoteLogError(one, ErrorCodes.DATA_LOSS) ? damaged(reached, "its stored bytes do not match its address") : one;
          });
          throw err;
        }
        fresh.forEach((reached, i) => {
          const bytes = blocks[i];
          if (!bytes) return void missing.push(addressText(reached.address));
          next.push(...linksOf(bytes, reached, marked));
        });
        frontier = next;
      }
    };
    const markRoots = async () => {
      let changed = 0;
      for await (const [name, entry] of options.names.list()) {
        const content = keyOf(entry.content);
        if (seenRoots.get(name) === content) continue;
        seenRoots.set(name, content);
        changed++;
        const head = decodeBackupHead(entry.content);
        if (head) await markFrom([{ address: head.pack, kind: "pack", name }]);
        else await markFrom(linksOf(entry.content, { address: addressOf(entry.content), kind: "page", name }, marked));
      }
      return changed;
    };
    progress.start("roots", 0);
    await markRoots();
    // Heads that moved during the mark name blocks the first pass may not have reached.
    while ((await markRoots()) > 0);
    const roots = seenRoots.size;
    progress.stop();

    const packs = sweeper.listPacks();
    let sweptPacks = 0;
    let removedBlocks = 0;
    let freedBytes = 0;
    progress.start("packs", packs.length);
    for (const pack of packs) {
      progress.advance(1);
      if (pack.writtenMs >= since) continue;
      // A dry run asks the same sweep to count only, so that it reports the blocks and bytes a run removes.
      const swept = await sweeper.sweepPack(pack.name, (key) => marked.has(key), guard, since, { dryRun: options.dryRun });
      if (swept.blocks > 0) sweptPacks++;
      removedBlocks += swept.blocks;
      freedBytes += swept.bytes;
    }
    progress.stop();
    return { roots, marked: marked.size, packs: packs.length, sweptPacks, removedBlocks, freedBytes, missing, dryRun: options.dryRun ?? false, ms: Math.round(performance.now() - started) };
  } finally {
    guard.end();
  }
}

/**
 * DATA_LOSS naming a reachable block gc cannot read, and the name that reaches it; nothing is swept.
 * cause is a decode error (its text names no file) or a sentence.
 */
function damaged(reached: Reached, cause: unknown): RemoteLogError {
  const why = cause instanceof RemoteLogError ? cause.text : String(cause);
  const address = addressText(reached.address);
  return RemoteLogError.dataLoss(
    `gc stopped, nothing swept: ${reached.kind} ${address}, which name ${JSON.stringify(reached.name)} reaches, does not decode (${why}); what is older than it cannot be told from garbage`,
    cause,
    { address, name: reached.name },
  );
}

/** The blocks a stored page or pack links to; DATA_LOSS when it is not the page or pack it must be. */
function linksOf(bytes: Uint8Array, reached: Reached, marked: Set<string>): Reached[] {
  if (reached.kind === "pack") {
    let previous: Uint8Array;
    try {
      previous = decodePack(bytes, reached.address).previous;
    } catch (err) {
      throw damaged(reached, err);
    }
    return previous.length > 0 ? [{ address: previous, kind: "pack", name: reached.name }] : [];
  }
  try {
    return linksOfPage(bytes, `page ${addressText(reached.address)}`, reached.name, marked);
  } catch (err) {
    throw damaged(reached, err);
  }
}

/**
 * A page's tail and skip links (to follow) after marking its messages (leaves) directly. Throws
 * DATA_LOSS when bytes are not a page.
 */
function linksOfPage(bytes: Uint8Array, where: string, name: string, marked: Set<string>): Reached[] {
  const page = decodePage(bytes, where, ErrorCodes.DATA_LOSS);
  for (const pair of page.pair) if (pair.remoteHash.length > 0) marked.add(keyOf(pair.remoteHash));
  const links: Reached[] = [];
  if (page.tail.length > 0) links.push({ address: page.tail, kind: "page", name });
  for (const skip of page.info?.skips ?? []) if (skip.address.length > 0) links.push({ address: skip.address, kind: "page", name });
  return links;
}
