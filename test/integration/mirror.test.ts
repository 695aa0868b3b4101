import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { cleanup, lines, parseJsonl, runCli, spawnCli, startServer, stop, tempDir, bodyText, skewedClock } from "../helpers/processes.js";

afterEach(cleanup);

describe("mirror - end to end through real processes", () => {
  it("copies a signed log to a second server, which serves receivers after the first one is killed", async () => {
    const dir = await tempDir();
    const a = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "a")]);
    const b = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "b"), "--require-signed"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    const send = (stdin: string) => runCli(["send", "--key", keyFile, "--server", a.url, "--data", join(dir, "alice"), "--page-size", "16"], { stdin });
    expect((await send(lines(100))).code).toBe(0);

    const mirror = await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url]);
    expect(mirror.code, mirror.stderr).toBe(0);
    expect(JSON.parse(mirror.stdout)).toEqual({ name, pages: 6, messages: 100, sequence: 1 });
    const again = await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe("");

    // A follower keeps the copy current as the sender goes on.
    const follower = spawnCli(["mirror", "--name", name, "--server", a.url, "--to", b.url, "--follow", "--interval", "200"]);
    const copied = createInterface({ input: follower.stdout! });
    const heads: { messages: number; sequence: number }[] = [];
    copied.on("line", (line) => heads.push(JSON.parse(line)));
    expect((await send(lines(30, "later"))).code).toBe(0);
    const deadline = Date.now() + 10_000;
    while (!heads.some((head) => head.sequence === 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(heads.find((head) => head.sequence === 2)).toMatchObject({ messages: 30 }); // only the 30 new: the 4 of the old head page the copy had (issue 12 §7)
    await stop(follower);

    // The first server is gone for good; the copy alone still serves the whole log, verified with the key.
    await stop(a.process, "SIGKILL");
    const received = await runCli(["receive", "--name", name, "--server", b.url, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    const got = parseJsonl<{ seq: number; body: string }>(received.stdout);
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 130 }, (_, i) => i));
    expect(bodyText(got[129])).toBe("later 29");
  });

  it("refuses copying to the services it reads from, and a free-form name without --unsigned", async () => {
    const same = await runCli(["mirror", "--name", "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8", "--server", "http://127.0.0.1:9", "--to", "http://127.0.0.1:9"]);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/other services/);
    const free = await runCli(["mirror", "--name", "chat", "--server", "http://127.0.0.1:9", "--to", "http://127.0.0.1:10"]);
    expect(free.code).toBe(2);
    expect(free.stderr).toMatch(/--unsigned/);
  });
  it("after a redaction below the copy's head, copies the rewritten pages: the copy reads whole, with the tombstone, and verifies", async () => {
    const dir = await tempDir();
    const a = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const b = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", a.url, "--data", join(dir, "alice"), "--page-size", "2"], { stdin: lines(5) })).code).toBe(0);
    expect((await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url])).code).toBe(0);
    const oldest = parseJsonl<{ id: string }>((await runCli(["cat", name, "--server", a.url, "--format", "jsonl"])).stdout)[0];
    expect((await runCli(["redact", "--key", keyFile, "--server", a.url, "--id", oldest.id])).code).toBe(0);

    // The old mirror copied no page here and published the head: the copy's pages below it were missing for good.
    const mirrored = await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url]);
    expect(mirrored.code, mirrored.stderr).toBe(0);
    expect(JSON.parse(mirrored.stdout).pages).toBeGreaterThanOrEqual(2);
    const read = await runCli(["cat", name, "--server", b.url, "--format", "jsonl"]);
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl<{ seq: number; redacted?: boolean }>(read.stdout).map((l) => [l.seq, l.redacted === true])).toEqual([
      [0, true],
      [1, false],
      [2, false],
      [3, false],
      [4, false],
    ]);
    const verified = await runCli(["verify", "--name", name, "--from", b.url, "--read-data"]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });

  it("goes on after the copy's own record expired while the sender was quiet", async () => {
    const dir = await tempDir();
    const a = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const b = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    const send = (stdin: string, validity: string) => runCli(["send", "--key", keyFile, "--server", a.url, "--data", join(dir, "alice"), "--validity", validity], { stdin });
    expect((await send("one\n", "1m")).code).toBe(0);
    expect((await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url])).code).toBe(0);
    expect((await send("two\n", "1h")).code).toBe(0);
    // The old mirror checked the copy's expired head in full, and stopped at it on every run. Run two
    // minutes on, past the copy's validity, without waiting for it.
    const mirrored = await runCli(["mirror", "--name", name, "--server", a.url, "--to", b.url], { env: await skewedClock(2 * 60_000) });
    expect(mirrored.code, mirrored.stderr).toBe(0);
    const read = await runCli(["cat", name, "--server", b.url, "--format", "jsonl"]);
    expect(read.code, read.stderr).toBe(0);
    expect(parseJsonl<{ body?: string; body_base64?: string }>(read.stdout).map(bodyText)).toEqual(["one", "two"]);
  });
});
