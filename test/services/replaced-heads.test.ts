import { describe, expect, test } from "vitest";
import { addressOf } from "../../core/hash.js";
import { RemoteLogError } from "../../core/errors.js";
import { HeadIndex } from "../../services/gateway.js";
import { REPLACED_HEAD_LIMITS } from "../../services/replaced-heads.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

/*
 * The bounds on the head pages the gateway serves after their name moved on (services/replaced-heads.ts),
 * through the head index over a real in-memory NS, on a clock the test moves: what a stranger
 * publishing fast can and cannot make the server hold. test/services/gateway.test.ts shows the same
 * pages served by a real `serve` over HTTP.
 */

/** A page of exactly size bytes, told apart by label. */
function page(label: string, size = 64): Uint8Array {
  const bytes = new Uint8Array(size).fill(0x2e);
  bytes.set(Buffer.from(label).subarray(0, size));
  return bytes;
}

function setup(limits: Partial<typeof REPLACED_HEAD_LIMITS> = {}, names = new MemoryNameStore()) {
  let clock = 1_000;
  const index = new HeadIndex(names, { limits, now: () => clock });
  const versions = new Map<string, bigint>();
  return {
    index,
    tick: (ms: number) => (clock += ms),
    /** Publishes each page in turn as name's head. */
    publish: async (name: string, ...pages: Uint8Array[]) => {
      for (const content of pages) versions.set(name, await index.store.put(name, content, { expectedVersion: versions.get(name) ?? 0n }));
    },
    /** Which of pages the index serves. */
    served: async (...pages: Uint8Array[]) => Promise.all(pages.map(async (content) => (await index.find(addressOf(content))) !== undefined)),
  };
}

describe("replaced heads", () => {
  test("replaced heads - a page is served for ttlMs after its name moved on, then not", async () => {
    const { publish, served, tick } = setup({ ttlMs: 10_000 });
    const [a, b, c] = [page("a"), page("b"), page("c")];
    await publish("alice", a, b);
    tick(6_000);
    await publish("alice", c);
    expect(await served(a, b, c)).toEqual([true, true, true]);
    tick(4_000); // a was replaced 10 s ago
    expect(await served(a, b, c)).toEqual([false, true, true]);
    tick(6_000);
    expect(await served(a, b, c)).toEqual([false, false, true]);
  });

  test("replaced heads - the bytes kept are bounded server-wide: the oldest replaced page goes first, whoever's it was", async () => {
    // Room for three pages of 1000 bytes: a fourth replaced page pushes out the oldest of any name.
    const { index, publish, served } = setup({ maxBytes: 3_500 });
    const [a1, a2, b1, b2, c1, c2] = ["a1", "a2", "b1", "b2", "c1", "c2"].map((label) => page(label, 1_000));
    await publish("alice", a1, a2);
    await publish("bob", b1, b2);
    await publish("carol", c1);
    expect(await served(a1, b1)).toEqual([true, true]);
    await publish("carol", c2);
    expect(await served(a1, a2, b1, b2, c1, c2)).toEqual([true, true, true, true, true, true]);
    // Two more replaced pages, of a stranger's name: alice's a1 and bob's b1 go.
    await publish("stranger", page("s1", 1_000), page("s2", 1_000), page("s3", 1_000));
    expect(await served(a1, b1, c1)).toEqual([false, false, true]);
    expect(index.replaced!.size).toEqual({ bytes: 3_000, entries: 3 });
    // A page larger than the whole bound is not kept at all, and pushes nothing out.
    const huge = page("huge", 4_000);
    await publish("stranger", huge);
    const before = index.replaced!.size;
    await publish("stranger", page("s4", 1_000));
    expect(await served(huge)).toEqual([false]);
    expect(index.replaced!.size).toEqual(before);
  });

  test("replaced heads - a page kept for several names counts once, and stays while any keeps it", async () => {
    const { index, publish, served } = setup({ perName: 1 });
    const shared = page("shared", 1_000);
    await publish("alice", shared, page("a2"));
    await publish("bob", shared, page("b2"));
    expect(index.replaced!.size).toEqual({ bytes: 1_000, entries: 2 });
    await publish("alice", page("a3"));
    expect(await served(shared)).toEqual([true]);
    await publish("bob", page("b3"));
    expect(await served(shared)).toEqual([false]);
  });

  test("replaced heads - so many small pages that entries, not bytes, are the bound", async () => {
    const { index, publish, served } = setup({ maxEntries: 4 });
    const first = page("n0 0", 8);
    await publish("n0", first, page("n0 1", 8));
    for (let n = 1; n < 4; n++) await publish(`n${n}`, page(`n${n} 0`, 8), page(`n${n} 1`, 8));
    expect(await served(first)).toEqual([true]);
    await publish("n4", page("n4 0", 8), page("n4 1", 8));
    expect(await served(first)).toEqual([false]);
    expect(index.replaced!.size.entries).toBe(4);
  });

  test("replaced heads - a put that fails keeps nothing; a dropped name's pages go at once", async () => {
    const { index, publish, served } = setup();
    const [a, b] = [page("a"), page("b")];
    await publish("alice", a);
    // The wrong expected version: the store refuses, and a is still the head, not a replaced page.
    await expect(index.store.put("alice", b, { expectedVersion: 5n })).rejects.toBeInstanceOf(RemoteLogError);
    expect(index.replaced!.size.entries).toBe(0);
    expect(await served(a, b)).toEqual([true, false]);

    await publish("alice", b);
    expect(await served(a, b)).toEqual([true, true]);
    expect(await index.store.drop!("alice")).toBe(true);
    expect(await served(a, b)).toEqual([false, false]);
  });

  test("replaced heads - a store that cannot list (IPNS: its heads are in the CAS) keeps none", async () => {
    const memory = new MemoryNameStore();
    const unlisted = { get: memory.get.bind(memory), put: memory.put.bind(memory), close: memory.close.bind(memory) };
    const { publish, served } = setup({}, unlisted as unknown as MemoryNameStore);
    const [a, b] = [page("a"), page("b")];
    await publish("alice", a, b);
    expect(await served(a, b)).toEqual([false, true]);
  });
});
