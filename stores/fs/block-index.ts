import { DigestTable } from "../../core/digest-table.js";
import { ADDRESS_PREFIX, isAddress } from "../../core/hash.js";

/**
 * Where each stored block is (pack, offset, length) and its CRC-32 when its pack holds one, for
 * FsContentStore: the digests in a DigestTable and the rest in typed arrays indexed by the digest's
 * number, ~75 bytes a block and no object per
 * block for the collector to walk. A block that gc removed keeps its number (and 32 bytes) as
 * "not stored", and gets it back if it is stored again.
 */
export class BlockIndex {
  private readonly digests = new DigestTable();
  /** The pack of each block number, -1 when it is not stored. */
  private packs = new Int32Array(1024);
  private offsets = new Float64Array(1024);
  private lengths = new Uint32Array(1024);
  private checksums = new Uint32Array(1024);
  private live = 0;

  /** Blocks stored. */
  get size(): number {
    return this.live;
  }

  /** The number of the stored block with this address (a raw sha2-256 CIDv1), or -1. */
  find(address: Uint8Array): number {
    if (!isAddress(address)) return -1;
    return this.findDigest(address, 4);
  }

  /** The number of the stored block whose digest is bytes[at, at + 32), or -1. */
  findDigest(bytes: Uint8Array, at: number): number {
    const n = this.digests.find(bytes, at);
    return n === -1 || this.packs[n] === -1 ? -1 : n;
  }

  /** Records where a block is, by the digest at bytes[at, at + 32) (a stored one moves there); returns its number. */
  add(bytes: Uint8Array, at: number, pack: number, offset: number, length: number, checksum = 0): number {
    let n = this.digests.find(bytes, at);
    if (n === -1) {
      n = this.digests.add(bytes, at);
      if (n === this.packs.length) this.grow();
      this.live++;
    } else if (this.packs[n] === -1) {
      this.live++;
    }
    this.move(n, pack, offset, length, checksum);
    return n;
  }

  /** Block n is now at offset of pack; checksum is its CRC-32, 0 where the pack holds none. */
  move(n: number, pack: number, offset: number, length: number, checksum: number): void {
    this.packs[n] = pack;
    this.offsets[n] = offset;
    this.lengths[n] = length;
    this.checksums[n] = checksum;
  }

  /** Block n is no longer stored. */
  remove(n: number): void {
    if (this.packs[n] === -1) return;
    this.packs[n] = -1;
    this.live--;
  }

  pack(n: number): number {
    return this.packs[n];
  }

  offset(n: number): number {
    return this.offsets[n];
  }

  length(n: number): number {
    return this.lengths[n];
  }

  /** Block n's CRC-32, as its pack's index holds it (meaningless for a pack without them). */
  checksum(n: number): number {
    return this.checksums[n];
  }

  /** Block n's address, a copy. */
  address(n: number): Uint8Array {
    const address = new Uint8Array(36);
    address.set(ADDRESS_PREFIX, 0);
    address.set(this.digests.digest(n), 4);
    return address;
  }

  /** The numbers of every stored block. */
  *stored(): Generator<number> {
    for (let n = 0; n < this.digests.size; n++) if (this.packs[n] !== -1) yield n;
  }

  private grow(): void {
    const size = this.packs.length * 2;
    const packs = new Int32Array(size);
    packs.set(this.packs);
    this.packs = packs;
    const offsets = new Float64Array(size);
    offsets.set(this.offsets);
    this.offsets = offsets;
    const lengths = new Uint32Array(size);
    lengths.set(this.lengths);
    this.lengths = lengths;
    const checksums = new Uint32Array(size);
    checksums.set(this.checksums);
    this.checksums = checksums;
  }
}
