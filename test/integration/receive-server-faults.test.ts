import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { addressOf, addressText, decodeMessage, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { RemoteLogError } from "../../core/errors.js";
import { encodePage } from "../../core/page.js";
import { RemoteLogSchema, RemoteLog_PairSchema } from "../../gen/vac/cas/cas_pb.js";
import { openRemote, Receiver } from "../../lib/index.js";
import { cleanup, lines, parseJsonl, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/*
 * One block the server cannot give (damaged in its pack, or not stored) fails the whole GetMany call
 * it is in. Before, a receiver's fetch of up to 4,096 messages failed whole: it delivered none of the
 * intact messages before that block, and its error named no name, seq or address.
 */

interface Delivered {
  seq: number;
  address: string;
}

const seqs = (stdout: string) => parseJsonl<Delivered>(stdout).map((line) => line.seq);
const upTo = (end: number) => Array.from({ length: end }, (_, i) => i);

/** Flips a byte of the body `body` inside the pack that holds it (a stopped server's data dir); how many packs held it. */
async function damageBody(data: string, body: string): Promise<number> {
  const packsDir = join(data, "cas", "packs");
  let damaged = 0;
  for (const name of await readdir(packsDir)) {
    const bytes = await readFile(join(packsDir, name));
    const at = bytes.indexOf(Buffer.from(body));
    if (at === -1) continue;
    bytes[at + body.length - 1] ^= 0x01;
    await writeFile(join(packsDir, name), bytes);
    damaged++;
  }
  return damaged;
}

describe("receive - a block the server holds damaged or lacks", () => {
  it("damaged: receive prints seqs 0..999, then DATA_LOSS naming the name, seq 1000 and its address; a second receive prints nothing and fails the same way", { timeout: 90_000 }, async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // Every message in the CAS (none embedded in the head), each body found in the packs by its text.
    const sent = await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(1200) });
    expect(sent.code, sent.stderr).toBe(0);
    // Message 1000's address, as an intact read gives it.
    const intact = await runCli(["receive", "--unsigned", "--name", "c", "--server", server.url, "--from-seq", "1000", "--batch", "1"]);
    expect(intact.code, intact.stderr).toBe(0);
    const address = parseJsonl<Delivered>(intact.stdout)[0].address;
    await stop(server.process);
    expect(await damageBody(data, "message 1000")).toBe(1);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);

    const receive = () => runCli(["receive", "--unsigned", "--name", "c", "--server", server.url, "--state", join(dir, "bob"), "--retry-for", "1"]);
    const first = await receive();
    expect(first.code).not.toBe(0);
    expect(seqs(first.stdout)).toEqual(upTo(1000));
    expect(first.stderr).toMatch(new RegExp(`DATA_LOSS: name "c" seq 1000: .*block ${address} in pack [0-9a-f]{32}\\.pack does not match its address`));
    expect(first.stderr).not.toContain(data);
    const second = await receive();
    expect(second.code).not.toBe(0);
    expect(second.stdout).toBe("");
    expect(second.stderr).toMatch(new RegExp(`DATA_LOSS: name "c" seq 1000: .*block ${address} `));

    // Through the library: the error's details name the name, the seq and the block.
    const remote = openRemote(server.url);
    const bob = await Receiver.open({ remote, name: "c", unsigned: true });
    try {
      const got: number[] = [];
      const err = await bob.sync(async (batch) => void got.push(...batch.map((delivery) => delivery.seq))).catch((caught: unknown) => caught);
      expect(err).toBeInstanceOf(RemoteLogError);
      expect((err as RemoteLogError).code).toBe("DATA_LOSS");
      expect((err as RemoteLogError).details).toMatchObject({ name: "c", seq: 1000, address });
      expect(got).toEqual(upTo(1000));
    } finally {
      await bob.close();
      remote.close();
    }
  });

  it("not stored: receive prints seqs 0..999, then NOT_FOUND naming the name, seq 1000 and its address; a second receive prints nothing and fails the same way", { timeout: 90_000 }, async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const remote = openRemote(server.url);
    try {
      // A head page of 1,200 pairs whose messages are all stored but message 1000's.
      const group = new Uint8Array(32);
      const blocks = Array.from({ length: 1200 }, (_, i) => encodeMessage(newMessage(group, BigInt(i + 1), new TextEncoder().encode(`message ${i}`))));
      await remote.putBlocks(blocks.filter((_, i) => i !== 1000));
      // A page lists its pairs newest first.
      const pairs = blocks.map((block) => create(RemoteLog_PairSchema, { localHash: messageId(decodeMessage(block)), remoteHash: addressOf(block) })).reverse();
      await remote.updateName("gone", encodePage(create(RemoteLogSchema, { pair: pairs })), 0n);
      const address = addressText(addressOf(blocks[1000]));

      const receive = () => runCli(["receive", "--unsigned", "--name", "gone", "--server", server.url, "--state", join(dir, "bob"), "--retry-for", "1"]);
      const first = await receive();
      expect(first.code).not.toBe(0);
      expect(seqs(first.stdout)).toEqual(upTo(1000));
      expect(first.stderr).toMatch(new RegExp(`NOT_FOUND: name "gone" seq 1000: .*block ${address} is not stored`));
      const second = await receive();
      expect(second.code).not.toBe(0);
      expect(second.stdout).toBe("");
      expect(second.stderr).toMatch(new RegExp(`NOT_FOUND: name "gone" seq 1000: .*block ${address} is not stored`));

      const bob = await Receiver.open({ remote, name: "gone", unsigned: true });
      try {
        const got: number[] = [];
        const err = await bob.sync(async (batch) => void got.push(...batch.map((delivery) => delivery.seq))).catch((caught: unknown) => caught);
        expect(err).toBeInstanceOf(RemoteLogError);
        expect((err as RemoteLogError).code).toBe("NOT_FOUND");
        expect((err as RemoteLogError).details).toMatchObject({ name: "gone", seq: 1000, address });
        expect(got).toEqual(upTo(1000));
      } finally {
        await bob.close();
      }
    } finally {
      remote.close();
    }
  });
});
