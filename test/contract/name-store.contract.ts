import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NameStore } from "../../core/name-store.js";
import { isRemoteLogError } from "../../core/errors.js";
import { equalBytes } from "../../core/hash.js";

const text = (s: string) => new TextEncoder().encode(s);

async function conflictOf(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRemoteLogError(err, "CONFLICT"), `expected CONFLICT, got ${String(err)}`).toBe(true);
  return err as Error;
}

/**
 * The NameStore contract. Every backend runs it with a fresh store per case:
 * `nameStoreContract("level", () => LevelNameStore.open(dir), (s) => s.close())`.
 */
export function nameStoreContract(name: string, setup: () => Promise<NameStore>, teardown: (store: NameStore) => Promise<void>): void {
  describe(`${name} name store - contract`, () => {
    let store: NameStore;
    beforeEach(async () => {
      store = await setup();
    });
    afterEach(async () => {
      await teardown(store);
    });

    it("count, when the backend offers it, counts names once however often they are updated", async () => {
      if (!store.count) return;
      expect(await store.count()).toBe(0);
      await store.put("alice", text("one"));
      await store.put("bob", text("one"));
      await store.put("alice", text("two"));
      await conflictOf(store.put("carol", text("one"), { expectedVersion: 1n }));
      expect(await store.count()).toBe(2);
    });

    it("a name never updated is undefined", async () => {
      expect(await store.get("nobody")).toBeUndefined();
      await store.put("somebody", text("x"));
      expect(await store.get("nobody")).toBeUndefined();
    });

    it("versions go 1, 2, 3 and get returns the latest content", async () => {
      expect(await store.put("alice", text("one"))).toBe(1n);
      expect(await store.put("alice", text("two"))).toBe(2n);
      expect(await store.put("alice", text("three"))).toBe(3n);
      const entry = await store.get("alice");
      expect(entry?.version).toBe(3n);
      expect(entry?.content).toEqual(text("three"));
      expect(entry?.record).toEqual(new Uint8Array(0));
    });

    it("stores the record as given and returns it", async () => {
      const record = Uint8Array.from({ length: 300 }, (_, i) => i % 256);
      await store.put("signed", text("head"), { record });
      expect((await store.get("signed"))?.record).toEqual(record);
      await store.put("signed", text("head 2"));
      expect((await store.get("signed"))?.record).toEqual(new Uint8Array(0));
    });

    it("names are independent, and any string is a name", async () => {
      const names = ["a", "A", "a/b", "../etc", "名前", "k51qzi5uqu5d", "x".repeat(1000), ""];
      for (const [i, n] of names.entries()) expect(await store.put(n, text(`content ${i}`))).toBe(1n);
      for (const [i, n] of names.entries()) expect((await store.get(n))?.content).toEqual(text(`content ${i}`));
    });

    it("an update with the current version as expectedVersion succeeds", async () => {
      await store.put("bob", text("v1"));
      expect(await store.put("bob", text("v2"), { expectedVersion: 1n })).toBe(2n);
      expect(await store.put("bob", text("v3"), { expectedVersion: 2n })).toBe(3n);
      expect((await store.get("bob"))?.content).toEqual(text("v3"));
    });

    it("a conflict throws CONFLICT naming the name and both versions, and changes nothing", async () => {
      await store.put("carol", text("v1"), { record: text("record 1") });
      await store.put("carol", text("v2"), { record: text("record 2") });
      const before = await store.get("carol");
      const err = await conflictOf(store.put("carol", text("lost"), { expectedVersion: 1n, record: text("lost record") }));
      expect(err.message).toContain("carol");
      expect(err.message).toMatch(/\b2\b/);
      expect(err.message).toMatch(/\b1\b/);
      await conflictOf(store.put("carol", text("lost"), { expectedVersion: 7n }));
      const after = await store.get("carol");
      expect(after).toEqual(before);
      expect(after?.version).toBe(2n);
      expect(Buffer.from(after!.content).equals(Buffer.from(before!.content))).toBe(true);
      expect(Buffer.from(after!.record).equals(text("record 2"))).toBe(true);
    });

    it("expectedVersion 0n creates a name only if it does not exist", async () => {
      expect(await store.put("new", text("first"), { expectedVersion: 0n })).toBe(1n);
      await conflictOf(store.put("new", text("second"), { expectedVersion: 0n }));
      expect(await store.get("new")).toEqual({ content: text("first"), version: 1n, record: new Uint8Array(0) });
    });

    it("a given version becomes the name's version, and may skip ahead", async () => {
      expect(await store.put("signed", text("s5"), { version: 5n, record: text("r5") })).toBe(5n);
      expect(await store.get("signed")).toEqual({ content: text("s5"), version: 5n, record: text("r5") });
      expect(await store.put("signed", text("s6"))).toBe(6n);
      expect(await store.put("signed", text("s9"), { version: 9n, record: text("r9") })).toBe(9n);
      expect(await store.get("signed")).toEqual({ content: text("s9"), version: 9n, record: text("r9") });
      expect(await store.put("fresh", text("one"), { version: 1n })).toBe(1n);
    });

    it("a given version that is not newer throws CONFLICT naming both versions, and changes nothing", async () => {
      await store.put("dave", text("d3"), { version: 3n, record: text("r3") });
      const before = await store.get("dave");
      for (const version of [3n, 2n, 1n]) {
        const err = await conflictOf(store.put("dave", text("stale"), { version, record: text("stale record") }));
        expect(err.message).toContain("dave");
        expect(err.message).toMatch(/\b3\b/);
        expect(await store.get("dave")).toEqual(before);
      }
    });

    it("a given version outside 1..2^64-1 throws INVALID_ARGUMENT and changes nothing", async () => {
      for (const version of [0n, -1n, 1n << 64n]) {
        const err = await store.put("erin", text("x"), { version }).then(() => undefined, (e: unknown) => e);
        expect(isRemoteLogError(err, "INVALID_ARGUMENT"), `version ${version}: ${String(err)}`).toBe(true);
      }
      expect(await store.get("erin")).toBeUndefined();
      const max = (1n << 64n) - 1n;
      expect(await store.put("erin", text("max"), { version: max })).toBe(max);
      expect((await store.get("erin"))?.version).toBe(max);
    });

    it("expectedVersion and version are both checked", async () => {
      await store.put("frank", text("f2"), { version: 2n });
      await conflictOf(store.put("frank", text("x"), { expectedVersion: 1n, version: 7n }));
      await conflictOf(store.put("frank", text("x"), { expectedVersion: 2n, version: 2n }));
      expect((await store.get("frank"))?.version).toBe(2n);
      expect(await store.put("frank", text("f7"), { expectedVersion: 2n, version: 7n })).toBe(7n);
    });

    it("of 50 concurrent puts of the same version, exactly one wins", async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => store.put("same", text(`contender ${i}`), { version: 4n, record: text(`record ${i}`) })),
      );
      const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === "rejected") expect(isRemoteLogError(r.reason, "CONFLICT")).toBe(true);
      expect(await store.get("same")).toEqual({ content: text(`contender ${winners[0]}`), version: 4n, record: text(`record ${winners[0]}`) });
    });

    it("of 50 concurrent puts expecting the same version, exactly one wins", async () => {
      await store.put("race", text("base"));
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => store.put("race", text(`contender ${i}`), { expectedVersion: 1n, record: text(`record ${i}`) })),
      );
      const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(winners).toHaveLength(1);
      expect((results[winners[0]] as PromiseFulfilledResult<bigint>).value).toBe(2n);
      for (const r of results) if (r.status === "rejected") expect(isRemoteLogError(r.reason, "CONFLICT")).toBe(true);
      const entry = await store.get("race");
      expect(entry).toEqual({ content: text(`contender ${winners[0]}`), version: 2n, record: text(`record ${winners[0]}`) });
    });

    it("50 concurrent unconditional puts are all applied, none lost", async () => {
      const versions = await Promise.all(Array.from({ length: 50 }, (_, i) => store.put("busy", text(`update ${i}`))));
      expect([...versions].sort((a, b) => Number(a - b))).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i + 1)));
      const entry = await store.get("busy");
      expect(entry?.version).toBe(50n);
      expect(entry?.content).toEqual(text(`update ${versions.indexOf(50n)}`));
    });

    it("keeps its own copy: changing the caller's buffers afterwards changes nothing", async () => {
      const content = text("content");
      const record = text("record");
      await store.put("copy", content, { record });
      content.fill(0);
      record.fill(0);
      expect(await store.get("copy")).toEqual({ content: text("content"), version: 1n, record: text("record") });
      // Nor does changing what get returned.
      (await store.get("copy"))!.content.fill(0);
      expect((await store.get("copy"))!.content).toEqual(text("content"));
    });

    it("stores empty and large content", async () => {
      await store.put("empty", new Uint8Array(0));
      expect((await store.get("empty"))?.content).toEqual(new Uint8Array(0));
      const large = Uint8Array.from({ length: 256 * 1024 }, (_, i) => (i * 7) % 256);
      await store.put("large", large);
      // equalBytes, not toEqual: vitest compares typed arrays element by element, slowly.
      expect(equalBytes((await store.get("large"))!.content, large)).toBe(true);
    });

    it("close is idempotent", async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
