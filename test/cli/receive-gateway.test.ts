import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS } from "../../gen/vac/cas/cas_pb.js";
import { addressText } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";
import { decodePage } from "../../core/page.js";
import { openGateway, Receiver } from "../../lib/index.js";
import { Receiver as ActorReceiver, type Delivery } from "../../actors/receiver.js";
import { FETCH_BYTES } from "../../core/log-reader.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { weighedRemote } from "../helpers/weighed-remote.js";
import { cleanup, parseJsonl, runCli, startServer, tempDir, type Server } from "../helpers/processes.js";
import { flipBit, startTamperProxy, type TamperProxy } from "../helpers/tamper-proxy.js";

/*
 * `receive --gateway URL` reads a remote log through IPFS's HTTP protocols alone (a Trustless Gateway,
 * and a Delegated Routing V1 router with --router), here those of a second `remotelog serve` process,
 * and checks everything it reads as it does over Connect: a lying gateway in between is caught.
 */

let server: Server;
let dir: string;
let keyFile: string;
let name: string;
let proxy: TamperProxy;

async function send(lines: string[]): Promise<void> {
  const sent = await runCli(["send", "--embed", "none", "--key", keyFile, "--data", join(dir, "alice"), "--server", server.url], { stdin: lines.join("\n") + "\n" });
  expect(sent.code, sent.stderr).toBe(0);
}

function bodiesOf(stdout: string): string[] {
  return parseJsonl<{ body?: string; body_base64?: string }>(stdout).map((line) => line.body ?? Buffer.from(line.body_base64!, "base64").toString("utf8"));
}

beforeAll(async () => {
  dir = await tempDir("remotelog-receive-gateway-");
  keyFile = join(dir, "alice.key");
  server = await startServer(["--data", join(dir, "server"), "--listen", "127.0.0.1:0"]);
  expect((await runCli(["key", "gen", "--out", keyFile])).code).toBe(0);
  name = (await runCli(["key", "name", keyFile])).stdout.trim();
  await send(["one", "two", "three"]);
  proxy = await startTamperProxy(server.url);
});

afterAll(async () => {
  await proxy?.close();
  await cleanup();
});

describe("receive --gateway", () => {
  it("reads a log through the gateway (names as /ipns/ records), or the gateway and a router, and goes on from its checkpoint", async () => {
    const state = join(dir, "bob");
    const first = await runCli(["receive", "--name", name, "--gateway", server.url, "--state", state]);
    expect(first.code, first.stderr).toBe(0);
    expect(bodiesOf(first.stdout)).toEqual(["one", "two", "three"]);

    // REMOTELOG_SERVER (the usual server, from the environment) gives way to --gateway on the line.
    const routed = await runCli(["receive", "--name", name, "--gateway", server.url, "--router", server.url, "--state", join(dir, "carol")], {
      env: { REMOTELOG_SERVER: "http://127.0.0.1:1" },
    });
    expect(routed.code, routed.stderr).toBe(0);
    expect(bodiesOf(routed.stdout)).toEqual(["one", "two", "three"]);

    await send(["four"]);
    const next = await runCli(["receive", "--name", name, "--gateway", server.url, "--state", state]);
    expect(next.code, next.stderr).toBe(0);
    expect(parseJsonl<{ seq: number }>(next.stdout).map((line) => line.seq)).toEqual([3]);
    expect(bodiesOf(next.stdout)).toEqual(["four"]);
  });

  it("openGateway: the library's Receiver reads the same log through the gateway and router", async () => {
    const remote = openGateway(server.url, { router: server.url });
    try {
      const receiver = await Receiver.open({ remote, name });
      const { messages } = await receiver.sync();
      expect(messages.map((delivery) => Buffer.from(delivery.message!.body).toString("utf8")).slice(0, 3)).toEqual(["one", "two", "three"]);
      expect((await receiver.sync()).messages).toEqual([]);
      await receiver.close();
    } finally {
      remote.close();
    }
    expect(() => openGateway("ftp://example")).toThrow(/INVALID_ARGUMENT/);
  });

  it("fetches at most FETCH_BYTES of messages a call through the gateway too, whatever their sizes", async () => {
    const bigKey = join(dir, "big.key");
    expect((await runCli(["key", "gen", "--out", bigKey])).code).toBe(0);
    const bigName = (await runCli(["key", "name", bigKey])).stdout.trim();
    const size = 700_000;
    const input = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(2, "0")}${"x".repeat(size)}\n`).join("");
    const sent = await runCli(["send", "--embed", "none", "--key", bigKey, "--data", join(dir, "big"), "--server", server.url], { stdin: input, timeoutMs: 60_000 });
    expect(sent.code, sent.stderr).toBe(0);

    // The real gateway client, each fetch's answer weighed as it comes back.
    const real = openGateway(server.url);
    const { remote, fetched } = weighedRemote(real);
    try {
      const got: Delivery[] = [];
      await new ActorReceiver({ name: bigName, remote, checkpoints: new MemoryCheckpointStore() }).sync(async (batch) => void got.push(...batch));
      expect(got.map((delivery) => Buffer.from(delivery.message!.body.subarray(0, 2)).toString("utf8"))).toEqual(Array.from({ length: 40 }, (_, i) => String(i).padStart(2, "0")));
      // Over by at most the requests in flight when the budget ran out (16 of a message each).
      expect(Math.max(...fetched)).toBeLessThanOrEqual(FETCH_BYTES + 16 * (size + 64));
      expect(fetched.reduce((a, b) => a + b, 0)).toBeGreaterThan(40 * size);
    } finally {
      real.close();
    }
  });

  it("stops at a message whose bytes a lying gateway changed: DATA_LOSS naming it, nothing wrong printed", async () => {
    const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const page = decodePage((await ns.fetch({ name })).data, "head");
    const victim = addressText(page.pair[page.pair.length - 1].remoteHash);
    proxy.rewrite = (path, body) => (path.startsWith(`/ipfs/${victim}`) ? flipBit(body, -1) : undefined);
    try {
      const result = await runCli(["receive", "--name", name, "--gateway", proxy.url, "--state", join(dir, "dave")]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("DATA_LOSS");
      expect(result.stderr).toContain(victim);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(parseJsonl<{ address: string }>(result.stdout).map((line) => line.address)).not.toContain(victim);
    } finally {
      proxy.rewrite = undefined;
    }
  });

  it("refuses a head whose record another key signed", async () => {
    const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const { data } = await ns.fetch({ name });
    const forged = Buffer.from(await createNameRecord(await generateNameKey(), data, 1000n));
    proxy.rewrite = (path) => (path.startsWith(`/ipns/${name}`) ? forged : undefined);
    try {
      const result = await runCli(["receive", "--name", name, "--gateway", proxy.url, "--state", join(dir, "erin")]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("PERMISSION_DENIED");
      expect(result.stdout).toBe("");
    } finally {
      proxy.rewrite = undefined;
    }
  });

  it("takes key names only, and says when a name has no log there", async () => {
    const unsigned = await runCli(["receive", "--unsigned", "--name", "chat", "--gateway", server.url, "--state", join(dir, "frank")]);
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toContain("signed names only");
    const both = await runCli(["receive", "--name", name, "--gateway", server.url, "--server", server.url, "--state", join(dir, "frank")]);
    expect(both.code).toBe(2);

    const stranger = keyName(await generateNameKey());
    const missing = await runCli(["receive", "--name", stranger, "--gateway", server.url, "--state", join(dir, "grace")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("NOT_FOUND");
  });
});
