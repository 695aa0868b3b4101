import { createHash, timingSafeEqual } from "node:crypto";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { checkNotDropped, type NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";
import { isKeyName, verifyNameRecord } from "../core/names.js";
import type { QuotaLedger } from "../core/quota-ledger.js";

/**
 * Who may write to a server and how much (design/remote-log.md §9: reading is public; writing is
 * signed, or carries a token, and is bounded by quotas; deleting is for the operator).
 *
 * - Open (no requireSigned and no write tokens): anyone may write, as a server on loopback always was.
 * - Closed: blocks are stored only when they ride with a signed name update (NameUpdate.blocks), or
 *   with a pending signed update (AddManyRequest.pending, see blocks.proto), or with a write token;
 *   an unsigned name is updated only with a write token. A key name is always updated with its record.
 * - allowKeys: only these key names may publish, in either mode.
 * - quotaBytes, quotaNames: per writer, a key name or a write token. With a ledger (serve keeps one in
 *   DIR/quotas.json) what they counted survives a restart: each write's charge is saved before the
 *   write is stored. Nothing the stores hold says who wrote what (blocks are shared by content, and
 *   a free-form name does not record its token), so the counts cannot be derived from them.
 * - quotaBytesPerAddress, quotaNamesPerAddress: the same, per client address, for every write no
 *   token vouches for. A key costs nothing to make, so a stranger who makes one for each update is
 *   bounded by these, not by the quotas per writer. A token holder is known to the operator, and
 *   bounded by quotaBytes and quotaNames alone.
 * - maxStoredBytes: the CAS holds at most this many block bytes (its stats(), with the writes under
 *   way), whoever writes them: what every client together may fill. Unlike the quotas it is not a
 *   count of what was sent, so gc makes room again.
 */
export interface WritePolicy {
  requireSigned?: boolean;
  /** Bearer tokens that may write blocks and unsigned names. */
  writeTokens?: string[];
  /** Bearer tokens that may call the operator's methods (gc) on the public listener. */
  adminTokens?: string[];
  /** Key names (k51…) that may publish; every key when undefined. */
  allowKeys?: string[];
  /** Block bytes one writer may store, counted as sent (a block sent twice counts twice). */
  quotaBytes?: number;
  /** Names one writer may create. */
  quotaNames?: number;
  /** Block bytes the writes from one client address may store, tokens' aside. */
  quotaBytesPerAddress?: number;
  /** Names the writes from one client address may create, tokens' aside. */
  quotaNamesPerAddress?: number;
  /** Block bytes the CAS may hold, by all writers together (needs storedBytes). */
  maxStoredBytes?: number;
  /** Block bytes the CAS holds now: ContentStore.stats().bytes. */
  storedBytes?: () => number;
  /** Keeps the quotas' counts across restarts; in memory only without one. */
  ledger?: QuotaLedger;
}

/** Where a call comes from: set by listen() on every request (connectNodeAdapter's contextValues). */
export interface Peer {
  /** The client's IP address, as the socket reports it. */
  address: string;
  /** One object per connection (the TCP socket): a key for counting per connection. */
  connection: object;
}

export const peerKey = createContextKey<Peer | undefined>(undefined, { description: "remotelog peer" });

/** The peer of a call, or a stand-in that shares nothing with any other when the call has none (in-process). */
export function peerOf(context: HandlerContext | undefined): Peer {
  return context?.values?.get(peerKey) ?? { address: "local", connection: {} };
}

/** A writer as quotas count it: "key k51…", "token <hash prefix>", or "anonymous" on an open server. */
export type Writer = string;

const ANONYMOUS: Writer = "anonymous";
const TOKEN = "token ";

/** Who pays for a write: its writer, and the client address it came from (peerOf). */
export interface Payer {
  writer: Writer;
  address: string;
}

/** The payer of a write by writer, made with context (a call's; none in-process). */
export function payerOf(writer: Writer, context: HandlerContext | undefined): Payer {
  return { writer, address: peerOf(context).address };
}

/** What one write costs: block bytes, and whether it creates a name. */
interface Cost {
  bytes: number;
  newName: boolean;
}

/** One count a write is charged to, with its quota: a writer's or an address's, of bytes or names. */
interface Account {
  counts: Map<string, number>;
  key: string;
  amount: number;
  quota: number;
  limit: string;
  refusal: (used: number) => string;
}

export class Authority {
  readonly open: boolean;
  private readonly writeTokens: Buffer[];
  private readonly adminTokens: Buffer[];
  private readonly allowKeys?: Set<string>;
  private readonly usedBytes: Map<Writer, number>;
  private readonly usedNames: Map<Writer, number>;
  // Counts changed (changes) and saved (savedChanges), and the save under way: one save covers every
  // charge made before it began, so that concurrent writes share their saves.
  private changes = 0;
  private savedChanges = 0;
  // Block bytes of the writes under way, held against maxStoredBytes until they are stored or fail.
  private storing = 0;
  private saving?: Promise<void>;

  constructor(private readonly policy: WritePolicy = {}) {
    this.writeTokens = (policy.writeTokens ?? []).map(digest);
    this.adminTokens = (policy.adminTokens ?? []).map(digest);
    this.allowKeys = policy.allowKeys && new Set(policy.allowKeys);
    this.open = !policy.requireSigned && this.writeTokens.length === 0;
    this.usedBytes = new Map(Object.entries(policy.ledger?.saved.bytes ?? {}));
    this.usedNames = new Map(Object.entries(policy.ledger?.saved.names ?? {}));
  }

  /**
   * Resolves once every charge made so far is saved in the ledger (at once without one). Called after
   * a charge and before the write it pays for is stored, so that a restart cannot forget it.
   */
  async persist(): Promise<void> {
    const ledger = this.policy.ledger;
    if (!ledger) return;
    const wanted = this.changes;
    while (this.savedChanges < wanted) {
      this.saving ??= (async () => {
        const upTo = this.changes;
        try {
          await ledger.save({ bytes: Object.fromEntries(this.usedBytes), names: Object.fromEntries(this.usedNames) });
          this.savedChanges = Math.max(this.savedChanges, upTo);
        } finally {
          this.saving = undefined;
        }
      })();
      await this.saving;
    }
  }

  /** The operator's methods: PERMISSION_DENIED without an admin token (the admin listener does not ask). */
  checkAdmin(context: HandlerContext | undefined, what: string): void {
    const token = bearerOf(context);
    if (token !== undefined && matches(this.adminTokens, token)) return;
    throw RemoteLogError.permissionDenied(
      `${what} is for the server's operator: call it on the admin listener (serve --admin-listen) or with an admin token (serve --admin-token-file)`,
    );
  }

  /**
   * Who writes blocks or an unsigned name with this call: anyone on an open server, else a token holder.
   * signedHelps: whether the refusal may say that a signed update would do instead.
   */
  tokenWriter(context: HandlerContext | undefined, what: string, signedHelps = true): Writer {
    const token = bearerOf(context);
    if (token !== undefined && matches(this.writeTokens, token)) return `${TOKEN}${createHash("sha256").update(token).digest("hex").slice(0, 12)}`;
    if (token !== undefined) throw RemoteLogError.permissionDenied(`${what}: the bearer token is not one of this server's write tokens`);
    if (this.open) return ANONYMOUS;
    throw RemoteLogError.permissionDenied(
      `${what} needs a write token (Authorization: Bearer) on this server${signedHelps ? "; blocks without one are accepted only with a signed name update" : ""}`,
    );
  }

  /** The writer of a verified signed update of key name: PERMISSION_DENIED when the key may not publish here. */
  keyWriter(name: string): Writer {
    if (this.allowKeys && !this.allowKeys.has(name)) throw RemoteLogError.permissionDenied(`key ${name} is not allowed to publish on this server`);
    return `key ${name}`;
  }

  /**
   * Runs write, which stores what cost says, inside the quotas: each count it falls under is charged
   * (TOO_LARGE naming the first it would pass, and nothing charged then), the charges are saved
   * before write runs, so that a restart cannot forget them, and given back if it fails. Bytes are
   * also held against maxStoredBytes while write runs, so that concurrent writes cannot pass it together.
   */
  async paid<T>(payer: Payer, cost: Cost, write: () => Promise<T>): Promise<T> {
    const accounts = this.accountsOf(payer, cost);
    for (const account of accounts) {
      const used = account.counts.get(account.key) ?? 0;
      if (used + account.amount > account.quota) {
        throw RemoteLogError.tooLarge(account.refusal(used), { limit: account.limit, value: account.quota });
      }
    }
    this.checkRoom(cost.bytes);
    const charge = (sign: 1 | -1) => {
      for (const account of accounts) account.counts.set(account.key, Math.max(0, (account.counts.get(account.key) ?? 0) + sign * account.amount));
      if (accounts.length > 0) this.changes++;
    };
    charge(1);
    this.storing += cost.bytes;
    try {
      await this.persist();
      return await write();
    } catch (err) {
      charge(-1);
      throw err;
    } finally {
      this.storing -= cost.bytes;
    }
  }

  /** Whether a write must know if it creates a name (a quota of names is set): otherwise it need not look. */
  get countsNames(): boolean {
    return this.policy.quotaNames !== undefined || this.policy.quotaNamesPerAddress !== undefined;
  }

  private accountsOf(payer: Payer, cost: Cost): Account[] {
    const { writer, address } = payer;
    const { quotaBytes, quotaNames, quotaBytesPerAddress, quotaNamesPerAddress } = this.policy;
    const accounts: Account[] = [];
    const bytes = (counts: Map<string, number>, key: string, quota: number, limit: string, who: string) =>
      accounts.push({ counts, key, amount: cost.bytes, quota, limit, refusal: (used) => `${limit}: ${who} has stored ${used} bytes; ${cost.bytes} more is over its quota of ${quota} bytes` });
    const names = (counts: Map<string, number>, key: string, quota: number, limit: string, who: string) =>
      accounts.push({ counts, key, amount: 1, quota, limit, refusal: (used) => `${limit}: ${who} has created ${used} names, its quota` });
    // An open server's anonymous writers are one writer, the whole world: only their addresses tell them apart.
    if (writer !== ANONYMOUS) {
      if (quotaBytes !== undefined && cost.bytes > 0) bytes(this.usedBytes, writer, quotaBytes, "quota-bytes", writer);
      if (quotaNames !== undefined && cost.newName) names(this.usedNames, writer, quotaNames, "quota-names", writer);
    }
    if (!writer.startsWith(TOKEN)) {
      const key = `address ${address}`;
      const who = `client address ${address}`;
      if (quotaBytesPerAddress !== undefined && cost.bytes > 0) bytes(this.usedBytes, key, quotaBytesPerAddress, "quota-bytes-per-address", who);
      if (quotaNamesPerAddress !== undefined && cost.newName) names(this.usedNames, key, quotaNamesPerAddress, "quota-names-per-address", who);
    }
    return accounts;
  }

  private checkRoom(bytes: number): void {
    const { maxStoredBytes, storedBytes } = this.policy;
    if (maxStoredBytes === undefined || storedBytes === undefined || bytes === 0) return;
    const held = storedBytes() + this.storing;
    if (held + bytes > maxStoredBytes) {
      throw RemoteLogError.tooLarge(
        `max-stored-bytes: this server's CAS holds ${held} bytes of blocks (with writes under way); ${bytes} more is over its limit of ${maxStoredBytes} bytes, until the operator makes room (gc)`,
        { limit: "max-stored-bytes", value: maxStoredBytes },
      );
    }
  }

  /**
   * The writer of blocks sent ahead of a signed update that is not published yet (AddManyRequest.pending):
   * the record must verify with the name's key for that content, and its sequence be above the name's
   * version (ABORTED otherwise), or, for a name the operator dropped, above its tombstone (CONFLICT). A
   * record already published (sequence at or below the version) is public, anybody may have read it, so
   * it authorizes nothing; one not published yet is known only to its signer.
   */
  async pendingWriter(names: NameStore, pending: { name: string; content: Uint8Array; record: Uint8Array }): Promise<Writer> {
    const { name, content, record } = pending;
    if (!isKeyName(name)) throw RemoteLogError.invalidArgument(`pending update: name ${JSON.stringify(name)} is not a key name (k51…)`);
    const { sequence } = await verifyNameRecord(name, record, content, { update: true });
    const writer = this.keyWriter(name);
    const current = await names.get(name);
    // A record of a name the operator dropped is public too: only one above its tombstone is new.
    if (current === undefined) checkNotDropped(name, sequence, await names.droppedAt?.(name));
    const version = current?.version ?? 0n;
    // Most often a lost race (another update moved the name since the writer read it), which the writer
    // handles by reading again; either way nothing is stored.
    if (sequence <= version) {
      throw RemoteLogError.aborted(`pending update of ${name} has sequence ${sequence}, not above the name's version ${version}: the name has moved on`, { name });
    }
    return writer;
  }
}

/** The methods that only ever store blocks without a signed update: refused unread when anonymous on a closed server. */
const TOKEN_ONLY_PATHS = new Set(["/vac.cas.CAS/Add"]);

/**
 * For listen()'s refusesUnread: whether a request is an anonymous write that policy refuses whatever
 * its body holds, so that the server need not read it.
 */
export function refusesUnread(policy: WritePolicy): (path: string, authorization: string | undefined) => boolean {
  const closed = Boolean(policy.requireSigned) || (policy.writeTokens?.length ?? 0) > 0;
  return (path, authorization) => closed && authorization === undefined && TOKEN_ONLY_PATHS.has(path);
}

function bearerOf(context: HandlerContext | undefined): string | undefined {
  const header = context?.requestHeader.get("authorization");
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : "";
}

// Compared as digests, so that the comparison takes the same time whatever the token's length.
function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function matches(tokens: Buffer[], token: string): boolean {
  const given = digest(token);
  let found = false;
  for (const known of tokens) found = timingSafeEqual(known, given) || found;
  return found;
}
