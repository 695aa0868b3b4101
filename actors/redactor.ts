import type { RemoteLog } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { LogReader } from "../core/log-reader.js";
import type { LogRemote } from "../core/log-remote.js";
import { createNameRecord, isKeyName, MIN_VALIDITY_MS, type PrivateKey } from "../core/names.js";
import { checkWholeNumber } from "../core/options.js";
import { encodePage } from "../core/page.js";
import { redactPages } from "../core/redact.js";
import { LostRace, retryLostRaces } from "./remote.js";

export interface RedactOptions {
  name: string;
  remote: Pick<LogRemote, "fetchName" | "getBlock" | "getBlocks" | "putBlocks" | "updateName" | "nsUrl" | "casUrl">;
  /** The name's key, to sign the new head; needed for a key name. */
  key?: PrivateKey;
  /** How long the new head's record stays valid, in ms: MIN_VALIDITY_MS (a minute) at least (INVALID_ARGUMENT). */
  validityMs?: number;
  ttlMs?: number;
  maxPages?: number;
  /** Conditional updates lost in a row to another writer before giving up (ABORTED); default 20. */
  maxLostRaces?: number;
}

export interface RedactResult {
  /** Seqids of the messages made tombstones now; those that already were are left out. */
  redacted: number[];
  /** Pages rewritten, head included. */
  pages: number;
  /** The name's version after the update (unchanged when nothing was left to redact). */
  version: bigint;
  redactions: number;
}

/**
 * Removes messages from a remote log, leaving tombstones (core/redact.ts). Reads back from the head
 * only as far as the oldest of the messages, rewrites those pages and publishes the new head with a
 * conditional update, starting again if a sender published meanwhile. Redacting a message that is a
 * tombstone already changes nothing. Every message not found is NOT_FOUND, and nothing changes.
 */
export async function redact(options: RedactOptions, ids: Uint8Array[]): Promise<RedactResult> {
  checkWholeNumber("validityMs", options.validityMs, MIN_VALIDITY_MS);
  return retryLostRaces(options.maxLostRaces ?? 20, `redact of ${JSON.stringify(options.name)}`, () => redactOnce(options, ids));
}

async function redactOnce(options: RedactOptions, ids: Uint8Array[]): Promise<RedactResult> {
  const { name, remote } = options;
  const signed = isKeyName(name);
  if (signed && !options.key) throw RemoteLogError.invalidArgument(`name ${name} is a key name: redacting it needs its key, to sign the new head`);
  // The version the NS gives the name is the floor: the new head's record goes one above it.
  const reader = new LogReader(remote, name, { signed, maxPages: options.maxPages });
  // The name's own writer: an expired record is renewed by the new head this publishes.
  const opened = await reader.open({ acceptExpired: true });
  if (!opened) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} has no remote log at ${remote.nsUrl}`);
  const { entry: current, page: head } = opened;
  if (!head.info) throw RemoteLogError.conflict(`name ${JSON.stringify(name)} has no page info (seqids): only such logs can be redacted`);

  // Back from the head until every message is found: those pages are the ones to rewrite.
  const pages: RemoteLog[] = [];
  const wanted = new Map(ids.map((id) => [toHex(id), id]));
  const found = new Map<string, { seqid: number; redacted: boolean }>();
  await reader.walk(head, {
    onPage: (pairs, page) => {
      pages.unshift(page);
      for (const pair of pairs) {
        const key = toHex(pair.localHash);
        if (wanted.has(key) && !found.has(key)) found.set(key, { seqid: Number(pair.seqid), redacted: pair.redacted });
      }
      return found.size < wanted.size;
    },
  });
  const missing = [...wanted.keys()].filter((key) => !found.has(key));
  if (missing.length > 0) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} holds no message ${missing.join(", ")}`);
  const fresh = [...found].filter(([, at]) => !at.redacted);
  if (fresh.length === 0) return { redacted: [], pages: 0, version: current.version, redactions: Number(head.info.redactions) };

  // Only the pages from the oldest fresh message's up are rewritten.
  const oldest = Math.min(...fresh.map(([, at]) => at.seqid));
  const from = pages.findIndex((page) => page.pair.some((pair) => Number(pair.seqid) === oldest));
  const rewritten = redactPages(pages.slice(from), fresh.map(([key]) => wanted.get(key)!));
  await remote.putBlocks(rewritten.sealed.map((page) => page.bytes));
  const headBytes = encodePage(rewritten.head);
  const record = options.key ? await createNameRecord(options.key, headBytes, current.version + 1n, { validityMs: options.validityMs, ttlMs: options.ttlMs }) : undefined;
  let version: bigint;
  try {
    version = await remote.updateName(name, headBytes, current.version, record);
  } catch (err) {
    // A sender published meanwhile: the new head holds pages this rewrite did not see.
    if (err instanceof RemoteLogError && err.code === ErrorCodes.ABORTED) throw new LostRace(err);
    throw err;
  }
  return { redacted: fresh.map(([, at]) => at.seqid).sort((a, b) => a - b), pages: pages.length - from, version, redactions: rewritten.redactions };
}
