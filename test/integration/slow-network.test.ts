import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Remote } from "../../actors/remote.js";
import { Receiver, type Delivery } from "../../actors/receiver.js";
import { collectPages } from "../../core/chain.js";
import { ErrorCodes } from "../../core/errors.js";
import { decodePage } from "../../core/page.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { startDelayProxy, type DelayProxy } from "../../bench/delay-proxy.js";
import { cleanup, lines, runCli, startServer, tempDir } from "../helpers/processes.js";

let proxy: DelayProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await cleanup();
});

describe("slow network - through the delay proxy of the bench harness", () => {
  it("a fresh receiver reads a log of 250 pages through 20 ms round trips in a few rounds, every message in order", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const send = await runCli(["send", "--unsigned", "--name", "slow", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "8"], { stdin: lines(2000) });
    expect(send.code, send.stderr).toBe(0);
    proxy = await startDelayProxy(server.url, 20);
    const remote = new Remote({ casUrl: proxy.url, nsUrl: proxy.url });
    try {
      // The pages: skip links bring 250 of them in about log2(250) rounds of parallel calls, where a
      // walk by tails would make 249 round trips one after another.
      const head = decodePage((await remote.fetchName("slow"))!.content, "head", ErrorCodes.DATA_LOSS);
      const collected = await collectPages(head, 0, (addresses) => remote.getBlocks(addresses));
      expect(collected.last - collected.first + 1).toBe(250);
      expect(collected.rounds).toBeLessThanOrEqual(9);

      const got: Delivery[] = [];
      await new Receiver({ name: "slow", remote, checkpoints: new MemoryCheckpointStore(), signed: false }).sync(async (batch) => void got.push(...batch));
      expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
      expect(new TextDecoder().decode(got[1999].message!.body)).toBe("message 1999");
    } finally {
      remote.close();
    }
  });

  it("a Remote times the round trip by a PING on its open connection: none before one is open, at least the proxy's 20 ms through it", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    proxy = await startDelayProxy(server.url, 20);
    const remote = new Remote({ casUrl: proxy.url, nsUrl: proxy.url });
    const direct = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      expect(await remote.roundTripMs()).toBeUndefined();
      expect(await remote.fetchName("nobody")).toBeUndefined();
      // The proxy holds every chunk 10 ms each way: a PING's answer cannot come sooner.
      expect(await remote.roundTripMs()).toBeGreaterThanOrEqual(20);
      await direct.fetchName("nobody");
      expect(await direct.roundTripMs()).toBeGreaterThan(0);
      remote.close();
      expect(await remote.roundTripMs()).toBeUndefined();
    } finally {
      remote.close();
      direct.close();
    }
  });
});
