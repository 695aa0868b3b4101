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
} from "../gen/remotelog/v1/blocks_pb.js";
import type { ContentStore } from "../core/content-store.js";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { addressText, validateAddress } from "../core/hash.js";
import { checkBlockSize, defaultCasLimits, type CasLimits } from "./cas-service.js";

export interface BlockLimits extends CasLimits {
  /** The most blocks one AddMany or GetMany may carry. */
  maxBatchBlocks: number;
}

export const defaultBlockLimits: BlockLimits = { ...defaultCasLimits, maxBatchBlocks: 16384 };

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

  constructor(
    private readonly store: ContentStore,
    limits: Partial<BlockLimits> = {},
  ) {
    this.limits = { ...defaultBlockLimits, ...limits };
  }

  async addMany(request: AddManyRequest, _context?: HandlerContext): Promise<AddManyResponse> {
    this.checkCount(request.blocks.length, "AddMany");
    request.blocks.forEach((block, index) => checkBlockSize(block, this.limits.maxBlockBytes, `block ${index}`));
    const ids = request.blocks.length === 0 ? [] : await this.store.putMany(request.blocks);
    return create(AddManyResponseSchema, { ids });
  }

  async getMany(request: GetManyRequest, _context?: HandlerContext): Promise<GetManyResponse> {
    this.checkCount(request.ids.length, "GetMany");
    const addresses = request.ids.map((id, index) => {
      try {
        return validateAddress(id);
      } catch (err) {
        if (isRemoteLogError(err, "INVALID_ARGUMENT")) {
          throw RemoteLogError.invalidArgument(`id ${index}: ${err.message.replace(/^INVALID_ARGUMENT: /, "")}`, err);
        }
        throw err;
      }
    });
    const found = addresses.length === 0 ? [] : await this.store.getMany(addresses);
    const missing: number[] = [];
    const blocks = addresses.map((address, index) => {
      const data = found[index];
      if (data !== undefined) return data;
      if (!request.allowMissing) throw RemoteLogError.notFound(`block ${addressText(address)} is not stored`);
      missing.push(index);
      return new Uint8Array(0);
    });
    return create(GetManyResponseSchema, { blocks, missing });
  }

  private checkCount(count: number, what: string): void {
    if (count > this.limits.maxBatchBlocks) {
      throw RemoteLogError.tooLarge(`${what} of ${count} blocks is over the limit of ${this.limits.maxBatchBlocks} per call`);
    }
  }
}
