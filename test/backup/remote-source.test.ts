import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Remote } from "../../actors/remote.js";
import { Sender } from "../../actors/sender.js";
import { RemoteLogSource } from "../../backup/remote-source.js";
import { addressOf, decodeMessage, encodeMessage, messageId, newMessage, toHex } from "../../core/hash.js";
import { FETCH_BYTES } from "../../core/log-reader.js";
import type { BackedUpTo } from "../../backup/source.js";
import { memoryWorld } from "../helpers/connect.js";
import { weighedRemote } from "../helpers/weighed-remote.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

const GROUP = new TextEncoder().encode("backup-reads");
/** Long enough for 19 reads of 4,096 messages, well past the 32,768 a backup may read ahead. */
const COUNT = 76_000;

/** A real Remote that notes, for each call for message blocks, the seq of its first message. */
class ReadOrderRemote extends Remote {
  readonly firstSeqs: number[] = [];
  /** Messages handed over by the source when each call was made. */
  readonly handedOverAt: number[] = [];
  handedOver = 0;

  constructor(
    url: string,
    private readonly seqOf: Map<string, number>,
  ) {
    super({ casUrl: url, nsUrl: url });
  }

  override async getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> {
    this.note(addresses);
    return super.getBlocks(addresses);
  }

  // A backup reads its messages within a byte budget (FETCH_BYTES).
  override async getBlocksWithin(addresses: Uint8Array[], maxBytes: number): Promise<(Uint8Array | undefined)[]> {
    this.note(addresses);
    return super.getBlocksWithin(addresses, maxBytes);
  }

  private note(addresses: Uint8Array[]): void {
    const seq = this.seqOf.get(toHex(addresses[0]));
    if (seq !== undefined) {
      this.firstSeqs.push(seq);
      this.handedOverAt.push(this.handedOver);
    }
  }
}

describe("a backup by name reads the log's messages oldest first, and only so far ahead of what it hands over", () => {
  let server: Listening;
  const seqOf = new Map<string, number>();

  beforeAll(async () => {
    server = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    const log = new MemoryLocalLog();
    const sender = new Sender({ name: "long", log, remote, published: new MemoryCheckpointStore(), embed: "none" });
    const entries = await sender.append(
      Array.from({ length: COUNT }, (_, i) => new TextEncoder().encode(`message ${i}`)),
      GROUP,
      1n,
    );
    entries.forEach((entry) => seqOf.set(toHex(addressOf(entry.data)), entry.seq));
    await sender.publish();
    remote.close();
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  it("starts no read 32,768 messages or more past those the packer is done with, so a slow packer holds a bounded part of the log", async () => {
    const remote = new ReadOrderRemote(server.url, seqOf);
    const source = new RemoteLogSource(remote, "long", { unsigned: true });
    try {
      const read = await source.readSince(undefined);
      expect(read.expected).toBe(COUNT);
      let seq = 0;
      for await (const chunk of read.chunks) {
        // The packer is slow: every read that may start has started, and answered, before it is done
        // with a chunk and asks for the next.
        for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
        for (const message of chunk.messages) expect(seqOf.get(toHex(addressOf(message)))).toBe(seq++);
        remote.handedOver = seq;
      }
      expect(seq).toBe(COUNT);
      // Started as their pages came, the reads began with the newest messages, and all of them were read
      // before the first chunk was handed over. Now a read may start before an older one while the
      // pages come in, but only within the window.
      remote.firstSeqs.forEach((first, i) => expect(first, `read ${i}`).toBeLessThan(remote.handedOverAt[i] + 32_768));
      expect(remote.firstSeqs.length).toBeGreaterThanOrEqual(Math.ceil(COUNT / 4096));
    } finally {
      await source.close();
    }
  }, 60_000);
});

describe("a backup by name holds a bounded amount of messages, whatever their sizes", () => {
  it("reads at most FETCH_BYTES of messages a call, in a fresh backup and in one after an earlier one", async () => {
    const { remote } = memoryWorld();
    const sender = new Sender({ name: "big", log: new MemoryLocalLog(), remote: remote(), published: new MemoryCheckpointStore(), embed: "none" });
    const size = 700_000;
    const appendMany = async (from: number, count: number) => {
      await sender.append(Array.from({ length: count }, (_, i) => new Uint8Array(size).fill(from + i)), GROUP, 1n);
      await sender.publish();
    };
    await appendMany(0, 40);

    // The real Remote, each read's answer weighed as it comes back.
    const { remote: observed, fetched: read } = weighedRemote(remote());
    const handedOver = async (source: RemoteLogSource, after?: BackedUpTo) => {
      const got: Uint8Array[] = [];
      const { chunks, logHead } = await source.readSince(after);
      for await (const chunk of chunks) got.push(...chunk.messages);
      return { got, logHead };
    };
    const message = encodeMessage(newMessage(GROUP, 1n, new Uint8Array(size))).length;

    const fresh = await handedOver(new RemoteLogSource(observed, "big", { unsigned: true }));
    expect(fresh.got.map((bytes) => decodeMessage(bytes).body[0])).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(Math.max(...read)).toBeLessThanOrEqual(FETCH_BYTES + message);

    // An earlier backup took the first 40: the walk back to its last message, and what came since.
    await appendMany(40, 40);
    read.length = 0;
    const since = await handedOver(new RemoteLogSource(observed, "big", { unsigned: true }), {
      lastSeq: 39,
      lastId: messageId(decodeMessage(fresh.got[39])),
      sequence: fresh.logHead?.sequence,
    });
    expect(since.got.map((bytes) => decodeMessage(bytes).body[0])).toEqual(Array.from({ length: 40 }, (_, i) => 40 + i));
    expect(Math.max(...read)).toBeLessThanOrEqual(FETCH_BYTES + message);
  });
});
