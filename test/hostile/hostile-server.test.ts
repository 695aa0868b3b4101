import http2, { type ServerHttp2Stream } from "node:http2";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { addressText } from "../../core/hash.js";
import { GetManyRequestSchema, GetManyResponseSchema } from "../../gen/remotelog/v1/blocks_pb.js";
import { startH2Proxy, type H2Proxy, type ProxiedCall } from "../helpers/h2-proxy.js";
import { cleanup, collect, lines, parseJsonl, runCli, spawnCli, startServer, tempDir } from "../helpers/processes.js";

// The client verbs against a hostile or failing server: a proxy in front of a real `serve` that
// changes its answers, or answers for it, as the client meets it (a real process of the built CLI).

const proxies: H2Proxy[] = [];
afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.close();
  await cleanup();
});

async function proxyTo(url: string): Promise<H2Proxy> {
  const proxy = await startH2Proxy(url);
  proxies.push(proxy);
  return proxy;
}

const seqs = (stdout: string) => parseJsonl<{ seq: number }>(stdout).map((line) => line.seq);
const upTo = (end: number) => Array.from({ length: end }, (_, i) => i);

describe("hostile server - a GetMany answer that names a block missing though the call did not allow it", () => {
  it("receive prints seqs 0..999, then NOT_FOUND naming the name, seq 1000 and its block, as for a block the server lacks; backup --from-name fails NOT_FOUND naming the block", { timeout: 90_000 }, async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    // Every message in the CAS (none embedded in the head).
    const sent = await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(1200) });
    expect(sent.code, sent.stderr).toBe(0);
    const intact = await runCli(["receive", "--unsigned", "--name", "c", "--server", server.url, "--from-seq", "1000", "--batch", "1"]);
    expect(intact.code, intact.stderr).toBe(0);
    const address = parseJsonl<{ address: string }>(intact.stdout)[0].address;

    // The proxy answers every GetMany that asks for message 1000 with missing = [its index] and empty
    // bytes there. receive asks for messages allowing missing blocks (a fetch bounded in bytes), where
    // that is a block the CAS lacks; backup asks without, where only NOT_FOUND for the call may say so.
    const proxy = await proxyTo(server.url);
    proxy.rewrite = ({ method, body: request }, body) => {
      if (method !== "BlockService/GetMany") return undefined;
      const asked = fromBinary(GetManyRequestSchema, request);
      const index = asked.ids.findIndex((id) => addressText(id) === address);
      if (index === -1) return undefined;
      const answer = fromBinary(GetManyResponseSchema, body);
      if (index >= answer.blocks.length) return undefined;
      answer.missing = [index];
      answer.blocks[index] = new Uint8Array(0);
      return Buffer.from(toBinary(GetManyResponseSchema, answer));
    };

    const received = await runCli(["receive", "--unsigned", "--name", "c", "--server", proxy.url, "--state", join(dir, "bob"), "--retry-for", "1"]);
    // The old client took the missing slot for bytes: INTERNAL: call: The "input" argument must be of type string…
    expect(received.code).toBe(1);
    expect(received.stderr).not.toContain("INTERNAL");
    expect(seqs(received.stdout)).toEqual(upTo(1000));
    expect(received.stderr).toMatch(new RegExp(`NOT_FOUND: name "c" seq 1000: .*block ${address} is not stored`));

    const backup = await runCli(["backup", "--unsigned", "--from-name", "c", "--to", join(dir, "backup"), "--server", proxy.url, "--retry-for", "1"]);
    // The old client: INTERNAL: Cannot read properties of undefined (reading 'length').
    expect(backup.code).toBe(1);
    expect(backup.stderr).not.toContain("INTERNAL");
    expect(backup.stderr).toMatch(new RegExp(`NOT_FOUND: .*block ${address} is not stored`));
  });
});

describe("hostile server - a URL that does not answer as a remotelog server does", () => {
  it("a redirect, an HTML 200, or a 200 whose bytes do not parse is INVALID_ARGUMENT naming what came back, not INTERNAL; a proxy's 503 is still an outage, retried", { timeout: 90_000 }, async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const sent = await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(10) });
    expect(sent.code, sent.stderr).toBe(0);
    const proxy = await proxyTo(server.url);
    const answer = (status: number, headers: Record<string, string>, body: string | Buffer) => (stream: ServerHttp2Stream) => {
      stream.respond({ ":status": status, ...headers });
      stream.end(body);
      return true;
    };
    const cases: [string, (call: ProxiedCall, stream: ServerHttp2Stream) => boolean, RegExp][] = [
      ["redirect", (_, stream) => answer(302, { location: "http://127.0.0.1:1/elsewhere" }, "")(stream), /INVALID_ARGUMENT: NS http:\S+ Fetch "c": the URL did not answer as a remotelog server does \(HTTP 302, a redirect to http:\/\/127\.0\.0\.1:1\/elsewhere\): is it a remotelog server's URL, with the right path\?/],
      ["html", (_, stream) => answer(200, { "content-type": "text/html" }, "<html>captive portal</html>")(stream), /INVALID_ARGUMENT: NS http:\S+ Fetch "c": the URL did not answer as a remotelog server does \(HTTP 200 with unsupported content type text\/html\)/],
      // The name is read well, and a GetMany answered with bytes that are no GetManyResponse.
      ["garbage", ({ method }, stream) => method === "BlockService/GetMany" && answer(200, { "content-type": "application/proto" }, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34]))(stream), /INVALID_ARGUMENT: CAS http:\S+ GetMany: the URL did not answer as a remotelog server does \(its answer does not parse: parse binary: /],
    ];
    for (const [what, intercept, said] of cases) {
      proxy.intercept = intercept;
      const received = await runCli(["receive", "--unsigned", "--name", "c", "--server", proxy.url]);
      // The old client: INTERNAL: … HTTP 302, unsupported content type text/html, parse binary: illegal tag ….
      expect(received.code, `${what}: ${received.stderr}`).toBe(1);
      expect(received.stderr, what).toMatch(said);
      expect(received.stderr, what).not.toContain("INTERNAL");
      expect(received.stderr, what).not.toContain("retrying");
    }
    // A proxy in front of a server that is down says 503: retried until --retry-for gives up.
    proxy.intercept = (_, stream) => answer(503, { "content-type": "text/plain" }, "no upstream")(stream);
    const outage = await runCli(["receive", "--unsigned", "--name", "c", "--server", proxy.url, "--retry-for", "1"]);
    expect(outage.code, outage.stderr).toBe(1);
    expect(outage.stderr).toContain("retrying");
    expect(outage.stderr).toMatch(/remotelog: UNAVAILABLE: gave up after .*HTTP 503/);
  });
});

/**
 * From the getManys-th GetMany on, the proxy refuses every stream (REFUSED_STREAM, as a server going
 * down does) until it has refused refusedFetches NS Fetches (each retry of a sync starts with one),
 * then passes every call again. Six refused Fetches take at least 4.7 s of backoff: past the ~3 s a
 * service that never answered is given.
 */
function outageAfter(proxy: H2Proxy, getManys: number, refusedFetches = 6): { refused: () => number } {
  let refused = 0;
  let state: "before" | "down" | "over" = "before";
  proxy.intercept = ({ method, n }, stream) => {
    if (state === "before" && method === "BlockService/GetMany" && n >= getManys) state = "down";
    if (state !== "down") return false;
    if (method === "NS/Fetch" && ++refused >= refusedFetches) state = "over";
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    return true;
  };
  return { refused: () => refused };
}

describe("hostile server - an outage after the server has answered", () => {
  it("receive, receive --follow, cat and mirror retry it (60 s, forever with --follow) instead of ending within ~3 s; each message is delivered exactly once", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const [server, copy] = await Promise.all([startServer(["--listen", "127.0.0.1:0", "--memory"]), startServer(["--listen", "127.0.0.1:0", "--memory"])]);
    const count = 3000;
    const sent = await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(count) });
    expect(sent.code, sent.stderr).toBe(0);
    const [toReceive, toFollow, toCat, toMirror] = await Promise.all([proxyTo(server.url), proxyTo(server.url), proxyTo(server.url), proxyTo(server.url)]);
    // receive fetches 256 messages a call (--batch 64): the outage comes after several calls delivered;
    // cat's and mirror's first GetMany of messages asks for all of them, after the name and the pages were read.
    const outages = [outageAfter(toReceive, 6), outageAfter(toFollow, 6), outageAfter(toCat, 2), outageAfter(toMirror, 2)];

    const receive = runCli(["receive", "--unsigned", "--name", "c", "--server", toReceive.url, "--state", join(dir, "bob"), "--batch", "64"], { timeoutMs: 100_000 });
    const follower = spawnCli(["receive", "--unsigned", "--name", "c", "--server", toFollow.url, "--state", join(dir, "carol"), "--batch", "64", "--follow"]);
    const following = collect(follower, undefined, 100_000);
    const cat = runCli(["cat", "--unsigned", "c", "--server", toCat.url, "--format", "jsonl"], { timeoutMs: 100_000 });
    const mirror = runCli(["mirror", "--unsigned", "--name", "c", "--server", toMirror.url, "--to", copy.url], { timeoutMs: 100_000 });

    // The follower runs until stopped: once it has printed every message (or ended on its own, as the old one did).
    let printed = "";
    await new Promise<void>((resolve) => {
      const onData = (chunk: Buffer) => {
        printed += chunk.toString("utf8");
        if (printed.split("\n").length > count) done();
      };
      const done = () => {
        follower.stdout!.off("data", onData);
        follower.off("exit", done);
        resolve();
      };
      follower.stdout!.on("data", onData);
      follower.once("exit", done);
    });
    follower.kill("SIGTERM");

    for (const [verb, result] of [
      ["receive", await receive],
      ["receive --follow", await following],
      ["cat", await cat],
    ] as const) {
      // The old client gave up within ~3 s of its first attempt: UNAVAILABLE: gave up after 2.7 s and 6 attempts …, exit 1.
      if (verb !== "receive --follow") expect(result.code, `${verb}: ${result.stderr}`).toBe(0);
      expect(result.stderr, verb).not.toContain("gave up");
      expect(result.stderr, verb).toContain("retrying");
      expect(seqs(result.stdout), verb).toEqual(upTo(count));
    }
    const mirrored = await mirror;
    expect(mirrored.code, mirrored.stderr).toBe(0);
    expect(mirrored.stderr).not.toContain("gave up");
    expect(mirrored.stderr).toContain("retrying");
    const copied = await runCli(["cat", "--unsigned", "c", "--server", copy.url, "--format", "jsonl"]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(seqs(copied.stdout)).toEqual(upTo(count));
    // Each was cut off for all six refused Fetches, and came back.
    for (const outage of outages) expect(outage.refused()).toBe(6);
  });
});

describe("hostile server - a signal while a call waits on an answer that trickles", () => {
  it("SIGINT or SIGTERM ends receive at once, cancelling the call, with 130 or 143, its checkpoint where the next receive goes on", { timeout: 90_000 }, async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const count = 2000;
    const sent = await runCli(["send", "--unsigned", "--embed", "none", "--name", "c", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(count) });
    expect(sent.code, sent.stderr).toBe(0);
    for (const [signal, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
    ] as const) {
      const proxy = await proxyTo(server.url);
      // From the third GetMany on, a 200 and then a byte a second, for ever: never idle, never done.
      let trickling!: () => void;
      const trickles = new Promise<void>((resolve) => (trickling = resolve));
      proxy.intercept = ({ method, n }, stream) => {
        if (method !== "BlockService/GetMany" || n < 3) return false;
        stream.respond({ ":status": 200, "content-type": "application/proto" });
        const timer = setInterval(() => stream.write(Buffer.from([0x0a])), 1000);
        stream.on("close", () => clearInterval(timer));
        stream.write(Buffer.from([0x0a]));
        trickling();
        return true;
      };
      const state = join(dir, `bob-${signal}`);
      const child = spawnCli(["receive", "--unsigned", "--name", "c", "--server", proxy.url, "--state", state, "--batch", "64"]);
      const stopped = collect(child, undefined, 60_000);
      await trickles;
      child.kill(signal);
      const result = await stopped;
      // The old receive heard the signal, but the call it waited on did not: main ended it after 5 s.
      expect(result.signal, result.stderr).toBeNull();
      expect(result.stderr).not.toContain("did not end within");
      expect(result.code, result.stderr).toBe(code);
      expect(result.stderr).toContain(`remotelog: stopped by ${signal}: receive of "c" ended before it was done, its calls in progress cancelled; the checkpoint in ${state} stands after the last batch printed`);
      // The checkpoint stands after what was printed: the next receive prints the rest, none twice.
      const rest = await runCli(["receive", "--unsigned", "--name", "c", "--server", server.url, "--state", state]);
      expect(rest.code, rest.stderr).toBe(0);
      expect([...seqs(result.stdout), ...seqs(rest.stdout)]).toEqual(upTo(count));
    }
  });
});
