import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { openRemote, repairLog, Sender } from "../../lib/index.js";
import { decodeMessage } from "../../core/hash.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { cleanup, startServer, tempDir } from "../helpers/processes.js";
import { remoteBodies, shrinkingServer } from "../helpers/library.js";

const SMALL_LIMIT = 65_536;

async function localBodies(data: string): Promise<string[]> {
  const log = await FileLocalLog.open(data, { readOnly: true });
  try {
    return (await log.read(0, log.length)).map((entry) => new TextDecoder().decode(decodeMessage(entry.data).body));
  } finally {
    await log.close();
  }
}

/** repairLog, the library's way out of what a Sender refuses in its own log, against real `remotelog serve` processes. */
describe("repairLog", () => {
  afterEach(cleanup);

  test("repairLog - a message the server's smaller --max-block can never take is set aside, a copy kept, and the rest is published", async () => {
    const { remote, data, shrink } = await shrinkingServer();
    try {
      const sender = await Sender.open({ remote, name: "shrunk", unsigned: true, data });
      await sender.send(["a0"]);
      await shrink(SMALL_LIMIT);
      const refused = await sender.send(["a1", "x".repeat(100_000), "b0"]).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toMatchObject({ code: "TOO_LARGE", details: { seq: 2 } });
      expect((refused as Error).message).toContain("repairLog({ data, remote })");

      // While the sender holds the log, nothing is touched.
      await expect(repairLog({ data, remote })).rejects.toMatchObject({ code: "CONFLICT" });
      await sender.close();

      const report = await repairLog({ data, remote });
      expect(report).toMatchObject({ changed: true, before: 4, after: 3, setAside: [{ seq: 2 }] });
      expect(report.setAside[0].why).toMatch(/^100\d\d\d bytes, over the CAS's block limit of 65536: it can never be published$/);
      expect((await readFile(report.setAside[0].savedTo)).length).toBeGreaterThan(100_000);
      expect(await localBodies(data)).toEqual(["a0", "a1", "b0"]);

      const reopened = await Sender.open({ remote, name: "shrunk", unsigned: true, data });
      await expect(reopened.publish()).resolves.toMatchObject({ published: 3 });
      await reopened.close();
      expect(await remoteBodies(remote, "shrunk")).toEqual(["a0", "a1", "b0"]);
      // A healthy log is left alone: repeating it changes nothing.
      await expect(repairLog({ data, remote })).resolves.toMatchObject({ changed: false, before: 3, after: 3 });
    } finally {
      remote.close();
    }
  });

  test("repairLog - a damaged record is set aside, and with fromRemote refilled from the sender's own remote log, checked", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const remote = openRemote(server.url);
    const data = join(dir, "alice");
    try {
      const sender = await Sender.open({ remote, name: "damaged", unsigned: true, data });
      await sender.send(["first message", "second message", "third message"]);
      await sender.close();
      // One byte of the second message's body flipped on disk: its record's checksum no longer matches.
      const logPath = join(data, "log.bin");
      const bytes = await readFile(logPath);
      bytes[bytes.indexOf("second message") + 3] ^= 0xff;
      await writeFile(logPath, bytes);
      await expect(Sender.open({ remote, name: "damaged", unsigned: true, data })).rejects.toMatchObject({ code: "DATA_LOSS", details: { seq: 1 } });

      // A refill needs the remote, and a name where the directory records none.
      await expect(repairLog({ data, fromRemote: true })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(repairLog({ data, remote, fromRemote: true, name: "another" })).rejects.toMatchObject({ code: "CONFLICT" });

      const report = await repairLog({ data, remote, fromRemote: true });
      expect(report).toMatchObject({ changed: true, before: 2, after: 3, refilled: 1, name: "damaged", redactedNotRefilled: 0, setAside: [{ seq: 1 }] });
      expect(await readdir(report.savedIn!)).toContain("log.bin");
      expect(await localBodies(data)).toEqual(["first message", "second message", "third message"]);
      const reopened = await Sender.open({ remote, name: "damaged", unsigned: true, data });
      await expect(reopened.send(["fourth message"])).resolves.toMatchObject({ published: 4 });
      await reopened.close();
      expect(await remoteBodies(remote, "damaged")).toEqual(["first message", "second message", "third message", "fourth message"]);
    } finally {
      remote.close();
    }
  });
});
