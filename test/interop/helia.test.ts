import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unmarshalIPNSRecord } from "ipns";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS } from "../../gen/vac/cas/cas_pb.js";
import { addressText, cidOf, decodeMessage, messageId } from "../../core/hash.js";
import { decodePage } from "../../core/page.js";
import { cleanup, runCli, startServer, tempDir, type Server } from "../helpers/processes.js";
import { flipBit, startTamperProxy, type TamperProxy } from "../helpers/tamper-proxy.js";

/*
 * Helia, an independent IPFS client, reads a remote log from a real `remotelog serve` through the
 * Trustless Gateway and Delegated Routing V1 answers alone: it resolves the name (verifying the signed
 * IPNS record with the name's key), fetches the head page by the CID the record names, and fetches each
 * message by its CID (verifying every block's hash). Then a lying proxy changes bytes, and Helia refuses.
 *
 * The client is @helia/verified-fetch (test/helia-client, its own package: it pulls in libp2p), run as
 * its own Node process with the Promise.withResolvers polyfill Node 20 needs (design/remote-log.md §10).
 */

const CLIENT = resolve("test/helia-client");

interface Fetched {
  url: string;
  status?: number;
  body?: string;
  error?: string;
}

/** verified-fetch of each URL with server as its only gateway and router. */
function heliaFetch(server: string, urls: string[], timeoutMs = 20_000): Promise<Fetched[]> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      ["--import", resolve("test/helpers/with-resolvers.mjs"), join(CLIENT, "fetch.mjs"), server, ...urls],
      { env: { ...process.env, HELIA_TIMEOUT_MS: String(timeoutMs) }, timeout: timeoutMs * urls.length + 30_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const lines = stdout.split("\n").filter((line) => line.startsWith("{"));
        if (lines.length !== urls.length) return fail(new Error(`verified-fetch printed ${lines.length} answers for ${urls.length} URLs: ${err?.message ?? ""} ${stderr}`));
        done(lines.map((line) => JSON.parse(line) as Fetched));
      },
    );
  });
}

let server: Server;
let name: string;
let head: Uint8Array;
let record: Uint8Array;
let proxy: TamperProxy;
const bodies = ["hello from alice", "a second message", "and a third"];

beforeAll(async () => {
  if (!existsSync(join(CLIENT, "node_modules", "@helia", "verified-fetch"))) {
    throw new Error("Helia's verified-fetch is not installed: run `npm ci --prefix test/helia-client` (make helia-client)");
  }
  const dir = await tempDir("remotelog-helia-");
  const keyFile = join(dir, "alice.key");
  server = await startServer(["--memory", "--listen", "127.0.0.1:0"]);
  expect((await runCli(["key", "gen", "--out", keyFile])).code).toBe(0);
  // Two sends, page size 2: the head page links to an older one, as a real log's does.
  for (const text of [bodies.slice(0, 2), bodies.slice(2)]) {
    const sent = await runCli(["send", "--embed", "none", "--key", keyFile, "--data", join(dir, "alice"), "--server", server.url, "--page-size", "2"], { stdin: text.join("\n") + "\n" });
    expect(sent.code, sent.stderr).toBe(0);
  }
  name = (await runCli(["key", "name", keyFile])).stdout.trim();
  const entry = await createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })).fetch({ name });
  head = entry.data;
  record = entry.record;
  proxy = await startTamperProxy(server.url);
});

afterAll(async () => {
  await proxy?.close();
  await cleanup();
});

describe("Helia's verified-fetch against remotelog serve", () => {
  it("resolves the name, and reads the head page, the older page and every message by CID", async () => {
    const [resolved] = await heliaFetch(server.url, [`ipns://${name}`]);
    expect(resolved.status, resolved.error ?? resolved.body).toBe(200);
    const headBytes = Buffer.from(resolved.body!, "base64");
    expect(Buffer.compare(headBytes, head)).toBe(0);

    const page = decodePage(headBytes, "head");
    expect(page.tail.length).toBeGreaterThan(0);
    const older = addressText(page.tail);
    const messageCids = page.pair.map((pair) => addressText(pair.remoteHash));
    const [olderPage, ...fetched] = await heliaFetch(server.url, [`ipfs://${older}`, ...messageCids.map((cid) => `ipfs://${cid}`)]);
    expect(olderPage.status).toBe(200);
    const olderBytes = Buffer.from(olderPage.body!, "base64");
    expect(cidOf(olderBytes).toString()).toBe(older);
    const olderCids = decodePage(olderBytes, "older page").pair.map((pair) => addressText(pair.remoteHash));
    const rest = await heliaFetch(server.url, olderCids.map((cid) => `ipfs://${cid}`));

    const pairs = [...page.pair, ...decodePage(olderBytes, "older page").pair];
    const texts = [...fetched, ...rest].map((answer, i) => {
      expect(answer.status, answer.error).toBe(200);
      const message = decodeMessage(Buffer.from(answer.body!, "base64"));
      expect(Buffer.compare(messageId(message), pairs[i].localHash)).toBe(0);
      return Buffer.from(message.body).toString("utf8");
    });
    expect(texts.sort()).toEqual([...bodies].sort());
  });

  it("refuses a block whose bytes a lying gateway changed", async () => {
    const cid = addressText(decodePage(head, "head").pair[0].remoteHash);
    proxy.rewrite = (path, body) => (path.startsWith(`/ipfs/${cid}`) && body.length > 0 ? flipBit(body, -1) : undefined);
    try {
      const [answer] = await heliaFetch(proxy.url, [`ipfs://${cid}`], 5_000);
      // Never the changed bytes: verified-fetch keeps looking for a provider with the right ones.
      expect(answer.status === 200 ? cidOf(Buffer.from(answer.body!, "base64")).toString() : answer.error).not.toBe(cid);
      expect(answer.status).not.toBe(200);
    } finally {
      proxy.rewrite = undefined;
    }
  });

  it("refuses a record whose signature a lying router changed", async () => {
    const signatureAt = Buffer.from(record).indexOf(Buffer.from(unmarshalIPNSRecord(record).signatureV2));
    proxy.rewrite = (path, body) => (path.startsWith("/routing/v1/ipns/") && body.length > 0 ? flipBit(body, signatureAt + 10) : undefined);
    try {
      const [answer] = await heliaFetch(proxy.url, [`ipns://${name}`], 5_000);
      expect(answer.status).not.toBe(200);
      expect(Buffer.from(answer.body ?? "", "base64").toString("utf8") + (answer.error ?? "")).toMatch(/RecordsFailedValidationError|invalid|Signature/i);
    } finally {
      proxy.rewrite = undefined;
    }
  });
});
