import { equalBytes } from "./hash.js";

/**
 * Block addresses told apart, each distinct one given a slot (its index in unique) the first time it
 * is seen. The CAS's GetMany reads each distinct block once however often it is asked for, and the log
 * reader fetches it once however many pairs of a page name it: a page may repeat one address 14,000
 * times, and each copy fetched and held was a whole block.
 *
 * They are told apart by a number made from their digest (digestBits), and only addresses that share it
 * with another by their bytes: a string key per address was a tenth of the GetMany handler.
 */
export class DistinctAddresses {
  /** The distinct addresses, in the order first seen; an address's slot is its index here. */
  readonly unique: Uint8Array[] = [];
  private readonly byBits = new Map<number, number>();
  private byBytes: Map<string, number> | undefined;

  /** The slot of address, a new one when it was not seen before. */
  slotOf(address: Uint8Array): number {
    const bits = digestBits(address);
    let slot = this.byBits.get(bits);
    if (slot === undefined) {
      slot = this.unique.push(address) - 1;
      this.byBits.set(bits, slot);
    } else if (!equalBytes(this.unique[slot], address)) {
      this.byBytes ??= new Map();
      // Latin-1 text of the bytes, one character a byte: a key made the same in Node and in a browser.
      const key = String.fromCharCode.apply(null, address as unknown as number[]);
      slot = this.byBytes.get(key);
      if (slot === undefined) {
        slot = this.unique.push(address) - 1;
        this.byBytes.set(key, slot);
      }
    }
    return slot;
  }
}

/** Multipliers of digestBits, odd, drawn once a process. */
const DIGEST_MIX = crypto.getRandomValues(new Uint32Array(2)).map((word) => word | 1);

/**
 * 30 bits made from the first 8 bytes of an address's digest (bytes 4 to 11; the first four are the
 * same for every address) by a multiply-shift hash with multipliers drawn at random: a cheap key that
 * tells almost all distinct addresses apart. The addresses come from a stranger (a GetMany's caller, a
 * page's writer), who can pick any bytes, and V8 hashes a small integer key without a secret: fixed
 * digest bits as the key would let them line 16,384 addresses up in one of the Map's buckets and make
 * each lookup linear. Addresses that share the 8 bytes share the key, and go to the string-keyed map,
 * whose hash V8 seeds.
 */
function digestBits(address: Uint8Array): number {
  const first = address[4] | (address[5] << 8) | (address[6] << 16) | (address[7] << 24);
  const second = address[8] | (address[9] << 8) | (address[10] << 16) | (address[11] << 24);
  return (Math.imul(first ^ Math.imul(second, DIGEST_MIX[1]), DIGEST_MIX[0]) >>> 2) >>> 0;
}
