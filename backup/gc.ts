/*
 * Garbage collection of the embedded fs CAS (stores/fs), by mark and sweep.
 *
 * Roots: every name in the NS beside it (a log's head page, or a BackupHead naming a pack). Mark
 * follows, from each root: a page's tail, its skip links (info.skips[].address) and its pairs'
 * remoteHash (messages are leaves; a redacted pair has none); a pack's previous link. Missing blocks
 * (pages, packs and messages) are reported and not followed. Sweep rewrites every pack holding
 * unmarked blocks without them, through the store's sweep capability (core/content-store.ts
 * BlockSweeper); gc runs only on stores that have it.
 *
 * Damage and a writer's nonsense are told apart (design §9: strangers reach only the public surface):
 * - A reachable block whose stored bytes no longer match its address is damage, on the operator's own
 *   disk: gc stops with DATA_LOSS naming it and the name that reaches it, before anything is swept,
 *   since only its bytes could say what is older than it.
 * - A reachable block stored whole that is not the page or pack its link says (or a name whose content
 *   is neither a page nor a backup head) was put so by whoever wrote the name: the NS takes any bytes
 *   as a name's content, and a page may name any block as its tail. Stopping there let any stranger
 *   stop gc for everyone. It is kept, and followed as far as it can be read: its fields are decoded by
 *   the protobuf schema alone, without the format's checks, and every link field that holds an address
 *   is followed as strictly decoded links are. A page of a newer format, which keeps the field numbers
 *   (protobuf's rule), is followed whole. Such blocks are reported as unreadable, with their names.
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
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { RemoteLogSchema, type RemoteLog } from "../gen/vac/cas/cas_pb.js";
import { BackupHeadSchema, PackSchema } from "../gen/remotelog/v1/pack_pb.js";
import { addressOf, addressText, isAddress } from "../core/hash.js";
import { decodePage } from "../core/page.js";
import { decodeBackupHead, decodePackHeader } from "./pack-format.js";
import { silentProgress, type Progress } from "./progress.js";

/** Names and their entries, all of them: a NameStore with the list capability (core/name-store.ts canList). */
export interface NameLister {
  list(): AsyncIterable<[string, NameEntry]>;
  /** Forgets a name (NameStore.drop), for dropNames. */
  drop?(name: string): Promise<boolean>;
}

export interface GcOptions {
  /** A content store with the sweep capability (core/content-store.ts canSweep). */
  store: Pick<ContentStore, "getMany"> & { readonly sweeper: BlockSweeper };
  names: NameLister;
  /** Packs and puts younger than this at the mark's start are never swept. Default 1 h. */
  graceMs?: number;
  /** Mark and report, delete nothing. */
  dryRun?: boolean;
  /**
   * Names to forget first, so that what they alone reach is swept: a backup head name retired, say
   * (after a redaction, the old backup still holds the message). A dry run forgets none, and marks as
   * if they were gone.
   */
  dropNames?: string[];
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
  /**
   * Blocks a root reaches that are not stored (a broken chain, a message lost): reported, never fatal.
   * At most LISTED_MAX of them; missingCount counts them all.
   */
  missing: string[];
  missingCount: number;
  /** Blocks a root reaches, stored whole, that are not the page or pack their link says: kept, see above. At most LISTED_MAX. */
  unreadable: Unreadable[];
  unreadableCount: number;
  /** The names of dropNames that were there, and are forgotten (by a dry run: would be). */
  droppedNames: string[];
  dryRun: boolean;
  ms: number;
}

export const DEFAULT_GRACE_MS = 3_600_000;

/**
 * The most missing, and unreadable, blocks a summary lists (each has its count): a stranger's pages
 * may name a million blocks never stored, and a server sends the summary back in one answer.
 */
export const LISTED_MAX = 1000;

/** A block (or a name's content) gc kept but could not read as what reaches it, and why. */
export interface Unreadable {
  name: string;
  /** Its CID; for a name's content, the CID of those bytes. */
  address: string;
  /** What the link said it is: a page, a pack, or a name's content (a page or a backup head). */
  kind: "page" | "pack" | "name";
  reason: string;
}

const keyOf = (address: Uint8Array) => Buffer.from(address.buffer, address.byteOffset, address.length).toString("latin1");

/** A block the mark must read and follow: what it must be, and the name that reaches it. */
interface Reached {
  address: Uint8Array;
  kind: "page" | "pack";
  name: string;
}

/** What the mark gathers as it reads: the blocks marked, and those it could not read strictly. */
interface Marking {
  marked: Set<string>;
  /** Messages a page carries in itself (embedded in a head): not missing when the CAS lacks them. */
  embedded: Set<string>;
  unreadable: Unreadable[];
  unreadableCount: number;
}

/**
 * Marks what every name reaches, then sweeps the rest. A reachable page or pack whose stored bytes do
 * not match its address stops gc with DATA_LOSS naming it and the name that reaches it, before anything
 * is swept: what hangs off it cannot be known, and is exactly what a user would need. One stored whole
 * that does not decode is reported, kept, and followed as far as its fields go (see the file's notes).
 */
export async function collectGarbage(options: GcOptions): Promise<GcSummary> {
  const started = performance.now();
  const { store } = options;
  const sweeper = store.sweeper;
  const progress = options.progress ?? silentProgress;
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const dropping = new Set(options.dropNames ?? []);
  const droppedNames: string[] = [];
  if (dropping.size > 0 && !options.dryRun) {
    const { names } = options;
    if (!names.drop) throw RemoteLogError.invalidArgument("this name store cannot forget a name (IPNS keeps its records for their validity)");
    for (const name of dropping) if (await names.drop(name)) droppedNames.push(name);
  }
  const guard = sweeper.beginGc();
  try {
    const since = guard.startedMs - graceMs;
    sweeper.forgetPutsBefore(since - graceMs);
    const marked = new Set<string>();
    const marking: Marking = { marked, embedded: new Set(), unreadable: [], unreadableCount: 0 };
    // The pages and packs read and followed (by kind), apart from marked: a block marked as a leaf (some page's
    // message) may be a page too. Skipping every marked block let a stranger's page name a victim's
    // older page as its "message", ahead of the victim's head in the order names are listed, so that
    // the victim's page was never read and all older than it swept.
    const followed = new Set<string>();
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
            throw isRemoteLogError(one, ErrorCodes.DATA_LOSS) ? damaged(reached) : one;
          });
          throw err;
        }
        fresh.forEach((reached, i) => {
          const bytes = blocks[i];
          // Not stored: counted with the messages the CAS lacks, once the mark is done.
          if (!bytes) return;
          next.push(...linksOf(bytes, reached, marking));
        });
        frontier = next;
      }
    };
    const markRoots = async () => {
      let changed = 0;
      for await (const [name, entry] of options.names.list()) {
        // A dry run marks as a run would once they are gone. A run has forgotten them: one listed now
        // was made again meanwhile, and is a root like any other.
        if (options.dryRun && dropping.has(name)) {
          if (!droppedNames.includes(name)) droppedNames.push(name);
          continue;
        }
        const content = keyOf(entry.content);
        if (seenRoots.get(name) === content) continue;
        seenRoots.set(name, content);
        changed++;
        const head = decodeBackupHead(entry.content);
        if (head) await markFrom([{ address: head.pack, kind: "pack", name }]);
        else await markFrom(linksOfRoot(entry.content, name, marking));
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
    // Every block marked and not stored: the pages and packs the mark could not fetch, and the messages,
    // which it never reads (one lost with a pack set aside as damaged, say), told by the packs' listing.
    const stored = new Set<string>();
    for (const pack of packs) for (const key of pack.keys) stored.add(key);
    const missing: string[] = [];
    let missingCount = 0;
    for (const key of marked) {
      if (stored.has(key) || marking.embedded.has(key)) continue;
      missingCount++;
      if (missing.length < LISTED_MAX) missing.push(addressText(Buffer.from(key, "latin1")));
    }
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
    return {
      roots,
      marked: marked.size,
      packs: packs.length,
      sweptPacks,
      removedBlocks,
      freedBytes,
      missing,
      missingCount,
      unreadable: marking.unreadable,
      unreadableCount: marking.unreadableCount,
      droppedNames,
      dryRun: options.dryRun ?? false,
      ms: Math.round(performance.now() - started),
    };
  } finally {
    guard.end();
  }
}

/** DATA_LOSS naming a reachable block whose stored bytes no longer match its address; nothing is swept. */
function damaged(reached: Reached): RemoteLogError {
  const address = addressText(reached.address);
  return RemoteLogError.dataLoss(
    `gc stopped, nothing swept: ${reached.kind} ${address}, which name ${JSON.stringify(reached.name)} reaches, is damaged: its stored bytes do not match its address, and what is older than it cannot be told from garbage`,
    undefined,
    { address, name: reached.name },
  );
}

/**
 * The blocks a stored page or pack links to (its messages marked directly). One that is not the page
 * or pack it must be is noted as unreadable, and what links its fields hold are followed all the same.
 */
function linksOf(bytes: Uint8Array, reached: Reached, marking: Marking): Reached[] {
  try {
    if (reached.kind === "pack") {
      // The header alone: gc follows only previous, and a body is inflated (up to MAX_BODY_BYTES) to be checked.
      const previous = decodePackHeader(bytes, reached.address).previous;
      return previous.length > 0 ? [{ address: previous, kind: "pack", name: reached.name }] : [];
    }
    return linksOfPage(decodePage(bytes, `page ${addressText(reached.address)}`, ErrorCodes.DATA_LOSS), reached.name, marking);
  } catch (err) {
    noteUnreadable(marking, { name: reached.name, address: addressText(reached.address), kind: reached.kind, reason: reasonOf(err) });
    return reached.kind === "pack" ? looseLinksOfPack(bytes, reached.name) : looseLinksOfPage(bytes, reached.name, marking);
  }
}

/** The links of a name's content that is not a backup head: a log's head page, or anything a writer put. */
function linksOfRoot(content: Uint8Array, name: string, marking: Marking): Reached[] {
  try {
    return linksOfPage(decodePage(content, `the content of name ${JSON.stringify(name)}`, ErrorCodes.DATA_LOSS), name, marking);
  } catch (err) {
    noteUnreadable(marking, { name, address: addressText(addressOf(content)), kind: "name", reason: reasonOf(err) });
    // Neither a page nor a backup head: whatever either would link is followed.
    return [...looseLinksOfPage(content, name, marking), ...looseLinksOfBackupHead(content, name)];
  }
}

/** A page's tail and skip links (to follow) after marking its messages (leaves) directly. */
function linksOfPage(page: RemoteLog, name: string, marking: Marking): Reached[] {
  for (const pair of page.pair) {
    if (pair.remoteHash.length === 0) continue;
    const key = keyOf(pair.remoteHash);
    marking.marked.add(key);
    if (pair.data.length > 0) marking.embedded.add(key);
  }
  const links: Reached[] = [];
  if (page.tail.length > 0) links.push({ address: page.tail, kind: "page", name });
  for (const skip of page.info?.skips ?? []) if (skip.address.length > 0) links.push({ address: skip.address, kind: "page", name });
  return links;
}

/**
 * linksOfPage of bytes decoded by the schema alone, keeping only the fields that hold addresses; none
 * when they are not protobuf of that schema at all.
 */
function looseLinksOfPage(bytes: Uint8Array, name: string, marking: Marking): Reached[] {
  const page = looseDecode(RemoteLogSchema, bytes);
  if (!page) return [];
  page.pair = page.pair.filter((pair) => isAddress(pair.remoteHash));
  if (!isAddress(page.tail)) page.tail = new Uint8Array(0);
  if (page.info) page.info.skips = page.info.skips.filter((skip) => isAddress(skip.address));
  return linksOfPage(page, name, marking);
}

function looseLinksOfPack(bytes: Uint8Array, name: string): Reached[] {
  const previous = looseDecode(PackSchema, bytes)?.previous;
  return previous && isAddress(previous) ? [{ address: previous, kind: "pack", name }] : [];
}

function looseLinksOfBackupHead(bytes: Uint8Array, name: string): Reached[] {
  const pack = looseDecode(BackupHeadSchema, bytes)?.pack;
  return pack && isAddress(pack) ? [{ address: pack, kind: "pack", name }] : [];
}

function looseDecode<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> | undefined {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

function noteUnreadable(marking: Marking, unreadable: Unreadable): void {
  if (marking.unreadableCount++ < LISTED_MAX) marking.unreadable.push(unreadable);
}

function reasonOf(err: unknown): string {
  return err instanceof RemoteLogError ? err.text : String(err);
}
