import type { RemoteLog, RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import { RemoteLogError } from "./errors.js";
import { addressOf, equalBytes } from "./hash.js";
import { encodePage, positionAfter, positionOf, type SealedPage } from "./page.js";

export interface RedactedChain {
  /** The rewritten pages before the head, oldest first, to be stored before the head is published. */
  sealed: SealedPage[];
  head: RemoteLog;
  /** The log's redaction count after this one, carried by every rewritten page. */
  redactions: number;
}

/**
 * Removes messages from a log with page info: pages is the chain from the page holding the oldest of
 * them up to the head, oldest first. Their pairs become tombstones, which keep their seqid and H1 and
 * lose their address and data; every page from there up is rewritten with its new tail and skip
 * links, and all of them carry the log's redaction count plus one, so that a receiver that delivered
 * a removed message walks back to its tombstone. Pages before the first stay as they are.
 */
export function redactPages(pages: RemoteLog[], ids: Uint8Array[]): RedactedChain {
  const head = pages[pages.length - 1];
  if (!head?.info) throw RemoteLogError.invalidArgument("only a log whose pages carry page info (seqids) can be redacted");
  let position = positionOf(pages[0]);
  if (!position || pages.some((page) => !page.info)) throw RemoteLogError.invalidArgument("only a log whose pages carry page info (seqids) can be redacted");
  const redactions = Number(head.info.redactions) + 1;
  const sealed: SealedPage[] = [];
  let tail = pages[0].tail;
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    const pair = page.pair.map((p): RemoteLog_Pair => (ids.some((id) => equalBytes(id, p.localHash)) ? tombstoneOf(p) : p));
    const rewritten: RemoteLog = {
      $typeName: "vac.cas.RemoteLog",
      pair,
      tail,
      info: { ...page.info!, skips: position.skips, redactions: BigInt(redactions) },
    };
    if (i === pages.length - 1) return { sealed, head: rewritten, redactions };
    const bytes = encodePage(rewritten);
    tail = addressOf(bytes);
    sealed.push({ address: tail, bytes });
    position = positionAfter(position, tail, pair.length);
  }
  throw new Error("unreachable: the loop returns at the head");
}

function tombstoneOf(pair: RemoteLog_Pair): RemoteLog_Pair {
  return { $typeName: "vac.cas.RemoteLog.Pair", localHash: pair.localHash, seqid: pair.seqid, remoteHash: new Uint8Array(0), data: new Uint8Array(0), redacted: true };
}
