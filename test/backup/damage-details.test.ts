import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../backup/backup.js";
import { exportPackChain, importCar } from "../../backup/car.js";
import { LocalLogSource } from "../../backup/local-source.js";
import { DirPackStore } from "../../backup/pack-store.js";
import { runRestore } from "../../backup/restore.js";
import { verifyPackChain } from "../../backup/verify.js";
import { openRemote, Receiver, Sender, type LogRemote } from "../../lib/index.js";
import { cleanup, startServer, tempDir, type Server } from "../helpers/processes.js";
import { writeLog } from "./helpers.js";

/**
 * Damage found in a local file is DATA_LOSS naming the file (and the object, offset and seq where
 * known) in its text and in err.details, where a caller branches. Each case damages a real file on disk.
 */
describe("local files - damage names its file in details", () => {
  afterEach(cleanup);

  /** A backup of a 600-message log into a directory of packs (64 KiB each), and the packs' names, head first. */
  async function backedUp(): Promise<{ dir: string; packs: string; head: string; older: string[] }> {
    const dir = await tempDir();
    await writeLog(join(dir, "alice"), 600, { bodySize: 200 });
    const packs = join(dir, "packs");
    const source = await LocalLogSource.open(join(dir, "alice"));
    let head: string;
    try {
      head = (await runBackup({ source, target: new DirPackStore(packs), packSize: 64 << 10 })).head;
    } finally {
      await source.close();
    }
    const older = (await readdir(packs)).filter((name) => name.startsWith("b") && name !== head);
    expect(older.length).toBeGreaterThan(0);
    return { dir, packs, head, older };
  }

  async function flipMiddleByte(file: string): Promise<Buffer> {
    const bytes = await readFile(file);
    bytes[bytes.length >> 1] ^= 0xff;
    await writeFile(file, bytes);
    return bytes;
  }

  it("a pack file of a directory backup with a flipped byte: restore and verify name the file and the pack, and leave it as it is", async () => {
    const { dir, packs, older } = await backedUp();
    const victim = older[0];
    const file = join(packs, victim);
    const damaged = await flipMiddleByte(file);
    const store = new DirPackStore(packs);
    const head = (await store.readHead())!.pack;
    // The old restore's DATA_LOSS named the pack in its text only: details was {}.
    await expect(runRestore({ store, head, to: join(dir, "restored") })).rejects.toMatchObject({
      code: "DATA_LOSS",
      message: expect.stringContaining(file),
      details: { file, address: victim },
    });
    const report = await verifyPackChain(store, head, { readData: true });
    expect(report.faults).toEqual([expect.objectContaining({ object: victim, code: "DATA_LOSS", problem: expect.stringContaining(file) })]);
    expect(await readFile(file)).toEqual(damaged);
    await expect(readdir(join(dir, "restored"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a HEAD that holds no pack's CID is DATA_LOSS naming the HEAD file", async () => {
    const { packs } = await backedUp();
    const file = join(packs, "HEAD");
    await flipMiddleByte(file);
    // The old readHead's details were {}.
    await expect(new DirPackStore(packs).readHead()).rejects.toMatchObject({ code: "DATA_LOSS", details: { file } });
  });

  it("a CAR file with a flipped byte in a block is DATA_LOSS naming the file and the block", async () => {
    const { dir, packs } = await backedUp();
    const store = new DirPackStore(packs);
    const car = join(dir, "backup.car");
    await exportPackChain(store, (await store.readHead())!.pack, car);
    const bytes = await readFile(car);
    // The CAR's last bytes are the body of its last block (the oldest pack).
    bytes[bytes.length - 10] ^= 0xff;
    await writeFile(car, bytes);
    const refused = importCar(car, new DirPackStore(join(dir, "imported")));
    // The old import's details were {}.
    await expect(refused).rejects.toMatchObject({ code: "DATA_LOSS", details: { file: car, address: expect.stringMatching(/^bafk/) } });
  });
});

describe("local files - a held lock names its file in details", () => {
  let server: Server;
  let remote: LogRemote;

  beforeAll(async () => {
    server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    remote = openRemote(server.url);
  });
  afterAll(async () => {
    remote.close();
    await cleanup();
  });

  it("a second Receiver.open on a state directory, or Sender.open on a data directory, is CONFLICT naming the LOCK file", async () => {
    const dir = await tempDir();
    const state = join(dir, "bob");
    const receiver = await Receiver.open({ remote, name: "chat", unsigned: true, state });
    // The old CONFLICT named the lock in its text only: details was {}.
    await expect(Receiver.open({ remote, name: "chat", unsigned: true, state })).rejects.toMatchObject({ code: "CONFLICT", details: { file: expect.stringContaining(state) } });
    await receiver.close();

    const data = join(dir, "alice");
    const sender = await Sender.open({ remote, name: "chat", unsigned: true, data });
    await expect(Sender.open({ remote, name: "chat", unsigned: true, data })).rejects.toMatchObject({ code: "CONFLICT", details: { file: expect.stringContaining(data) } });
    await sender.close();
  });
});
