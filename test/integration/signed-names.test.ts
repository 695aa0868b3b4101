import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { stat } from "node:fs/promises";
import { cleanup, collect, lines, parseJsonl, runCli, skewedClock, spawnCli, startServer, tempDir, bodyText } from "../helpers/processes.js";

afterEach(cleanup);

async function keyGen(file: string): Promise<string> {
  const result = await runCli(["key", "gen", "--out", file]);
  expect(result.code, result.stderr).toBe(0);
  const name = result.stdout.trim();
  expect(name).toMatch(/^k51[a-z0-9]+$/);
  return name;
}

describe("signed names - end to end through real processes", () => {
  it("a key's name is its log's name: send signs, receive verifies", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--require-signed"]);
    const keyFile = join(dir, "alice.key");
    const name = await keyGen(keyFile);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await runCli(["key", "name", keyFile])).stdout.trim()).toBe(name);

    const send = await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--json"], { stdin: lines(40) });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ name, published: 40, version: 1 });
    const received = await runCli(["receive", "--name", name, "--server", server.url, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    expect(parseJsonl(received.stdout)).toHaveLength(40);

    // --require-signed: a free-form name cannot be published here at all.
    const unsigned = await runCli(["send", "--unsigned", "--name", "free", "--server", server.url, "--data", join(dir, "free"), "--retry-for", "0"], { stdin: lines(1) });
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/PERMISSION_DENIED/);
  });

  it("a send with nothing new renews an expired record, as the readers' error asks; one still fresh is left alone", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    const send = (stdin: string, validity: string) => runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--validity", validity], { stdin });
    expect((await send("one\n", "1m")).code).toBe(0);
    // A reader two minutes on: past the record's validity, without waiting for it.
    const later = await skewedClock(2 * 60_000);
    const expired = await runCli(["cat", name, "--server", server.url], { env: later });
    expect(expired.code).toBe(1);
    expect(expired.stderr).toContain("the sender must publish it again");
    // The old send, with nothing pending, returned before publishing: the record stayed expired.
    const renewed = await send("", "1h");
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(renewed.stderr).toContain("(version 2)");
    const read = await runCli(["cat", name, "--server", server.url, "--format", "jsonl"], { env: later });
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl<{ body?: string; body_base64?: string }>(read.stdout).map(bodyText)).toEqual(["one"]);
    const again = await send("", "1h");
    expect(again.stderr).toContain("(version 2)");
  });

  it("a sender whose clock is behind is told its record arrived expired, to check its clock and --validity; a --validity under a minute is a usage error", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = await keyGen(keyFile);
    const alice = ["--key", keyFile, "--server", server.url, "--data", join(dir, "alice")];
    // 100 days behind: every record it signs (valid 90 days by default) has expired by the server's clock.
    const behind = await runCli(["send", ...alice], { stdin: "hi\n", env: await skewedClock(-100 * 86_400_000) });
    expect(behind.code).toBe(1);
    expect(behind.stderr).toContain("CONFLICT");
    expect(behind.stderr).toContain("arrived already expired");
    expect(behind.stderr).toContain("clock");
    expect(behind.stderr).toContain("--validity");
    // The old answer, a reader's advice, told the sender to do what it had just done.
    expect(behind.stderr).not.toContain("the sender must publish it again");
    expect(behind.stderr).not.toContain("will be published by the next");
    // Its clock put right, the line it kept goes out.
    const right = await runCli(["send", ...alice, "--json"], { stdin: "" });
    expect(right.code, right.stderr).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ name, published: 1 });
    // A record that expires on its way, or while receivers read it, is refused before anything is appended or signed.
    for (const validity of ["1ms", "59s"]) {
      const short = await runCli(["send", ...alice, "--validity", validity], { stdin: "too short\n" });
      expect(short.code, short.stderr).toBe(2);
      expect(short.stderr).toContain("--validity");
      const redact = await runCli(["redact", "--key", keyFile, "--server", server.url, "--id", "0".repeat(64), "--validity", validity]);
      expect(redact.code, redact.stderr).toBe(2);
      expect(redact.stderr).toContain("--validity");
    }
    const status = await runCli(["status", "--data", join(dir, "alice"), "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ messages: 1, published: 1 });
  });

  it("refuses, as usage errors, a send with neither key nor --unsigned, a key with the wrong --name, and an unsigned read of a free-form name", async () => {
    const dir = await tempDir();
    const keyFile = join(dir, "k.key");
    await keyGen(keyFile);
    const other = await keyGen(join(dir, "other.key"));
    expect((await runCli(["send", "--name", "x", "--server", "http://127.0.0.1:9", "--data", join(dir, "a")])).code).toBe(2);
    expect((await runCli(["send", "--key", keyFile, "--name", other, "--server", "http://127.0.0.1:9", "--data", join(dir, "a")])).code).toBe(2);
    expect((await runCli(["send", "--unsigned", "--name", other, "--server", "http://127.0.0.1:9", "--data", join(dir, "a")])).code).toBe(2);
    const read = await runCli(["receive", "--name", "free-form", "--server", "http://127.0.0.1:9", "--state", join(dir, "b")]);
    expect(read.code).toBe(2);
    expect(read.stderr).toMatch(/not a key name.*--unsigned/);
  });

  it("two writers with one key, sending 1,000 messages each at the same time, end with all 2,000, each once", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const keyFile = join(dir, "author.key");
    const name = await keyGen(keyFile);
    // Each device feeds its messages in steps of 20 over about a second, so that each publishes many
    // times and their publishes race for the same versions.
    const devices = ["phone", "laptop"].map((device) => {
      const child = spawnCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, device), "--page-size", "16", "--json"]);
      const done = collect(child, undefined, 120_000, { keepStdinOpen: true });
      const feed = (async () => {
        for (let step = 0; step < 50; step++) {
          child.stdin!.write(lines(20, device, step * 20));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        child.stdin!.end();
      })();
      return { device, done: feed.then(() => done) };
    });
    const results = await Promise.all(devices.map((d) => d.done));
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    const lostRaces = results.reduce((sum, r) => sum + (JSON.parse(r.stdout) as { lostRaces: number }).lostRaces, 0);
    console.log(`two writers: ${lostRaces} lost race(s), each retried on the new head`);
    const received = await runCli(["receive", "--name", name, "--server", server.url, "--state", join(dir, "bob")], { timeoutMs: 60_000 });
    expect(received.code, received.stderr).toBe(0);
    const bodies = parseJsonl<{ body: string; seq: number }>(received.stdout).map((d) => bodyText(d));
    expect(bodies).toHaveLength(2000);
    expect(new Set(bodies).size).toBe(2000);
    for (const device of ["phone", "laptop"]) {
      expect(bodies.filter((b) => b.startsWith(device))).toEqual(lines(1000, device).trim().split("\n"));
    }
  });
});
