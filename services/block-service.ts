import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  AddManyResponseSchema,
  GetManyResponseSchema,
  type AddManyRequest,
  type AddManyResponse,
  type BlockService,
  type GetManyRequest,
  type GetManyResponse,
  type LinkedPages,
} from "../gen/remotelog/v1/blocks_pb.js";
import type { ContentStore } from "../core/content-store.js";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { DistinctAddresses } from "../core/distinct-addresses.js";
import { addressText, validateAddress } from "../core/hash.js";
import type { NameStore } from "../core/name-store.js";
import { pageInfoUnchecked } from "../core/message-decode.js";
import { repeatedBytesUnknown } from "../core/page.js";
import { checkBlockSize, defaultCasLimits, type CasLimits } from "./cas-service.js";
import { Authority, payerOf, peerOf } from "./auth.js";
import { answerCost, answerFormat, idsCost, JSON_COST, type AnswerFormat } from "./answer-cost.js";
import type { ReadBudget } from "./read-budget.js";

export interface BlockLimits extends CasLimits {
  /** The most blocks one AddMany or GetMany may carry. */
  maxBatchBlocks: number;
  /**
   * The most block bytes one GetMany response carries, counted as answer-cost.ts does (a JSON answer's
   * text at JSON_COST a byte). A client that pages (partial_ok) gets a prefix and asks again; one that
   * does not is refused with TOO_LARGE. At least maxBlockBytes: one block always goes whole.
   */
  maxResponseBytes: number;
}

/** How many of a GetMany's blocks are looked at for linked pages: a reader asks for a round's few pages at a time. */
const LINKED_FROM_BLOCKS = 64;

export const defaultBlockLimits: BlockLimits = { ...defaultCasLimits, maxBatchBlocks: 16384, maxResponseBytes: 8 << 20 };

export interface BlockServiceOptions {
  /** Who may write; open to all when absent. */
  authority?: Authority;
  /** The NS served beside this CAS, against which AddManyRequest.pending is checked. */
  names?: NameStore;
  /** Charged, per client address, with the bytes each GetMany read (services/read-budget.ts). */
  readBudget?: ReadBudget;
}

/**
 * `remotelog.v1.BlockService`: the CAS in batches, over the same ContentStore as CasService.
 *
 * AddMany is all or nothing as far as refusals go: every block is checked (TOO_LARGE for one over
 * maxBlockBytes or a batch over maxBatchBlocks) before any is stored, then all go to the store in one
 * putMany. GetMany checks every address first (INVALID_ARGUMENT naming its index), reads them in one
 * getMany, and fails with NOT_FOUND naming the first missing CID unless allow_missing is set.
 */
export class BlockServiceImpl implements ServiceImpl<typeof BlockService> {
  private readonly limits: BlockLimits;

  private readonly authority: Authority;

  constructor(
    private readonly store: ContentStore,
    limits: Partial<BlockLimits> = {},
    private readonly options: BlockServiceOptions = {},
  ) {
    this.limits = { ...defaultBlockLimits, ...limits };
    this.limits.maxResponseBytes = Math.max(this.limits.maxResponseBytes, this.limits.maxBlockBytes);
    this.authority = options.authority ?? new Authority();
  }

  async addMany(request: AddManyRequest, context?: HandlerContext): Promise<AddManyResponse> {
    this.checkCount(request.blocks.length, "AddMany");
    request.blocks.forEach((block, index) => checkBlockSize(block, this.limits.maxBlockBytes, `block ${index}`));
    // A CAS without an NS beside it (serve --only cas) cannot check a pending signed update: its blocks
    // come as anyone's do (anonymous on an open server, else with a token), where they were refused even
    // on an open one, and a split deployment could take no signed send.
    const writer =
      request.pending && this.options.names
        ? await this.authority.pendingWriter(this.options.names, request.pending)
        : request.pending
          ? this.authority.tokenWriter(context, "AddMany on a CAS without an NS beside it (which cannot check a signed update)", false)
          : this.authority.tokenWriter(context, "AddMany");
    const bytes = request.blocks.reduce((sum, block) => sum + block.length, 0);
    // Checked above: storeBlocks would check every block's size a second time.
    const ids = await this.authority.paid(payerOf(writer, context), { bytes, newName: false }, async () =>
      request.blocks.length === 0 ? [] : await this.store.putMany(request.blocks),
    );
    const response = create(AddManyResponseSchema);
    if (request.omitIds) return response;
    if (answerFormat(context) === "binary") response.$unknown = repeatedBytesUnknown(1, ids);
    else response.ids = ids;
    return response;
  }

  /** Stores blocks already authorized and counted (those of a signed name update), with the size checks of AddMany. */
  async storeBlocks(blocks: Uint8Array[]): Promise<Uint8Array[]> {
    this.checkCount(blocks.length, "AddMany");
    blocks.forEach((block, index) => checkBlockSize(block, this.limits.maxBlockBytes, `block ${index}`));
    return blocks.length === 0 ? [] : await this.store.putMany(blocks);
  }

  async getMany(request: GetManyRequest, context?: HandlerContext): Promise<GetManyResponse> {
    this.checkCount(request.ids.length, "GetMany");
    const addresses = request.ids.map((id, index) => {
      try {
        return validateAddress(id);
      } catch (err) {
        if (isRemoteLogError(err, "INVALID_ARGUMENT")) {
          throw RemoteLogError.invalidArgument(`id ${index}: ${err.text}`, err);
        }
        throw err;
      }
    });
    // Each distinct block is read once however often it is asked for: repeats cost the store nothing.
    // Ids are told apart only as far as they are read: an answer capped after 16 blocks need not
    // sort 16,384 ids first.
    const distinct = new DistinctAddresses();
    const unique = distinct.unique;
    const slots = new Int32Array(addresses.length).fill(-1);
    const slotOf = (index: number) => (slots[index] >= 0 ? slots[index] : (slots[index] = distinct.slotOf(addresses[index])));
    // The cap, and the read budget, count what the answer costs to send (answer-cost.ts): counted in
    // raw bytes, a JSON page of base64 text held the thread five times as long as a binary one.
    // The client's own bound on the answer (max_bytes) is a cap below the server's, on a partial answer only.
    if (request.maxBytes > 0n && !request.partialOk) throw RemoteLogError.invalidArgument("GetMany max_bytes bounds a partial answer: set partial_ok with it");
    const cap = request.maxBytes > 0n && request.maxBytes < BigInt(this.limits.maxResponseBytes) ? Number(request.maxBytes) : this.limits.maxResponseBytes;
    const format = answerFormat(context);
    const json = format === "json";
    const costOf = (length: number) => answerCost(format, length);
    const missing: number[] = [];
    const blocks: Uint8Array[] = [];
    let bytes = 0;
    // Blocks are read in the order asked, a batch at a time, and reading stops at the cap: reading every
    // block named first let one call of 16,384 distinct 1 MiB blocks pull 16 GiB into memory for an
    // answer of a few MiB. A batch is what the room left holds: at the largest block's cost at first, then at
    // the average cost read so far (a missing block counts as one byte).
    const found = new Map<number, Uint8Array | undefined>();
    let costRead = 0;
    let entriesRead = 0;
    const readFrom = async (index: number) => {
      // bytes counts every block before index: the room left is what this batch may fill.
      const room = Math.max(0, cap - bytes);
      const average = entriesRead === 0 ? costOf(this.limits.maxBlockBytes) : Math.max(1, costRead / entriesRead);
      const batch = Math.min(this.limits.maxBatchBlocks, Math.max(1, Math.floor(room / average)));
      const want: number[] = [];
      const wanted = new Set<number>();
      // At most a batch of ids is looked at, distinct or not: one id asked 16,384 times is one read.
      for (let i = index; i < addresses.length && i < index + batch; i++) {
        const slot = slotOf(i);
        if (!found.has(slot) && !wanted.has(slot)) {
          wanted.add(slot);
          want.push(slot);
        }
      }
      const read = await this.store.getMany(want.map((slot) => unique[slot]));
      want.forEach((slot, k) => {
        found.set(slot, read[k]);
        costRead += read[k] ? costOf(read[k].length) : 1;
        entriesRead++;
      });
    };
    try {
      for (let index = 0; index < addresses.length; index++) {
        if (!found.has(slotOf(index))) await readFrom(index);
        const data = found.get(slotOf(index));
        if (data === undefined) {
          if (!request.allowMissing) throw RemoteLogError.notFound(`block ${addressText(addresses[index])} is not stored`);
          missing.push(index);
          blocks.push(new Uint8Array(0));
          continue;
        }
        // Repeats are not free on the wire: every copy counts toward the response's bytes.
        if (bytes + costOf(data.length) > cap && blocks.length > 0) {
          if (!request.partialOk) {
            throw RemoteLogError.tooLarge(
              `GetMany response of more than ${this.limits.maxResponseBytes} bytes${json ? ` (in JSON, each byte of text counts ${JSON_COST})` : ""} is over the limit (max_response_bytes); ask for fewer blocks, or page with partial_ok`,
              { limit: "max-response-bytes", value: this.limits.maxResponseBytes },
            );
          }
          break;
        }
        bytes += costOf(data.length);
        blocks.push(data);
      }
    } finally {
      // Charged whatever the outcome (a refused call read its blocks too): the larger of what was
      // answered, what was read and the ids asked for.
      this.options.readBudget?.charge(peerOf(context).address, Math.max(bytes, costRead, idsCost(format, addresses.length)));
    }
    const response = create(GetManyResponseSchema, { missing });
    const linked = request.linkedPages && blocks.length === addresses.length ? await this.linkedPages(blocks, distinct, request.linkedPages, cap - bytes, format) : undefined;
    if (linked) this.options.readBudget?.charge(peerOf(context).address, linked.cost);
    if (format === "binary") {
      response.$unknown = repeatedBytesUnknown(1, blocks);
      if (linked) response.$unknown.push(...repeatedBytesUnknown(3, linked.pages), ...repeatedBytesUnknown(4, linked.ids));
    } else {
      response.blocks = blocks;
      if (linked) {
        response.linked = linked.pages;
        response.linkedIds = linked.ids;
      }
    }
    return response;
  }

  /**
   * The pages the answered blocks link to, and those they link to in turn, level by level, that a reader
   * from options.fromSeqid needs (a page's tail when the page starts after it; any other link when the
   * linked page starts at it or after), none already in the answer or seen, while room (and the client's
   * max_bytes) holds them, looking up at most maxBatchBlocks links. Only the first LINKED_FROM_BLOCKS
   * blocks asked are looked at as pages; a block that is not a page links to nothing. Nothing here is checked but the links' addresses (the store
   * reads only valid ones): the client checks each page against its link, as one it asked for.
   */
  private async linkedPages(
    answered: Uint8Array[],
    seen: DistinctAddresses,
    options: LinkedPages,
    room: number,
    format: AnswerFormat,
  ): Promise<{ pages: Uint8Array[]; ids: Uint8Array[]; cost: number }> {
    const from = options.fromSeqid;
    const limit = options.maxBytes > 0n && options.maxBytes < BigInt(room) ? Number(options.maxBytes) : room;
    const pages: Uint8Array[] = [];
    const ids: Uint8Array[] = [];
    let cost = 0;
    let costRead = 0;
    // Links looked up, found or not: at most a GetMany's worth of ids, and charged as ids asked are. A
    // page of links to nothing stored would otherwise cost lookups that no byte of the answer counts.
    let lookups = 0;
    const spent = () => ({ pages, ids, cost: Math.max(cost, costRead, idsCost(format, lookups)) });
    let level = answered.slice(0, LINKED_FROM_BLOCKS);
    while (level.length > 0) {
      const wanted: Uint8Array[] = [];
      for (const bytes of level) {
        const info = pageInfoUnchecked(bytes);
        if (!info) continue;
        for (let i = 0; i < info.skips.length && lookups + wanted.length < this.limits.maxBatchBlocks; i++) {
          const skip = info.skips[i];
          if (i === 0 ? info.firstSeqid <= from : skip.firstSeqid < from) continue;
          try {
            validateAddress(skip.address);
          } catch {
            continue;
          }
          const known = seen.unique.length;
          if (seen.slotOf(skip.address) === known) wanted.push(skip.address);
        }
      }
      if (wanted.length === 0) break;
      lookups += wanted.length;
      const read = await this.store.getMany(wanted);
      level = [];
      for (let k = 0; k < read.length; k++) {
        const bytes = read[k];
        if (!bytes) continue;
        costRead += bytes.length;
        const pageCost = answerCost(format, bytes.length);
        if (cost + pageCost > limit) return spent();
        cost += pageCost;
        pages.push(bytes);
        ids.push(wanted[k]);
        level.push(bytes);
      }
    }
    return spent();
  }

  private checkCount(count: number, what: string): void {
    if (count > this.limits.maxBatchBlocks) {
      throw RemoteLogError.tooLarge(`${what} of ${count} blocks is over the limit of ${this.limits.maxBatchBlocks} per call`);
    }
  }
}
