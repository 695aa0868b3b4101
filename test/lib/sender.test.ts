import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { openRemote, Sender } from "../../lib/index.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { cleanup, runCli, startServer, stop, tempDir } from "../helpers/processes.js";
import { remoteBodies, shrinkingServer } from "../helpers/library.js";

const SMALL_LIMIT = 65_536;
/** Over SMALL_LIMIT, well under the 1 MiB a sender assumes while it cannot reach the CAS. */
const BIG_BODY = "x".repeat(100_000);

/** A Sender whose server takes smaller blocks than the sender assumed, against real `remotelog serve` processes. */
describe("sender", () => {
  afterEach(cleanup);

  test("sender - opened offline, then a server with a smaller --max-block: the messages before the one it will never take are published, and every publish names that seq", async () => {
    const dir = await tempDir();
    const serverData = join(dir, "server");
    // A port nothing listens on while the sender is opened and appends; the server comes up on it later.
    const first = await startServer(["--listen", "127.0.0.1:0", "--data", serverData, "--max-block", String(SMALL_LIMIT)]);
    await stop(first.process);
    const remote = openRemote(first.url);
    const data = join(dir, "alice");
    try {
      const sender = await Sender.open({ remote, name: "big", unsigned: true, data });
      // Appended though unpublished: the offline sender assumes 1 MiB, so the big one is taken too.
      await expect(sender.send(["a0", "a1"])).rejects.toMatchObject({ code: "UNAVAILABLE" });
      await expect(sender.send([BIG_BODY])).rejects.toMatchObject({ code: "UNAVAILABLE" });
      await expect(sender.send(["b0"])).rejects.toMatchObject({ code: "UNAVAILABLE" });

      await startServer(["--listen", `127.0.0.1:${first.port}`, "--data", serverData, "--max-block", String(SMALL_LIMIT)]);
      // The old sender uploaded all four, and every publish failed on the server's refusal ("block N"),
      // naming no seq, with a0 and a1 never published.
      const refused = await sender.publish().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toMatchObject({ code: "TOO_LARGE", details: { seq: 2, limit: "block bytes", value: SMALL_LIMIT } });
      const text = (refused as Error).message;
      expect(text).toContain("seq 2");
      expect(text).toMatch(/is 1000\d\d bytes, over the CAS's block limit of 65536 bytes/);
      expect(text).toContain(`remotelog repair --data ${data} --server ${first.url}`);
      expect(await remoteBodies(remote, "big")).toEqual(["a0", "a1"]);

      // A later send still appends, and its publish says again which message holds the log up.
      await expect(sender.send(["c0"])).rejects.toMatchObject({ code: "TOO_LARGE", details: { seq: 2 } });
      // Now that the sender knows the server's limit, a message over it is refused before it is appended.
      await expect(sender.send(["y".repeat(SMALL_LIMIT)])).rejects.toMatchObject({ code: "TOO_LARGE", details: { taken: 0, value: SMALL_LIMIT } });
      await sender.close();

      // Nothing was cut or set aside unasked: the big message is in the local log as it was appended.
      const log = await FileLocalLog.open(data, { readOnly: true });
      const entries = await log.read(0, log.length);
      await log.close();
      expect(entries.map((entry) => entry.data.length > SMALL_LIMIT)).toEqual([false, false, true, false, false]);

      // The way out the error names: repair sets it aside (keeping a copy), and the rest is published.
      const repair = await runCli(["repair", "--data", data, "--server", first.url]);
      expect(repair.code, repair.stderr).toBe(0);
      expect(repair.stdout).toContain("(seq 2)");
      const reopened = await Sender.open({ remote, name: "big", unsigned: true, data });
      await expect(reopened.publish()).resolves.toMatchObject({ published: 4 });
      await reopened.close();
      expect(await remoteBodies(remote, "big")).toEqual(["a0", "a1", "b0", "c0"]);
    } finally {
      remote.close();
    }
  });

  test("sender - opened online, then its server restarted with a smaller --max-block: the server's refusal is learned from, the messages before the big one are published, the error names its seq", async () => {
    const { remote, data, shrink } = await shrinkingServer();
    try {
      // Opened against the 1 MiB server: that is the limit it learns.
      const sender = await Sender.open({ remote, name: "shrunk", unsigned: true, data });
      await expect(sender.send(["a0"])).resolves.toMatchObject({ published: 1 });
      await shrink(SMALL_LIMIT);

      // The old sender failed on the server's refusal, "block N", and published neither a1 nor b0 ever.
      const refused = await sender.send(["a1", BIG_BODY, "b0"]).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toMatchObject({ code: "TOO_LARGE", details: { seq: 2, value: SMALL_LIMIT } });
      expect((refused as Error).message).toMatch(/local message seq 2 is 1000\d\d bytes, over the CAS's block limit of 65536 bytes/);
      expect(await remoteBodies(remote, "shrunk")).toEqual(["a0", "a1"]);
      await expect(sender.publish()).rejects.toMatchObject({ code: "TOO_LARGE", details: { seq: 2 } });
      await sender.close();
    } finally {
      remote.close();
    }
  });
});
