import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { AddressSchema, ContentSchema, type Address, type CAS, type Content } from "../gen/vac/cas/cas_pb.js";
import type { ContentStore } from "../core/content-store.js";
import { RemoteLogError } from "../core/errors.js";
import { parseAddress } from "../core/hash.js";
import { Authority, payerOf, peerOf } from "./auth.js";
import { answerCost, answerFormat } from "./answer-cost.js";
import type { ReadBudget } from "./read-budget.js";

export interface CasLimits {
  /** The largest block Add accepts, in bytes. */
  maxBlockBytes: number;
}

export const defaultCasLimits: CasLimits = { maxBlockBytes: 1 << 20 };

/**
 * The draft's `vac.cas.CAS` over a ContentStore. Add is idempotent and returns the binary CIDv1
 * (raw, sha2-256) of the bytes.
 *
 * Throws RemoteLogError: PERMISSION_DENIED for an Add the authority refuses (a closed server without a
 * write token), TOO_LARGE for a block over maxBlockBytes or over the writer's quota, INVALID_ARGUMENT for an address
 * that is not one this CAS hands out (the empty one included), NOT_FOUND naming the CID of a block
 * that is not stored, and DATA_LOSS when the store finds a block that no longer matches its address.
 */
export class CasService implements ServiceImpl<typeof CAS> {
  private readonly limits: CasLimits;

  constructor(
    private readonly store: ContentStore,
    limits: Partial<CasLimits> = {},
    private readonly authority = new Authority(),
    /** Charged, per client address, with the bytes each Get read (services/read-budget.ts). */
    private readonly readBudget?: ReadBudget,
  ) {
    this.limits = { ...defaultCasLimits, ...limits };
  }

  async add(request: Content, context?: HandlerContext): Promise<Address> {
    checkBlockSize(request.data, this.limits.maxBlockBytes, "block");
    const writer = this.authority.tokenWriter(context, "Add");
    const [id] = await this.authority.paid(payerOf(writer, context), { bytes: request.data.length, newName: false }, () => this.store.putMany([request.data]));
    return create(AddressSchema, { id });
  }

  async get(request: Address, context?: HandlerContext): Promise<Content> {
    const cid = parseAddress(request.id);
    const [data] = await this.store.getMany([cid.bytes]);
    this.readBudget?.charge(peerOf(context).address, answerCost(answerFormat(context), data?.length ?? 0));
    if (data === undefined) throw RemoteLogError.notFound(`block ${cid.toString()} is not stored`);
    return create(ContentSchema, { data });
  }
}

/** TOO_LARGE naming the size and the limit; shared with the batch service so both refuse alike. */
export function checkBlockSize(block: Uint8Array, maxBlockBytes: number, what: string): void {
  if (block.length > maxBlockBytes) {
    throw RemoteLogError.tooLarge(`${what} of ${block.length} bytes is over the limit of ${maxBlockBytes} bytes`);
  }
}
