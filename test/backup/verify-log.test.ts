import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS } from "../../gen/vac/cas/cas_pb.js";
import { cleanup, lines, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

describe("verify - a remote log", () => {
  it("says when a log's head is signed by its key, and when nothing vouches for it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const key = join(dir, "alice.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const name = (await runCli(["key", "name", key])).stdout.trim();
    expect((await runCli(["send", "--key", key, "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(3) })).code).toBe(0);
    const signed = await runCli(["verify", "--name", name, "--from", server.url]);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stdout).toMatch(/^ok: 1 pages, 3 messages, \d+ bytes checked \(structure only\), 0 faults$/m);
    expect(JSON.parse((await runCli(["verify", "--name", name, "--from", server.url, "--json"])).stdout)).toMatchObject({ ok: true, signed: true });
  });

  it("checks the pages without reading messages, and names a corrupt message with --read-data", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await runCli(["send", "--unsigned", "--name", "v", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "16"], { stdin: lines(100) })).code).toBe(0);
    const clean = await runCli(["verify", "--name", "v", "--server", server.url, "--read-data", "--json"]);
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ kind: "log", ok: true, objects: 7, messages: 100, signed: false });
    await stop(server.process);

    // Damage one message's body where the server keeps it: its pack's index still checks out.
    const packsDir = join(data, "cas", "packs");
    let damaged = false;
    for (const name of await readdir(packsDir)) {
      const bytes = await readFile(join(packsDir, name));
      const at = bytes.indexOf("message 42\n".slice(0, 10));
      if (at === -1) continue;
      bytes[at] ^= 0x20;
      await writeFile(join(packsDir, name), bytes);
      damaged = true;
    }
    expect(damaged).toBe(true);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);

    const structure = await runCli(["verify", "--name", "v", "--from", server.url]);
    expect(structure.code, structure.stdout + structure.stderr).toBe(0);
    expect(structure.stdout).toMatch(/^ok: 7 pages, 100 messages, .* \(structure only\), 0 faults; its head is unsigned \("v" is a free-form name\): nothing vouches that its writer made it$/m);
    const full = await runCli(["verify", "--name", "v", "--from", server.url, "--read-data"]);
    expect(full.code).toBe(1);
    const faults = full.stdout.split("\n").filter((line) => line.startsWith("FAULT "));
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatch(/^FAULT bafkrei\w+: .*DATA_LOSS/);
    expect(full.stdout).toMatch(/^FAILED: 7 pages, 99 messages/m);
  });
});

describe("verify --name - a head that is not a page", () => {
  it("reports the head's fault as DATA_LOSS, in text and in --json, where it crashed with a ReferenceError", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    // A free-form name's head is whatever the NS holds: three bytes that decode as no vac.cas.RemoteLog.
    const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    await ns.update({ name: "junk", content: new Uint8Array([0xff, 0xff, 0xff]) });

    const text = await runCli(["verify", "--name", "junk", "--from", server.url]);
    expect(text.stderr).not.toMatch(/ReferenceError|before initialization|\n\s+at /);
    expect(text.code, text.stderr).toBe(1);
    expect(text.stdout).toMatch(/^FAULT head of "junk" \(bafkrei\w+\): DATA_LOSS: .*not a vac\.cas\.RemoteLog page/m);
    expect(text.stdout).toMatch(/^FAILED: 0 pages, 0 messages, 3 bytes checked \(structure only\), 1 faults$/m);
    expect(text.stderr).toMatch(/^remotelog: DATA_LOSS: verify found 1 fault in bafkrei\w+: /);

    const json = await runCli(["verify", "--name", "junk", "--from", server.url, "--json"]);
    expect(json.code, json.stderr).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ kind: "log", ok: false, objects: 0, messages: 0, bytes: 3, faults: [{ code: "DATA_LOSS" }] });
  });
});
