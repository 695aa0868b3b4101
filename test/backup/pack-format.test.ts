import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PackSchema } from "../../gen/remotelog/v1/pack_pb.js";
import { checkMessages, decodeBackupHead, decodePack, deflateBody, encodeBackupHead, encodePack, looksLikePack, PACK_TYPE, splitIntoPacks } from "../../backup/pack-format.js";
import { LogFileWriter } from "../../backup/log-file.js";
import { addressOf, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { encodePage } from "../../core/page.js";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { failure, TempDirs } from "../stores/temp.js";
import { afterEach } from "vitest";

const group = new TextEncoder().encode("g");
const text = (i: number) => encodeMessage(newMessage(group, BigInt(i), new TextEncoder().encode(randomBytes(192).toString("base64"))));
const random = (i: number) => encodeMessage(newMessage(group, BigInt(i), randomBytes(256)));
const header = (messages: Uint8Array[], firstSeq = 0, previous = new Uint8Array(0)) => ({
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
    await writer.append([random(6000)]);
    await writer.close();
    const log = await FileLocalLog.open(dir);
    expect(log.recovered).toBeUndefined();
    expect(log.length).toBe(3001);
    const entries = await log.read(0, 3000);
    expect(entries.every((entry, i) => Buffer.compare(entry.data, messages[i]) === 0)).toBe(true);
    await log.close();
  });
});
