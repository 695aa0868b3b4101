import { ClassicLevel } from "classic-level";
import { afterEach, describe, expect, it } from "vitest";
import type { NameStore } from "../../core/name-store.js";
import { LevelNameStore } from "../../stores/level/name-store.js";
import { nameStoreContract } from "../contract/name-store.contract.js";
import { TempDirs, failure, text } from "./temp.js";

const contractDirs = new TempDirs();
nameStoreContract(
  "level",
  async () => LevelNameStore.open(await contractDirs.make()),
  async (store: NameStore) => {
    await store.close();
    await contractDirs.removeAll();
  },
);
nameStoreContract(
  "level",
  async () => LevelNameStore.open(await contractDirs.make()),
  async (store: NameStore) => {
    await store.close();
    await contractDirs.removeAll();
  },
  { signedOnly: true },
);
// As `serve` opens it: the count kept as names are made, not read from every key.
nameStoreContract(
  "level, counted",
  async () => LevelNameStore.open(await contractDirs.make(), { counted: true }),
  async (store: NameStore) => {
    await store.close();
    await contractDirs.removeAll();
  },
);

describe("level name store - on disk", () => {
  const dirs = new TempDirs();
  const opened: LevelNameStore[] = [];
  const openStore = async (dir: string) => {
    const store = await LevelNameStore.open(dir);
    opened.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
    await dirs.removeAll();
  });

  it("reopen - contents, versions and records survive a close, and versions go on from there", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put("alice", text("a1"));
    await store.put("alice", text("a2"), { expectedVersion: 1n, record: text("signed a2") });
    await store.put("bob", text("b1"));
    await store.close();

    const again = await openStore(dir);
    expect(await again.get("alice")).toEqual({ content: text("a2"), version: 2n, record: text("signed a2") });
    expect(await again.get("bob")).toEqual({ content: text("b1"), version: 1n, record: new Uint8Array(0) });
    await failure(again.put("alice", text("stale"), { expectedVersion: 1n }), "ABORTED");
    expect(await again.put("alice", text("a3"), { expectedVersion: 2n })).toBe(3n);
    expect(await again.count()).toBe(2);
  });

  it("reopen - a name dropped with its record stays dropped: the tombstone survives a close, and only a newer version is taken", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put("k51-alice", text("s5"), { version: 5n, record: text("record 5") });
    await store.put("bob", text("b1"));
    expect(await store.drop("k51-alice")).toBe(true);
    await store.close();

    const again = await LevelNameStore.open(dir, { counted: true });
    opened.push(again);
    const err = await failure(again.put("k51-alice", text("s5"), { version: 5n, record: text("record 5") }), "CONFLICT");
    expect(err.message).toContain("dropped by the operator at sequence 5");
    await failure(again.put("k51-alice", text("s4"), { version: 4n, record: text("record 4") }), "CONFLICT");
    expect(await again.get("k51-alice")).toBeUndefined();
    expect(await again.droppedAt("k51-alice")).toBe(5n);
    expect(await again.count()).toBe(1);
    // A drop repeated after the reopen keeps the tombstone.
    expect(await again.drop("k51-alice")).toBe(false);
    expect(await again.droppedAt("k51-alice")).toBe(5n);
    const listed: string[] = [];
    for await (const [name] of again.list({ limit: 1 })) listed.push(name);
    expect(listed).toEqual(["bob"]);
    expect(await again.put("k51-alice", text("s6"), { version: 6n, record: text("record 6") })).toBe(6n);
    expect(await again.count()).toBe(2);
    await again.close();
    const third = await openStore(dir);
    expect(await third.get("k51-alice")).toEqual({ content: text("s6"), version: 6n, record: text("record 6") });
    expect(await third.droppedAt("k51-alice")).toBeUndefined();
    expect(await third.count()).toBe(2);
  });

  it("versions - a name whose version the store no longer keeps in memory is read again, not restarted", async () => {
    const store = await openStore(await dirs.make());
    // More names than the store keeps versions of (4,096), so the first ones' are dropped.
    for (let i = 0; i < 5000; i++) await store.put(`name ${i}`, text(`${i} v1`));
    await store.put("name 0", text("0 v2"), { expectedVersion: 1n });
    for (let i = 1; i < 5000; i++) await store.put(`name ${i}`, text(`${i} v2`));
    await failure(store.put("name 0", text("stale"), { expectedVersion: 1n }), "ABORTED");
    expect(await store.put("name 0", text("0 v3"), { expectedVersion: 2n })).toBe(3n);
    expect(await store.put("name 4999", text("4999 v3"))).toBe(3n);
    expect(await store.get("name 0")).toEqual({ content: text("0 v3"), version: 3n, record: new Uint8Array(0) });
  });

  it("count - counts names, not updates; kept when opened counted, from what is on disk and each new name, concurrent puts too", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    expect(await store.count()).toBe(0);
    for (let i = 0; i < 5; i++) await store.put(`name ${i % 3}`, text(`${i}`));
    expect(await store.count()).toBe(3);
    await store.close();
    const counted = await LevelNameStore.open(dir, { counted: true });
    opened.push(counted);
    expect(await counted.count()).toBe(3);
    await Promise.all(Array.from({ length: 40 }, (_, i) => counted.put(`name ${i % 20}`, text(`${i}`)).catch(() => {})));
    expect(await counted.count()).toBe(20);
  });

  it("a second open of an open store is CONFLICT, and works once the first is closed", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put("x", text("1"));
    const err = await failure(LevelNameStore.open(dir), "CONFLICT");
    expect(err.message).toContain(dir);
    await store.close();
    const again = await openStore(dir);
    expect((await again.get("x"))?.version).toBe(1n);
  });

  it("a value that does not decode is DATA_LOSS naming the name", async () => {
    const dir = await dirs.make();
    const raw = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    await raw.put("broken", Uint8Array.of(1, 0, 0));
    await raw.put("wrong format", new Uint8Array(20).fill(9));
    await raw.close();
    const store = await openStore(dir);
    expect((await failure(store.get("broken"), "DATA_LOSS")).message).toContain("broken");
    await failure(store.get("wrong format"), "DATA_LOSS");
    await failure(store.put("broken", text("over it")), "DATA_LOSS");
  });

  it("a closed store refuses calls with INTERNAL", async () => {
    const store = await openStore(await dirs.make());
    await store.close();
    await failure(store.get("x"), "INTERNAL");
    await failure(store.put("x", text("late")), "INTERNAL");
  });

  it("puts called before close complete; close waits for them", async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const puts = Array.from({ length: 20 }, (_, i) => store.put("busy", text(`${i}`)));
    await store.close();
    expect((await Promise.all(puts)).at(-1)).toBe(20n);
    const again = await openStore(dir);
    expect(await again.get("busy")).toEqual({ content: text("19"), version: 20n, record: new Uint8Array(0) });
  });
});
