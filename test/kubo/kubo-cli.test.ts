import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, collect, lines, parseJsonl, runCli, skewedClock, spawnCli, startServer, tempDir, bodyText } from "../helpers/processes.js";
import { useIpfs } from "./ipfs-node.js";

const ipfsNode = useIpfs();
afterEach(cleanup);

async function keyGen(file: string): Promise<string> {
  const result = await runCli(["key", "gen", "--out", file]);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.trim();
}

const bodies = (output: string) => parseJsonl<{ body: string }>(output).map((line) => bodyText(line));
const expected = (count: number, prefix = "message", from = 0) => Array.from({ length: count }, (_, i) => `${prefix} ${from + i}`);

describe("kubo - end to end through real processes", () => {
  it("serve --cas kubo --ns ipns: send and receive through the services, and the same log read straight from the node", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--cas", "kubo", "--ns", "ipns", "--kubo-api", ipfsNode().url]);
    expect(server.stderr()).toContain(ipfsNode().url);
    const keyFile = join(dir, "alice.key");
    const name = await keyGen(keyFile);

    const send = await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "8", "--json"], { stdin: lines(30) });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ name, published: 30, version: 1 });
    const more = await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "8", "--json"], { stdin: lines(5, "message", 30) });
    expect(more.code, more.stderr).toBe(0);
    expect(JSON.parse(more.stdout)).toMatchObject({ version: 2 });

    const received = await runCli(["receive", "--name", name, "--server", server.url, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    expect(bodies(received.stdout)).toEqual(expected(35));

    // The records and pages live on the node as IPFS data: a reader needs no remotelog service.
    const direct = await runCli(["receive", "--name", name, "--kubo-api", ipfsNode().url, "--state", join(dir, "carol")]);
    expect(direct.code, direct.stderr).toBe(0);
    expect(bodies(direct.stdout)).toEqual(expected(35));

    // IPNS holds signed names only.
    const unsigned = await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", join(dir, "chat"), "--retry-for", "0"], { stdin: lines(1) });
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/PERMISSION_DENIED/);
  });

  it("direct mode: send --kubo-api and receive --kubo-api, with no remotelog service at all", async () => {
    const dir = await tempDir();
    const keyFile = join(dir, "dave.key");
    const name = await keyGen(keyFile);
    const send = await runCli(["send", "--key", keyFile, "--kubo-api", ipfsNode().url, "--data", join(dir, "dave"), "--page-size", "4", "--embed", "2", "--json"], { stdin: lines(20, "direct") });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ name, published: 20, version: 1 });

    const received = await runCli(["receive", "--name", name, "--kubo-api", ipfsNode().url, "--state", join(dir, "erin")]);
    expect(received.code, received.stderr).toBe(0);
    expect(bodies(received.stdout)).toEqual(expected(20, "direct"));

    // A follower polls (the node cannot push heads) and sees the next publish.
    const follower = spawnCli(["receive", "--name", name, "--kubo-api", ipfsNode().url, "--state", join(dir, "erin"), "--follow", "--interval", "100"]);
    let printed = "";
    follower.stdout!.on("data", (chunk) => (printed += String(chunk)));
    const following = collect(follower, undefined, 60_000, { keepStdinOpen: true });
    const again = await runCli(["send", "--key", keyFile, "--kubo-api", ipfsNode().url, "--data", join(dir, "dave"), "--page-size", "4", "--json"], { stdin: lines(3, "direct", 20) });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ version: 2 });
    const complete = () => bodies(printed.slice(0, printed.lastIndexOf("\n") + 1));
    const deadline = Date.now() + 20_000;
    while (complete().length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    follower.kill("SIGTERM");
    await following;
    const seen = complete();
    expect(seen).toEqual(expected(3, "direct", 20));
  });

  it("a sender away longer than its record's validity publishes again, through the node and through serve --ns ipns, while readers refuse the expired head until then", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--cas", "kubo", "--ns", "ipns", "--kubo-api", ipfsNode().url]);
    // Two minutes on: past the minute each record was signed for, without waiting for it.
    const later = await skewedClock(2 * 60_000);
    for (const [how, where] of [
      ["direct", ["--kubo-api", ipfsNode().url]],
      ["served", ["--server", server.url]],
    ] as const) {
      const keyFile = join(dir, `${how}.key`);
      const name = await keyGen(keyFile);
      const send = (stdin: string, env?: NodeJS.ProcessEnv) => runCli(["send", "--key", keyFile, ...where, "--data", join(dir, how), "--validity", "1m", "--json"], { stdin, env });
      expect((await send("first\n")).code).toBe(0);
      const expired = await runCli(["receive", "--name", name, ...where, "--state", join(dir, `${how}-bob`)], { env: later });
      expect(expired.code).toBe(1);
      expect(expired.stderr).toMatch(/CONFLICT: .*expired/);
      // Before, the node's NS refused the expired record to its own sender too: CONFLICT for good.
      const back = await send("second\n", later);
      expect(back.code, `${how}: ${back.stderr}`).toBe(0);
      expect(JSON.parse(back.stdout)).toMatchObject({ published: 2, version: 2 });
      const read = await runCli(["receive", "--name", name, ...where, "--state", join(dir, `${how}-bob`)], { env: later });
      expect(read.code, `${how}: ${read.stderr}`).toBe(0);
      expect(bodies(read.stdout)).toEqual(["first", "second"]);
    }
  });

  it("direct mode refuses free-form names and mixing --kubo-api with --server, as usage errors", async () => {
    const dir = await tempDir();
    const send = await runCli(["send", "--unsigned", "--name", "chat", "--kubo-api", ipfsNode().url, "--data", join(dir, "chat")], { stdin: lines(1) });
    expect(send.code).toBe(2);
    expect(send.stderr).toMatch(/signed names only/);
    const receive = await runCli(["receive", "--unsigned", "--name", "chat", "--kubo-api", ipfsNode().url, "--state", join(dir, "bob")]);
    expect(receive.code).toBe(2);
    const keyFile = join(dir, "k.key");
    await keyGen(keyFile);
    const both = await runCli(["send", "--key", keyFile, "--kubo-api", ipfsNode().url, "--server", "http://127.0.0.1:9", "--data", join(dir, "k")], { stdin: lines(1) });
    expect(both.code).toBe(2);
    const serve = await runCli(["serve", "--cas", "kubo", "--listen", "127.0.0.1:0"]);
    expect(serve.code).toBe(2);
    expect(serve.stderr).toMatch(/--kubo-api/);
  });

  it("a node that is down: send names the Kubo API URL and gives up after --retry-for", async () => {
    const dir = await tempDir();
    const keyFile = join(dir, "k.key");
    await keyGen(keyFile);
    const url = "http://127.0.0.1:9";
    const send = await runCli(["send", "--key", keyFile, "--kubo-api", url, "--data", join(dir, "k"), "--retry-for", "1"], { stdin: lines(1) });
    expect(send.code).toBe(1);
    expect(send.stderr).toMatch(/UNAVAILABLE/);
    expect(send.stderr).toContain(`Kubo API ${url}`);
    expect(send.stderr).toMatch(/retrying, next in/);
  });
});
