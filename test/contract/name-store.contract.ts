import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NameStore } from "../../core/name-store.js";
import { isRemoteLogError } from "../../core/errors.js";
import { equalBytes } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName, type PrivateKey } from "../../core/names.js";

const text = (s: string) => new TextEncoder().encode(s);

/** A lost conditional put: another writer moved the name first. */
async function lostRaceOf(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRemoteLogError(err, "ABORTED"), `expected ABORTED, got ${String(err)}`).toBe(true);
  return err as Error;
}

export interface NameStoreContractOptions {
  /**
   * The backend keeps signed names only (IPNS: a name is a key, and every entry is a record signed by
   * it for exactly that content and version). Each case then writes through key names and real
   * records, and the cases that need what such a store cannot have (free-form names, arbitrary record
   * bytes, an update without a record, an unconditional next version) are left out, each saying why.
   * Embedded backends run both ways.
   */
  signedOnly?: boolean;
}

const MAX_SEQUENCE = (1n << 64n) - 1n;

/**
 * How the cases write: a label stands for a name, and a record label for a record. Plain, they are
 * the name and the record bytes themselves. Signed, a label is a fresh key's name, and each put signs
 * a real record for its content and version (the current version + 1 when none is given).
 */
class Writer {
  private readonly keys = new Map<string, { key: PrivateKey; name: string }>();
  private readonly sent = new Map<string, Uint8Array>();

  constructor(
    private readonly store: NameStore,
    readonly signed: boolean,
  ) {}

  async name(label: string): Promise<string> {
    if (!this.signed) return label;
    let entry = this.keys.get(label);
    if (!entry) {
      const key = await generateNameKey();
      entry = { key, name: keyName(key) };
      this.keys.set(label, entry);
    }
    return entry.name;
  }

  async put(label: string, content: Uint8Array, options: { expectedVersion?: bigint; version?: bigint; record?: string } = {}): Promise<bigint> {
    const name = await this.name(label);
    const { expectedVersion, version, record: recordLabel } = options;
    const put = (record: Uint8Array | undefined) => {
      if (record) this.sent.set(`${label}\0${recordLabel ?? ""}`, record);
      return this.store.put(name, content, {
        ...(expectedVersion !== undefined ? { expectedVersion } : {}),
        ...(version !== undefined ? { version } : {}),
        ...(record !== undefined ? { record } : {}),
      });
    };
    if (!this.signed) return put(recordLabel !== undefined ? text(recordLabel) : undefined);
    const sequence = version ?? ((await this.store.get(name))?.version ?? 0n) + 1n;
    // A version no record can carry is still sent with a valid record, so that the store, not the signer, refuses it.
    const signable = sequence >= 0n && sequence <= MAX_SEQUENCE ? sequence : 1n;
    return put(await createNameRecord(this.keys.get(label)!.key, content, signable));
  }

  /** The record bytes the last put of label with this record label passed (empty plain without one). */
  record(label: string, recordLabel?: string): Uint8Array {
    return this.sent.get(`${label}\0${recordLabel ?? ""}`) ?? new Uint8Array(0);
  }
}

/**
 * The NameStore contract. Every backend runs it with a fresh store per case:
 * `nameStoreContract("level", () => LevelNameStore.open(dir), (s) => s.close())`.
 */
export function nameStoreContract(
  name: string,
  setup: () => Promise<NameStore>,
  teardown: (store: NameStore) => Promise<void>,
  options: NameStoreContractOptions = {},
): void {
  const signed = options.signedOnly ?? false;
  describe(`${name} name store - contract${signed ? " (signed names)" : ""}`, () => {
    let store: NameStore;
    let w: Writer;
    beforeEach(async () => {
      store = await setup();
      w = new Writer(store, signed);
    });
    afterEach(async () => {
      await teardown(store);
    });

    it("count, when the backend offers it, counts names once however often they are updated", async () => {
      if (!store.count) return;
      expect(await store.count()).toBe(0);
      await w.put("alice", text("one"));
      await w.put("bob", text("one"));
      await w.put("alice", text("two"));
      await lostRaceOf(w.put("carol", text("one"), { expectedVersion: 1n }));
      expect(await store.count()).toBe(2);
    });

    it("list, when the backend offers it, gives every name in UTF-8 byte order, and pages of them after a name", async () => {
      if (!store.list) return;
      // U+FF5E sorts after U+1F600 in UTF-16 code units, before it in UTF-8 bytes (LevelDB's order).
      const labels = ["carol", "alice", "bob", "\u{1F600}x", "\uFF5Ex"];
      for (const label of labels) await w.put(label, text(label));
      await w.put("alice", text("again"));
      const names = await Promise.all(labels.map((label) => w.name(label)));
      const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const all: string[] = [];
      for await (const [name, entry] of store.list()) {
        all.push(name);
        expect(entry.version).toBe(name === names[1] ? 2n : 1n);
      }
      expect(all).toEqual(sorted);
      const pages: string[][] = [];
      let after: string | undefined;
      // Bounded, so that a store ignoring the options fails instead of looping.
      for (let round = 0; round < 10; round++) {
        const page: string[] = [];
        for await (const [name] of store.list({ after, limit: 2 })) page.push(name);
        if (page.length === 0) break;
        pages.push(page);
        after = page[page.length - 1];
      }
      expect(pages.map((page) => page.length)).toEqual([2, 2, 1]);
      expect(pages.flat()).toEqual(sorted);
    });

    it("drop, when the backend offers it, forgets a name: get, list and count no longer give it, and a put makes it anew from version 1", async () => {
      if (!store.drop) return;
      await w.put("alice", text("one"));
      await w.put("alice", text("two"));
      await w.put("bob", text("one"));
      const alice = await w.name("alice");
      expect(await store.drop(alice)).toBe(true);
      expect(await store.get(alice)).toBeUndefined();
      // Safe to repeat: a name not there is false, not an error.
      expect(await store.drop(alice)).toBe(false);
      if (store.count) expect(await store.count()).toBe(1);
      if (store.list) {
        const listed: string[] = [];
        for await (const [name] of store.list()) listed.push(name);
        expect(listed).toEqual([await w.name("bob")]);
      }
      expect(await w.put("alice", text("anew"), { expectedVersion: 0n })).toBe(1n);
      expect(new TextDecoder().decode((await store.get(alice))!.content)).toBe("anew");
      expect((await store.get(await w.name("bob")))!.version).toBe(1n);
    });

    it("drop, when the backend offers it, leaves a name with a record a tombstone: a given version at or below it is CONFLICT, a newer one makes the name anew", async () => {
      if (!store.drop) return;
      const alice = await w.name("alice");
      await w.put("alice", text("s5"), { version: 5n, record: "r5" });
      const record5 = w.record("alice", "r5");
      expect(await store.drop(alice)).toBe(true);
      // The record dropped (the same one again: anyone may have kept it), and an older one, are refused,
      // the first publish's way (expectedVersion 0n) too, and change nothing.
      for (const [version, options] of [
        [5n, {}],
        [4n, {}],
        [5n, { expectedVersion: 0n }],
      ] as const) {
        const err = await w.put("alice", text("s5"), { version, record: "replayed", ...options }).then(() => undefined, (e: unknown) => e);
        expect(isRemoteLogError(err, "CONFLICT"), `version ${version}: expected CONFLICT, got ${String(err)}`).toBe(true);
        expect((err as Error).message).toContain(alice);
        expect((err as Error).message).toContain("dropped by the operator at sequence 5");
        expect((err as Error).message).toContain("only a newer record from its key is taken");
        expect(await store.get(alice)).toBeUndefined();
      }
      expect(store.droppedAt, "a store with drop has droppedAt").toBeTypeOf("function");
      expect(await store.droppedAt!(alice)).toBe(5n);
      // Byte for byte the record dropped.
      const again = await store.put(alice, text("s5"), { version: 5n, record: record5 }).then(() => undefined, (e: unknown) => e);
      expect(isRemoteLogError(again, "CONFLICT"), String(again)).toBe(true);
      // Safe to repeat: the name is not there, and its tombstone stays.
      expect(await store.drop(alice)).toBe(false);
      expect(await store.droppedAt!(alice)).toBe(5n);
      if (store.count) expect(await store.count()).toBe(0);
      if (store.list) for await (const [name] of store.list()) expect.fail(`list gave ${name}`);
      // A newer record from its key is a fresh start: the name's version guards it from then on.
      expect(await w.put("alice", text("s6"), { version: 6n, record: "r6" })).toBe(6n);
      expect(await store.get(alice)).toEqual({ content: text("s6"), version: 6n, record: w.record("alice", "r6") });
      expect(await store.droppedAt!(alice)).toBeUndefined();
      if (store.count) expect(await store.count()).toBe(1);
      // Dropped again, at the higher version.
      expect(await store.drop(alice)).toBe(true);
      expect(await store.droppedAt!(alice)).toBe(6n);
      expect(await w.put("alice", text("s6"), { version: 6n, record: "r6 again" }).then(() => "taken", (e: unknown) => String(e))).toMatch(/^RemoteLogError: CONFLICT: /);
      expect(await w.put("alice", text("s7"), { version: 7n, record: "r7" })).toBe(7n);
      // A name without a record (free-form, which anyone may write) leaves none.
      if (!signed) {
        await store.put("bob", text("b1"));
        await store.put("bob", text("b2"));
        expect(await store.drop("bob")).toBe(true);
        expect(await store.droppedAt!("bob")).toBeUndefined();
        expect(await store.put("bob", text("b1 again"), { version: 1n })).toBe(1n);
      }
    });

    it("a name never updated is undefined", async () => {
      expect(await store.get(await w.name("nobody"))).toBeUndefined();
      await w.put("somebody", text("x"));
      expect(await store.get(await w.name("nobody"))).toBeUndefined();
    });

    it("versions go 1, 2, 3 and get returns the latest content", async () => {
      expect(await w.put("alice", text("one"))).toBe(1n);
      expect(await w.put("alice", text("two"))).toBe(2n);
      expect(await w.put("alice", text("three"))).toBe(3n);
      const entry = await store.get(await w.name("alice"));
      expect(entry?.version).toBe(3n);
      expect(entry?.content).toEqual(text("three"));
      expect(entry?.record).toEqual(w.record("alice"));
    });

    it("stores the record as given and returns it", async () => {
      const record = signed ? undefined : Uint8Array.from({ length: 300 }, (_, i) => i % 256);
      if (record) await store.put("signed", text("head"), { record });
      else await w.put("signed", text("head"), { record: "r1" });
      expect((await store.get(await w.name("signed")))?.record).toEqual(record ?? w.record("signed", "r1"));
      // A signed name's every update carries its record; there is no update without one.
      if (signed) return;
      await store.put("signed", text("head 2"));
      expect((await store.get("signed"))?.record).toEqual(new Uint8Array(0));
    });

    it("names are independent, and any string is a name", async () => {
      // Signed, names are keys: a few of them stand for "any string".
      const labels = signed ? ["a", "b", "c"] : ["a", "A", "a/b", "../etc", "名前", "k51qzi5uqu5d", "x".repeat(1000), ""];
      for (const [i, n] of labels.entries()) expect(await w.put(n, text(`content ${i}`))).toBe(1n);
      for (const [i, n] of labels.entries()) expect((await store.get(await w.name(n)))?.content).toEqual(text(`content ${i}`));
    });

    it("an update with the current version as expectedVersion succeeds", async () => {
      await w.put("bob", text("v1"));
      expect(await w.put("bob", text("v2"), { expectedVersion: 1n })).toBe(2n);
      expect(await w.put("bob", text("v3"), { expectedVersion: 2n })).toBe(3n);
      expect((await store.get(await w.name("bob")))?.content).toEqual(text("v3"));
    });

    it("a lost race throws ABORTED naming the name and both versions, and changes nothing", async () => {
      const carol = await w.name("carol");
      await w.put("carol", text("v1"), { record: "record 1" });
      await w.put("carol", text("v2"), { record: "record 2" });
      const before = await store.get(carol);
      const err = await lostRaceOf(w.put("carol", text("lost"), { expectedVersion: 1n, record: "lost record" }));
      expect(err.message).toContain(carol);
      expect(err.message).toMatch(/\b2\b/);
      expect(err.message).toMatch(/\b1\b/);
      await lostRaceOf(w.put("carol", text("lost"), { expectedVersion: 7n }));
      const after = await store.get(carol);
      expect(after).toEqual(before);
      expect(after?.version).toBe(2n);
      expect(Buffer.from(after!.content).equals(Buffer.from(before!.content))).toBe(true);
      expect(Buffer.from(after!.record).equals(w.record("carol", "record 2"))).toBe(true);
    });

    it("expectedVersion 0n creates a name only if it does not exist", async () => {
      expect(await w.put("new", text("first"), { expectedVersion: 0n })).toBe(1n);
      const record = w.record("new");
      await lostRaceOf(w.put("new", text("second"), { expectedVersion: 0n }));
      expect(await store.get(await w.name("new"))).toEqual({ content: text("first"), version: 1n, record });
    });

    it("a given version becomes the name's version, and may skip ahead", async () => {
      const name = await w.name("signed");
      expect(await w.put("signed", text("s5"), { version: 5n, record: "r5" })).toBe(5n);
      expect(await store.get(name)).toEqual({ content: text("s5"), version: 5n, record: w.record("signed", "r5") });
      expect(await w.put("signed", text("s6"))).toBe(6n);
      expect(await w.put("signed", text("s9"), { version: 9n, record: "r9" })).toBe(9n);
      expect(await store.get(name)).toEqual({ content: text("s9"), version: 9n, record: w.record("signed", "r9") });
      expect(await w.put("fresh", text("one"), { version: 1n })).toBe(1n);
    });

    it("a given version that is not newer throws ABORTED naming both versions, and changes nothing", async () => {
      const dave = await w.name("dave");
      await w.put("dave", text("d3"), { version: 3n, record: "r3" });
      const before = await store.get(dave);
      for (const version of [3n, 2n, 1n]) {
        const err = await lostRaceOf(w.put("dave", text("stale"), { version, record: "stale record" }));
        expect(err.message).toContain(dave);
        expect(err.message).toMatch(/\b3\b/);
        expect(await store.get(dave)).toEqual(before);
      }
    });

    it("a given version outside 1..2^64-1 throws INVALID_ARGUMENT and changes nothing", async () => {
      for (const version of [0n, -1n, 1n << 64n]) {
        const err = await w.put("erin", text("x"), { version }).then(() => undefined, (e: unknown) => e);
        expect(isRemoteLogError(err, "INVALID_ARGUMENT"), `version ${version}: ${String(err)}`).toBe(true);
      }
      const erin = await w.name("erin");
      expect(await store.get(erin)).toBeUndefined();
      const max = (1n << 64n) - 1n;
      expect(await w.put("erin", text("max"), { version: max })).toBe(max);
      expect((await store.get(erin))?.version).toBe(max);
    });

    it("expectedVersion and version are both checked", async () => {
      await w.put("frank", text("f2"), { version: 2n });
      await lostRaceOf(w.put("frank", text("x"), { expectedVersion: 1n, version: 7n }));
      await lostRaceOf(w.put("frank", text("x"), { expectedVersion: 2n, version: 2n }));
      expect((await store.get(await w.name("frank")))?.version).toBe(2n);
      expect(await w.put("frank", text("f7"), { expectedVersion: 2n, version: 7n })).toBe(7n);
    });

    it("of 50 concurrent puts of the same version, exactly one wins", async () => {
      const same = await w.name("same");
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => w.put("same", text(`contender ${i}`), { version: 4n, record: `record ${i}` })),
      );
      const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === "rejected") expect(isRemoteLogError(r.reason, "ABORTED")).toBe(true);
      expect(await store.get(same)).toEqual({ content: text(`contender ${winners[0]}`), version: 4n, record: w.record("same", `record ${winners[0]}`) });
    });

    it("of 50 concurrent puts expecting the same version, exactly one wins", async () => {
      await w.put("race", text("base"));
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => w.put("race", text(`contender ${i}`), { expectedVersion: 1n, record: `record ${i}` })),
      );
      const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(winners).toHaveLength(1);
      expect((results[winners[0]] as PromiseFulfilledResult<bigint>).value).toBe(2n);
      for (const r of results) if (r.status === "rejected") expect(isRemoteLogError(r.reason, "ABORTED")).toBe(true);
      const entry = await store.get(await w.name("race"));
      expect(entry).toEqual({ content: text(`contender ${winners[0]}`), version: 2n, record: w.record("race", `record ${winners[0]}`) });
    });

    it("50 concurrent unconditional puts are all applied, none lost", async () => {
      // A signed name has no unconditional update: the signer picks the sequence before the put, so
      // 50 writers that read the same version sign the same sequence, and all but one lose.
      if (signed) return;
      const versions = await Promise.all(Array.from({ length: 50 }, (_, i) => store.put("busy", text(`update ${i}`))));
      expect([...versions].sort((a, b) => Number(a - b))).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i + 1)));
      const entry = await store.get("busy");
      expect(entry?.version).toBe(50n);
      expect(entry?.content).toEqual(text(`update ${versions.indexOf(50n)}`));
    });

    it("keeps its own copy: changing the caller's buffers afterwards changes nothing", async () => {
      const content = text("content");
      await w.put("copy", content, { record: "record" });
      const record = w.record("copy", "record");
      const original = record.slice();
      content.fill(0);
      record.fill(0);
      const name = await w.name("copy");
      expect(await store.get(name)).toEqual({ content: text("content"), version: 1n, record: original });
      // Nor does changing what get returned.
      (await store.get(name))!.content.fill(0);
      expect((await store.get(name))!.content).toEqual(text("content"));
    });

    it("stores empty and large content", async () => {
      await w.put("empty", new Uint8Array(0));
      expect((await store.get(await w.name("empty")))?.content).toEqual(new Uint8Array(0));
      const large = Uint8Array.from({ length: 256 * 1024 }, (_, i) => (i * 7) % 256);
      await w.put("large", large);
      // equalBytes, not toEqual: vitest compares typed arrays element by element, slowly.
      expect(equalBytes((await store.get(await w.name("large")))!.content, large)).toBe(true);
    });

    it("close is idempotent", async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
