import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LocalLog } from "../../core/local-log.js";
import { isRemoteLogError } from "../../core/errors.js";
import { MetadataSchema } from "../../gen/vac/mvds/mvds_pb.js";
import { decodeMessage, encodeMessage, equalBytes, messageId, newMessage, toHex } from "../../core/hash.js";

const GROUP = new TextEncoder().encode("contract group");

/** An encoded vac.mvds.Message; the same i gives the same bytes and id. */
export function message(i: number, tag = "m"): Uint8Array {
  return encodeMessage(newMessage(GROUP, 1_700_000_000n + BigInt(i), new TextEncoder().encode(`${tag} ${i}`)));
}

const idOf = (data: Uint8Array) => messageId(decodeMessage(data));

/**
 * The LocalLog contract. Every backend runs it with a fresh, empty log per case:
 * `localLogContract("file", () => FileLocalLog.open(dir), (log) => log.close())`.
 */
export function localLogContract(name: string, setup: () => Promise<LocalLog>, teardown: (log: LocalLog) => Promise<void>): void {
  describe(`${name} local log - contract`, () => {
    let log: LocalLog;
    beforeEach(async () => {
      log = await setup();
    });
    afterEach(async () => {
      await teardown(log);
    });

    it("starts empty", async () => {
      expect(log.length).toBe(0);
      expect(await log.read(0, 10)).toEqual([]);
      expect(log.seqOf(idOf(message(0)))).toBeUndefined();
    });

    it("append returns entries with seqs from 0, the H1 id and the bytes; read returns the same", async () => {
      const messages = [message(0), message(1), message(2)];
      const appended = await log.append(messages);
      expect(appended.map((e) => e.seq)).toEqual([0, 1, 2]);
      appended.forEach((entry, i) => {
        expect(equalBytes(entry.id, idOf(messages[i]))).toBe(true);
        expect(equalBytes(entry.data, messages[i])).toBe(true);
      });
      expect(log.length).toBe(3);
      const read = await log.read(0, 3);
      expect(read.map((e) => [e.seq, toHex(e.id), toHex(e.data)])).toEqual(appended.map((e) => [e.seq, toHex(e.id), toHex(e.data)]));
      const more = await log.append([message(3)]);
      expect(more.map((e) => e.seq)).toEqual([3]);
    });

    it("seqOf finds each message by its id", async () => {
      const messages = Array.from({ length: 20 }, (_, i) => message(i));
      await log.append(messages.slice(0, 10));
      await log.append(messages.slice(10));
      messages.forEach((data, i) => expect(log.seqOf(idOf(data))).toBe(i));
      expect(log.seqOf(idOf(message(99)))).toBeUndefined();
      expect(log.seqOf(new Uint8Array(32))).toBeUndefined();
    });

    it("a message whose id is already in the log is skipped, in a later call or the same one", async () => {
      await log.append([message(0), message(1)]);
      expect(await log.append([message(1)])).toEqual([]);
      const appended = await log.append([message(2), message(0), message(2), message(3)]);
      expect(appended.map((e) => [e.seq, toHex(e.data)])).toEqual([
        [2, toHex(message(2))],
        [3, toHex(message(3))],
      ]);
      expect(log.length).toBe(4);
    });

    it("messages that differ only in metadata have the same id and are stored once", async () => {
      const plain = newMessage(GROUP, 5n, new TextEncoder().encode("same"));
      const withParents = newMessage(GROUP, 5n, new TextEncoder().encode("same"));
      withParents.metadata = create(MetadataSchema, { parents: [new Uint8Array(32)] });
      const [first] = await log.append([encodeMessage(plain)]);
      expect(await log.append([encodeMessage(withParents)])).toEqual([]);
      expect(equalBytes((await log.read(0, 1))[0].data, first.data)).toBe(true);
    });

    it("bytes that are not a vac.mvds.Message are INVALID_ARGUMENT and append nothing", async () => {
      await log.append([message(0)]);
      const err = await log.append([Uint8Array.of(0xff, 0xff, 0xff)]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRemoteLogError(err, "INVALID_ARGUMENT"), String(err)).toBe(true);
      expect(log.length).toBe(1);
      expect((await log.read(0, 10)).map((e) => e.seq)).toEqual([0]);
      // All or nothing: good messages before the bad one in the same batch are not kept either.
      await expect(log.append([message(1), Uint8Array.of(0xff, 0xff, 0xff)])).rejects.toThrowError(/INVALID_ARGUMENT/);
      expect(log.length).toBe(1);
    });

    it("read clamps its range to the log", async () => {
      await log.append(Array.from({ length: 5 }, (_, i) => message(i)));
      expect((await log.read(1, 3)).map((e) => e.seq)).toEqual([1, 2]);
      expect((await log.read(-10, 2)).map((e) => e.seq)).toEqual([0, 1]);
      expect((await log.read(3, 1000)).map((e) => e.seq)).toEqual([3, 4]);
      expect(await log.read(4, 2)).toEqual([]);
      expect(await log.read(5, 10)).toEqual([]);
      expect(await log.read(-5, -1)).toEqual([]);
    });

    it("appends 10,000 messages in one call", async () => {
      const messages = Array.from({ length: 10_000 }, (_, i) => message(i, "bulk"));
      const appended = await log.append(messages);
      expect(appended).toHaveLength(10_000);
      expect(log.length).toBe(10_000);
      const read = await log.read(9_990, 10_000);
      read.forEach((entry, j) => expect(equalBytes(entry.data, messages[9_990 + j])).toBe(true));
      expect(log.seqOf(idOf(messages[5_000]))).toBe(5_000);
    });

    it("concurrent appends give every message exactly one seq, with no gap", async () => {
      const calls = Array.from({ length: 10 }, (_, c) => Array.from({ length: 30 }, (_, i) => message((c * 13 + i) % 100)));
      const results = await Promise.all(calls.map((call) => log.append(call)));
      const seqs = results.flat().map((e) => e.seq).sort((a, b) => a - b);
      expect(seqs).toEqual([...Array(log.length).keys()]);
      const distinct = new Set(calls.flat().map((data) => toHex(data)));
      expect(log.length).toBe(distinct.size);
      const all = await log.read(0, log.length);
      expect(new Set(all.map((e) => toHex(e.id))).size).toBe(log.length);
      all.forEach((entry) => expect(log.seqOf(entry.id)).toBe(entry.seq));
    });

    it("close is idempotent", async () => {
      await log.append([message(0)]);
      await log.close();
      await expect(log.close()).resolves.toBeUndefined();
    });

    it("owner - the first claim records the owner; the same one again is fine; another is CONFLICT naming the recorded name", async () => {
      expect(log.owner).toBeUndefined();
      expect(await log.claim({ name: "k51alice", key: "k51alice" })).toBe("new");
      expect(log.owner).toEqual({ name: "k51alice", key: "k51alice" });
      expect(await log.claim({ name: "k51alice", key: "k51alice" })).toBe("same");
      for (const other of [{ name: "k51other", key: "k51other" }, { name: "k51alice" }]) {
        const err = await log.claim(other).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isRemoteLogError(err, "CONFLICT")).toBe(true);
        expect((err as { details: { name?: string } }).details.name).toBe("k51alice");
      }
      expect(log.owner).toEqual({ name: "k51alice", key: "k51alice" });
    });

    it("owner - a log with messages and no owner is adopted by the first claim", async () => {
      await log.append([message(0)]);
      expect(await log.claim({ name: "chat" })).toBe("adopted");
      expect(log.owner).toEqual({ name: "chat" });
    });
  });
}
