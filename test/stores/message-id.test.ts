import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isRemoteLogError } from "../../core/errors.js";
import { decodeMessage, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { MessageSchema, MetadataSchema } from "../../gen/vac/mvds/mvds_pb.js";
import { messageIdKey } from "../../stores/file/message-id.js";

// messageIdKey must agree with the core functions on every input: same id for what decodes, and
// INVALID_ARGUMENT exactly for what does not. A failure prints fast-check's seed and the input.

/** The core's answer: the id as latin1, or "invalid". */
function reference(bytes: Uint8Array): string {
  try {
    return Buffer.from(messageId(decodeMessage(bytes))).toString("latin1");
  } catch (err) {
    if (isRemoteLogError(err, "INVALID_ARGUMENT")) return "invalid";
    throw err;
  }
}

function ours(bytes: Uint8Array): string {
  try {
    return messageIdKey(bytes);
  } catch (err) {
    if (isRemoteLogError(err, "INVALID_ARGUMENT")) return "invalid";
    throw err;
  }
}

const int64 = fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n);
const messages = fc
  .record({
    groupId: fc.uint8Array({ maxLength: 40 }),
    timestamp: fc.oneof(int64, fc.constantFrom(0n, 1n, -1n, 2n ** 31n, 2n ** 32n, -(2n ** 63n), 2n ** 63n - 1n, 1_700_000_000n)),
    body: fc.uint8Array({ maxLength: 300 }),
    metadata: fc.option(fc.record({ parents: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 }), ephemeral: fc.boolean() })),
  })
  .map(({ groupId, timestamp, body, metadata }) =>
    toBinary(MessageSchema, create(MessageSchema, { groupId, timestamp, body, metadata: metadata ? create(MetadataSchema, metadata) : undefined })),
  );

describe("message id - fast path agrees with core/hash.ts", () => {
  it("gives the core's id for every encoded message", () => {
    fc.assert(
      fc.property(messages, (bytes) => {
        expect(ours(bytes)).toBe(reference(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it("gives the core's answer for messages with bytes changed, cut or appended", () => {
    fc.assert(
      fc.property(messages, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.uint8Array({ maxLength: 12 }), (bytes, changes, cut, tail) => {
        const changed = Uint8Array.from(bytes);
        for (const [at, value] of changes) if (changed.length > 0) changed[at % changed.length] = value;
        const variants = [changed, changed.subarray(0, cut % (changed.length + 1)), Uint8Array.from([...changed, ...tail])];
        for (const variant of variants) expect(ours(variant)).toBe(reference(variant));
      }),
      { numRuns: 2000 },
    );
  });

  it("gives the core's answer for random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(ours(bytes)).toBe(reference(bytes));
      }),
      { numRuns: 5000 },
    );
  });

  it("gives the core's answer for layouts only the slow path takes: repeats, unknown fields, long varints", () => {
    const plain = encodeMessage(newMessage(Uint8Array.of(1, 2), 42n, Uint8Array.of(3)));
    const cases = [
      Uint8Array.from([...plain, ...plain]), // every field twice: the last wins
      Uint8Array.from([...plain, 0x28, 0x01]), // unknown field 5
      Uint8Array.of(0x10, 0xaa, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f), // tenth varint byte beyond bit 63
      Uint8Array.of(0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), // eleven bytes
      Uint8Array.of(0x8a, 0x00, 0x01, 0x05), // field 1's tag as a two-byte varint
      Uint8Array.of(0x22, 0x02, 0x18, 0x01), // Metadata with an unknown field
      Uint8Array.of(0x22, 0x00, 0x22, 0x02, 0x10, 0x01), // Metadata twice: merged
      new Uint8Array(0),
    ];
    for (const bytes of cases) expect(ours(bytes)).toBe(reference(bytes));
  });

  it("names the message in its error", () => {
    expect(() => messageIdKey(Uint8Array.of(0xff), "message 7")).toThrow(/INVALID_ARGUMENT: message 7/);
  });
});
