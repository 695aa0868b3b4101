import { describe, expect, it } from "vitest";
import { addressOf, addressText, cidOf, decodeMessage, encodeMessage, messageId, newMessage, parseAddress, parseAddressText, toHex } from "../../core/hash.js";
import { isRemoteLogError } from "../../core/errors.js";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";

const utf8 = (text: string) => new TextEncoder().encode(text);

describe("hash - H1 message id", () => {
  // Expected values computed independently with Python's hashlib over the reference layout
  // "MESSAGE_ID" || group_id || LE64(timestamp) || body.
  it("matches the reference layout", () => {
    expect(toHex(messageId(newMessage(utf8("group"), 1700000000n, utf8("hello"))))).toBe("1747c770d69647a18734abc6f05677cce231dd8c4d09b780a1afbe5d60a6220d");
  });
  it("hashes the empty message", () => {
    expect(toHex(messageId(decodeMessage(new Uint8Array(0))))).toBe("ea927f66de2b09b16b8be8a4abdd1f4c4485515ebe6e639881a8652c32b1072d");
  });
  it("writes negative timestamps as two's complement and binary group ids raw", () => {
    expect(toHex(messageId(newMessage(new Uint8Array([0, 1, 2]), -1n, new Uint8Array([0xff]))))).toBe("9ff0c6d85b4c256c127bd3f59b4a9114fde0e6b77b6142588ddb84b0fc37bc44");
  });
  it("ignores metadata", () => {
    const plain = newMessage(utf8("g"), 5n, utf8("b"));
    const withMeta = decodeMessage(encodeMessage(plain));
    withMeta.metadata = { $typeName: "vac.mvds.Metadata", parents: [new Uint8Array(32)], ephemeral: true };
    expect(toHex(messageId(withMeta))).toBe(toHex(messageId(plain)));
  });
});

describe("hash - H2 address", () => {
  it("is the CID ipfs block put --cid-codec raw gives", () => {
    expect(addressText(addressOf(utf8("hello")))).toBe("bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq");
  });
  it("lays out the same bytes and text as multiformats, for many inputs", () => {
    for (let n = 0; n < 300; n++) {
      const bytes = new Uint8Array(n).map((_, i) => (i * 31 + n) & 255);
      expect(addressOf(bytes)).toEqual(cidOf(bytes).bytes);
      expect(addressText(addressOf(bytes))).toBe(cidOf(bytes).toString());
    }
    const other = CID.createV1(0x70, Digest.create(0x12, new Uint8Array(32).fill(7)));
    expect(addressText(other.bytes)).toBe(other.toString());
  });

  it("round-trips through binary and text", () => {
    const address = addressOf(utf8("x"));
    expect(parseAddress(address).toString()).toBe(addressText(address));
    expect(parseAddressText(addressText(address)).bytes).toEqual(address);
  });
  it.each([
    ["empty", new Uint8Array(0)],
    ["random bytes", new Uint8Array([1, 2, 3, 4, 5])],
    ["CIDv0", CID.parse("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n").bytes],
    ["dag-pb CIDv1", CID.createV1(0x70, Digest.create(0x12, new Uint8Array(32))).bytes],
    ["sha2-512 CIDv1", CID.createV1(0x55, Digest.create(0x13, new Uint8Array(64))).bytes],
  ])("refuses %s as INVALID_ARGUMENT", (_, bytes) => {
    expect(() => parseAddress(bytes)).toThrowError(/INVALID_ARGUMENT/);
    try {
      parseAddress(bytes);
    } catch (err) {
      expect(isRemoteLogError(err, "INVALID_ARGUMENT")).toBe(true);
    }
  });
});
