import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { CollectResponseSchema, type CollectRequest, type CollectResponse, type GcService } from "../gen/remotelog/v1/gc_pb.js";
import { checkName, MAX_NAME_BYTES } from "../core/name-checks.js";
import { collectGarbage, DEFAULT_GRACE_MS, type GcOptions, type NameLister } from "../backup/gc.js";

/**
 * `remotelog.v1.GcService`: gc of the server's own fs CAS, run inside the server so that it shares the
 * store's index and sees every put made while it runs (backup/gc.ts has the safety rule). The grace is
 * the server's (graceMs): a request may lengthen it, never shorten it. Whoever mounts this decides who
 * may call it (routes() mounts it for the operator only).
 */
export class GcServiceImpl implements ServiceImpl<typeof GcService> {
  constructor(
    private readonly store: GcOptions["store"],
    private readonly names: NameLister,
    private readonly graceMs: number = DEFAULT_GRACE_MS,
  ) {}

  async collect(request: CollectRequest): Promise<CollectResponse> {
    for (const name of request.dropNames) checkName(name, MAX_NAME_BYTES);
    const summary = await collectGarbage({
      store: this.store,
      names: this.names,
      graceMs: Math.max(this.graceMs, Number(request.graceMs)),
      dryRun: request.dryRun,
      dropNames: request.dropNames,
    });
    return create(CollectResponseSchema, {
      roots: BigInt(summary.roots),
      marked: BigInt(summary.marked),
      packs: BigInt(summary.packs),
      sweptPacks: BigInt(summary.sweptPacks),
      removedBlocks: BigInt(summary.removedBlocks),
      freedBytes: BigInt(summary.freedBytes),
      missing: summary.missing,
      missingCount: BigInt(summary.missingCount),
      unreadable: summary.unreadable,
      unreadableCount: BigInt(summary.unreadableCount),
      droppedNames: summary.droppedNames,
      ms: BigInt(summary.ms),
    });
  }
}
