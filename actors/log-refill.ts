import { walkChain, DEFAULT_MAX_PAGES } from "../core/chain.js";
import { ErrorCodes, RemoteLogError } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { isKeyName, verifyNameRecord } from "../core/names.js";
import { decodePage, verifyPairData } from "../core/page.js";
import type { NameHead } from "./remote.js";

/** A message of a local log, by its H1 id. */
export interface RefillMessage {
  id: Uint8Array;
  data: Uint8Array;
}

export interface RefillSource {
  fetchName(name: string): Promise<NameHead | undefined>;
  getBlock(address: Uint8Array): Promise<Uint8Array>;
  getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]>;
}

/**
 * Refills a sender's local log from its own remote log: the new log is the remote log's messages in
 * its order, each taken from the local log when it has it and otherwise fetched and checked (H2
 * against the bytes, H1 against the message), then the local messages the remote log does not hold
 * (not published yet), in their local order. Every page is checked by its hash and a signed name's
 * head by its record, so only an intact remote log refills: anything else throws (DATA_LOSS, or the
 * record's error) and the caller changes nothing. A redacted message the local log lacks cannot be
 * refilled and stays out (counted in `redacted`).
 */
export async function refillFromRemote(
  remote: RefillSource,
  name: string,
  kept: RefillMessage[],
  options: { maxPages?: number } = {},
): Promise<{ messages: RefillMessage[]; refilled: number; redacted: number; remote: number }> {
  const head = await remote.fetchName(name);
  if (!head) throw RemoteLogError.notFound(`name ${JSON.stringify(name)} has no remote log to refill from`);
  if (isKeyName(name)) await verifyNameRecord(name, head.record, head.content);
  const where = `the remote log of ${JSON.stringify(name)}`;
  const page = decodePage(head.content, `head of ${where}`, ErrorCodes.DATA_LOSS);
  const walk = await walkChain(page, (address) => remote.getBlock(address), { maxPages: options.maxPages ?? DEFAULT_MAX_PAGES });
  const local = new Map(kept.map((message) => [toHex(message.id), message]));
  const missing = walk.pairs.filter((pair) => !pair.redacted && !local.has(toHex(pair.localHash)) && pair.data.length === 0);
  const fetched = new Map<string, Uint8Array>();
  for (let i = 0; i < missing.length; i += 256) {
    const part = missing.slice(i, i + 256);
    const blocks = await remote.getBlocks(part.map((pair) => pair.remoteHash));
    part.forEach((pair, j) => fetched.set(toHex(pair.localHash), blocks[j]));
  }
  const messages: RefillMessage[] = [];
  const placed = new Set<string>();
  let refilled = 0;
  let redacted = 0;
  for (const pair of walk.pairs) {
    const key = toHex(pair.localHash);
    if (placed.has(key)) throw RemoteLogError.dataLoss(`${where} holds message ${key} twice`);
    placed.add(key);
    const mine = local.get(key);
    if (mine) {
      messages.push(mine);
      continue;
    }
    if (pair.redacted) {
      redacted++;
      continue;
    }
    const data = pair.data.length > 0 ? pair.data : fetched.get(key)!;
    verifyPairData(pair, data, `${where}, seq ${pair.seqid}`);
    messages.push({ id: pair.localHash, data });
    refilled++;
  }
  for (const message of kept) if (!placed.has(toHex(message.id))) messages.push(message);
  return { messages, refilled, redacted, remote: walk.pairs.length };
}
