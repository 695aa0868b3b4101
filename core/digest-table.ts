/**
 * A set of 32-byte digests, numbered 0, 1, 2… in the order they were added, held in two typed arrays
 * instead of a string and an object each: 32 bytes a digest plus 8–16 bytes of hash slots, ~48 bytes
 * in all, where a Map keyed by latin1 strings costs well over 100. A million ids are ~48 MB and no
 * garbage to collect.
 *
 * The digests are sha2-256 outputs (message ids, block digests), uniform for honest input. But anyone
 * who may store blocks can grind inputs whose digests agree in a few chosen bits (a million tries
 * for 20 bits), so the slot is not taken from fixed bits: two words of the digest go through a
 * multiply-shift hash with multipliers drawn at random for each table, and the slot is the product's
 * top bits. Lining blocks up in one slot then takes a full 32-bit collision each. Open addressing
 * with linear probing, grown to keep the load at most one half.
 */
export class DigestTable {
  /** The digests back to back, digest n at bytes 32n to 32n + 32. */
  private digests: Uint8Array;
  /** Hash slots: 0 when empty, else the number of the digest in it plus one. */
  private slots: Int32Array;
  private mask: number;
  /** 32 minus log2 of the slot count: the slot is the hash's top bits. */
  private shift: number;
  private count = 0;
  /** The hash's multipliers, odd, drawn for this table. */
  private readonly mix = crypto.getRandomValues(new Uint32Array(2)).map((word) => word | 1);

  /** expected: how many digests to make room for at first (it grows past that as needed). */
  constructor(expected = 1024) {
    let size = 16;
    while (size < 2 * expected) size *= 2;
    this.digests = new Uint8Array(16 * size);
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.shift = 32 - Math.log2(size);
  }

  /** How many digests the table holds. */
  get size(): number {
    return this.count;
  }

  /** The number of digest (32 bytes of bytes from at), or -1 when it is not in the table. */
  find(bytes: Uint8Array, at = 0): number {
    if (bytes.length - at < 32) return -1;
    for (let slot = this.slotOf(bytes, at); ; slot = (slot + 1) & this.mask) {
      const held = this.slots[slot];
      if (held === 0) return -1;
      if (this.matches(held - 1, bytes, at)) return held - 1;
    }
  }

  /** Adds digest (32 bytes of bytes from at), which must not be in the table yet, and returns its number. */
  add(bytes: Uint8Array, at = 0): number {
    const n = this.count;
    this.makeRoom();
    this.store(n, bytes, at);
    this.count = n + 1;
    if (2 * this.count > this.slots.length) this.rehash(this.slots.length * 2);
    else this.place(n);
    return n;
  }

  /**
   * add, unless the digest is in the table already: -1 when it was added, else its number. One probe
   * where find then add took two, and no view of bytes: a restore checks every id of a log this way.
   */
  addIfNew(bytes: Uint8Array, at = 0): number {
    if (bytes.length - at < 32) throw new RangeError(`a digest is 32 bytes; ${bytes.length - at} given`);
    this.makeRoom();
    return this.insertIfNew(bytes, at, true);
  }

  /**
   * addIfNew of each digest of digests (32 bytes each, back to back), in order, copied in with one
   * set() rather than byte by byte: the index in digests of the first that the table holds already
   * (one earlier in digests included), the ones before it added; -1 when all were added.
   */
  addAllIfNew(digests: Uint8Array): number {
    if (digests.length % 32 !== 0) throw new RangeError(`digests are 32 bytes each; ${digests.length} bytes given`);
    const added = digests.length / 32;
    this.makeRoom(added);
    this.digests.set(digests, 32 * this.count);
    for (let i = 0; i < added; i++) if (this.insertIfNew(this.digests, 32 * this.count, false) !== -1) return i;
    return -1;
  }

  /**
   * The one probe of addIfNew and addAllIfNew: the digest at bytes[at] becomes number count unless the
   * table holds it (-1 when added, else the number holding it). copy false: it lies at its place in
   * digests already. Room must be made first.
   */
  private insertIfNew(bytes: Uint8Array, at: number, copy: boolean): number {
    const n = this.count;
    let slot = this.slotOf(bytes, at);
    for (let held = this.slots[slot]; held !== 0; held = this.slots[slot]) {
      if (this.matches(held - 1, bytes, at)) return held - 1;
      slot = (slot + 1) & this.mask;
    }
    if (copy) this.store(n, bytes, at);
    this.count = n + 1;
    if (2 * this.count > this.slots.length) this.rehash(this.slots.length * 2);
    else this.slots[slot] = n + 1;
    return -1;
  }

  /** Forgets the digests numbered count and up (those of a batch that failed), keeping the rest. */
  truncate(count: number): void {
    if (count >= this.count) return;
    this.count = count;
    this.rehash(this.slots.length);
  }

  /** Digest number n, as a view of the table's own bytes: copy it to keep it past the next add. */
  digest(n: number): Uint8Array {
    return this.digests.subarray(32 * n, 32 * n + 32);
  }

  /** Whether digest n equals the 32 bytes of bytes from at. */
  matches(n: number, bytes: Uint8Array, at = 0): boolean {
    const digests = this.digests;
    const base = 32 * n;
    for (let i = 0; i < 32; i++) if (digests[base + i] !== bytes[at + i]) return false;
    return true;
  }

  /** Copies digest n in, byte by byte: a subarray to set() from was an object a digest added. */
  private store(n: number, bytes: Uint8Array, at: number): void {
    const digests = this.digests;
    const base = 32 * n;
    for (let i = 0; i < 32; i++) digests[base + i] = bytes[at + i];
  }

  /** Grows the digests' bytes, when full, to hold more (one by default). */
  private makeRoom(more = 1): void {
    const needed = 32 * (this.count + more);
    if (needed <= this.digests.length) return;
    let length = this.digests.length * 2;
    while (length < needed) length *= 2;
    const grown = new Uint8Array(length);
    grown.set(this.digests);
    this.digests = grown;
  }

  private place(n: number): void {
    let slot = this.slotOf(this.digests, 32 * n);
    while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
    this.slots[slot] = n + 1;
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.shift = 32 - Math.log2(size);
    for (let n = 0; n < this.count; n++) this.place(n);
  }

  /** The first slot of the digest at bytes[at]: multiply-shift of its first two words. */
  private slotOf(bytes: Uint8Array, at: number): number {
    const first = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    const second = bytes[at + 4] | (bytes[at + 5] << 8) | (bytes[at + 6] << 16) | (bytes[at + 7] << 24);
    return Math.imul(first ^ Math.imul(second, this.mix[1]), this.mix[0]) >>> this.shift;
  }
}
