import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { CollectResponseSchema, type CollectRequest, type CollectResponse, type GcService } from "../gen/remotelog/v1/gc_pb.js";
import { collectGarbage, type GcOptions, type NameLister } from "../backup/gc.js";

/**
 * `remotelog.v1.GcService`: gc of the server's own fs CAS, run inside the server so that it shares the
 * store's index and sees every put made while it runs (backup/gc.ts has the safety rule).
 */
export class GcServiceImpl implements ServiceImpl<typeof GcService> {
  constructor(
    private readonly store: GcOptions["store"],
    private readonly names: NameLister,
  ) {}

  async collect(request: CollectRequest): Promise<CollectResponse> {
    const summary = await collectGarbage({
      store: this.store,
      names: this.names,
      graceMs: request.graceMs > 0n ? Number(request.graceMs) : undefined,
      dryRun: request.dryRun,
    });
    return create(CollectResponseSchema, {
      roots: BigInt(summary.roots),
      marked: BigInt(summary.marked),
      packs: BigInt(summary.packs),
      sweptPacks: BigInt(summary.sweptPacks),
      removedBlocks: BigInt(summary.removedBlocks),
      freedBytes: BigInt(summary.freedBytes),
      missing: summary.missing,
      ms: BigInt(summary.ms),
    });
  }
}
