import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { constants as zlibConstants, deflateRawSync, inflateRawSync } from "node:zlib";
import { Compression, PackBodySchema, PackSchema } from "../../gen/remotelog/v1/pack_pb.js";
import { checkMessages, decodeBackupHead, decodePack, decodePackRun, deflateBody, encodeBackupHead, encodePack, looksLikePack, PACK_TYPE, readPackBody, splitIntoPacks } from "../../backup/pack-format.js";
import { encodeRecords, idOf, LogFileWriter } from "../../backup/log-file.js";
import { addressOf, decodeMessage, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { encodePage, encodeRepeatedBytes } from "../../core/page.js";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { failure, TempDirs } from "../stores/temp.js";
import { afterEach } from "vitest";

const group = new TextEncoder().encode("g");
const text = (i: number) => encodeMessage(newMessage(group, BigInt(i), new TextEncoder().encode(randomBytes(192).toString("base64"))));
const random = (i: number) => encodeMessage(newMessage(group, BigInt(i), randomBytes(256)));
const header = (messages: Uint8Array[], firstSeq = 0, previous: Uint8Array = new Uint8Array(0)) => ({
  logName: "log",
  firstSeq,
  lastSeq: firstSeq + messages.length - 1,
  count: messages.length,
  previous,
  lastId: messageId(newMessage(group, BigInt(firstSeq + messages.length - 1), new Uint8Array(0))),
});

const dirs = new TempDirs();
afterEach(() => dirs.removeAll());

describe("pack format - encode and decode", () => {
  it("round-trips packs, deflating text bodies and leaving random ones as they are", async () => {
    for (const [make, deflates] of [[text, true], [random, false]] as const) {
      const messages = Array.from({ length: 500 }, (_, i) => make(i));
      const deflated = await deflateBody(messages);
      expect(deflated !== undefined).toBe(deflates);
      const pack = encodePack({ ...header(messages), lastId: messageId(newMessage(group, 499n, new Uint8Array(0))) }, messages, deflated);
      const read = decodePack(pack.bytes, pack.address);
      expect(read.messages.map((m) => Buffer.from(m).toString("hex"))).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
      expect(looksLikePack(pack.bytes)).toBe(true);
      if (deflates) expect(pack.bytes.length).toBeLessThan(messages.reduce((n, m) => n + m.length, 0) * 0.85);
      // Deterministic: the same messages give the same CID.
      expect(encodePack({ ...header(messages), lastId: read.lastId }, messages, await deflateBody(messages)).address).toEqual(pack.address);
    }
  });

  it("refuses a pack that lies about itself, naming it", () => {
    const messages = [random(0), random(1)];
    const encode = (fields: Record<string, unknown>) => {
      const bytes = toBinary(PackSchema, create(PackSchema, { type: PACK_TYPE, version: 1, logName: "l", firstSeq: 0n, lastSeq: 1n, count: 2n, lastId: new Uint8Array(32), messages, ...fields }));
      return () => decodePack(bytes, addressOf(bytes));
    };
    expect(encode({})).not.toThrow();
    expect(encode({ type: 1n })).toThrow(/DATA_LOSS: .* type 0x1 is not a pack's/);
    expect(encode({ version: 2 })).toThrow(/format version 2/);
    expect(encode({ count: 3n })).toThrow(/header says 3 messages, body has 2/);
    expect(encode({ lastSeq: 5n })).toThrow(/seqs 0..5 do not hold 2 messages/);
    expect(encode({ firstSeq: 4n, lastSeq: 5n })).toThrow(/starts at seq 4 but links to no previous pack/);
    expect(encode({ previous: addressOf(messages[0]) })).toThrow(/first pack of a chain links to a previous one/);
    const good = encodePack(header(messages), messages);
    expect(() => decodePack(good.bytes, addressOf(messages[0]))).toThrow(/does not hash to its address/);
    const page = encodePage(create(RemoteLogSchema, { pair: [] , tail: addressOf(messages[0]) }));
    expect(() => decodePack(page, addressOf(page))).toThrow(/not a backup pack/);
    // checkMessages recomputes the ids: a header's last_id that is not the last message's is caught.
    expect(() => checkMessages(decodePack(good.bytes, good.address))).toThrow(/header says/);
  });

  it("splits messages into packs under the size limit, and tells backup heads from pages", () => {
    const messages = Array.from({ length: 100 }, (_, i) => random(i));
    const runs = splitIntoPacks(messages, 4096, "log");
    expect(runs.flat()).toEqual(messages.map((_, i) => i));
    for (const run of runs) expect(encodePack(header(run.map((i) => messages[i])), run.map((i) => messages[i])).bytes.length).toBeLessThanOrEqual(4096);
    const head = encodeBackupHead({ pack: addressOf(messages[0]), logName: "log", lastSeq: 9n });
    expect(decodeBackupHead(head)?.lastSeq).toBe(9n);
    expect(decodeBackupHead(encodePage(create(RemoteLogSchema, { pair: [] , tail: addressOf(messages[0]) })))).toBeUndefined();
  });
});

describe("log file - restore's writer", () => {
  it("writes a log that FileLocalLog reads back, and refuses an id twice", async () => {
    const dir = await dirs.make();
    const writer = await LogFileWriter.create(dir);
    const messages = Array.from({ length: 3000 }, (_, i) => random(i));
    await writer.append(messages.slice(0, 1000));
    await writer.append(messages.slice(1000));
    await failure(writer.append([random(5000), messages[17]]), "CONFLICT");
    const last = random(6000);
    await writer.append([last]);
    await writer.close();
    await expectLogHolds(dir, [...messages, last]);
  });

  it("syncs as it writes, and reads back the same after the syncs at close", async () => {
    const dir = await dirs.make();
    // A sync started after every ~30 records: many run while later writes go on.
    const writer = await LogFileWriter.create(dir, 0, 10_000);
    const messages = Array.from({ length: 3000 }, (_, i) => random(i));
    for (let from = 0; from < messages.length; from += 100) await writer.append(messages.slice(from, from + 100));
    await writer.close();
    await expectLogHolds(dir, messages);
  });
});

/** The log in dir, read through FileLocalLog, holds exactly messages, with nothing to recover. */
async function expectLogHolds(dir: string, messages: Uint8Array[]): Promise<void> {
  const log = await FileLocalLog.open(dir);
  expect(log.recovered).toBeUndefined();
  expect(log.length).toBe(messages.length);
  const entries = await log.read(0, messages.length);
  expect(entries.every((entry, i) => Buffer.compare(entry.data, messages[i]) === 0)).toBe(true);
  await log.close();
}

describe("pack format - restore's readers and writers", () => {
  it("writes the bytes protobuf-es writes, plain and deflated", async () => {
    const messages = Array.from({ length: 300 }, (_, i) => (i % 2 ? text(i) : random(i)));
    const logHead = { page: addressOf(messages[0]), sequence: 7n };
    const fields = { type: PACK_TYPE, version: 1, logName: "log", firstSeq: 5n, lastSeq: 304n, count: 300n, previous: addressOf(messages[1]), logHead, lastId: new Uint8Array(32).fill(3) };
    const plain = encodePack({ ...header(messages, 5, addressOf(messages[1])), logHead, lastId: fields.lastId }, messages);
    expect(Buffer.compare(plain.bytes, toBinary(PackSchema, create(PackSchema, { ...fields, messages })))).toBe(0);
    const texts = messages.filter((_, i) => i % 2);
    const deflated = (await deflateBody(texts))!;
    expect(deflated).toBeDefined();
    expect(Buffer.compare(inflateRawSync(deflated), toBinary(PackBodySchema, create(PackBodySchema, { messages: texts })))).toBe(0);
    expect(Buffer.compare(encodeRepeatedBytes(1, []), new Uint8Array(0))).toBe(0);
  });

  it("reads a body where its messages lie, the messages decodePack reads, and judges an odd body as protobuf-es does", async () => {
    const messages = Array.from({ length: 200 }, (_, i) => text(i));
    for (const body of [undefined, await deflateBody(messages)]) {
      const pack = encodePack(header(messages), messages, body);
      const run = decodePackRun(pack.bytes, pack.address);
      const spans = Array.from({ length: run.body.spans.length / 2 }, (_, i) => run.body.bytes.subarray(run.body.spans[2 * i], run.body.spans[2 * i + 1]));
      expect(spans.map((m) => Buffer.from(m).toString("hex"))).toEqual(decodePack(pack.bytes, pack.address).messages.map((m) => Buffer.from(m).toString("hex")));
      expect(() => decodePackRun(pack.bytes, addressOf(messages[0]))).toThrow(/does not hash to its address/);
    }
    // Unknown fields in a PackBody (not the layout a writer makes) are skipped, as protobuf-es skips them.
    const withUnknown = Buffer.concat([Uint8Array.of(0x1d, 1, 2, 3, 4), toBinary(PackBodySchema, create(PackBodySchema, { messages })), Uint8Array.of(0x10, 0x81, 0x01, 0x22, 0x01, 0x00, 0x19, 1, 2, 3, 4, 5, 6, 7, 8)]);
    expect(readPackBody(withUnknown)!.spans.length).toBe(2 * messages.length);
    const odd = encodePackWithBody(messages.length, deflateRawSync(withUnknown));
    expect(decodePackRun(odd.bytes, odd.address).body.spans.length).toBe(2 * messages.length);
    expect(decodePack(odd.bytes, odd.address).messages.map((m) => Buffer.from(m).toString("hex"))).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
    // The messages' field with another wire type, and a group, are not a PackBody.
    for (const bad of [Uint8Array.of(0x08, 0x01), Uint8Array.of(0x0b, 0x0c)]) expect(readPackBody(bad)).toBeUndefined();
    // A body that lies about its length, or is not a PackBody: DATA_LOSS naming the pack, as decodePack.
    for (const bad of [Uint8Array.of(0x0a, 0x05, 0x01), Uint8Array.of(0x0b, 0x01)]) {
      expect(readPackBody(bad)).toBeUndefined();
      const pack = encodePackWithBody(1, deflateRawSync(bad));
      expect(() => decodePackRun(pack.bytes, pack.address)).toThrow(/DATA_LOSS: pack .* is malformed: its deflated body does not inflate to a PackBody/);
      expect(() => decodePack(pack.bytes, pack.address)).toThrow(/DATA_LOSS: pack .* is malformed: its deflated body does not inflate to a PackBody/);
    }
    const short = encodePack({ ...header(messages), count: 201, lastSeq: 200 }, messages, await deflateBody(messages));
    expect(() => decodePackRun(short.bytes, short.address)).toThrow(/header says 201 messages, body has 200/);
  });

  it("refuses a deflate bomb before inflating it, and a body of more messages than its header counts before splitting it", () => {
    // 16 MiB of empty messages, deflated with LZ matches into a few KB: more than 8 times its size.
    const empties = Buffer.alloc(16 << 20);
    for (let i = 0; i < empties.length; i += 2) empties[i] = 0x0a;
    const bomb = encodePackWithBody(1, deflateRawSync(empties, { level: 9 }));
    expect(bomb.bytes.length).toBeLessThan(64 * 1024);
    for (const decode of [decodePack, decodePackRun]) {
      expect(() => decode(bomb.bytes, bomb.address)).toThrow(/DATA_LOSS: pack .* is malformed: its \d+-byte deflated body inflates past \d+ bytes, more than a writer's Huffman-only DEFLATE can make/);
    }
    // Within the bound (Huffman-only, as a writer deflates), 100,000 empty messages under a header of 3.
    const many = encodePackWithBody(3, deflateRawSync(empties.subarray(0, 200_000), { strategy: zlibConstants.Z_HUFFMAN_ONLY }));
    for (const decode of [decodePack, decodePackRun]) {
      expect(() => decode(many.bytes, many.address)).toThrow(/DATA_LOSS: pack .* is malformed: its deflated body does not inflate to a PackBody of at most 3 messages/);
    }
    expect(readPackBody(empties.subarray(0, 200_000), 3)).toBeUndefined();
    expect(readPackBody(empties.subarray(0, 6), 3)!.spans.length).toBe(6);
  });

  it("lays out the same records from a body's spans as from a list, ids computed where the messages lie", async () => {
    const withMetadata = encodeMessage({ ...newMessage(group, 1n << 40n, Uint8Array.of(1, 2)), metadata: { $typeName: "vac.mvds.Metadata", ephemeral: true, parents: [] } });
    const messages = [text(0), encodeMessage(newMessage(new Uint8Array(0), -5n, new Uint8Array(0))), withMetadata, random(3), encodeMessage(newMessage(group, 2n ** 63n - 1n, randomBytes(70_000)))];
    const body = encodeRepeatedBytes(1, messages);
    const run = readPackBody(body)!;
    const fromRun = encodeRecords(run, 10);
    const fromList = encodeRecords(messages, 10);
    expect(Buffer.compare(fromRun.bytes, fromList.bytes)).toBe(0);
    expect(messages.map((m, i) => Buffer.from(idOf(fromRun, i)).toString("hex"))).toEqual(messages.map((m) => Buffer.from(messageId(decodeMessage(m))).toString("hex")));
    // The records FileLocalLog reads back.
    const dir = await dirs.make();
    const writer = await LogFileWriter.create(dir, 2);
    writer.appendEncoded([fromRun]);
    await writer.close();
    const log = await FileLocalLog.open(dir);
    expect((await log.read(0, messages.length)).map((entry) => Buffer.from(entry.data).toString("hex"))).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
    await log.close();
    // A message that does not decode is named by its seq.
    const broken = readPackBody(encodeRepeatedBytes(1, [text(0), Uint8Array.of(0xff, 0xff)]))!;
    expect(() => encodeRecords(broken, 10)).toThrow(/INVALID_ARGUMENT: message at seq 11 is not a vac.mvds.Message/);
  });

  it("finds an id written twice among many, across the table's growth, and forgets a failed append's ids", async () => {
    const dir = await dirs.make();
    const writer = await LogFileWriter.create(dir);
    const messages = Array.from({ length: 20_000 }, (_, i) => encodeMessage(newMessage(group, BigInt(i), Uint8Array.of(i & 0xff))));
    for (let i = 0; i < messages.length; i += 5000) await writer.append(messages.slice(i, i + 5000));
    const fresh = random(1);
    await failure(writer.append([fresh, messages[19_999]]), "CONFLICT");
    await failure(writer.append([messages[0]]), "CONFLICT");
    // fresh's id was forgotten with its failed append, so it may be written now, once.
    await writer.append([fresh]);
    await failure(writer.append([fresh]), "CONFLICT");
    await writer.close();
    expect(writer.length).toBe(20_001);
  });
});

/** A deflated pack of count messages whose deflated body is exactly deflated, with a header that holds together. */
function encodePackWithBody(count: number, body: Uint8Array): { address: Uint8Array; bytes: Uint8Array } {
  const deflated = new Uint8Array(body);
  const bytes = toBinary(PackSchema, create(PackSchema, { type: PACK_TYPE, version: 1, logName: "l", firstSeq: 0n, lastSeq: BigInt(count - 1), count: BigInt(count), lastId: new Uint8Array(32), compression: Compression.DEFLATE_RAW, deflatedBody: deflated }));
  return { address: addressOf(bytes), bytes };
}
