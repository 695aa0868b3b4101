import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { BlockService } from "../../gen/remotelog/v1/blocks_pb.js";
import { CAS, NS } from "../../gen/vac/cas/cas_pb.js";
import { cleanup, lines, runCli, startServer, tempDir } from "../helpers/processes.js";
import { ErrorCodes, isRemoteLogError } from "../../core/errors.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { Remote } from "../../actors/remote.js";
import { openRemote } from "../../lib/index.js";
import { addressOf } from "../../core/hash.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { remoteContract } from "../contract/remote.contract.js";

// Remote against a real server on loopback: Connect over HTTP/2, the services over memory stores.
remoteContract(
  "Remote over Connect, a real listen() server",
  async () => {
    const server: Listening = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    return { remote: new Remote({ casUrl: server.url, nsUrl: server.url }), close: () => server.close() };
  },
  { watches: true, linkedPages: true, boundsAnswers: true },
);

describe("Remote - a connection the server resets is UNAVAILABLE, not a lost race", () => {
  it("maps connect-node's Aborted for ECONNRESET to UNAVAILABLE, and keeps a server's own Aborted as ABORTED", async () => {
    // A peer that takes the connection and resets it: what a client sees when a server is SIGKILLed mid-call.
    const resetting = net.createServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    await new Promise<void>((ok) => resetting.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(resetting.address() as net.AddressInfo).port}`;
    const reset = new Remote({ casUrl: url, nsUrl: url });
    const server: Listening = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    const real = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const failure = await reset.fetchName("any").then(() => undefined, (err: unknown) => err);
      expect(isRemoteLogError(failure, ErrorCodes.UNAVAILABLE), String(failure)).toBe(true);
      await real.updateName("n", new TextEncoder().encode("a"), 0n);
      const lost = await real.updateName("n", new TextEncoder().encode("b"), 0n).then(() => undefined, (err: unknown) => err);
      expect(isRemoteLogError(lost, ErrorCodes.ABORTED), String(lost)).toBe(true);
    } finally {
      reset.close();
      real.close();
      await server.close();
      await new Promise((ok) => resetting.close(ok));
    }
  });
});

describe("Remote - readMaxBytes", () => {
  it("refuses an answer larger than readMaxBytes as TOO_LARGE, and reads it under the default", async () => {
    const server: Listening = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    const bounded = openRemote(server.url, { readMaxBytes: 64 << 10 });
    const open = openRemote(server.url);
    try {
      const block = new Uint8Array(512 << 10).fill(7);
      await open.putBlocks([block]);
      const refused = await bounded.getBlock(addressOf(block)).then(() => undefined, (err: unknown) => err);
      expect(isRemoteLogError(refused, ErrorCodes.TOO_LARGE), String(refused)).toBe(true);
      expect((await open.getBlock(addressOf(block))).length).toBe(512 << 10);
    } finally {
      bounded.close();
      open.close();
      await server.close();
    }
  });
});

describe("Remote.getBlocks - a GetMany answer with more blocks than asked (report §6)", () => {
  afterEach(cleanup);

  it("receive refuses the answer itself, naming the call, instead of shifting the next batch and blaming an intact message in it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    // More messages than one GetMany batch (4096 ids): receive --batch 4096 asks for them in one
    // getBlocks call, which goes out as a batch of 4096 and one of the rest.
    const sent = await runCli(["send", "--unsigned", "--name", "big", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(4300) });
    expect(sent.code, sent.stderr).toBe(0);

    // A Connect server in front of the real one that passes every call on, but answers a GetMany of
    // over 1,000 ids with one block more than it was asked for: the lie is in the first batch only.
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
    const ns = createClient(NS, transport);
    const cas = createClient(CAS, transport);
    const blocks = createClient(BlockService, transport);
    const lying = http2.createServer(
      connectNodeAdapter({
        routes: (router) => {
          router.service(NS, { fetch: (request) => ns.fetch(request) });
          router.service(CAS, { get: (request) => cas.get(request) });
          router.service(BlockService, {
            getMany: async (request) => {
              const answer = await blocks.getMany(request);
              return request.ids.length > 1000 ? { ...answer, blocks: [...answer.blocks, answer.blocks[0]] } : answer;
            },
          });
        },
      }),
    );
    await new Promise<void>((ok) => lying.listen(0, "127.0.0.1", ok));
    try {
      const url = `http://127.0.0.1:${(lying.address() as AddressInfo).port}`;
      const result = await runCli(["receive", "--unsigned", "--name", "big", "--server", url, "--batch", "4096"]);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toMatch(/^remotelog: INTERNAL: CAS http:\/\/127\.0\.0\.1:\d+ GetMany of 4096 blocks returned 4097$/m);
      expect(result.stderr).not.toMatch(/seq 4096|do not hash/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(result.stdout).toBe("");
    } finally {
      await new Promise((ok) => lying.close(ok));
    }
  });
});
