import type { ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { GetLimitsResponseSchema, type GetLimitsResponse, type ServerInfoService } from "../gen/remotelog/v1/info_pb.js";

/** The limits a server advertises; a field is 0 when the service it belongs to is not mounted. */
export interface AdvertisedLimits {
  maxBlockBytes: number;
  maxBatchBlocks: number;
  maxResponseBytes: number;
  maxRequestBytes: number;
  maxWatchNames: number;
}

/** `remotelog.v1.ServerInfoService`: tells clients the server's limits before they hit one. */
export class ServerInfoServiceImpl implements ServiceImpl<typeof ServerInfoService> {
  constructor(private readonly limits: AdvertisedLimits) {}

  getLimits(): GetLimitsResponse {
    const l = this.limits;
    return create(GetLimitsResponseSchema, {
      maxBlockBytes: BigInt(l.maxBlockBytes),
      maxBatchBlocks: l.maxBatchBlocks,
      maxResponseBytes: BigInt(l.maxResponseBytes),
      maxRequestBytes: BigInt(l.maxRequestBytes),
      maxWatchNames: l.maxWatchNames,
    });
  }
}
