import { describe, expect, it } from "vitest";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import { deliveryJson, deliveryLine, deliveryLines } from "../../cli/format.js";
import { addressOf, encodeMessage, messageId, newMessage } from "../../core/hash.js";

describe("cli - JSONL delivery lines", () => {
  it.each([
    ["a UTF-8 group", new TextEncoder().encode('chat "room" \\ ü\n')],
    ["a binary group", new Uint8Array([0xff, 0x00, 0xfe])],
    ["an empty group", new Uint8Array(0)],
  ])("the fast line equals JSON.stringify of the object, for %s", (_, groupId) => {
    for (const timestamp of [0n, -5n, 1_700_000_000n]) {
      const message = newMessage(groupId, timestamp, new Uint8Array([1, 2, 3, 250]));
      const id = messageId(message);
      const address = addressOf(encodeMessage(message));
      const line = deliveryLine(42, id, address, message);
      expect(line).toBe(`${JSON.stringify(deliveryJson(42, id, address, message))}\n`);
      expect(JSON.parse(line)).toMatchObject({ seq: 42, timestamp: Number(timestamp) });
    }
  });

  it.each(["n0", 'a "quoted" name \\ ü', "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"])("with a name, the name is the first key, and the line still equals JSON.stringify: %s", (name) => {
    const message = newMessage(new TextEncoder().encode("g"), 7n, new Uint8Array([9]));
    const id = messageId(message);
    const address = addressOf(encodeMessage(message));
    const line = deliveryLine(3, id, address, message, name);
    expect(line).toBe(`${JSON.stringify(deliveryJson(3, id, address, message, name))}\n`);
    expect(Object.keys(JSON.parse(line))).toEqual(["name", "seq", "id", "group", "timestamp", "body", "address"]);
    expect(JSON.parse(line).name).toBe(name);
  });
});

describe("cli - JSONL delivery lines in one buffer", () => {
  const text = (value: string) => new TextEncoder().encode(value);
  const odd = [
    text("plain"),
    text(""),
    text('a "quote"'),
    text("back\\slash"),
    text("tab\tand\nnewline"),
    text("\u007f del, ü, €, 😀"),
    text("\ufeffleading BOM"),
    new Uint8Array([0xff, 0x00, 0xfe]),
    new Uint8Array([0xed, 0xa0, 0x80]), // an encoded surrogate: not UTF-8
    new Uint8Array([0xc0, 0xaf]), // overlong
    new Uint8Array(300).fill(0x41),
  ];

  it("equals deliveryLine of each delivery, back to back, for text, binary and escaped bodies and groups, tombstones and names", () => {
    const batch: { seq: number; id: Uint8Array; address: Uint8Array; message?: ReturnType<typeof newMessage> }[] = [];
    let seq = 0;
    for (const groupId of odd) {
      for (const body of odd) {
        const message = newMessage(groupId, BigInt(seq * 1_000_003 - 5), body);
        batch.push({ seq: seq++, id: messageId(message), address: addressOf(encodeMessage(message)), message });
      }
    }
    batch.push({ seq: seq++, id: new Uint8Array(32).fill(7), address: new Uint8Array(0) });
    // An address of another kind of CID goes the generic way.
    const message = newMessage(text("g"), 1n, text("b"));
    batch.push({ seq: seq++, id: messageId(message), address: CID.create(1, 0x71, sha256.digest(encodeMessage(message)) as never).bytes, message });
    for (const name of [undefined, 'a "quoted" name \\ ü']) {
      const expected = batch.map((d) => deliveryLine(d.seq, d.id, d.address, d.message, name)).join("");
      expect(deliveryLines(batch, name).toString("utf8")).toBe(expected);
      expect(Buffer.compare(deliveryLines(batch, name), Buffer.from(expected, "utf8"))).toBe(0);
      expect(deliveryLines([], name).length).toBe(0);
    }
  });

  it("writes seqs and timestamps as JSON does across digit counts, 2^31 and the largest safe integer, and addresses of every byte value", () => {
    const batch: { seq: number; id: Uint8Array; address: Uint8Array; message?: ReturnType<typeof newMessage> }[] = [];
    const numbers = [0, 9, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 7, 999_999_999_999_999, 10 ** 15, Number.MAX_SAFE_INTEGER];
    numbers.forEach((n, k) => {
      const message = newMessage(text("g"), BigInt(n), Uint8Array.from({ length: 40 }, (_, i) => 0x20 + ((i * 7 + k) % 0x5f)));
      // Ids and addresses of varied bytes, every value from 0 to 255 among them.
      const id = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + k * 101) & 0xff);
      const address = addressOf(encodeMessage(message));
      address.set(Uint8Array.from({ length: 32 }, (_, i) => (i * 8 + k * 29) & 0xff), 4);
      batch.push({ seq: n, id, address, message });
    });
    const expected = batch.map((d) => deliveryLine(d.seq, d.id, d.address, d.message)).join("");
    expect(deliveryLines(batch).toString("utf8")).toBe(expected);
    const lines = expected.trimEnd().split("\n");
    lines.forEach((line, k) => expect(JSON.parse(line)).toEqual(deliveryJson(batch[k].seq, batch[k].id, batch[k].address, batch[k].message)));
  });
});
