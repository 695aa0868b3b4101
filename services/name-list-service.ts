import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { ListNamesResponseSchema, ListNamesResponse_NameSchema, type ListNamesRequest, type ListNamesResponse, type NameListService } from "../gen/remotelog/v1/names_pb.js";
import type { ListOptions, NameEntry } from "../core/name-store.js";
import { checkName } from "../core/name-checks.js";

/** Names in one ListNames page unless the client asks for fewer, and at most. */
export const DEFAULT_LIST_PAGE = 100;

/** The part of a name store this service reads: a page of its names (NameStore.list with options). */
export interface NamePager {
  list(options: ListOptions): AsyncIterable<[string, NameEntry]>;
}

/**
 * `remotelog.v1.NameListService`: the names an NS holds, a bounded page at a time, for the explorer.
 * Read-only; each call reads at most pageSize entries of the store, whatever it asks for. Whoever mounts
 * it decides that names may be enumerated (routes() does so only when asked: serve's explorer).
 */
export class NameListServiceImpl implements ServiceImpl<typeof NameListService> {
  constructor(
    private readonly names: NamePager,
    private readonly pageSize: number = DEFAULT_LIST_PAGE,
    private readonly maxNameBytes?: number,
  ) {}

  async listNames(request: ListNamesRequest): Promise<ListNamesResponse> {
    // `after` is a name: spelled as one, so that a stranger cannot make the store seek on anything else.
    if (request.after !== "" && this.maxNameBytes !== undefined) checkName(request.after, this.maxNameBytes);
    const limit = request.limit === 0 ? this.pageSize : Math.min(request.limit, this.pageSize);
    // One more than the page, read to know whether another page follows.
    const names: ListNamesResponse["names"] = [];
    let more = false;
    for await (const [name, entry] of this.names.list({ after: request.after === "" ? undefined : request.after, limit: limit + 1 })) {
      if (names.length === limit) {
        more = true;
        break;
      }
      names.push(create(ListNamesResponse_NameSchema, { name, version: entry.version }));
    }
    return create(ListNamesResponseSchema, { names, next: more ? names[names.length - 1].name : "" });
  }
}
