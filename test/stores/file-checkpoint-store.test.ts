import { createHash } from "node:crypto";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CheckpointStore } from "../../core/checkpoint-store.js";
import { FileCheckpointStore } from "../../stores/file/checkpoint-store.js";
import { checkpointStoreContract } from "../contract/checkpoint-store.contract.js";
import { deadPid, TempDirs, failure } from "./temp.js";

const contractDirs = new TempDirs();
checkpointStoreContract(
  "file",
  async () => FileCheckpointStore.open(await contractDirs.make()),
  async (store: CheckpointStore) => {
    await store.close();
    await contractDirs.removeAll();
  },
);

const id = (fill: number) => new Uint8Array(32).fill(fill);

describe("file checkpoint store - on disk", () => {
  const dirs = new TempDirs();
  afterEach(() => dirs.removeAll());

  it("open - a dir that is not a path (empty, a NUL byte, not a string) is INVALID_ARGUMENT naming it", async () => {
    for (const dir of ["", "a\0b", 5]) {
      await expect(FileCheckpointStore.open(dir as string)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("dir takes the path of a directory") });
    }
  });

  it("reopen - checkpoints survive a close", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    await store.save("alice", { delivered: 10, lastId: id(1) });
    await store.save("bob", { delivered: 0, lastId: new Uint8Array(0) });
    await store.close();
    const again = await FileCheckpointStore.open(dir);
    expect(await again.load("alice")).toEqual({ delivered: 10, lastId: id(1) });
    expect(await again.load("bob")).toEqual({ delivered: 0, lastId: new Uint8Array(0) });
    await again.close();
  });

  it("format - one JSON file per name, named by the sha256 of the name, holding the name and lastId in hex", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    await store.save("../alice", { delivered: 3, lastId: id(0xab) });
    const file = `${createHash("sha256").update("../alice").digest("hex")}.json`;
    expect(await readdir(dir)).toEqual([file]);
    expect(store.pathOf("../alice")).toBe(join(dir, file));
    expect(JSON.parse(await readFile(join(dir, file), "utf8"))).toEqual({ format: 1, name: "../alice", delivered: 3, lastId: "ab".repeat(32) });
    await store.close();
  });

  it("leftovers - temporary files of dead writers are removed at open, the checkpoint they would have replaced stays", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    await store.save("alice", { delivered: 1, lastId: id(1) });
    await store.close();
    const path = store.pathOf("alice");
    const dead = `${path}.${deadPid()}-0123456789ab.tmp`;
    const live = `${path}.${process.pid}-0123456789ab.tmp`;
    await writeFile(dead, '{"format":1,"name":"alice","deli');
    await writeFile(live, "in progress");
    const again = await FileCheckpointStore.open(dir);
    const left = await readdir(dir);
    expect(left.map((name) => join(dir, name))).not.toContain(dead);
    expect(left.map((name) => join(dir, name))).toContain(live);
    expect(await again.load("alice")).toEqual({ delivered: 1, lastId: id(1) });
    await again.close();
  });

  it("damage - a file that is not JSON, belongs to another name or holds impossible values is DATA_LOSS naming it", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    await store.save("alice", { delivered: 1, lastId: id(1) });
    await copyFile(store.pathOf("alice"), store.pathOf("mallory"));
    expect((await failure(store.load("mallory"), "DATA_LOSS")).message).toContain(store.pathOf("mallory"));

    const cases = [
      "{not json",
      "null",
      '{"format":2,"name":"x","delivered":1,"lastId":""}',
      '{"format":1,"name":"x","delivered":-1,"lastId":""}',
      '{"format":1,"name":"x","delivered":1,"lastId":"zz"}',
    ];
    for (const text of cases) {
      await writeFile(store.pathOf("x"), text);
      const err = await failure(store.load("x"), "DATA_LOSS");
      expect(err.message, text).toContain(store.pathOf("x"));
    }
    await store.close();
  });

  it("a delivered count that is not a non-negative integer is INVALID_ARGUMENT and saves nothing", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    for (const delivered of [-1, 1.5, Number.NaN]) await failure(store.save("bad", { delivered, lastId: id(1) }), "INVALID_ARGUMENT");
    expect(await store.load("bad")).toBeUndefined();
    await store.close();
  });

  it("a closed store refuses calls with INTERNAL; saves called before close complete", async () => {
    const dir = await dirs.make();
    const store = await FileCheckpointStore.open(dir);
    const pending = store.save("alice", { delivered: 5, lastId: id(5) });
    await store.close();
    await pending;
    await failure(store.load("alice"), "INTERNAL");
    const again = await FileCheckpointStore.open(dir);
    expect(await again.load("alice")).toEqual({ delivered: 5, lastId: id(5) });
    await again.close();
  });
});
