import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileCheckpointStore, loadKey, openRemote, repairLog, Sender } from "../../lib/index.js";
import { cleanup, tempDir } from "../helpers/processes.js";

afterAll(cleanup);

/**
 * The README's promise, "branch on details (file, offset, seq, …), never on the message text", for the
 * errors of a user's own files that are not damage: each names its file in details.file, where only
 * DATA_LOSS and CONFLICT did (the NOT_FOUND, PERMISSION_DENIED and INTERNAL of a file named it in the
 * text alone).
 */
describe("an error about one of the user's own files names it in details.file", () => {
  it("a local log whose log.bin is a directory (INTERNAL), a directory with no local log (NOT_FOUND), a key file that is a directory (INVALID_ARGUMENT), a checkpoint that is a directory", async () => {
    const dir = await tempDir();
    // Nothing listens there: opening a Sender does not need its server.
    const remote = openRemote("http://127.0.0.1:9");
    try {
      const data = join(dir, "alice");
      await mkdir(join(data, "log.bin"), { recursive: true });
      await expect(Sender.open({ remote, name: "n", unsigned: true, data })).rejects.toMatchObject({ code: "INTERNAL", details: { file: join(data, "log.bin") } });

      await mkdir(join(dir, "empty"));
      await expect(repairLog({ data: join(dir, "empty") })).rejects.toMatchObject({ code: "NOT_FOUND", details: { file: join(dir, "empty", "log.bin") } });

      await mkdir(join(dir, "alice.key"));
      await expect(loadKey(join(dir, "alice.key"))).rejects.toMatchObject({ code: "INVALID_ARGUMENT", details: { file: join(dir, "alice.key") } });

      const state = join(dir, "bob");
      const checkpoints = await FileCheckpointStore.open(state);
      await checkpoints.save("n", { delivered: 1, lastId: new Uint8Array(32) });
      // The checkpoint's file, where the name's checkpoint was saved, is now a directory.
      const [file] = await readdir(state);
      await rm(join(state, file));
      await mkdir(join(state, file));
      await expect(checkpoints.load("n")).rejects.toMatchObject({ details: { file: join(state, file) } });
    } finally {
      remote.close();
    }
  });
});
