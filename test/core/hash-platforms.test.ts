import { describe, expect, it } from "vitest";
import * as browser from "../../core/hash-browser.js";
import * as node from "../../core/hash-node.js";
import { seededRandom } from "../helpers/processes.js";

// package.json "imports" #hash gives core/hash.ts node:crypto on Node and @noble/hashes in a browser;
// both must give the same bytes for every input, or an address computed in a page would differ.

// The same interface, checked by the compiler: a function missing or retyped in one fails here.
const asNode: typeof node = browser;
const asBrowser: typeof browser = node;

describe("#hash: the Node and browser byte primitives agree", () => {
  const random = seededRandom(14);
  // Around SHA-256's 64-byte blocks and its 55/56-byte padding edge, then larger.
  const lengths = [0, 1, 31, 32, 55, 56, 63, 64, 65, 119, 120, 1000, 65_537, 1 << 20];
  const inputs = lengths.map((length) => Uint8Array.from({ length }, () => Math.floor(random() * 256)));

  it("SHA-256 of every input, whole, written into a buffer and compared where it lies", () => {
    for (const bytes of inputs) {
      const digest = node.sha256(bytes);
      expect(digest).toHaveLength(32);
      expect(asNode.sha256(bytes)).toEqual(digest);
      const [a, b] = [new Uint8Array(40).fill(7), new Uint8Array(40).fill(7)];
      node.sha256Into(bytes, a, 4);
      asNode.sha256Into(bytes, b, 4);
      expect(b).toEqual(a);
      expect(a.subarray(4, 36)).toEqual(digest);
      for (const impl of [node, browser]) {
        expect(impl.sha256Matches(bytes, a, 4)).toBe(true);
        const wrong = a.slice();
        wrong[35] ^= 1;
        expect(impl.sha256Matches(bytes, wrong, 4)).toBe(false);
      }
    }
    // A known answer, so that agreeing is not agreeing on a wrong digest: SHA-256("abc").
    expect(node.toHex(browser.sha256(new TextEncoder().encode("abc")))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  it("hex both ways, and byte equality", () => {
    for (const bytes of inputs.slice(0, 10)) {
      const text = node.toHex(bytes);
      expect(asBrowser.toHex(bytes)).toBe(text);
      expect(browser.hexDigitsToBytes(text)).toEqual(node.hexDigitsToBytes(text));
      expect(browser.hexDigitsToBytes(text.toUpperCase())).toEqual(bytes);
      expect(browser.equalBytes(bytes, bytes.slice())).toBe(true);
      if (bytes.length > 0) {
        const other = bytes.slice();
        other[other.length - 1] ^= 0x80;
        expect([node.equalBytes(bytes, other), browser.equalBytes(bytes, other)]).toEqual([false, false]);
      }
    }
    expect(browser.equalBytes(new Uint8Array(2), new Uint8Array(3))).toBe(false);
  });
});
