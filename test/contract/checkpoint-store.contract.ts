import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CheckpointStore } from "../../core/checkpoint-store.js";

const id = (fill: number) => new Uint8Array(32).fill(fill);

/**
 * The CheckpointStore contract. Every backend runs it with a fresh store per case:
 * `checkpointStoreContract("file", () => FileCheckpointStore.open(dir), (s) => s.close())`.
 */
export function checkpointStoreContract(name: string, setup: () => Promise<CheckpointStore>, teardown: (store: CheckpointStore) => Promise<void>): void {
  describe(`${name} checkpoint store - contract`, () => {
    let store: CheckpointStore;
    beforeEach(async () => {
      store = await setup();
    });
    afterEach(async () => {
      await teardown(store);
    });

    it("a name never saved has no checkpoint", async () => {
      expect(await store.load("nobody")).toBeUndefined();
    });

    it("load returns what save stored", async () => {
      await store.save("alice", { delivered: 42, lastId: id(7) });
      expect(await store.load("alice")).toEqual({ delivered: 42, lastId: id(7) });
    });

    it("stores a redaction count when given", async () => {
      await store.save("redacted", { delivered: 9, lastId: id(9), sequence: 3n, redactions: 2 });
      expect(await store.load("redacted")).toEqual({ delivered: 9, lastId: id(9), sequence: 3n, redactions: 2 });
    });

    it("stores where a seek's run of seqs began when given, and none when not", async () => {
      await store.save("seek", { delivered: 9, lastId: id(9), from: 5 });
      expect(await store.load("seek")).toEqual({ delivered: 9, lastId: id(9), from: 5 });
      await store.save("seek", { delivered: 10, lastId: id(10) });
      expect(await store.load("seek")).toEqual({ delivered: 10, lastId: id(10) });
    });

    it("stores a record sequence when given, up to the largest uint64, and none when not", async () => {
      await store.save("signed", { delivered: 5, lastId: id(5), sequence: 2n ** 64n - 1n });
      expect(await store.load("signed")).toEqual({ delivered: 5, lastId: id(5), sequence: 2n ** 64n - 1n });
      await store.save("signed", { delivered: 6, lastId: id(6) });
      expect(await store.load("signed")).toEqual({ delivered: 6, lastId: id(6) });
    });

    it("stores the --out file and its length with the checkpoint, and none when not given", async () => {
      await store.save("out", { delivered: 4, lastId: id(4), out: { file: "/tmp/lines.jsonl", length: 1234 } });
      expect(await store.load("out")).toEqual({ delivered: 4, lastId: id(4), out: { file: "/tmp/lines.jsonl", length: 1234 } });
      await store.save("out", { delivered: 5, lastId: id(5) });
      expect(await store.load("out")).toEqual({ delivered: 5, lastId: id(5) });
    });

    it("stores the start: nothing delivered, empty lastId", async () => {
      await store.save("fresh", { delivered: 0, lastId: new Uint8Array(0) });
      expect(await store.load("fresh")).toEqual({ delivered: 0, lastId: new Uint8Array(0) });
    });

    it("a save replaces the previous checkpoint", async () => {
      await store.save("bob", { delivered: 1, lastId: id(1) });
      await store.save("bob", { delivered: 1000, lastId: id(2) });
      expect(await store.load("bob")).toEqual({ delivered: 1000, lastId: id(2) });
    });

    it("names are independent, and any string is a name", async () => {
      const names = ["a", "A", "a/b", "../../etc/passwd", "名前", "with space", "x".repeat(1000), ""];
      for (const [i, n] of names.entries()) await store.save(n, { delivered: i, lastId: id(i) });
      for (const [i, n] of names.entries()) expect(await store.load(n)).toEqual({ delivered: i, lastId: id(i) });
    });

    it("keeps its own copy, and hands out copies", async () => {
      const lastId = id(3);
      await store.save("copy", { delivered: 3, lastId });
      lastId.fill(0);
      const loaded = await store.load("copy");
      loaded!.lastId.fill(9);
      expect(await store.load("copy")).toEqual({ delivered: 3, lastId: id(3) });
    });

    it("of concurrent saves of one name, the last one called wins", async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.save("race", { delivered: i, lastId: id(i) })));
      expect(await store.load("race")).toEqual({ delivered: 19, lastId: id(19) });
    });

    it("close is idempotent", async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
