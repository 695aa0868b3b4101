import { afterAll, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "kubo-rpc-client";
import { CarReader } from "@ipld/car";
import { CID } from "multiformats/cid";
import { equalBytes } from "../../core/hash.js";
import { cleanup, lines, runCli, startServer, tempDir } from "../helpers/processes.js";
import { useIpfs } from "./ipfs-node.js";

const ipfsNode = useIpfs();
afterAll(cleanup);

describe("export - an IPFS node takes the CAR", () => {
  it("ipfs dag import accepts an exported remote log, and the node then serves every block of it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4", "--embed", "none"], { stdin: lines(30) })).code).toBe(0);
    const car = join(dir, "log.car");
    const exported = await runCli(["export", "--car", car, "--name", name, "--from", server.url]);
    expect(exported.code, exported.stderr).toBe(0);
    const root = exported.stdout.trim();

    const bytes = await readFile(car);
    const reader = await CarReader.fromBytes(bytes);
    const blocks: { cid: string; bytes: Uint8Array }[] = [];
    for await (const block of reader.blocks()) blocks.push({ cid: block.cid.toString(), bytes: block.bytes });
    expect(blocks.length).toBeGreaterThanOrEqual(30 + 7); // every message, every sealed page, the head

    const ipfs = create({ url: ipfsNode().url });
    const roots: string[] = [];
    for await (const result of ipfs.dag.import((async function* () {
      yield bytes;
    })())) {
      roots.push(result.root.cid.toString());
    }
    expect(roots).toEqual([root]);
    for (const block of blocks) {
      const served = await ipfs.block.get(CID.parse(block.cid), { offline: true } as never);
      expect(equalBytes(served, block.bytes), block.cid).toBe(true);
    }
  }, 120_000);
});
