/*
 * Garbage collection of the embedded fs CAS (stores/fs), by mark and sweep.
 *
 * Roots: every name in the NS beside it (a log's head page, or a BackupHead naming a pack). Mark
 * follows, from each root: a page's tail, its skip links (info.skips[].address) and its pairs'
 * remoteHash (messages are leaves; a redacted pair has none); a pack's previous link. Missing blocks
 * are reported and not followed. Sweep rewrites every pack holding unmarked blocks without them
 * (FsContentStore.sweepPack).
 *
 * Safe against writers at the same time, by this rule: a block is deleted only if it was unreachable
 * when marked, AND its pack was written more than `graceMs` before the mark began, AND it was not put
 * (not even again, as a duplicate) in that grace period or since the mark began. So a sender's upload
 * is never collected while the sender is still on its way to publishing the head that names it, as long
 * as it publishes within the grace period (default 1 h) of uploading. In addition, the roots are read
 * again once the mark is done, and whatever a name points at by then is marked too.
 */
import type { NameEntry } from "../core/name-store.js";
import { ErrorCodes } from "../core/errors.js";
import { addressText } from "../core/hash.js";
import { decodePage } from "../core/page.js";
import type { FsContentStore } from "../stores/fs/content-store.js";
import { decodeBackupHead, decodePack, looksLikePack } from "./pack-format.js";
import { silentProgress, type Progress } from "./progress.js";

/** Names and their entries, all of them (stores/level/name-store.ts LevelNameStore.list). */
export interface NameLister {
  list(): AsyncIterable<[string, NameEntry]>;
}

export interface GcOptions {
  store: FsContentStore;
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

export async function collectGarbage(options: GcOptions): Promise<GcSummary> {
  const started = performance.now();
  const { store } = options;
  const progress = options.progress ?? silentProgress;
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const guard = store.beginGc();
  try {
    const since = guard.startedMs - graceMs;
    store.forgetPutsBefore(since - graceMs);
    const marked = new Set<string>();
    const missing: string[] = [];
    const seenRoots = new Map<string, string>();

    // Follows everything reachable from one block, fetching only pages and packs (messages are leaves).
    const markFrom = async (start: Uint8Array[]) => {
      let frontier = start;
      while (frontier.length > 0) {
        const next: Uint8Array[] = [];
        const fresh = frontier.filter((address) => {
          const key = keyOf(address);
          if (marked.has(key)) return false;
          marked.add(key);
          return true;
        });
        const blocks = await store.getMany(fresh);
        fresh.forEach((address, i) => {
          const bytes = blocks[i];
          if (!bytes) return void missing.push(addressText(address));
          next.push(...linksOf(bytes, address, marked));
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
        if (head) await markFrom([head.pack]);
        else await markFrom(linksOfPage(entry.content, `head of ${JSON.stringify(name)}`, marked));
      }
      return changed;
    };
    progress.start("roots", 0);
    await markRoots();
    // Heads that moved during the mark name blocks the first pass may not have reached.
    while ((await markRoots()) > 0);
    const roots = seenRoots.size;
    progress.stop();

    const packs = store.listPacks();
    let sweptPacks = 0;
    let removedBlocks = 0;
    let freedBytes = 0;
    progress.start("packs", packs.length);
    for (const pack of packs) {
      progress.advance(1);
      if (pack.writtenMs >= since) continue;
      // A dry run asks the same sweep to count only, so that it reports the blocks and bytes a run removes.
      const swept = await store.sweepPack(pack.name, (key) => marked.has(key), guard, since, { dryRun: options.dryRun });
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

/** The addresses a stored block links to: a pack's previous pack, or a page's links. */
function linksOf(bytes: Uint8Array, address: Uint8Array, marked: Set<string>): Uint8Array[] {
  if (looksLikePack(bytes)) {
    try {
      const pack = decodePack(bytes, address);
      return pack.previous.length > 0 ? [pack.previous] : [];
    } catch {
      return []; // a damaged pack: verify reports it; gc keeps it and goes no further
    }
  }
  try {
    return linksOfPage(bytes, `block ${addressText(address)}`, marked);
  } catch {
    return []; // a message, or anything else that is not a page: a leaf
  }
}

/**
 * A page's tail and skip links (to follow) after marking its messages (leaves) directly. Throws
 * when bytes are not a page.
 */
function linksOfPage(bytes: Uint8Array, where: string, marked: Set<string>): Uint8Array[] {
  const page = decodePage(bytes, where, ErrorCodes.DATA_LOSS);
  for (const pair of page.pair) if (pair.remoteHash.length > 0) marked.add(keyOf(pair.remoteHash));
  const links: Uint8Array[] = [];
  if (page.tail.length > 0) links.push(page.tail);
  for (const skip of page.info?.skips ?? []) if (skip.address.length > 0) links.push(skip.address);
  return links;
}
