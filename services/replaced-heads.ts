/**
 * How many replaced head pages the gateway keeps serving, and for how long (ReplacedHeads). A reader
 * of a name reads its record, then asks for the page it names; a sender publishing faster than that
 * replaces the page in between. A few seconds and a few pages a name cover that round trip.
 */
export interface ReplacedHeadLimits {
  /** Of each name, its latest replaced pages kept; older ones go. */
  perName: number;
  /** How long after it was replaced a page is still served, in milliseconds. */
  ttlMs: number;
  /** Bytes of pages kept, all names together; a page kept for several names counts once. */
  maxBytes: number;
  /** Replacements kept, all names together: a stranger's tiny pages cost bookkeeping, not bytes. */
  maxEntries: number;
}

/** 8 a name, 10 s, 32 MiB (32 heads at the NS's 1 MiB limit) and 4096 replacements server-wide. */
export const REPLACED_HEAD_LIMITS: ReplacedHeadLimits = { perName: 8, ttlMs: 10_000, maxBytes: 32 << 20, maxEntries: 4096 };

/** One name's page, replaced at `at`. */
export interface Replacement {
  readonly name: string;
  /** The page's raw CID (binary) as a latin1 string, as the head index keys pages. */
  readonly key: string;
  readonly at: number;
}

/**
 * The bytes of head pages that names moved on from, kept in memory for a short while (limits) so
 * that the gateway serves them by CID still. Serving an old page is correct: its CID verifies it.
 * Everything is bounded server-wide (bytes and entries) as well as per name, and a replacement goes
 * once it is too old, or to make room, oldest first: whoever publishes heads fast can push others'
 * replaced pages out early, never grow it. Expiry is judged on every call, so nothing runs between.
 */
export class ReplacedHeads {
  /** Every replacement kept, oldest first (a Set keeps insertion order and deletes in O(1)). */
  private readonly order = new Set<Replacement>();
  private readonly ofName = new Map<string, Replacement[]>();
  /** The bytes of each page kept, and how many replacements keep it. */
  private readonly pages = new Map<string, { bytes: Uint8Array; kept: number }>();
  private bytes = 0;

  constructor(
    private readonly limits: ReplacedHeadLimits = REPLACED_HEAD_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Keeps content, name's head page until now, whose key is key. Returns the replacement, for
   * withdraw() should the put that replaces it fail, or undefined when the limits leave no room.
   */
  add(name: string, key: string, content: Uint8Array): Replacement | undefined {
    this.expire();
    if (this.limits.perName < 1 || this.limits.maxEntries < 1 || content.length > this.limits.maxBytes) return undefined;
    const ofName = this.ofName.get(name) ?? [];
    // The same page replaced again (a put that failed, a name back on an old page): one entry, the latest.
    const again = ofName.find((kept) => kept.key === key);
    if (again) this.remove(again);
    const replacement: Replacement = { name, key, at: this.now() };
    const page = this.pages.get(key);
    if (page) page.kept++;
    else {
      // A copy of the page alone: a store's bytes may be a view into something larger.
      this.pages.set(key, { bytes: new Uint8Array(content), kept: 1 });
      this.bytes += content.length;
    }
    this.order.add(replacement);
    ofName.push(replacement);
    this.ofName.set(name, ofName);
    while (ofName.length > this.limits.perName) this.remove(ofName[0]);
    for (const oldest of this.order) {
      if (this.bytes <= this.limits.maxBytes && this.order.size <= this.limits.maxEntries) break;
      this.remove(oldest);
    }
    return replacement;
  }

  /** The bytes of a page kept under key, or undefined. */
  find(key: string): Uint8Array | undefined {
    this.expire();
    return this.pages.get(key)?.bytes;
  }

  /** Takes back a replacement that did not happen after all. */
  withdraw(replacement: Replacement): void {
    if (this.order.has(replacement)) this.remove(replacement);
  }

  /** Drops every page kept for name (the operator dropped the name). */
  forget(name: string): void {
    for (const replacement of [...(this.ofName.get(name) ?? [])]) this.remove(replacement);
  }

  /** What is kept now: the bytes of its pages, and its replacements. */
  get size(): { bytes: number; entries: number } {
    this.expire();
    return { bytes: this.bytes, entries: this.order.size };
  }

  private expire(): void {
    const cutoff = this.now() - this.limits.ttlMs;
    for (const oldest of this.order) {
      if (oldest.at > cutoff) break;
      this.remove(oldest);
    }
  }

  private remove(replacement: Replacement): void {
    this.order.delete(replacement);
    const ofName = this.ofName.get(replacement.name);
    const at = ofName?.indexOf(replacement) ?? -1;
    if (at >= 0) ofName!.splice(at, 1);
    if (ofName?.length === 0) this.ofName.delete(replacement.name);
    const page = this.pages.get(replacement.key);
    if (page && --page.kept === 0) {
      this.pages.delete(replacement.key);
      this.bytes -= page.bytes.length;
    }
  }
}
