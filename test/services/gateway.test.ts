import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CarReader } from "@ipld/car/reader";
import { CID } from "multiformats/cid";
import { base32 } from "multiformats/bases/base32";
import { create } from "@bufbuild/protobuf";
import { CAS, NS, RemoteLogSchema, RemoteLog_PairSchema } from "../../gen/vac/cas/cas_pb.js";
import { addressOf, addressText, cidOf } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName, parseKeyName, peerIdOfKeyName, verifyNameRecord } from "../../core/names.js";
import { decodePage, encodePage } from "../../core/page.js";
import { unmarshalIPNSRecord } from "ipns";
import { flipBit } from "../helpers/tamper-proxy.js";
import { loadKeyFile } from "../../stores/file/key-file.js";
import { REPLACED_HEAD_LIMITS } from "../../services/replaced-heads.js";
import { cleanup, runCli, startServer, stop, tempDir, type Server } from "../helpers/processes.js";

/*
 * The Trustless Gateway and Delegated Routing V1 answers of a real `remotelog serve`, read with plain
 * curl (an independent client) over HTTP/1.1 and HTTP/2, byte for byte and header by header.
 */

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** curl ARGS, the response split into status, headers (lower-case names) and body. */
function curl(...args: string[]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-s", "-S", "-i", "--max-time", "20", ...args], { encoding: "buffer", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl ${args.join(" ")}: ${err.message} ${stderr}`));
      let rest = stdout;
      // Interim answers (100 Continue) come before the real one.
      for (;;) {
        const end = rest.indexOf("\r\n\r\n");
        const head = rest.subarray(0, end).toString("latin1").split("\r\n");
        const status = Number(head[0].split(" ")[1]);
        rest = rest.subarray(end + 4);
        if (status === 100) continue;
        const headers: Record<string, string> = {};
        for (const line of head.slice(1)) {
          const colon = line.indexOf(":");
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        return resolve({ status, headers, body: rest });
      }
    });
  });
}

let server: Server;
let data: string;
let keyFile: string;
let name: string;
let head: Uint8Array;
let record: Uint8Array;
let messages: string[];

function nsClient() {
  return createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
}

/** A head page of one embedded message, body. */
function page(body: string): Uint8Array {
  const data = Buffer.from(body);
  return encodePage(create(RemoteLogSchema, { pair: [create(RemoteLog_PairSchema, { localHash: createHash("sha256").update(data).digest(), remoteHash: addressOf(data), data })] }));
}

async function fetchName(): Promise<{ data: Uint8Array; record: Uint8Array; version: bigint }> {
  return nsClient().fetch({ name });
}

beforeAll(async () => {
  const dir = await tempDir("remotelog-gateway-");
  data = join(dir, "server");
  keyFile = join(dir, "alice.key");
  server = await startServer(["--data", data, "--listen", "127.0.0.1:0"]);
  expect((await runCli(["key", "gen", "--out", keyFile])).code).toBe(0);
  name = (await runCli(["key", "name", keyFile])).stdout.trim();
  const sent = await runCli(["send", "--embed", "none", "--key", keyFile, "--data", join(dir, "alice"), "--server", server.url], { stdin: "hello\nworld\n" });
  expect(sent.code, sent.stderr).toBe(0);
  const entry = await fetchName();
  head = entry.data;
  record = entry.record;
  messages = decodePage(head, "head").pair.map((pair) => addressText(pair.remoteHash));
});

afterAll(cleanup);

describe("Trustless Gateway: GET /ipfs/{cid}", () => {
  it("serves a block as application/vnd.ipld.raw, with the spec's headers, over HTTP/1.1 and HTTP/2", async () => {
    const cid = messages[0];
    for (const args of [["-H", "Accept: application/vnd.ipld.raw", `${server.url}/ipfs/${cid}`], ["--http2-prior-knowledge", `${server.url}/ipfs/${cid}?format=raw`]]) {
      const answer = await curl(...args);
      expect(answer.status).toBe(200);
      expect(cidOf(answer.body).toString()).toBe(cid);
      expect(answer.headers).toMatchObject({
        "content-type": "application/vnd.ipld.raw",
        "x-content-type-options": "nosniff",
        "cache-control": "public, max-age=29030400, immutable",
        etag: `"${cid}.raw"`,
        "content-disposition": `attachment; filename="${cid}.bin"`,
        "content-length": String(answer.body.length),
        "x-ipfs-path": `/ipfs/${cid}`,
        vary: "Accept",
      });
    }
    // HEAD: the same headers, no body; a matching If-None-Match: 304.
    const headOnly = await curl("-I", `${server.url}/ipfs/${cid}?format=raw`);
    expect(headOnly.status).toBe(200);
    expect(headOnly.body.length).toBe(0);
    expect(headOnly.headers["content-type"]).toBe("application/vnd.ipld.raw");
    expect((await curl("-H", `If-None-Match: "${cid}.raw"`, `${server.url}/ipfs/${cid}?format=raw`)).status).toBe(304);
  });

  it("serves a name's head page by the CID its record names, also after a restart", async () => {
    const headCid = cidOf(head).toString();
    expect((await verifyNameRecord(name, record, head)).value).toBe(`/ipfs/${headCid}`);
    const answer = await curl(`${server.url}/ipfs/${headCid}?format=raw`);
    expect(answer.status).toBe(200);
    expect(Buffer.compare(answer.body, head)).toBe(0);

    // Head pages live with the names, not in the CAS: after a restart the gateway finds them again.
    await stop(server.process);
    server = await startServer(["--data", data, "--listen", "127.0.0.1:0"]);
    const again = await curl(`${server.url}/ipfs/${headCid}?format=raw`);
    expect(again.status).toBe(200);
    expect(Buffer.compare(again.body, head)).toBe(0);
  });

  it("serves a CAR whose root is the block, and the identity probe CID", async () => {
    const cid = messages[1];
    const answer = await curl("-H", "Accept: application/vnd.ipld.car; version=1; order=dfs; dups=y", `${server.url}/ipfs/${cid}`);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/vnd.ipld.car; version=1; order=dfs; dups=y");
    expect(answer.headers["cache-control"]).toContain("immutable");
    expect(answer.headers.etag).toMatch(new RegExp(`^"${cid}\\.car\\.`));
    const car = await CarReader.fromBytes(answer.body);
    expect((await car.getRoots()).map(String)).toEqual([cid]);
    const blocks = [];
    for await (const block of car.blocks()) blocks.push(block);
    expect(blocks).toHaveLength(1);
    expect(cidOf(blocks[0].bytes).toString()).toBe(cid);

    const probe = await curl(`${server.url}/ipfs/bafkqaaa?format=raw`);
    expect([probe.status, probe.body.length]).toEqual([200, 0]);
    const probeCar = await CarReader.fromBytes((await curl(`${server.url}/ipfs/bafkqaaa?format=car`)).body);
    expect((await probeCar.getRoots()).map(String)).toEqual(["bafkqaaa"]);
  });

  it("answers bad requests with the spec's status codes", async () => {
    const cid = messages[0];
    const missing = cidOf(Buffer.from("never stored")).toString();
    const cases: [string[], number][] = [
      [[`${server.url}/ipfs/${cid}`], 400], // no Accept, no format: this gateway never deserializes
      [["-H", "Accept: text/html", `${server.url}/ipfs/${cid}`], 406],
      [["-H", "Accept: application/vnd.ipld.car; version=2", `${server.url}/ipfs/${cid}`], 406],
      [[`${server.url}/ipfs/${cid}?format=tar`], 406],
      [[`${server.url}/ipfs/not-a-cid?format=raw`], 400],
      [[`${server.url}/ipfs/${missing}?format=raw`], 404],
      [["-I", `${server.url}/ipfs/${missing}?format=raw`], 404],
      // Trustless gateway spec: "SHOULD return HTTP 412 if the root block is not immediately available".
      [["-H", "Cache-Control: only-if-cached", `${server.url}/ipfs/${missing}?format=raw`], 412],
      [["-H", "Cache-Control: max-age=0, only-if-cached", `${server.url}/ipfs/${missing}?format=car`], 412],
      [["-H", "Cache-Control: only-if-cached", `${server.url}/ipfs/${cid}?format=raw`], 200],
      [[`${server.url}/ipfs/${cid}/some/path?format=raw`], 400],
      [["-X", "DELETE", `${server.url}/ipfs/${cid}?format=raw`], 405],
      [["-X", "POST", "--data-binary", "x", `${server.url}/ipfs/?format=raw`], 405],
    ];
    for (const [args, status] of cases) {
      const answer = await curl(...args);
      expect({ args, status: answer.status }).toEqual({ args, status });
      if (answer.status !== 200) expect(answer.headers["content-type"]).toBe("text/plain; charset=utf-8");
    }
  });
});

describe("Trustless Gateway: content negotiation", () => {
  it("goes down the Accept list to the first type it can serve, and is 406 only when it can serve none", async () => {
    // The first media range whose type matched was taken, its CAR parameters refused, and the rest of
    // the list never tried: the spec's own example of a fallback got 406.
    const cid = messages[0];
    const ask = (accept: string) => curl("-H", `Accept: ${accept}`, `${server.url}/ipfs/${cid}`);
    // The trustless gateway spec's example (IPIP-412): order=foo is not served, dfs with dups is.
    const fallback = await ask("application/vnd.ipld.car;order=foo, application/vnd.ipld.car;order=dfs;dups=y;q=0.5");
    expect(fallback.status, fallback.body.toString("utf8")).toBe(200);
    expect(fallback.headers["content-type"]).toBe("application/vnd.ipld.car; version=1; order=dfs; dups=y");
    expect((await (await CarReader.fromBytes(fallback.body)).getRoots()).map(String)).toEqual([cid]);

    const raw = await ask("application/vnd.ipld.car;version=2, application/vnd.ipld.raw;q=0.5");
    expect(raw.status, raw.body.toString("utf8")).toBe(200);
    expect(raw.headers["content-type"]).toBe("application/vnd.ipld.raw");
    expect(cidOf(raw.body).toString()).toBe(cid);

    // Preference is by q, not by place in the list.
    const preferred = await ask("application/vnd.ipld.raw;q=0.4, application/vnd.ipld.car;version=1;q=0.9");
    expect(preferred.headers["content-type"]).toBe("application/vnd.ipld.car; version=1; order=dfs; dups=n");

    const none = await ask("application/vnd.ipld.car;version=2, application/vnd.ipld.car;order=foo;q=0.5, text/html;q=0.1");
    expect(none.status).toBe(406);
    expect(none.body.toString("utf8")).toMatch(/CAR version "2" is not served here/);
  });
});

describe("Trustless Gateway: head pages that names share", () => {
  it("serves a page while any name's head is that page, after another name on it moves on", async () => {
    // The head index kept one name per page: when the last name noted moved on, the page was
    // forgotten although the other name's head was still that page (404, and no provider).
    const ns = nsClient();
    const shared = page(`shared ${Date.now()}`);
    const cid = cidOf(shared).toString();
    const [first, second] = [`first-${Date.now()}`, `second-${Date.now()}`];
    await ns.update({ name: first, content: shared, expectedVersion: 0n });
    await ns.update({ name: second, content: shared, expectedVersion: 0n });
    const served = async () => {
      const block = await curl(`${server.url}/ipfs/${cid}?format=raw`);
      const providers = await curl(`${server.url}/routing/v1/providers/${cid}`);
      return { block: block.status, same: Buffer.compare(block.body, shared) === 0, providers: JSON.parse(providers.body.toString("utf8")).Providers.length };
    };
    expect(await served()).toEqual({ block: 200, same: true, providers: 1 });

    await ns.update({ name: second, content: page("second moved on"), expectedVersion: 1n });
    expect(Buffer.compare((await ns.fetch({ name: first })).data, shared)).toBe(0);
    expect(await served()).toEqual({ block: 200, same: true, providers: 1 });

    // Once no name is on it, it is a replaced head: served a while yet (below), and gone once each
    // name has moved on past it more times than the server keeps.
    await ns.update({ name: first, content: page("first moved on too"), expectedVersion: 1n });
    expect(await served()).toEqual({ block: 200, same: true, providers: 1 });
    for (const name of [first, second]) {
      for (let i = 0; i < REPLACED_HEAD_LIMITS.perName; i++) await ns.update({ name, content: page(`${name} on ${i}`), expectedVersion: BigInt(i + 2) });
    }
    expect((await served()).block).toBe(404);
  });
});

describe("Trustless Gateway: head pages a name moved on from", () => {
  it("serves the page a record named after the name moved on, and it verifies against that record", async () => {
    // A reader reads the record, the sender publishes again, then the reader asks for the page: it
    // was 404, the head page having gone with the NS's old entry, and a gateway follower read the
    // record again, and waited with backoff when the sender kept ahead of it.
    const dir = await tempDir("remotelog-gateway-moved-");
    const key = join(dir, "carol.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const carol = (await runCli(["key", "name", key])).stdout.trim();
    const send = async (line: string) => {
      const sent = await runCli(["send", "--key", key, "--data", join(dir, "carol"), "--server", server.url], { stdin: `${line}\n` });
      expect(sent.code, sent.stderr).toBe(0);
    };
    const readRecord = async () => {
      const answer = await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/ipns/${carol}`);
      expect(answer.status).toBe(200);
      return { record: answer.body, cid: unmarshalIPNSRecord(answer.body).value.replace(/^\/ipfs\//, "") };
    };
    await send("first");
    const before = await readRecord();
    await send("second");
    expect((await readRecord()).cid).not.toBe(before.cid);

    const answer = await curl(`${server.url}/ipfs/${before.cid}?format=raw`);
    expect(answer.status, answer.body.toString("utf8")).toBe(200);
    expect(cidOf(answer.body).toString()).toBe(before.cid);
    // The page is the one the old record signed for, and it holds the message sent before.
    expect((await verifyNameRecord(carol, before.record, answer.body)).value).toBe(`/ipfs/${before.cid}`);
    expect(decodePage(answer.body, "head").pair.map((pair) => Buffer.from(pair.data).toString("latin1"))).toEqual([expect.stringContaining("first")]);
    const providers = JSON.parse((await curl(`${server.url}/routing/v1/providers/${before.cid}`)).body.toString("utf8"));
    expect(providers.Providers).toHaveLength(1);
  });

  it("keeps the latest pages of a name only: one replaced more times ago than it keeps is 404 again", async () => {
    const ns = nsClient();
    const name = `bound-${Date.now()}`;
    const kept = REPLACED_HEAD_LIMITS.perName;
    // kept + 1 replaced pages and the current one.
    const pages = Array.from({ length: kept + 2 }, (_, i) => page(`${name} ${i}`));
    for (const [i, content] of pages.entries()) await ns.update({ name, content, expectedVersion: BigInt(i) });
    const statuses = [];
    for (const content of pages) statuses.push((await curl(`${server.url}/ipfs/${cidOf(content).toString()}?format=raw`)).status);
    expect(statuses).toEqual([404, ...Array<number>(kept).fill(200), 200]);
  });
});

describe("IPNS records: GET /ipns/{name} and Delegated Routing V1", () => {
  it("serves the signed record the NS holds, under every spelling of the key's name", async () => {
    const fromGateway = await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/ipns/${name}`);
    expect(fromGateway.status).toBe(200);
    expect(fromGateway.headers["content-type"]).toBe("application/vnd.ipfs.ipns-record");
    expect(Buffer.compare(fromGateway.body, record)).toBe(0);

    const spellings = [name, parseKeyName(name).toCID().toString(base32), peerIdOfKeyName(name)];
    expect(spellings[1]).toMatch(/^bafzaa/);
    expect(spellings[2]).toMatch(/^12D3KooW/);
    for (const spelling of spellings) {
      const answer = await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/routing/v1/ipns/${spelling}`);
      expect(answer.status, spelling).toBe(200);
      expect(Buffer.compare(answer.body, record)).toBe(0);
      expect(answer.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
      // The record's TTL (60 s by default) and the rest of its validity.
      expect(answer.headers["cache-control"]).toMatch(/^public, max-age=60, stale-while-revalidate=\d+, stale-if-error=\d+$/);
      expect(new Date(answer.headers.expires).getTime()).toBeGreaterThan(Date.now());
    }
    expect((await curl("-H", "Accept:", `${server.url}/routing/v1/ipns/${name}`)).status).toBe(406);
    expect((await curl("-H", "Accept: application/json", `${server.url}/routing/v1/ipns/${name}`)).status).toBe(406);
    expect((await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/routing/v1/ipns/chat`)).status).toBe(400);
    const stranger = keyName(await generateNameKey());
    // Routing spec: "When record was not found (HTTP 404) ... SHOULD default to max-age=60".
    for (const path of [`/routing/v1/ipns/${stranger}`, `/ipns/${stranger}`]) {
      const unknown = await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}${path}`);
      expect([path, unknown.status, unknown.headers["cache-control"]]).toEqual([path, 404, "public, max-age=60"]);
    }
    expect((await curl(`${server.url}/ipns/${name}?format=raw`)).status).toBe(406);
  });

  it("takes a PUT of a record through NS.Update's checks, under another spelling too", async () => {
    const key = await loadKeyFile(keyFile);
    let n = 0;
    const put = async (body: Uint8Array, spelling = name, type = "application/vnd.ipfs.ipns-record") => {
      const file = join(data, "..", `record-${n++}`);
      await writeFile(file, body);
      return curl("-X", "PUT", "-H", `Content-Type: ${type}`, "--data-binary", `@${file}`, `${server.url}/routing/v1/ipns/${spelling}`);
    };
    const version = (await fetchName()).version;

    // The stored record again: nothing changes.
    expect((await put(record)).status).toBe(200);
    expect((await fetchName()).version).toBe(version);
    // A signature that does not verify, a record of another key, a wrong content type.
    const signatureAt = Buffer.from(record).indexOf(Buffer.from(unmarshalIPNSRecord(record).signatureV2));
    // Routing spec: "400 (Bad Request): the provided IPNS Record or IPNS Name are not valid".
    const forged = await put(flipBit(Buffer.from(record), signatureAt + 10));
    expect([forged.status, forged.body.toString("utf8")]).toEqual([400, expect.stringMatching(/signature .* does not verify/)]);
    const other = await generateNameKey();
    expect((await put(await createNameRecord(other, head, version + 1n))).status).toBe(400);
    expect((await put(record, name, "application/octet-stream")).status).toBe(406);
    // A record naming a page this server does not hold.
    expect((await put(await createNameRecord(key, Buffer.from("not a page here"), version + 1n))).status).toBe(400);
    // A newer record of the same page, published under the name's peer ID spelling: stored.
    const newer = await createNameRecord(key, head, version + 1n);
    expect((await put(newer, peerIdOfKeyName(name))).status).toBe(200);
    expect(await fetchName()).toMatchObject({ version: version + 1n, record: newer });
    // The old one is now stale: refused, and the name stays.
    expect((await put(record)).status).toBe(400);
    expect((await fetchName()).version).toBe(version + 1n);
    record = newer;
  });

  it("refuses a PUT of a key the server does not let publish (--allow-keys), as NS.Update does", async () => {
    const dir = await tempDir("remotelog-gateway-allow-");
    const only = (allowed: string) => writeFile(join(dir, allowed), `${allowed}\n`).then(() => join(dir, allowed));
    const stranger = keyName(await generateNameKey());
    for (const [allowed, status] of [[stranger, 403], [name, 200]] as const) {
      const closed = await startServer(["--memory", "--listen", "127.0.0.1:0", "--allow-keys", await only(allowed)]);
      // The page goes in first, as the PUT needs it here; then only the record decides.
      await createClient(CAS, createConnectTransport({ baseUrl: closed.url, httpVersion: "1.1" })).add({ data: head });
      const file = join(dir, "record");
      await writeFile(file, record);
      const answer = await curl("-X", "PUT", "-H", "Content-Type: application/vnd.ipfs.ipns-record", "--data-binary", `@${file}`, `${closed.url}/routing/v1/ipns/${name}`);
      expect(answer.status, answer.body.toString("utf8")).toBe(status);
      const stored = await curl("-H", "Accept: application/vnd.ipfs.ipns-record", `${closed.url}/routing/v1/ipns/${name}`);
      expect(stored.status).toBe(status === 200 ? 200 : 404);
      await stop(closed.process);
    }
  });

  it("names this server as a trustless gateway provider of the blocks it holds", async () => {
    const held = await curl(`${server.url}/routing/v1/providers/${messages[0]}`);
    expect(held.status).toBe(200);
    expect(held.headers["content-type"]).toBe("application/json");
    const { Providers } = JSON.parse(held.body.toString("utf8"));
    expect(Providers).toHaveLength(1);
    expect(Providers[0]).toMatchObject({ Schema: "peer", Protocols: ["transport-ipfs-gateway-http"], Addrs: [`/ip4/127.0.0.1/tcp/${server.port}/http`] });
    expect(Providers[0].ID).toMatch(/^12D3KooW/);

    const missing = cidOf(Buffer.from("never stored")).toString();
    expect(JSON.parse((await curl(`${server.url}/routing/v1/providers/${missing}`)).body.toString("utf8"))).toEqual({ Providers: [] });
    const filtered = await curl(`${server.url}/routing/v1/providers/${messages[0]}?filter-protocols=transport-bitswap`);
    expect(JSON.parse(filtered.body.toString("utf8"))).toEqual({ Providers: [] });
    const streamed = await curl("-H", "Accept: application/x-ndjson", `${server.url}/routing/v1/providers/${CID.parse(messages[0]).toString()}`);
    expect(streamed.headers["content-type"]).toBe("application/x-ndjson");
    expect(JSON.parse(streamed.body.toString("utf8").trim())).toMatchObject({ ID: Providers[0].ID });
    expect((await curl(`${server.url}/routing/v1/dht/closest/peers/${messages[0]}`)).status).toBe(501);
  });

  it("answers every request with Access-Control-Allow-Origin: *, errors and the PUT's 200 too", async () => {
    // Only the 200 GETs carried it: a browser page saw a network error for a PUT that was stored, and
    // for "not found". Routing spec: servers "always respond with headers that remove CORS limits".
    const file = join(data, "..", "record-cors");
    await writeFile(file, record);
    const missing = cidOf(Buffer.from("never stored")).toString();
    const stranger = keyName(await generateNameKey());
    const cases: [string[], number][] = [
      [[`${server.url}/ipfs/${messages[0]}?format=raw`], 200],
      [[`${server.url}/ipfs/${missing}?format=raw`], 404],
      [["-I", `${server.url}/ipfs/${missing}?format=raw`], 404],
      [["-H", "Cache-Control: only-if-cached", `${server.url}/ipfs/${missing}?format=raw`], 412],
      [[`${server.url}/ipfs/not-a-cid?format=raw`], 400],
      [["-H", "Accept: text/html", `${server.url}/ipfs/${messages[0]}`], 406],
      [["-X", "DELETE", `${server.url}/ipfs/${messages[0]}?format=raw`], 405],
      [["-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/ipns/${stranger}`], 404],
      [["-H", "Accept: application/vnd.ipfs.ipns-record", `${server.url}/routing/v1/ipns/${stranger}`], 404],
      [["-H", "Accept: application/json", `${server.url}/routing/v1/ipns/${name}`], 406],
      [["-X", "PUT", "-H", "Content-Type: application/vnd.ipfs.ipns-record", "--data-binary", `@${file}`, `${server.url}/routing/v1/ipns/${name}`], 200],
      [["-X", "PUT", "-H", "Content-Type: application/vnd.ipfs.ipns-record", "--data-binary", "not a record", `${server.url}/routing/v1/ipns/${name}`], 400],
      [[`${server.url}/routing/v1/providers/not-a-cid`], 422],
      [[`${server.url}/routing/v1/dht/closest/peers/${messages[0]}`], 501],
      [[`${server.url}/routing/v1/nothing`], 400],
    ];
    for (const [args, status] of cases) {
      const answer = await curl("-H", "Origin: https://page.example", ...args);
      expect({ args, status: answer.status, cors: answer.headers["access-control-allow-origin"] }).toEqual({ args, status, cors: "*" });
    }
  });

  it("is off with --no-gateway", async () => {
    const plain = await startServer(["--memory", "--listen", "127.0.0.1:0", "--no-gateway"]);
    expect((await curl(`${plain.url}/ipfs/bafkqaaa?format=raw`)).status).toBe(404);
    expect((await curl(`${server.url}/ipfs/bafkqaaa?format=raw`)).status).toBe(200);
  });
});
