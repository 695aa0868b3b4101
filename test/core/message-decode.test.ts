import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isRemoteLogError } from "../../core/errors.js";
import { addressOf, decodeMessage, encodeMessage, encodeMessages, messageId, newMessage } from "../../core/hash.js";
import { MessageSchema, MetadataSchema } from "../../gen/vac/mvds/mvds_pb.js";
import { decodeCommonMessage, decodeCommonPage } from "../../core/message-decode.js";
import { decodePage, decodePageLinks, planPages, type LogEntry } from "../../core/page.js";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";

// decodeMessage's direct reader must agree with protobuf-es on every input: the same message and id
// for what decodes, and INVALID_ARGUMENT exactly for what does not. A failure prints fast-check's seed.

function describeMessage(bytes: Uint8Array, decode: (bytes: Uint8Array) => ReturnType<typeof decodeMessage>): string {
  try {
    const m = decode(bytes);
    const parents = m.metadata?.parents.map((p) => Buffer.from(p).toString("hex")).join(",") ?? "-";
    return [Buffer.from(m.groupId).toString("hex"), m.timestamp, Buffer.from(m.body).toString("hex"), parents, m.metadata?.ephemeral ?? "-", Buffer.from(messageId(m)).toString("hex")].join("|");
  } catch (err) {
    if (isRemoteLogError(err, "INVALID_ARGUMENT") || !isRemoteLogError(err)) return "invalid";
    throw err;
  }
}

/** protobuf-es alone: the reference. */
function reference(bytes: Uint8Array): string {
  return describeMessage(bytes, (b) => fromBinary(MessageSchema, b));
}

/** What the project uses: the direct reader, falling back to protobuf-es. */
function ours(bytes: Uint8Array): string {
  return describeMessage(bytes, (b) => decodeMessage(b));
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

describe("message decode - the direct reader agrees with protobuf-es", () => {
  it("reads our own messages directly, without the fallback", () => {
    expect(decodeCommonMessage(encodeMessage(newMessage(Uint8Array.of(1), -3n, Uint8Array.of(2))))).toMatchObject({ timestamp: -3n, body: Uint8Array.of(2) });
  });

  it("gives protobuf-es's message and id for every encoded message", () => {
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
    expect(() => decodeMessage(Uint8Array.of(0xff), "message 7")).toThrow(/INVALID_ARGUMENT: message 7/);
  });
});

describe("message encode - the direct writer agrees with protobuf-es", () => {
  const fields = fc.record({
    groupId: fc.uint8Array({ maxLength: 200 }),
    timestamp: fc.oneof(int64, fc.constantFrom(0n, 1n, -1n, 127n, 128n, 2n ** 28n - 1n, 2n ** 28n, 2n ** 31n, 2n ** 32n, 2n ** 35n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 56n, -(2n ** 63n), 2n ** 63n - 1n, 1_700_000_000n)),
    body: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(new Uint8Array(127), new Uint8Array(128), new Uint8Array(16_384), new Uint8Array(70_000))),
  });

  it("writes the bytes toBinary writes, for every group, timestamp and body", () => {
    fc.assert(
      fc.property(fields, ({ groupId, timestamp, body }) => {
        const message = newMessage(groupId, timestamp, body);
        expect(Buffer.from(encodeMessage(message)).toString("hex")).toBe(Buffer.from(toBinary(MessageSchema, message)).toString("hex"));
      }),
      { numRuns: 2000 },
    );
  });

  it("encodeMessages writes each message's toBinary bytes into one buffer, metadata and unknown fields included", () => {
    const withMetadata = create(MessageSchema, { groupId: Uint8Array.of(1), timestamp: 5n, body: Uint8Array.of(2), metadata: create(MetadataSchema, { ephemeral: true, parents: [Uint8Array.of(3)] }) });
    fc.assert(
      fc.property(fc.array(fields, { maxLength: 20 }), fc.nat(20), (list, at) => {
        const messages = list.map(({ groupId, timestamp, body }) => newMessage(groupId, timestamp, body));
        messages.splice(Math.min(at, messages.length), 0, withMetadata);
        const encoded = encodeMessages(messages);
        expect(encoded.map((bytes) => Buffer.from(bytes).toString("hex"))).toEqual(messages.map((message) => Buffer.from(toBinary(MessageSchema, message)).toString("hex")));
      }),
      { numRuns: 300 },
    );
  });

  it("makes the message create(MessageSchema) makes", () => {
    const [groupId, body] = [Uint8Array.of(1, 2), Uint8Array.of(3)];
    const made = newMessage(groupId, 7n, body);
    const reference = create(MessageSchema, { groupId, timestamp: 7n, body });
    expect(Object.keys(made).sort()).toEqual(Object.keys(reference).sort());
    expect(made).toStrictEqual({ ...reference });
    expect(encodeMessage(made)).toEqual(toBinary(MessageSchema, reference));
  });

  it("leaves messages with metadata or unknown fields to protobuf-es", () => {
    const withMetadata = create(MessageSchema, { groupId: Uint8Array.of(1), timestamp: 5n, body: Uint8Array.of(2), metadata: create(MetadataSchema, { ephemeral: true, parents: [Uint8Array.of(3)] }) });
    expect(encodeMessage(withMetadata)).toEqual(toBinary(MessageSchema, withMetadata));
    const withUnknown = newMessage(Uint8Array.of(1), 5n, Uint8Array.of(2));
    withUnknown.$unknown = [{ no: 9, wireType: 0, data: Uint8Array.of(1) }];
    expect(encodeMessage(withUnknown)).toEqual(toBinary(MessageSchema, withUnknown));
    expect(encodeMessage(withUnknown).length).toBe(toBinary(MessageSchema, newMessage(Uint8Array.of(1), 5n, Uint8Array.of(2))).length + 2);
  });
});

describe("page decode - the direct reader agrees with protobuf-es", () => {
  function pageOf(bytes: Uint8Array): string {
    try {
      const page = decodePage(bytes, "p");
      return JSON.stringify([page.pair.map((p) => [p.remoteHash, p.localHash, p.data].map((b) => Buffer.from(b).toString("hex"))), Buffer.from(page.tail).toString("hex")]);
    } catch {
      return "invalid";
    }
  }
  function referencePage(bytes: Uint8Array): string {
    try {
      const page = fromBinary(RemoteLogSchema, bytes);
      // decodePage also checks addresses and ids; so must the reference.
      return pageOf(toBinary(RemoteLogSchema, page));
    } catch {
      return "invalid";
    }
  }
  const pages = fc
    .record({
      pair: fc.array(
        fc.record({
          remoteHash: fc.oneof(fc.constant(addressOf(Uint8Array.of(1))), fc.uint8Array({ maxLength: 40 })),
          localHash: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 33 })),
          data: fc.uint8Array({ maxLength: 50 }),
        }),
        { maxLength: 5 },
      ),
      tail: fc.oneof(fc.constant(new Uint8Array(0)), fc.constant(addressOf(Uint8Array.of(2))), fc.uint8Array({ maxLength: 40 })),
    })
    .map((page) => toBinary(RemoteLogSchema, create(RemoteLogSchema, page)));

  it("gives protobuf-es's page for generated, altered and random bytes", () => {
    expect(decodeCommonPage(toBinary(RemoteLogSchema, create(RemoteLogSchema, { tail: addressOf(Uint8Array.of(2)) })))).toBeDefined();
    fc.assert(
      fc.property(pages, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat(), (bytes, changes, cut) => {
        const changed = Uint8Array.from(bytes);
        for (const [at, value] of changes) if (changed.length > 0) changed[at % changed.length] = value;
        for (const variant of [bytes, changed, changed.subarray(0, cut % (changed.length + 1))]) expect(pageOf(variant)).toBe(referencePage(variant));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        expect(pageOf(bytes)).toBe(referencePage(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("page links - decodePageLinks keeps what decodePage keeps, and fails where it fails", () => {
  // What a collection keeps of a page it does not hold: the tail and info, after every check of
  // decodePage, without the pairs. The same answer, or the same error, for every input.
  function linksOf(decode: () => { tail: Uint8Array; info?: unknown }): string {
    try {
      const { tail, info } = decode();
      return JSON.stringify([Buffer.from(tail).toString("hex"), info], (_, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v));
    } catch (err) {
      return `error: ${(err as Error).message}`;
    }
  }
  const entries: LogEntry[] = Array.from({ length: 40 }, (_, i) => {
    const message = newMessage(new TextEncoder().encode("g"), BigInt(i), new TextEncoder().encode(`m${i}`));
    const data = encodeMessage(message);
    return { id: messageId(message), address: addressOf(data), data };
  });
  // Indexed pages of 1 to 6 pairs, embedded or not, as senders write them.
  const sealed = [1, 3, 6].flatMap((size) => (["none", "all"] as const).flatMap((embed) => planPages(entries, new Uint8Array(0), size, embed).sealed.map((page) => page.bytes)));

  it("on pages senders write, and on them changed, cut or extended", () => {
    for (const bytes of sealed) {
      const links = decodePageLinks(bytes, "p");
      expect(links.info).toBeDefined();
      expect(linksOf(() => links)).toBe(linksOf(() => decodePage(bytes, "p")));
    }
    fc.assert(
      fc.property(fc.constantFrom(...sealed), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.nat(), fc.uint8Array({ maxLength: 8 }), (bytes, changes, cut, extra) => {
        const changed = Uint8Array.from(bytes);
        for (const [at, value] of changes) changed[at % changed.length] = value;
        const variants = [changed, changed.subarray(0, cut % (changed.length + 1)), Uint8Array.from([...bytes, ...extra])];
        for (const variant of variants) expect(linksOf(() => decodePageLinks(variant, "p"))).toBe(linksOf(() => decodePage(variant, "p")));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        expect(linksOf(() => decodePageLinks(bytes, "p"))).toBe(linksOf(() => decodePage(bytes, "p")));
      }),
      { numRuns: 2000 },
    );
  });
});
