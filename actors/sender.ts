import type { RemoteLog_Pair } from "../gen/vac/cas/cas_pb.js";
import type { PrivateKey } from "../core/names.js";
import type { Checkpoint, CheckpointStore } from "../core/checkpoint-store.js";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { checkWholeNumber } from "../core/options.js";
import { addressInto, addressOf, encodeMessage, equalBytes, newMessage, toHex } from "../core/hash.js";
import type { LocalLog, LocalLogEntry } from "../core/local-log.js";
import { LogReader, VERIFIER_MIN_MESSAGES, type BlockAddresser } from "../core/log-reader.js";
import { sharedAddresser } from "#verify-pool";
import type { LogRemote } from "../core/log-remote.js";
import { createNameRecord, DEFAULT_VALIDITY_MS } from "../core/names.js";
import {
  encodePage,
  planPages,
  positionOf,
  DEFAULT_EMBED,
  FIRST_POSITION,
  PAIR_LEAST_BYTES,
  PAIR_MOST_BYTES,
  type EmbedMode,
  type LogEntry,
  type PageItem,
  type PagePlan,
  type PagePosition,
} from "../core/page.js";
import { nextTurn } from "../core/turn.js";
import type { NameHead, Remote } from "./remote.js";

export interface SenderOptions {
  name: string;
  log: LocalLog;
  /**
   * Where the sender remembers how much of its local log the remote log holds (a Checkpoint: how many
   * local messages, and the id of the last). Only a hint: it is checked against the chain every time.
   */
  published: CheckpointStore;
  /** updateNameWithBlocks, when there is one, publishes blocks and head in one round trip where it can. */
  remote: Pick<LogRemote, "putBlocks" | "fetchName" | "updateName" | "getBlock" | "getBlocks" | "nsUrl" | "casUrl"> &
    Partial<Pick<Remote, "updateNameWithBlocks">> &
    Partial<Pick<LogRemote, "casLimits">>;
  /** Signs every update with this key; the name must be the key's. Unsigned without it. */
  key?: PrivateKey;
  /** Validity and TTL of the signed records. */
  validityMs?: number;
  ttlMs?: number;
  /** Pairs per page; default 256. */
  pageSize?: number;
  /** What to embed in pages; default DEFAULT_EMBED (core/page.ts), the newest 8 of the head page. */
  embed?: EmbedMode;
  /** Lost races before a publish gives up; default 20. */
  maxAttempts?: number;
  /**
   * The largest message the CAS takes (its block limit). A larger message is refused before it is
   * appended, since once in the log it could never be published and every later publish would fail on it.
   * Pages must fit it too: a pageSize whose full page of pairs is over it is refused (TOO_LARGE) when
   * the sender is made, and a publish whose planned page or head is over it, before it uploads them.
   * A CAS that refuses a block or head as too large makes the sender ask it again (remote.casLimits):
   * a server restarted with a smaller limit is then kept to.
   */
  maxMessageBytes?: number;
  /**
   * maxMessageBytes was assumed, not the CAS's answer (blockLimit's 1 MiB while the CAS could not be
   * reached): the first publish with messages to send asks the CAS (remote.casLimits) and keeps to its
   * limit from then on, before it uploads anything. Default false.
   */
  limitAssumed?: boolean;
  /**
   * The local log's directory, for the way out an error names (remotelog repair --data DIR); none for
   * a log in memory.
   */
  data?: string;
  /**
   * Messages per step of a publish at most (default DEFAULT_PUBLISH_STEP): a longer backlog is published
   * in steps, each with its own name update, so that memory follows the step and not the backlog.
   */
  publishStep?: number;
  /**
   * Addresses the blocks of what appendEncoded appends on other threads while the append runs, for
   * the publish that follows, once a publish step has been appended (a long send): the shared pool of
   * threads on Node (#verify-pool), none in a browser or with null (then each publish addresses its
   * blocks on this thread).
   */
  addresser?: BlockAddresser | null;
}

/**
 * 16,384 messages, 64 full pages of 256: a step large enough that its name update costs little beside
 * it, and small enough that what it holds (an entry, an address and a pair a message, ~600 bytes of heap
 * with 100-byte bodies) stays ~10 MB: at 65,536, a `send` whose appends ran ahead of its publishes
 * filled a 48 MB heap.
 */
export const DEFAULT_PUBLISH_STEP = 16_384;

/** What one publish did. */
export interface PublishResult {
  /** Local messages the remote log holds after this publish (all of them). */
  published: number;
  /** Messages this publish added. */
  added: number;
  /** Messages of other writers of the name found since this sender's last publish. */
  foreign: number;
  /** Pages sealed into the CAS by this publish. */
  sealedPages: number;
  /** The name's version (for signed names, the record's sequence) after this publish. */
  version: bigint;
  /** Message blocks uploaded (the CAS keeps one copy of a block uploaded twice). */
  uploadedBlocks: number;
  /** Conditional updates lost to another writer and retried on the new head. */
  lostRaces: number;
  /**
   * Messages published before that the name had lost, published again (among added): the NS held an
   * older state of this log, as a server restored from an older copy does, or another writer's update
   * replaced them (two devices straight to one Kubo node, where an update is conditional within one
   * process only).
   */
  resent: number;
}

/**
 * Alice: appends to a durable local log, then publishes what the remote log lacks.
 *
 * Every publish starts from the name's current head and walks back only to the last message this
 * sender published, so it learns what other writers of the same name (the same author on another
 * device) added since, and which of its own messages are already there (after a crash between the
 * name update and remembering it). Its pending messages go on top of that head, copy-on-write, and a
 * conditional update makes sure no other writer's update is lost: a writer that loses the race starts
 * again from the new head, which rebases its pending messages onto it. Everything before the update
 * is idempotent, so a crash anywhere is repaired by publishing again, with no gap and no duplicate.
 */
export class Sender {
  readonly name: string;
  private readonly log: LocalLog;
  private readonly published: CheckpointStore;
  private readonly remote: SenderOptions["remote"];
  private readonly key?: PrivateKey;
  private readonly recordOptions: { validityMs?: number; ttlMs?: number };
  private readonly pageSize: number;
  private readonly embed: EmbedMode;
  private readonly maxAttempts: number;
  /** The CAS's block limit as this sender knows it: learned again when the CAS refuses a block (learnLimit). */
  private maxMessageBytes?: number;
  private limitAssumed: boolean;
  private readonly data?: string;
  private readonly stepMessages: number;
  /** How the sender reads its own remote log, as every reader does (core/log-reader.ts). */
  private readonly reader: LogReader;
  /**
   * The head this sender published last (or found checked and current), taken as the name's current
   * head on the next publish instead of fetching it: the conditional update fails if another writer
   * moved the name, and the retry fetches and checks what it finds.
   */
  private lastHead?: NameHead;
  /**
   * What this sender appended and has not published yet (and the last it published), seqs
   * recentFirst on, as append returned them: the bytes written and made durable, which a publish sends
   * instead of reading them back from the log (a pread, a checksum and three objects a message). At
   * most two steps and RECENT_MAX_BYTES of messages; what falls out, or was appended by anything else,
   * is read from the log as before.
   */
  private recent: KeptEntry[] = [];
  private recentFirst = 0;
  /** Bytes of the messages recent holds. */
  private recentBytes = 0;
  /** The addresser, looked up only when first needed: the shared pool starts its threads when made. */
  private readonly addresser: () => BlockAddresser | undefined;
  /** Messages appendEncoded appended so far. */
  private appendedHere = 0;
  /** The publish running (publishInTurn), and the one waiting for it, which later calls share. */
  private publishing?: Promise<PublishResult>;
  private nextPublish?: Promise<PublishResult>;

  constructor(options: SenderOptions) {
    this.name = options.name;
    this.log = options.log;
    this.published = options.published;
    this.remote = options.remote;
    this.key = options.key;
    this.recordOptions = { validityMs: options.validityMs, ttlMs: options.ttlMs };
    this.pageSize = options.pageSize ?? 256;
    this.embed = options.embed ?? DEFAULT_EMBED;
    this.maxAttempts = options.maxAttempts ?? 20;
    this.maxMessageBytes = options.maxMessageBytes;
    this.limitAssumed = options.limitAssumed ?? false;
    this.data = options.data;
    this.stepMessages = options.publishStep ?? DEFAULT_PUBLISH_STEP;
    this.reader = new LogReader(options.remote, options.name);
    const addresser = options.addresser;
    this.addresser = addresser === null ? () => undefined : addresser ? () => addresser : sharedAddresser;
    checkWholeNumber("pageSize", options.pageSize, 1);
    checkWholeNumber("publishStep", options.publishStep, 1);
    checkWholeNumber("maxAttempts", options.maxAttempts, 1);
    this.checkPageSize();
  }

  /**
   * TOO_LARGE (details: limit, value) when a full page of pageSize pairs is over the block limit with
   * no message data at all: no such page could ever be stored, and each publish would upload its
   * messages and then fail on the page, naming neither the page nor its size.
   */
  private checkPageSize(): void {
    const limit = this.maxMessageBytes;
    if (limit === undefined || this.pageSize * PAIR_LEAST_BYTES <= limit) return;
    throw RemoteLogError.tooLarge(
      `a page of ${this.pageSize} pairs is at least ${this.pageSize * PAIR_LEAST_BYTES} bytes, over the CAS's block limit of ${limit} bytes, so no full page could ever be stored; ` +
        `nothing was appended or uploaded: give a smaller page size (send --page-size; ${Math.max(1, Math.floor((limit - PAGE_OVERHEAD_BYTES) / PAIR_MOST_BYTES))} pairs fit)`,
      { limit: "block bytes", value: limit },
    );
  }

  /**
   * TOO_LARGE (details: limit, value) when a page this publish planned, or its head, is over the block
   * limit (a head must fit it too: remotelog serve's NS takes no larger content, and Kubo stores it as
   * a block). Checked before any page is uploaded: the CAS or NS refused it only after the messages went
   * up, naming "block N" or "content", and every publish with the same page size and embed mode laid it
   * out again.
   */
  private checkPlan(plan: PagePlan, headBytes: Uint8Array): void {
    const limit = this.maxMessageBytes;
    if (limit === undefined) return;
    const sealed = plan.sealed.find((page) => page.bytes.length > limit);
    if (!sealed && headBytes.length <= limit) return;
    const [what, pairs, bytes] = sealed ? ["sealed page", this.pageSize, sealed.bytes.length] : ["head page", plan.head.pair.length, headBytes.length];
    // Without message data a page of this many pairs fits (checkPageSize): what is over is the data embedded.
    const advice =
      this.embed === "none"
        ? "give a smaller page size (send --page-size)"
        : `embed less message data (send --embed none, or a number K${this.embed === "all" ? "" : " below " + this.embed}) or give a smaller page size (send --page-size)`;
    throw RemoteLogError.tooLarge(
      `a ${what} of ${pairs} pairs is ${bytes} bytes, over the CAS's block limit of ${limit} bytes, so it can never be stored; ` +
        `no page of this publish was stored, nor the name moved, and every publish with this page size and embed mode would lay it out again: ${advice}`,
      { limit: "block bytes", value: limit },
    );
  }

  /**
   * Wraps bodies as MVDS messages of one group and appends them durably, without publishing. Throws as
   * appendEncoded. Idempotent: a message whose id (group, timestamp, body) is in the log is skipped.
   */
  async append(bodies: Uint8Array[], groupId: Uint8Array, timestamp = BigInt(Math.floor(Date.now() / 1000))): Promise<LocalLogEntry[]> {
    return this.appendEncoded(bodies.map((body) => encodeMessage(newMessage(groupId, timestamp, body))));
  }

  /**
   * Appends encoded messages durably, without publishing; repeated ids are skipped, so it is
   * idempotent. All or nothing: TOO_LARGE (details: limit, value, taken = the index of the message)
   * when one is larger than maxMessageBytes, INVALID_ARGUMENT when one does not decode, INTERNAL on
   * an I/O failure of the local log. With uploadAhead (for a publish that follows soon, as `send`'s
   * does), the blocks that publish will reference go up while the append writes and syncs, as in
   * appendAndPublish; messages must not change until it resolves then.
   */
  async appendEncoded(messages: Uint8Array[], options: { uploadAhead?: boolean } = {}): Promise<LocalLogEntry[]> {
    this.checkSizes(messages);
    const ahead = options.uploadAhead ? this.uploadAhead(messages) : undefined;
    return (ahead ? await this.appendAhead(messages, ahead) : await this.appendKept(messages)).entries;
  }

  /**
   * appendEncoded, then publish(), overlapped where that is safe. The blocks of the messages sure to be
   * referenced (all but the newest this sender may embed) go to the CAS while the append writes and
   * syncs, and their addresses are hashed while the write waits on the disk; the publish then sends
   * only the pages and the newest messages with the name update. That update still waits for the
   * append to be durable, so the remote log never names a message the local log could lose. Blocks are
   * content-addressed and their upload idempotent: an append that fails leaves at most blocks that no
   * page names. messages must not change until this resolves. Throws as appendEncoded (nothing is
   * appended then), or as publish (the messages are appended: publish again later).
   */
  async appendAndPublish(messages: Uint8Array[]): Promise<{ appended: LocalLogEntry[]; published: PublishResult }> {
    this.checkSizes(messages);
    const ahead = this.uploadAhead(messages);
    const { entries } = await this.appendAhead(messages, ahead);
    try {
      // Not this.publish(): a subclass that refuses new work (lib/sender.ts after close()) must not
      // refuse the publish of a send it let begin.
      return { appended: entries, published: await this.publishInTurn() };
    } finally {
      // Only the publish right after counts on these blocks: a later one (after a failure, say) sends
      // them again rather than name blocks the CAS's gc may have collected as named by no page.
      ahead?.expire();
    }
  }

  /**
   * appendKept, with ahead's blocks going up meanwhile, and the addresses of the messages hashed while
   * the append's write waits on the disk; the entries it keeps carry both.
   */
  private async appendAhead(messages: Uint8Array[], ahead: AheadUpload | undefined): Promise<{ entries: LocalLogEntry[]; kept: KeptEntry[] }> {
    // One turn, so that the first calls are on the wire before the append's hashing holds this thread.
    if (ahead) await nextTurn();
    // The addresses are hashed here, so not on the addresser's threads as well.
    const appending = this.appendKept(messages, false);
    // The append's records are laid out by now and its write waits on the disk: this thread is free.
    const addresses = new Uint8Array(36 * messages.length);
    for (let j = 0; j < messages.length; j++) addressInto(messages[j], addresses, 36 * j);
    const appended = await appending;
    const { kept } = appended;
    // With none skipped as already in the log, entry j is message j.
    if (kept.length === messages.length) {
      for (let j = 0; j < kept.length; j++) {
        kept[j].address ??= addresses.subarray(36 * j, 36 * j + 36);
        if (ahead && j < ahead.count) kept[j].ahead = ahead;
      }
    }
    return appended;
  }

  /** TOO_LARGE (details: limit, value, taken = the index of the message) when a message is over maxMessageBytes. */
  private checkSizes(messages: Uint8Array[]): void {
    const limit = this.maxMessageBytes;
    if (limit === undefined) return;
    const index = messages.findIndex((data) => data.length > limit);
    if (index !== -1) {
      throw RemoteLogError.tooLarge(`message ${index} of the batch is ${messages[index].length} bytes, over the CAS's block limit of ${limit} bytes; nothing of the batch was appended`, {
        limit: "block bytes",
        value: limit,
        taken: index,
      });
    }
  }

  /**
   * Appends and keeps the entries in recent: the entries and those kept. For a long send, unless the
   * caller addresses them itself, their addresses are made on the addresser's threads meanwhile.
   */
  private async appendKept(messages: Uint8Array[], addressOnThreads = true): Promise<{ entries: LocalLogEntry[]; kept: KeptEntry[] }> {
    // Both take their copy of the bytes before the first await: the addresses are of what the log holds.
    // Only once a step has been appended: starting the threads costs a short send more than it saves.
    const addressing =
      addressOnThreads && messages.length >= VERIFIER_MIN_MESSAGES && this.appendedHere >= this.stepMessages ? this.addresser()?.addresses(messages) : undefined;
    const entries = await this.log.append(messages);
    this.appendedHere += entries.length;
    const kept = this.keep(entries);
    // Not waited for: a publish that comes first addresses the blocks itself. With none skipped as
    // already in the log, entry j is message j.
    if (addressing && kept.length > 0 && entries.length === messages.length) {
      void addressing.then((addresses) => {
        if (addresses) for (let j = 0; j < kept.length; j++) kept[j].address ??= new Uint8Array(addresses.buffer, addresses.byteOffset + 36 * j, 36);
      });
    }
    return { entries, kept };
  }

  /**
   * The upload started before an append (appendAndPublish, appendEncoded with uploadAhead): the
   * messages that the publish after it will reference whatever else it finds, or undefined when there
   * are too few to gain from it, or for a signed sender (see earlyUpload).
   */
  private uploadAhead(messages: Uint8Array[]): AheadUpload | undefined {
    if (this.key) return undefined;
    // Entries that recent will not keep carry no mark, and their publish would send them again.
    let bytes = 0;
    for (const message of messages) bytes += message.length;
    if (!this.recentHasRoom(messages.length, bytes)) return undefined;
    const count = messages.length - this.mostEmbedded();
    return count >= EARLY_CHUNK ? new AheadUpload(this.remote.putBlocks(messages.slice(0, count)), count) : undefined;
  }

  /** Keeps entries just appended (consecutive seqs) in recent, while it holds at most two steps and RECENT_MAX_BYTES; what it kept. */
  private keep(entries: LocalLogEntry[]): KeptEntry[] {
    if (entries.length === 0) return [];
    const first = entries[0].seq;
    // Not right after what recent holds (something else appended in between): start again from these.
    if (this.recent.length === 0 || this.recentFirst + this.recent.length !== first) {
      this.recent = [];
      this.recentFirst = first;
      this.recentBytes = 0;
    }
    let bytes = 0;
    for (const entry of entries) bytes += entry.data.length;
    if (!this.recentHasRoom(entries.length, bytes)) return [];
    const kept: KeptEntry[] = new Array(entries.length);
    for (let j = 0; j < entries.length; j++) {
      const { seq, id, data } = entries[j];
      kept[j] = { seq, id, data, address: undefined };
      this.recent.push(kept[j]);
    }
    this.recentBytes += bytes;
    return kept;
  }

  /** Whether recent has room for count more entries of bytes in all: two steps and RECENT_MAX_BYTES at most. */
  private recentHasRoom(count: number, bytes: number): boolean {
    return this.recent.length + count <= 2 * this.stepMessages && this.recentBytes + bytes <= RECENT_MAX_BYTES;
  }

  /** log.read(from, to), the part recent holds taken from it and the rest read. */
  private async readLog(from: number, to: number): Promise<LocalLogEntry[]> {
    const first = this.recentFirst;
    const end = first + this.recent.length;
    if (to <= from || to <= first || from >= end) return this.log.read(from, to);
    const before = from < first ? await this.log.read(from, first) : [];
    const held = this.recent.slice(Math.max(from, first) - first, Math.min(to, end) - first);
    const after = to > end ? await this.log.read(end, to) : [];
    return before.length === 0 && after.length === 0 ? held : [...before, ...held, ...after];
  }

  /**
   * Drops from recent what is published, up to count, but for the last of it (the next publish's mark)
   * and the newest this sender may have embedded in the head, which the next publish carries: reading
   * those back from the log was a thread-pool round trip on every follow delivery.
   */
  private forget(count: number): void {
    const stay = 1 + Math.min(this.mostEmbedded(), this.pageSize);
    const drop = Math.min(this.recent.length, count - stay - this.recentFirst);
    if (drop <= 0) return;
    for (let i = 0; i < drop; i++) this.recentBytes -= this.recent[i].data.length;
    this.recent = this.recent.slice(drop);
    this.recentFirst += drop;
  }

  /**
   * Publishes every appended message the remote log does not have yet. Idempotent: safe to repeat at
   * any time, and publishing again is how a crash or failure part-way is repaired. Throws UNAVAILABLE
   * when a service cannot be reached, ABORTED after losing maxAttempts races in a row to other writers,
   * PERMISSION_DENIED when the NS refuses the update or the current head is signed by another key or
   * does not verify, CONFLICT when the name no longer holds the last message this sender published
   * and holds none of this log's first messages either (its log was replaced: a chain that holds an
   * older state of this log, among other writers' messages or not, gets the rest again, counted in
   * resent), DATA_LOSS when the local log lost messages it had published, TOO_LARGE for
   * a planned page or head over the CAS's block limit (before any page is stored; another pageSize or
   * embed lays out others), or for a message over it (details: seq, limit, value) that was appended
   * before the limit was known (opened offline, limitAssumed) or lowered (a server restarted with a
   * smaller one): then every message before it is published first, and it and those after it stay in
   * the local log, untouched, for `remotelog repair --data DIR --server URL` to set it aside. Every
   * publish fails so, naming it, until then.
   */
  publish(): Promise<PublishResult> {
    return this.publishInTurn();
  }

  /**
   * publish(), one at a time: a publish asked for while another runs waits for it, and then takes
   * everything appended by the time it starts, so that every call made meanwhile shares it (each gets its
   * result, or its error). Concurrent publishes of one sender raced each other on the NS: each lost
   * conditional updates to the others ("lost 20 races" with no other writer), and a publish that began
   * with less saved its smaller mark after a larger one.
   */
  private publishInTurn(): Promise<PublishResult> {
    if (this.nextPublish) return this.nextPublish;
    const running = this.publishing;
    let next: Promise<PublishResult>;
    if (running) {
      next = running.then(
        () => this.startNext(),
        () => this.startNext(),
      );
      this.nextPublish = next;
    } else {
      next = this.publishAll();
    }
    this.publishing = next;
    const settled = (): void => {
      if (this.publishing === next) this.publishing = undefined;
    };
    next.then(settled, settled);
    return next;
  }

  /** The waiting publish, as it starts: from here on a call waits for it, since what that call appended may come too late for it. */
  private startNext(): Promise<PublishResult> {
    this.nextPublish = undefined;
    return this.publishAll();
  }

  /** publish(), once it is this call's turn. */
  private async publishAll(): Promise<PublishResult> {
    // A long backlog goes out in steps of at most publishStep messages, each a complete publish (blocks,
    // pages, a name update, the mark), so that what one holds in memory is bounded by the step and not
    // by the log, and a crash part-way keeps the steps done.
    const end = this.log.length;
    let sum: PublishResult | undefined;
    for (;;) {
      const before = sum?.published;
      const { blockedBy, ...step } = await this.publishStep(end);
      // What comes before the message no publish can take is published: now say why the rest is not.
      if (blockedBy) throw blockedBy;
      sum = sum
        ? {
            ...step,
            added: sum.added + step.added,
            foreign: sum.foreign + step.foreign,
            sealedPages: sum.sealedPages + step.sealedPages,
            uploadedBlocks: sum.uploadedBlocks + step.uploadedBlocks,
            lostRaces: sum.lostRaces + step.lostRaces,
            resent: sum.resent + step.resent,
          }
        : step;
      if (step.published >= end || step.published === before) return sum!;
    }
  }

  /**
   * One step of publish(): up to publishStep more messages, retried on lost races, and laid out again
   * when a refusal taught the sender a smaller block limit.
   */
  private async publishStep(end: number): Promise<StepResult> {
    let lostRace: RemoteLogError | undefined;
    for (let attempt = 0; attempt < this.maxAttempts; ) {
      let result: StepResult | RemoteLogError;
      try {
        result = await this.publishOnce(attempt, end);
      } catch (err) {
        if (await this.refusedForSize(err)) continue;
        throw err;
      }
      if (!(result instanceof RemoteLogError)) return result;
      lostRace = result;
      attempt++;
    }
    throw RemoteLogError.aborted(`gave up publishing ${JSON.stringify(this.name)} after losing ${this.maxAttempts} races; last: ${lostRace?.message}`);
  }

  /**
   * Whether err is the CAS or NS refusing a block or head as too large under a block limit smaller
   * than the one this sender kept to (a server restarted with a smaller --max-block): the sender then
   * keeps to the one the CAS gives now, and the publish is laid out again under it. The sender's own
   * checks name the limit in their details; a server's refusal does not.
   */
  private async refusedForSize(err: unknown): Promise<boolean> {
    if (!(err instanceof RemoteLogError) || err.code !== ErrorCodes.TOO_LARGE || err.details.limit !== undefined) return false;
    const kept = this.maxMessageBytes;
    try {
      await this.learnLimit();
    } catch {
      // The CAS's refusal is what the caller should see, not a failure to ask it why.
      return false;
    }
    return this.maxMessageBytes !== undefined && (kept === undefined || this.maxMessageBytes < kept);
  }

  /** Asks the CAS its block limit, and keeps to it from now on. */
  private async learnLimit(): Promise<void> {
    if (!this.remote.casLimits) return;
    const limits = await this.remote.casLimits();
    this.limitAssumed = false;
    // A CAS that advertises none is taken as a sender opened while it answered takes it: no check.
    this.maxMessageBytes = limits?.maxBlockBytes;
  }

  /**
   * TOO_LARGE (details: seq, limit, value, name) for a message of the local log that is over the block
   * limit, after the messages before it were published: what it is, and the way out.
   */
  private unpublishable(entry: LocalLogEntry, limit: number): RemoteLogError {
    const after = this.log.length - entry.seq - 1;
    const endpoint = this.remote.casUrl === this.remote.nsUrl ? `--server ${this.remote.casUrl}` : `--cas ${this.remote.casUrl} --ns ${this.remote.nsUrl}`;
    const wayOut =
      this.data === undefined
        ? "this sender's local log is in memory, where nothing can set it aside: the messages after it can be published only by another sender"
        : `\`remotelog repair --data ${this.data} ${endpoint}\` (in the library, repairLog({ data, remote })), with this sender closed (it holds the log), sets it aside, keeping a copy in ${this.data}/repair-<time>/, so that the rest can be published`;
    return RemoteLogError.tooLarge(
      `local message seq ${entry.seq} is ${entry.data.length} bytes, over the CAS's block limit of ${limit} bytes, so it can never be published, nor any message after it while it is in the log; ` +
        `the ${entry.seq} message(s) before it are published, and it and the ${after} after it are kept in the local log, untouched. ${wayOut}`,
      { limit: "block bytes", value: limit, seq: entry.seq, name: this.name },
    );
  }

  /**
   * One attempt at the messages after the published mark, up to publishStep of them and not past end,
   * and before the first one over the block limit (then blockedBy says so); a lost conditional update
   * comes back as the error rather than thrown, to be retried.
   */
  private async publishOnce(lostRaces: number, end: number): Promise<StepResult | RemoteLogError> {
    // A head fetched from the NS is checked as any reader checks it (a key name's record, the page): a
    // forged head must not be carried into a signed one. An expired record is taken: publishing again
    // is how it is renewed. The head this sender made, or checked, itself is only decoded: checking its
    // own signature again cost a signed publish 0.57 ms here (createNameRecord costs 0.79).
    const own = lostRaces === 0 ? this.lastHead : undefined;
    const opened = own
      ? { entry: own, page: this.reader.headPage(own) }
      : await this.reader.open({ acceptExpired: true });
    const current = opened?.entry;
    this.lastHead = undefined;
    // A name that does not exist (a new NS, or one that lost its data) holds nothing of this log,
    // whatever was published before: everything goes out again, from the first message.
    const saved = await this.published.load(this.name);
    // The highest sequence this sender signed stays with the mark whatever the NS lost: a record below it
    // would be refused by every reader that saw the newer one, as a rollback.
    const mark: Checkpoint = (current && saved) || { delivered: 0, lastId: new Uint8Array(0), sequence: saved?.sequence };
    // Never below the mark: a mark that proves messages were published never moves back.
    let total = Math.max(mark.delivered, Math.min(end, this.log.length, mark.delivered + this.stepMessages));
    // One read for the mark's own record, the messages after it and the last of them (which the new
    // mark names): a one-message publish read the log three times over for these.
    const from = Math.max(0, mark.delivered - 1);
    let window = await this.readLog(from, total);
    this.checkMark(mark, mark.delivered > 0 ? window[0] : undefined, this.log.length);
    let carried: PageItem[] = [];
    let tail: Uint8Array = new Uint8Array(0);
    let position: PagePosition | null = FIRST_POSITION;
    let already = new Set<string>();
    let foreign = 0;
    if (opened) {
      const head = opened.page;
      // What the chain holds since this sender's last publish: its own messages whose publish was not
      // remembered, and other writers' messages. With no mark, the whole chain.
      const walk = await this.reader.walk(head, { stopAtId: mark.delivered > 0 ? mark.lastId : undefined });
      if (mark.delivered > 0 && !walk.reachedStop) {
        const held = this.ownHeld(walk.pairs);
        if (held !== undefined && held.count < mark.delivered) {
          // The chain holds an older state of this very log: a server restored from an older copy, or
          // another writer of the name (this author's other device) whose update replaced this sender's
          // last ones (an NS without conditional updates across processes: two devices straight to one
          // Kubo node). What it lost goes out again, on top of what it holds now, from the mark moved
          // back. A chain with none of this log's messages (an empty head, another log) is no state of
          // it: someone put it there, and it stays CONFLICT.
          await this.published.save(this.name, { delivered: held.count, lastId: held.lastId, sequence: mark.sequence });
          const again = await this.publishOnce(lostRaces, end);
          return again instanceof RemoteLogError ? again : { ...again, resent: again.resent + mark.delivered - held.count };
        }
        throw RemoteLogError.conflict(
          `name ${JSON.stringify(this.name)} no longer holds message ${toHex(mark.lastId)}, the last this sender published: its log was replaced`,
        );
      }
      already = new Set(walk.pairs.map((pair) => toHex(pair.localHash)));
      foreign = walk.pairs.filter((pair) => this.log.seqOf(pair.localHash) === undefined).length;
      carried = await this.carry(head.pair.slice().reverse());
      tail = head.tail;
      position = positionOf(head);
    }
    const version = current?.version ?? 0n;

    const unpublished = mark.delivered > 0 ? window.slice(1) : window;
    // Most publishes find none of their messages on the chain already: no id is made text for nothing.
    let pending = already.size === 0 ? unpublished : unpublished.filter((entry) => !already.has(toHex(entry.id)));
    // The limit kept to while the CAS could not be asked is a guess: the CAS says, before anything goes up.
    if (pending.length > 0 && this.limitAssumed) await this.learnLimit();
    const limit = this.maxMessageBytes;
    const over = limit === undefined ? -1 : pending.findIndex((entry) => entry.data.length > limit);
    let blockedBy: RemoteLogError | undefined;
    if (over !== -1) {
      // Appended before the limit was known (opened offline, or by an older remotelog) or lowered: it can
      // never be published, and nothing after it can be while it is in the log. What comes before it
      // can, and is: a publish that refused the lot left them all unpublished for good.
      const oversized = pending[over];
      blockedBy = this.unpublishable(oversized, limit!);
      pending = pending.slice(0, over);
      total = oversized.seq;
      window = window.slice(0, total - from);
    }
    const lastEntry = window.length > 0 ? window[window.length - 1] : undefined;
    if (pending.length === 0) {
      // The head this process made is fresh; one read from the NS says when its record expires.
      const validity = opened && "record" in opened ? opened.record?.validity : undefined;
      // A head under an older record than this sender signed (a server restored from a copy taken
      // before a renewal) holds every message, but readers that saw the newer record refuse it: signed again.
      const behind = mark.sequence !== undefined && version < mark.sequence;
      const renewed = current && this.key && ((validity && this.dueForRenewal(validity)) || behind) ? await this.renew(current, version, mark) : current;
      if (renewed instanceof RemoteLogError) return renewed;
      this.lastHead = renewed;
      await this.remember(saved, total, lastEntry, renewed && this.key ? renewed.version : mark.sequence);
      return { published: total, added: 0, foreign, sealedPages: 0, version: renewed?.version ?? version, uploadedBlocks: 0, lostRaces, resent: 0, blockedBy };
    }
    // Messages sure to be referenced (not embedded) go up while the rest is hashed and paged: the CAS
    // stores them on its own core meanwhile, where they used to wait for the finished plan.
    const early = this.earlyUpload(pending.length);
    const fresh: FreshEntry[] = new Array(pending.length);
    // One clock reading for the publish: one an entry cost a 10k publish 1-2 ms here.
    const now = Date.now();
    for (let from = 0; from < pending.length; from += EARLY_CHUNK) {
      const data = pending.slice(from, from + EARLY_CHUNK).map((entry) => entry.data);
      for (let j = 0; j < data.length; j++) {
        const entry: KeptEntry = pending[from + j];
        // Kept on the entry too: while it stays embedded, every later publish carries it (carry).
        entry.address ??= addressOf(data[j]);
        const ahead = entry.ahead?.usableAt(now) ? entry.ahead : undefined;
        fresh[from + j] = { id: entry.id, address: entry.address, data: data[j], sentEarly: ahead !== undefined, ahead };
      }
      if (early && from + EARLY_CHUNK <= early.end) {
        const unsent = fresh.slice(from, from + EARLY_CHUNK).filter((entry) => !entry.sentEarly);
        if (unsent.length > 0) await early.send(unsent.map((entry) => entry.data));
        for (const entry of unsent) entry.sentEarly = true;
      }
    }
    const items = [...carried, ...fresh];
    const plan = planPages(items, tail, this.pageSize, this.headEmbed(items), position);

    const headBytes = encodePage(plan.head);
    this.checkPlan(plan, headBytes);
    const record = this.key ? await createNameRecord(this.key, headBytes, nextSequence(version, mark), this.recordOptions) : undefined;
    let newVersion: bigint;
    let messageBlocks: Uint8Array[];
    try {
      await early?.finish();
      // Blocks sent ahead of the append (appendAndPublish) are waited for; those whose upload failed
      // go with the update instead.
      const aheads = new Set<AheadUpload>();
      for (const entry of fresh) if (entry.ahead) aheads.add(entry.ahead);
      await Promise.all([...aheads].map((ahead) => ahead.settled));
      // Messages and sealed pages go in before the head that names them, so no reader meets a dangling
      // address. Carried entries have no sentEarly: they were not sent early.
      const referenced = plan.referenced as Partial<FreshEntry>[];
      messageBlocks = (early?.sent || aheads.size > 0 ? referenced.filter((entry) => !entry.sentEarly || entry.ahead?.failed) : referenced).map((entry) => entry.data!);
      const blocks = [...messageBlocks, ...plan.sealed.map((sealed) => sealed.bytes)];
      if (this.remote.updateNameWithBlocks) {
        newVersion = await this.remote.updateNameWithBlocks(this.name, headBytes, version, record, blocks);
      } else {
        await this.remote.putBlocks(blocks);
        newVersion = await this.remote.updateName(this.name, headBytes, version, record);
      }
    } catch (err) {
      if (err instanceof RemoteLogError && err.code === ErrorCodes.ABORTED) return err;
      throw err;
    }
    this.lastHead = { content: headBytes, version: newVersion, record: record ?? new Uint8Array(0) };
    await this.remember(saved, total, lastEntry, record ? newVersion : undefined);
    return {
      published: total,
      added: fresh.length,
      foreign,
      sealedPages: plan.sealed.length,
      version: newVersion,
      uploadedBlocks: messageBlocks.length + (early?.sent ?? 0) + fresh.filter((entry) => entry.ahead && !entry.ahead.failed).length,
      lostRaces,
      resent: 0,
      blockedBy,
    };
  }

  /**
   * Whether a head's record should be signed again though nothing is new: readers refuse an expired one
   * ("the sender must publish it again"), so a send with nothing to publish renews a record past, or
   * within half of, the validity this sender gives its records.
   */
  private dueForRenewal(validity: Date): boolean {
    return validity.getTime() - Date.now() < (this.recordOptions.validityMs ?? DEFAULT_VALIDITY_MS) / 2;
  }

  /** The same head under a new record, one sequence up; a lost conditional update comes back as the error. */
  private async renew(current: NameHead, version: bigint, mark: Checkpoint): Promise<NameHead | RemoteLogError> {
    const record = await createNameRecord(this.key!, current.content, nextSequence(version, mark), this.recordOptions);
    try {
      return { content: current.content, version: await this.remote.updateName(this.name, current.content, version, record), record };
    } catch (err) {
      if (err instanceof RemoteLogError && err.code === ErrorCodes.ABORTED) return err;
      throw err;
    }
  }

  /**
   * How many of the newest to embed in this publish's head, for a number K: every message this sender
   * embeds in the head stays there until 2K are (K of them new, at one a publish), and then the oldest
   * K go to the CAS together. Embedding exactly the newest K wrote a pack (a file, its fdatasync, a
   * rename and a directory fsync) on every one-message publish, for the one message that left them:
   * most of a follower's latency. The head holds at most 2K - 1 embedded messages.
   */
  private headEmbed(itemsOldestFirst: PageItem[]): EmbedMode {
    const embed = this.embed;
    if (typeof embed !== "number") return embed;
    const most = this.mostEmbedded();
    let own = 0;
    while (own < itemsOldestFirst.length && own <= most && !("$typeName" in itemsOldestFirst[itemsOldestFirst.length - 1 - own])) own++;
    return own <= most ? Math.max(embed, own) : embed;
  }

  /** The most of its own messages this sender embeds in a head (headEmbed): 2K - 1 for a number K. */
  private mostEmbedded(): number {
    const embed = this.embed;
    return embed === "none" ? 0 : embed === "all" ? Infinity : 2 * embed - 1;
  }

  /**
   * How a publish of count new messages sends blocks ahead of its plan, or undefined when it does not:
   * a signed publish sends its blocks with the finished update attached (AddManyRequest.pending), which
   * a server taking signed writers only requires and which charges them to the key's quota; with
   * embed "all" no message is sure to be referenced; a small publish is one call anyway.
   */
  private earlyUpload(count: number): EarlyUpload | undefined {
    if (this.key) return undefined;
    // The newest mostEmbedded() may be embedded; every message older than those is referenced.
    const end = count - this.mostEmbedded();
    return end >= EARLY_CHUNK ? new EarlyUpload(this.remote, end) : undefined;
  }

  /**
   * The head's pairs to carry into the new head: this sender's own embedded messages as entries (so
   * that the embed mode applies to them again, and their blocks are uploaded when they leave the
   * embedded newest), and, with embed "all", its referenced ones too (to embed them again). Every other
   * pair goes as it is, other writers' as well: a pair that carries no data names a block that went into
   * the CAS before the head that names it did. Carrying those as entries as well re-read, re-hashed and
   * re-uploaded up to a page of blocks on every publish, however few messages it added.
   */
  private async carry(pairsOldestFirst: PageItem[]): Promise<PageItem[]> {
    const seqs = pairsOldestFirst.map((pair) => {
      if (!("$typeName" in pair) || pair.redacted) return undefined;
      if (pair.data.length === 0 && this.embed !== "all") return undefined;
      return this.log.seqOf(pair.localHash);
    });
    const own = seqs.filter((seq): seq is number => seq !== undefined);
    if (own.length === 0) return pairsOldestFirst;
    // Own pairs are nearly always a run of neighbouring seqs (the newest few): one read for all of
    // them instead of one each, which was most of a one-message publish's reads. Scattered ones (a
    // log that took in other writers' messages in between) are read one by one.
    let first = own[0];
    let last = own[0];
    for (const seq of own) {
      if (seq < first) first = seq;
      if (seq > last) last = seq;
    }
    const span = last - first + 1 <= 2 * own.length + 64 ? await this.readLog(first, last + 1) : undefined;
    return Promise.all(
      pairsOldestFirst.map(async (pair, i) => {
        const seq = seqs[i];
        if (seq === undefined) return pair;
        const entry: KeptEntry = span ? span[seq - first] : (await this.readLog(seq, seq + 1))[0];
        return { id: entry.id, address: entry.address ?? addressOf(entry.data), data: entry.data };
      }),
    );
  }

  /**
   * The published mark is proof that messages were published from this log: a log shorter than the
   * mark, or one that holds another message where the mark's last one was, lost messages (or is
   * another log), and publishing from it would move the mark backwards. DATA_LOSS (details: seq).
   */
  private checkMark(mark: Checkpoint, last: LocalLogEntry | undefined, total: number): void {
    if (mark.delivered === 0) return;
    if (last && last.seq === mark.delivered - 1 && equalBytes(last.id, mark.lastId)) return;
    throw RemoteLogError.dataLoss(
      `${mark.delivered} messages were published to ${JSON.stringify(this.name)} from this local log, but ` +
        (last ? `its seq ${mark.delivered - 1} is message ${toHex(last.id)}, not ${toHex(mark.lastId)}` : `it holds only ${total}`) +
        "; nothing was published. remotelog repair --data DIR --server URL --from-remote can refill it from the remote log",
      undefined,
      { seq: mark.delivered - 1, name: this.name },
    );
  }

  /**
   * Remembers that the first `count` local messages are in the remote log, and sequence, the record
   * sequence of the head that holds them (signed names); known: seq count - 1's entry, when read already.
   * Never moves the mark back from saved, the mark this publish began with: each of delivered and
   * sequence stays the higher of the two. (Only the publish that finds the NS holding an older state of
   * this log lowers delivered, on purpose, before it publishes the rest again.)
   */
  private async remember(saved: Checkpoint | undefined, count: number, known?: LocalLogEntry, sequence?: bigint): Promise<void> {
    if (count === 0) return;
    this.forget(count);
    const highest = saved?.sequence !== undefined && (sequence === undefined || sequence < saved.sequence) ? saved.sequence : sequence;
    if (saved && saved.delivered > count) {
      // A step of a publish to a name the NS lost (it starts again from the first message) holds less
      // than was published before: the next step finds the rest missing and publishes it again.
      if (highest !== saved.sequence) await this.published.save(this.name, { ...saved, sequence: highest });
      return;
    }
    const last = known?.seq === count - 1 ? known : (await this.log.read(count - 1, count))[0];
    await this.published.save(this.name, { delivered: count, lastId: last.id, ...(highest !== undefined ? { sequence: highest } : {}) });
  }

  /**
   * How many of this log's messages pairs (a whole chain, oldest first) hold, and the id of the last,
   * when those are its first ones, in order (tombstones included), among any number of other writers'
   * messages; undefined when the chain holds none of them, or one after a gap or out of order.
   */
  private ownHeld(pairs: RemoteLog_Pair[]): { count: number; lastId: Uint8Array } | undefined {
    let count = 0;
    let lastId: Uint8Array | undefined;
    for (const pair of pairs) {
      const seq = this.log.seqOf(pair.localHash);
      if (seq === undefined) continue;
      if (seq !== count) return undefined;
      count++;
      lastId = pair.localHash;
    }
    return lastId && { count, lastId };
  }
}

/** What one attempt at a step of a publish did, and the message it stopped before, when one is over the block limit. */
type StepResult = PublishResult & { blockedBy?: RemoteLogError };

/** An entry the sender appended, with its address when made already, and the upload that sent its block ahead of the append. */
interface KeptEntry extends LocalLogEntry {
  address?: Uint8Array;
  ahead?: AheadUpload;
}

/**
 * A message this publish adds, and whether its block went ahead of the plan (EarlyUpload) or of the
 * append (AheadUpload): a mark on it, not a Set of them.
 */
interface FreshEntry extends LogEntry {
  sentEarly: boolean;
  ahead?: AheadUpload;
}

/**
 * The most message bytes a sender holds for its next publishes (Sender.recent). Two steps of small
 * messages are a few MB; of large ones they would be GBs, which are read back from the log instead.
 */
const RECENT_MAX_BYTES = 64 << 20;

/** What a page holds beside its pairs at most, for checkPageSize's advice: a tail, and info with its skip links. */
const PAGE_OVERHEAD_BYTES = 4096;

/** Messages per block upload sent ahead of a publish's plan. */
const EARLY_CHUNK = 1024;
/** Such uploads in flight at once: each holds its chunk's request in memory. */
const EARLY_IN_FLIGHT = 4;

/**
 * Message blocks a publish sends ahead of its plan, a chunk at a time and a few calls at once. Each is
 * idempotent, so one left running by a publish that failed does no harm; finish() waits for all and
 * throws the first failure, before the name update that needs them.
 */
class EarlyUpload {
  /** Messages sent so far: the publish's first `sent` fresh messages. */
  sent = 0;
  private readonly inFlight: Promise<void>[] = [];
  private failed?: { error: unknown };

  constructor(
    private readonly remote: Pick<LogRemote, "putBlocks">,
    /** Only the first `end` fresh messages are sure to be referenced, so only they may go early. */
    readonly end: number,
  ) {}

  async send(blocks: Uint8Array[]): Promise<void> {
    if (this.failed) throw this.failed.error;
    if (this.inFlight.length >= EARLY_IN_FLIGHT) await this.inFlight.shift();
    this.inFlight.push(this.remote.putBlocks(blocks).catch((error: unknown) => void (this.failed ??= { error })));
    this.sent += blocks.length;
    await nextTurn();
  }

  async finish(): Promise<void> {
    await Promise.all(this.inFlight);
    if (this.failed) throw this.failed.error;
  }
}

/**
 * How long after it started a publish may count on an upload made ahead of an append: far inside the
 * grace a CAS's gc gives blocks put but named by no page yet (backup/gc.ts, an hour by default).
 */
const AHEAD_FRESH_MS = 60_000;

/**
 * The blocks sent before an append (appendAndPublish, appendEncoded with uploadAhead): the first
 * `count` messages of the call. A publish counts on them while they are usable (until expire(), or
 * AHEAD_FRESH_MS after the upload started), and only on those it waits for (settled) without failure.
 */
class AheadUpload {
  /** Resolves once the upload has ended either way; failed says which. */
  readonly settled: Promise<void>;
  failed = false;
  private expired = false;
  private readonly startedMs = Date.now();

  constructor(
    upload: Promise<void>,
    readonly count: number,
  ) {
    this.settled = upload.then(
      () => {},
      () => void (this.failed = true),
    );
  }

  /** Whether a publish at nowMs (Date.now()) may count on these blocks. */
  usableAt(nowMs: number): boolean {
    return !this.expired && !this.failed && nowMs - this.startedMs < AHEAD_FRESH_MS;
  }

  expire(): void {
    this.expired = true;
  }
}

/**
 * The record sequence of a head published over version: one above both the name's version on the NS
 * and the highest this sender signed (the mark's), so that a server restored from an older copy, whose
 * version is lower, gets a record no reader that saw the newer one refuses as a rollback.
 */
function nextSequence(version: bigint, mark: Checkpoint): bigint {
  const signed = mark.sequence ?? 0n;
  return (signed > version ? signed : version) + 1n;
}
