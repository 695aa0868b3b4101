import { Sender as LogSender, type PublishResult, type SenderOptions as LogSenderOptions } from "../actors/sender.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { checkBigInt, checkPath, checkRemote, checkWholeNumber, shown } from "../core/options.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import type { LogRemote } from "../core/log-remote.js";
import { openLocalLog, openPublishedMarks } from "#directories";
import { canonicalKeyName, checkFreeFormName, isKeyName, keyName, MIN_VALIDITY_MS, type PrivateKey } from "../core/names.js";
import type { EmbedMode } from "../core/page.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../stores/memory/local-log.js";

export type { PublishResult } from "../actors/sender.js";
export type { LocalLog, LocalLogEntry, LogOwner, ClaimResult } from "../core/local-log.js";
export type { EmbedMode } from "../core/page.js";

/** How Sender.open finds its name, log and remote. */
export interface OpenSenderOptions {
  /** Where the log is published (openRemote, openKubo). Not closed by Sender.close. */
  remote: LogRemote;
  /** Signs every update; the log's name is the key's name (keyName(key)). */
  key?: PrivateKey;
  /** With a key, may be left out (it must be the key's name). Without one, a free-form name, and unsigned must be true. */
  name?: string;
  /** Publish a free-form name that nobody signs, as clients of the draft do. Default false. */
  unsigned?: boolean;
  /**
   * The local log's directory: messages are appended there durably before they are published, so a
   * crash loses nothing that send() resolved for. It belongs to one name (a second name is refused).
   * Default: in memory, gone with the process.
   */
  data?: string;
  /** MVDS group id of messages sent without one (a string is taken as UTF-8). Default "remotelog". */
  group?: string | Uint8Array;
  /** Pairs per page. Default 256. */
  pageSize?: number;
  /** Message data embedded in pages: "none", "all", or a number K: the newest K of the head page. Default DEFAULT_EMBED (8). */
  embed?: EmbedMode;
  /** How long each signed record stays valid, in ms: MIN_VALIDITY_MS (a minute) at least. Default 90 days. */
  validityMs?: number;
  /** How long resolvers may cache a signed record, in ms. Default 60 s. */
  ttlMs?: number;
  /**
   * How long open() waits for the CAS to say the largest message it takes, in ms, before it opens
   * offline assuming 1 MiB: a whole number from 1. Default 5,000 (5 s). Later publishes
   * keep the remote's own limits (openRemote's idleTimeoutMs) and whatever retries the caller makes.
   */
  limitsTimeoutMs?: number;
}

/** What one send() did. */
export interface SendResult extends PublishResult {
  /** Messages appended to the local log by this call. */
  appended: number;
  /** Messages of this call already in the log (the same id: group, timestamp and body), skipped. */
  duplicates: number;
}

/** The constructor's options: the actor's (actors/sender.ts), plus the group that send() uses. */
export interface SenderOptions extends Omit<LogSenderOptions, "remote"> {
  /** Where the log is published (openRemote, openKubo). */
  remote: LogRemote;
  /** MVDS group id of messages sent without one. Default "remotelog". */
  group?: string | Uint8Array;
}

/**
 * Alice's side: a durable local log of MVDS messages, published to a name as a remote log.
 *
 * `const sender = await Sender.open({ remote, key, data: "./alice" })`, then
 * `await sender.send(["hello"])`. Every publish starts from the name's current head, so messages another
 * device of the same author published are kept, and a crash anywhere is repaired by publishing again
 * (send([]) or publish()), with no gap and no duplicate.
 *
 * Built on the sender actor (actors/sender.ts), whose append, appendEncoded and publish it keeps.
 */
export class Sender extends LogSender {
  private readonly group: Uint8Array;
  /** What open() created, and close() releases. */
  private readonly owned: { close(): Promise<void> }[] = [];
  /** Appends and publishes under way: close() waits for them (see close). */
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  /** For callers that bring their own local log and published-mark store; most want Sender.open. */
  constructor(options: SenderOptions) {
    checkRemote(options.remote);
    checkWritable(options.remote);
    checkOpenOptions(options);
    super(options);
    this.group = groupBytes(options.group);
  }

  /**
   * `const sender = await Sender.open({ remote, key, data })`
   *
   * Opens (creating if needed) the local log in data and claims it for the name, and asks the CAS the
   * largest message it takes (1 MiB assumed when it cannot be reached now, or has not answered within
   * limitsTimeoutMs, 5 s, so that a sender can append offline; a server that takes the connection and
   * never answers held the open for the 25 s its keepalive PING takes to give up; its first publish
   * asks again, and a message appended meanwhile over the CAS's real limit is published up to: see
   * send). Throws INVALID_ARGUMENT, before anything is written, for a name that does not fit the key
   * (or a key name without a key, or a free-form name without unsigned, or one that breaks the NS's rule
   * for names, freeFormNameProblem), a key that is not a private key, a read-only remote (openGateway's),
   * a data that is not a path (an empty string, say), or an option out of its range (pageSize takes a whole
   * number from 1, validityMs from MIN_VALIDITY_MS (60,000), ttlMs from 0, limitsTimeoutMs from 1, embed "none", "all" or a whole number), TOO_LARGE for a
   * pageSize whose full page of pairs is over the CAS's block limit, CONFLICT when data belongs to another name, DATA_LOSS
   * when the local log is damaged, INTERNAL on an I/O failure. Safe to repeat: opening the same data
   * again (after close) finds the same log.
   */
  static async open(options: OpenSenderOptions): Promise<Sender> {
    checkRemote(options.remote);
    checkWritable(options.remote);
    checkOpenOptions(options);
    checkPath("data", options.data, "a directory");
    checkWholeNumber("limitsTimeoutMs", options.limitsTimeoutMs, 1);
    const { key, name } = signing(options);
    const limit = await casBlockLimit(options.remote, { timeoutMs: options.limitsTimeoutMs });
    const log = options.data === undefined ? new MemoryLocalLog() : await openLocalLog(options.data, name);
    const owned: { close(): Promise<void> }[] = [log];
    try {
      await log.claim({ name, ...(key ? { key: name } : {}) });
      const published = options.data === undefined ? new MemoryCheckpointStore() : await openPublishedMarks(options.data);
      owned.push(published);
      const sender = new Sender({ ...options, name, key, log, published, ...limit });
      sender.owned.push(...owned);
      return sender;
    } catch (err) {
      for (const resource of owned) await resource.close();
      throw err;
    }
  }

  /**
   * `const result = await sender.send(bodies, { group?, timestamp? })`
   *
   * Wraps each body (a string is taken as UTF-8) as an MVDS message, appends them durably to the local
   * log, then publishes everything the remote log lacks. Once the append resolves the messages are
   * kept even if the publish fails: calling send([]) or publish() later publishes them. Sends need not
   * wait for each other: publishes run one at a time, and one that starts while another runs takes
   * everything appended by then, so sends made meanwhile share it (and its result).
   *
   * Throws INVALID_ARGUMENT, appending nothing, when bodies is not an array of strings and
   * Uint8Arrays, group not a string or Uint8Array, or timestamp not a bigint within int64; TOO_LARGE
   * (details.taken: the index) when a message is over the CAS's block limit, and then
   * appends none of the batch; UNAVAILABLE when a service cannot be reached (the messages are appended
   * already; retry the publish); ABORTED after losing many races in a row to other writers of the
   * name; PERMISSION_DENIED when the NS refuses the update; CONFLICT when the name's log was replaced;
   * DATA_LOSS when the local log lost messages it had published; TOO_LARGE (details.seq, limit, value)
   * when the log holds a message over the CAS's block limit appended while the CAS could not be asked
   * (1 MiB assumed) or before its server lowered the limit: the messages before it are published, it
   * and those after it are kept, untouched, and every publish fails so until `remotelog repair --data
   * DIR --server URL`, with this sender closed, sets it aside (the error names DIR and URL). Idempotent per message: the id of a
   * message (its group, timestamp and body) is appended once, so sending the same batch with the same
   * timestamp again appends and publishes nothing new.
   */
  async send(bodies: (Uint8Array | string)[], options: { group?: string | Uint8Array; timestamp?: bigint } = {}): Promise<SendResult> {
    checkBodies(bodies);
    checkGroup(options.group);
    // A timestamp is an int64 on the wire: a larger bigint was stored wrapped (2n ** 64n + 7n as 7).
    checkBigInt("timestamp", options.timestamp, -(2n ** 63n), 2n ** 63n - 1n);
    const group = options.group === undefined ? this.group : groupBytes(options.group);
    const timestamp = options.timestamp ?? BigInt(Math.floor(Date.now() / 1000));
    const messages = bodies.map((body) => encodeMessage(newMessage(group, timestamp, typeof body === "string" ? new TextEncoder().encode(body) : body)));
    const { appended, published } = await this.appendAndPublish(messages);
    return { ...published, appended: appended.length, duplicates: messages.length - appended.length };
  }

  override appendEncoded(...args: Parameters<LogSender["appendEncoded"]>): ReturnType<LogSender["appendEncoded"]> {
    return this.track(() => super.appendEncoded(...args));
  }

  override appendAndPublish(...args: Parameters<LogSender["appendAndPublish"]>): ReturnType<LogSender["appendAndPublish"]> {
    return this.track(() => super.appendAndPublish(...args));
  }

  override publish(): Promise<PublishResult> {
    return this.track(() => super.publish());
  }

  /**
   * work, waited for by close(). Refused (CONFLICT) once close() has begun: a send begun before it
   * still publishes its messages (the actor's appendAndPublish publishes without coming back here), and
   * close() waits for it.
   */
  private track<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(RemoteLogError.conflict(`the sender of name ${JSON.stringify(this.name)} is closed; open it again to send`, { name: this.name }));
    const running = work();
    this.running.add(running);
    running.then(
      () => this.running.delete(running),
      () => this.running.delete(running),
    );
    return running;
  }

  /**
   * Closes the local log and mark store that Sender.open opened (not the remote), once the appends and
   * publishes under way have ended: closed under a send, the log failed it INTERNAL though its messages
   * were appended. A send, append or publish begun once close() has begun is CONFLICT. Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    const owned = this.owned.splice(0);
    for (const resource of owned) await resource.close();
  }
}

/**
 * `const maxMessageBytes = await blockLimit(remote, { timeoutMs? })`
 *
 * The largest message the CAS takes. A CAS that cannot be reached now, or has not answered within
 * timeoutMs (default 5 s), must not keep a sender from appending (it publishes later), so then the
 * common default is assumed: 1 MiB, the block limit of remotelog serve, the draft's CAS and Kubo (a
 * Sender opened so asks the CAS again at its first publish, and keeps to the CAS's answer). Undefined
 * from a CAS that does not advertise one.
 */
export async function blockLimit(remote: Pick<LogRemote, "casLimits">, options: { timeoutMs?: number } = {}): Promise<number | undefined> {
  return (await casBlockLimit(remote, options)).maxMessageBytes;
}

/**
 * blockLimit, and whether it was assumed because the CAS could not be asked (limitAssumed: a Sender
 * given it asks the CAS again at its first publish). For a caller that opens its own Sender (the CLI).
 */
export async function casBlockLimit(remote: Pick<LogRemote, "casLimits">, options: { timeoutMs?: number } = {}): Promise<{ maxMessageBytes: number | undefined; limitAssumed: boolean }> {
  try {
    return { maxMessageBytes: (await remote.casLimits?.({ timeoutMs: options.timeoutMs ?? LIMITS_TIMEOUT_MS }))?.maxBlockBytes, limitAssumed: false };
  } catch (err) {
    if (err instanceof RemoteLogError && err.code === ErrorCodes.UNAVAILABLE) return { maxMessageBytes: DEFAULT_BLOCK_BYTES, limitAssumed: true };
    throw err;
  }
}

const DEFAULT_BLOCK_BYTES = 1024 * 1024;

/**
 * How long blockLimit waits for the CAS's answer by default. A server that answers does so in
 * milliseconds (a TLS handshake over a slow link included), and one that is down is refused at once;
 * this bounds one that takes the connection and says nothing, which otherwise held the open for the
 * 25 s the HTTP/2 keepalive PING takes to give up on it (actors/transport-node.ts).
 */
export const LIMITS_TIMEOUT_MS = 5_000;

function signing(options: OpenSenderOptions): { name: string; key?: PrivateKey } {
  if (options.key !== undefined) {
    checkKey(options.key);
    if (options.unsigned) throw RemoteLogError.invalidArgument("give either a key or unsigned: true, not both");
    const name = keyName(options.key);
    if (options.name !== undefined && options.name !== name) throw RemoteLogError.invalidArgument(`name ${options.name} is not the name of the key, which is ${name}`);
    return { name, key: options.key };
  }
  const name = options.name;
  if (!options.unsigned || name === undefined) throw RemoteLogError.invalidArgument("give a key to sign updates (generateKey makes one), or unsigned: true with a free-form name");
  if (typeof name !== "string") throw RemoteLogError.invalidArgument(`name takes a string, not ${shown(name)}`);
  if (isKeyName(name) || canonicalKeyName(name)) throw RemoteLogError.invalidArgument(`${name} is a key name: its updates must be signed with its key`);
  // The NS's own rule (core/names.ts), as the CLI checks it: a name no server takes must not claim the
  // data directory and have messages appended that no publish can ever take.
  checkFreeFormName(name);
  return { name };
}

/**
 * A read-only remote (openGateway's client) has no putBlocks or updateName: a Sender over it appended
 * the message and then failed as a TypeError.
 */
function checkWritable(remote: Partial<Pick<LogRemote, "putBlocks" | "updateName">>): void {
  if (typeof remote.putBlocks !== "function" || typeof remote.updateName !== "function") {
    throw RemoteLogError.invalidArgument("remote is read-only (openGateway's client reads only: a gateway cannot take writes); a Sender publishes through openRemote or openKubo");
  }
}

/** A key that is not one (a string, a public key) failed as a TypeError inside keyName. */
function checkKey(key: unknown): void {
  const candidate = key as Partial<PrivateKey> | null;
  if (typeof key !== "object" || candidate === null || typeof candidate.sign !== "function" || typeof candidate.publicKey?.toCID !== "function") {
    throw RemoteLogError.invalidArgument(`key takes a private key (from generateKey, loadKey or keyFromBytes), not ${shown(key)}`);
  }
}

/** The options that would otherwise fail only at the first publish, after messages were appended, or as a TypeError. */
function checkOpenOptions(options: Pick<OpenSenderOptions, "validityMs" | "ttlMs" | "embed" | "group">): void {
  checkWholeNumber("validityMs", options.validityMs, MIN_VALIDITY_MS);
  checkWholeNumber("ttlMs", options.ttlMs, 0);
  if (options.embed !== "none" && options.embed !== "all") checkWholeNumber("embed", options.embed, 0);
  checkGroup(options.group);
}

function checkBodies(bodies: unknown): void {
  if (!Array.isArray(bodies)) throw RemoteLogError.invalidArgument(`send takes an array of bodies (strings or Uint8Arrays), not ${shown(bodies)}`);
  const bad = bodies.findIndex((body) => typeof body !== "string" && !(body instanceof Uint8Array));
  if (bad >= 0) throw RemoteLogError.invalidArgument(`body ${bad} of send is ${shown(bodies[bad])}; a body is a string or a Uint8Array`);
}

function checkGroup(group: unknown): void {
  if (group !== undefined && typeof group !== "string" && !(group instanceof Uint8Array)) throw RemoteLogError.invalidArgument(`group takes a string or a Uint8Array, not ${shown(group)}`);
}

function groupBytes(group: string | Uint8Array | undefined): Uint8Array {
  if (group === undefined) return new TextEncoder().encode("remotelog");
  return typeof group === "string" ? new TextEncoder().encode(group) : group;
}
