import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DigestTable } from "../../core/digest-table.js";

describe("digest table", () => {
  it("numbers digests in the order added, finds each through growth, and finds no other", () => {
    const table = new DigestTable(4);
    const digests = Array.from({ length: 5000 }, () => randomBytes(32));
    digests.forEach((digest, i) => expect(table.add(digest)).toBe(i));
    expect(table.size).toBe(5000);
    digests.forEach((digest, i) => {
      expect(table.find(digest)).toBe(i);
      expect(Buffer.from(table.digest(i)).equals(digest)).toBe(true);
      expect(table.matches(i, digest)).toBe(true);
    });
    expect(table.find(randomBytes(32))).toBe(-1);
    expect(table.find(new Uint8Array(31))).toBe(-1);
  });

  it("digests that share their first bytes (one hash slot) are told apart; a digest is read where it lies", () => {
    const table = new DigestTable();
    const alike = Array.from({ length: 100 }, (_, i) => Buffer.concat([Buffer.from([1, 2, 3, 4]), Buffer.alloc(27), Buffer.from([i])]));
    alike.forEach((digest) => table.add(digest));
    alike.forEach((digest, i) => expect(table.find(digest)).toBe(i));
    const framed = Buffer.concat([Buffer.from("prefix"), alike[42], Buffer.from("suffix")]);
    expect(table.find(framed, 6)).toBe(42);
    expect(table.find(framed, 5)).toBe(-1);
  });

  it("addIfNew adds a digest it lacks (-1), through growth and where it lies, and names the one it holds", () => {
    const table = new DigestTable(4);
    const digests = Array.from({ length: 3000 }, () => randomBytes(32));
    // Framed, as a restore checks ids where they lie in their records; half of them first through add.
    const framed = Buffer.concat(digests.map((digest) => Buffer.concat([Buffer.from("rec"), digest])));
    digests.slice(0, 1500).forEach((digest) => table.add(digest));
    digests.forEach((_, i) => expect(table.addIfNew(framed, 35 * i + 3)).toBe(i < 1500 ? i : -1));
    expect(table.size).toBe(3000);
    digests.forEach((digest, i) => {
      expect(table.find(digest)).toBe(i);
      expect(table.addIfNew(digest)).toBe(i);
      expect(Buffer.from(table.digest(i)).equals(digest)).toBe(true);
    });
    expect(table.size).toBe(3000);
    // Alike in the bytes the slot is drawn from: probed past, told apart.
    const alike = Array.from({ length: 50 }, (_, i) => Buffer.concat([Buffer.alloc(31), Buffer.from([i])]));
    alike.forEach((digest) => expect(table.addIfNew(digest)).toBe(-1));
    alike.forEach((digest, i) => expect(table.addIfNew(digest)).toBe(3000 + i));
    expect(() => table.addIfNew(new Uint8Array(31))).toThrow(RangeError);
  });

  it("addAllIfNew adds digests back to back, through growth, and names the first it holds (within the batch too)", () => {
    const table = new DigestTable(4);
    const digests = Array.from({ length: 3000 }, () => randomBytes(32));
    expect(table.addAllIfNew(Buffer.concat(digests.slice(0, 1000)))).toBe(-1);
    expect(table.addAllIfNew(new Uint8Array(0))).toBe(-1);
    expect(table.addAllIfNew(Buffer.concat(digests.slice(1000)))).toBe(-1);
    expect(table.size).toBe(3000);
    digests.forEach((digest, i) => expect(table.find(digest)).toBe(i));
    // One held already: those before it are added, it and the rest are not.
    const fresh = Array.from({ length: 10 }, () => randomBytes(32));
    expect(table.addAllIfNew(Buffer.concat([...fresh.slice(0, 4), digests[7], ...fresh.slice(4)]))).toBe(4);
    expect(table.size).toBe(3004);
    fresh.forEach((digest, i) => expect(table.find(digest)).toBe(i < 4 ? 3000 + i : -1));
    // Twice in one batch: the second is named.
    const again = randomBytes(32);
    expect(table.addAllIfNew(Buffer.concat([randomBytes(32), again, randomBytes(32), again]))).toBe(3);
    expect(table.find(again)).toBe(3005);
    // Alike in the bytes the slot is drawn from: probed past, told apart.
    const alike = Array.from({ length: 50 }, (_, i) => Buffer.concat([Buffer.alloc(31), Buffer.from([i])]));
    expect(table.addAllIfNew(Buffer.concat(alike))).toBe(-1);
    alike.forEach((digest) => expect(table.find(digest)).not.toBe(-1));
    expect(() => table.addAllIfNew(new Uint8Array(33))).toThrow(RangeError);
  });

  it("forgets the digests past a count, finds the rest, and numbers the next one after them", () => {
    const table = new DigestTable(4);
    const digests = Array.from({ length: 300 }, () => randomBytes(32));
    digests.forEach((digest) => table.add(digest));
    table.truncate(120);
    expect(table.size).toBe(120);
    digests.forEach((digest, i) => expect(table.find(digest)).toBe(i < 120 ? i : -1));
    expect(table.add(digests[200])).toBe(120);
    expect(table.find(digests[200])).toBe(120);
  });
});
