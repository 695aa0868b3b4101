import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ContentSchema, ResponseSchema, type Content, type NameUpdate, type NS, type Query, type Response } from "../gen/vac/cas/cas_pb.js";
import type { NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";

export interface NsLimits {
  /** The largest content one name may point at, in bytes. */
  maxContentBytes: number;
  /** The longest name, in UTF-8 bytes. */
  maxNameBytes: number;
}

export const defaultNsLimits: NsLimits = { maxContentBytes: 1 << 20, maxNameBytes: 512 };

/**
 * The draft's `vac.cas.NS` over a NameStore, with remotelog's versions: every update returns the
 * name's new version, and an update carrying expected_version applies only if the name is at it.
 *
 * Throws RemoteLogError: INVALID_ARGUMENT for a name that checkName refuses, TOO_LARGE for content
 * over maxContentBytes, CONFLICT (from the store) when expected_version is stale, and NOT_FOUND naming
 * a name that was never updated.
 */
export class NsService implements ServiceImpl<typeof NS> {
  private readonly limits: NsLimits;

  constructor(
    private readonly store: NameStore,
    limits: Partial<NsLimits> = {},
  ) {
    this.limits = { ...defaultNsLimits, ...limits };
  }

  async update(request: NameUpdate, _context?: HandlerContext): Promise<Response> {
    checkName(request.name, this.limits.maxNameBytes);
    if (request.content.length > this.limits.maxContentBytes) {
      throw RemoteLogError.tooLarge(
        `content of ${request.content.length} bytes for name ${JSON.stringify(request.name)} is over the limit of ${this.limits.maxContentBytes} bytes`,
      );
    }
    const version = await this.store.put(
      request.name,
      request.content,
      request.expectedVersion !== undefined ? { expectedVersion: request.expectedVersion } : {},
    );
    return create(ResponseSchema, { version });
  }

  async fetch(request: Query, _context?: HandlerContext): Promise<Content> {
    checkName(request.name, this.limits.maxNameBytes);
    const entry = await this.store.get(request.name);
    if (entry === undefined) throw RemoteLogError.notFound(`name ${JSON.stringify(request.name)} has never been updated`);
    return create(ContentSchema, { data: entry.content, version: entry.version });
  }
}

// Controls (C0, DEL, C1) make names that print alike but differ, and break log lines. Unpaired
// surrogates have no UTF-8 form, and U+FFFD is what bytes that were not UTF-8 on the wire decode to:
// either way the name the client meant is unknown.
const FORBIDDEN_IN_NAMES = /[\p{Cc}\p{Cs}\uFFFD]/u;

/**
 * The one check of a name, for Update and Fetch alike (and, once names are keys, the place that will
 * also check the name against its record). INVALID_ARGUMENT for an empty name, a name over maxNameBytes
 * of UTF-8, or one holding control characters or unpaired surrogates.
 */
export function checkName(name: string, maxNameBytes: number): void {
  if (name.length === 0) throw RemoteLogError.invalidArgument("name is empty");
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > maxNameBytes) {
    throw RemoteLogError.invalidArgument(`name of ${bytes} bytes is over the limit of ${maxNameBytes} bytes: ${JSON.stringify(name.slice(0, 64))}…`);
  }
  if (FORBIDDEN_IN_NAMES.test(name)) {
    throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} holds control characters or bytes that are not UTF-8`);
  }
}
