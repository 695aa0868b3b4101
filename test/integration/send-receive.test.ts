import { afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { cp, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Remote } from "../../actors/remote.js";
import { cleanup, collect, lines, parseJsonl, runCli, skewedClock, spawnCli, startServer, stop, tempDir, bodyBytes, bodyText } from "../helpers/processes.js";

afterEach(cleanup);

interface Delivered {
  seq: number;
  id: string;
  group?: string;
  timestamp: number;
  body: string;
  address: string;
}

/** The sender's local log, as `inspect log` prints it: the truth a receiver must reproduce. */
async function localLog(dataDir: string): Promise<{ id: string; body: string; group: string }[]> {
  const result = await runCli(["inspect", "log", "--data", dataDir, "--limit", "1000000"]);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { messages: { id: string; body: string; group: string }[] }).messages;
}

function bodies(delivered: Delivered[]): string[] {
  return delivered.map((d) => bodyText(d));
}

describe("send and receive - end to end through real processes", () => {
  it("delivers every message once, oldest first, and then only what is new", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const send = await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", alice, "--page-size", "16", "--group", "chat", "--json"], { stdin: lines(100) });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ appended: 100, published: 100, logLength: 100 });

    const first = await runCli(["receive", "--unsigned", "--name", "alice", "--server", server.url, "--state", join(dir, "bob")]);
    expect(first.code, first.stderr).toBe(0);
    const delivered = parseJsonl<Delivered>(first.stdout);
    expect(delivered.map((d) => d.seq)).toEqual([...Array(100).keys()]);
    expect(bodies(delivered)).toEqual(lines(100).trim().split("\n"));
    expect(delivered.every((d) => d.group === "chat" && /^[0-9a-f]{64}$/.test(d.id) && d.address.startsWith("bafkrei"))).toBe(true);
    expect(delivered.map((d) => d.id)).toEqual((await localLog(alice)).map((m) => m.id));

    const again = await runCli(["receive", "--unsigned", "--name", "alice", "--server", server.url, "--state", join(dir, "bob")]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe("");

    expect((await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", alice, "--page-size", "16"], { stdin: lines(7, "later") })).code).toBe(0);
    const third = parseJsonl<Delivered>((await runCli(["receive", "--unsigned", "--name", "alice", "--server", server.url, "--state", join(dir, "bob")])).stdout);
    expect(third.map((d) => d.seq)).toEqual([100, 101, 102, 103, 104, 105, 106]);
    expect(bodies(third)).toEqual(lines(7, "later").trim().split("\n"));
  });

  it("takes lines whole where stdin's chunks cut them, one that spans several chunks and a CRLF cut between its CR and LF among them", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    // Lengths that do not divide a pipe's 64 KiB reads, a line longer than two of them, CRLF endings throughout.
    const sent = Array.from({ length: 600 }, (_, i) => `${i}:` + "abcdefghij".repeat(i === 300 ? 15_000 : 1 + ((i * 37) % 97)));
    const send = await runCli(["send", "--unsigned", "--name", "chunks", "--server", server.url, "--data", alice, "--timestamp-ms", "--json"], { stdin: sent.map((line) => `${line}\r\n`).join("") });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ taken: 600, appended: 600, published: 600 });
    expect((await localLog(alice)).map((m) => m.body)).toEqual(sent);
  });

  it("a send longer than a publish step, whose later blocks are addressed on the verify pool's thread, delivers every message checked", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const count = 40_000;
    const send = await runCli(["send", "--unsigned", "--name", "long", "--server", server.url, "--data", alice, "--json"], { stdin: lines(count), timeoutMs: 120_000 });
    expect(send.code, send.stderr).toBe(0);
    expect(JSON.parse(send.stdout)).toMatchObject({ appended: count, published: count });
    // The receiver checks every message against the address its page gives it (DATA_LOSS otherwise).
    const received = await runCli(["receive", "--unsigned", "--name", "long", "--server", server.url, "--state", join(dir, "bob")], { timeoutMs: 120_000 });
    expect(received.code, received.stderr).toBe(0);
    const delivered = parseJsonl<Delivered>(received.stdout);
    expect(delivered.map((d) => d.seq)).toEqual([...Array(count).keys()]);
    expect(bodies(delivered)).toEqual(lines(count).trim().split("\n"));
  }, 240_000);

  it.each([
    ["embed all", ["--embed", "all", "--page-size", "8"]],
    ["embed 3", ["--embed", "3", "--page-size", "8"]],
    ["linked list (page size 1)", ["--page-size", "1"]],
    ["one big page (the largest page size)", ["--page-size", "8192"]],
  ])("reads every page mode: %s", async (_, flags) => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    for (const batch of [lines(20, "a"), lines(1, "b"), lines(13, "c")]) {
      const send = await runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", alice, ...flags], { stdin: batch });
      expect(send.code, send.stderr).toBe(0);
    }
    const received = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    expect(parseJsonl<Delivered>(received.stdout).map((d) => d.id)).toEqual((await localLog(alice)).map((m) => m.id));
  });

  it("receive --from-seq starts at any seqid, and goes on from there", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const alice = join(dir, "alice");
    const send = await runCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", alice, "--page-size", "8"], { stdin: lines(500) });
    expect(send.code, send.stderr).toBe(0);
    const bob = ["receive", "--unsigned", "--name", "s", "--server", server.url, "--state", join(dir, "bob")];
    const seek = await runCli([...bob, "--from-seq", "437"]);
    expect(seek.code, seek.stderr).toBe(0);
    const got = parseJsonl<Delivered>(seek.stdout);
    expect(got.map((d) => d.seq)).toEqual(Array.from({ length: 63 }, (_, i) => 437 + i));
    expect(bodies(got)[0]).toBe(lines(500).split("\n")[437]);
    expect((await runCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", alice, "--page-size", "8"], { stdin: lines(2, "more") })).code).toBe(0);
    expect(parseJsonl<Delivered>((await runCli(bob)).stdout).map((d) => d.seq)).toEqual([500, 501]);
    const many = await runCli(["receive", "--unsigned", "--name", "s", "--name", "t", "--server", server.url, "--state", join(dir, "c"), "--from-seq", "1"]);
    expect(many.code).toBe(2);
    expect(many.stderr).toMatch(/--from-seq reads one name/);
  });

  it("works with the CAS and the NS as separate services", async () => {
    const dir = await tempDir();
    const cas = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "cas"), "--only", "cas"]);
    const ns = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "ns"), "--only", "ns"]);
    const endpoints = ["--cas", cas.url, "--ns", ns.url];
    expect((await runCli(["send", "--unsigned", "--name", "x", ...endpoints, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(10) })).code).toBe(0);
    const received = await runCli(["receive", "--unsigned", "--name", "x", ...endpoints, "--state", join(dir, "bob")]);
    expect(received.code, received.stderr).toBe(0);
    expect(parseJsonl(received.stdout)).toHaveLength(10);
    // The NS alone has no CAS: a receiver pointed only at it fails clearly, naming the service.
    const wrong = await runCli(["receive", "--unsigned", "--name", "x", "--server", ns.url, "--state", join(dir, "carol"), "--retry-for", "0"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/CAS/);

    // A signed send whose blocks go ahead of its update (AddMany with the pending update): the CAS has no
    // NS to check that update against, so the blocks come as any writer's do, here on an open server.
    // The old CAS refused them (PERMISSION_DENIED), and every later send the same.
    const key = join(dir, "alice.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const big = Array.from({ length: 40 }, (_, i) => `m${i}-${"x".repeat(2000)}`).join("\n") + "\n";
    const signed = await runCli(["send", "--key", key, ...endpoints, "--data", join(dir, "alice-signed")], { stdin: big });
    expect(signed.code, signed.stderr).toBe(0);
    const name = (await runCli(["key", "name", key])).stdout.trim();
    const read = await runCli(["cat", name, ...endpoints]);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trimEnd().split("\n")).toHaveLength(40);
  });

  it("publishes with empty input what an earlier run appended but could not publish", async () => {
    const dir = await tempDir();
    const alice = join(dir, "alice");
    // No server is listening on this port: the messages are appended, the publish gives up.
    const down = await runCli(["send", "--unsigned", "--name", "a", "--server", "http://127.0.0.1:9", "--data", alice, "--retry-for", "1"], { stdin: lines(25) });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/UNAVAILABLE/);
    expect(await localLog(alice)).toHaveLength(25);

    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const flush = await runCli(["send", "--unsigned", "--name", "a", "--server", server.url, "--data", alice, "--json"]);
    expect(flush.code, flush.stderr).toBe(0);
    expect(JSON.parse(flush.stdout)).toMatchObject({ appended: 0, published: 25 });
    const received = await runCli(["receive", "--unsigned", "--name", "a", "--server", server.url, "--state", join(dir, "bob")]);
    expect(parseJsonl(received.stdout)).toHaveLength(25);
  });

  it("a server restored from an older copy of its data: the next send publishes what it lost again, above the record readers saw, and they read on", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const key = join(dir, "alice.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const name = (await runCli(["key", "name", key])).stdout.trim();
    const send = (url: string, stdin: string) => runCli(["send", "--key", key, "--server", url, "--data", join(dir, "alice"), "--page-size", "4", "--json"], { stdin });
    const receive = (url: string) => runCli(["receive", "--name", name, "--server", url, "--state", join(dir, "bob")]);

    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await send(server.url, lines(6, "old"))).code).toBe(0);
    await stop(server.process);
    // The operator's backup of the server's data, taken here.
    await cp(data, join(dir, "server-backup"), { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await send(server.url, lines(7, "new"))).code).toBe(0);
    const first = await receive(server.url);
    expect(first.code, first.stderr).toBe(0);
    expect(parseJsonl(first.stdout)).toHaveLength(13);
    await stop(server.process);

    // The server comes back on the backup: it holds the first 6 messages under an older record.
    await rm(data, { recursive: true });
    await cp(join(dir, "server-backup"), data, { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // Bob's floor is the newer record: the restored head is a rollback to him, and he says so.
    const refused = await receive(server.url);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFLICT/);

    // Before, every send from here on was CONFLICT ("its log was replaced"), with no way out.
    const healed = await send(server.url, "");
    expect(healed.code, healed.stderr).toBe(0);
    expect(healed.stderr).toMatch(/had lost 7 messages published before .*published again/);
    expect(JSON.parse(healed.stdout)).toMatchObject({ published: 13, resent: 7 });
    // Bob takes the new head (its record above the one he saw) and has nothing new to deliver.
    const after = await receive(server.url);
    expect(after.code, after.stderr).toBe(0);
    expect(parseJsonl(after.stdout)).toHaveLength(0);
    const whole = await runCli(["cat", name, "--server", server.url]);
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stdout.trimEnd().split("\n")).toHaveLength(13);
    // And a later send goes on as ever.
    const more = await send(server.url, lines(2, "more"));
    expect(more.code, more.stderr).toBe(0);
    expect(JSON.parse(more.stdout)).toMatchObject({ published: 15, resent: 0 });
    expect(parseJsonl((await receive(server.url)).stdout)).toHaveLength(2);
  });

  it("two devices on one name: a send whose update the other device's stale one replaced is published again by the next, and a reader gets every message", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const send = (device: string, stdin: string) => runCli(["send", "--unsigned", "--name", "n", "--server", server.url, "--data", join(dir, device), "--json"], { stdin });
    expect((await send("phone", lines(3, "phone"))).code).toBe(0);
    expect((await send("laptop", lines(2, "laptop"))).code).toBe(0);
    // What the laptop read before the phone's next update, and then put back with an update of its own:
    // an NS whose conditional updates hold within one process only (two devices straight to one Kubo node).
    const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const stale = (await remote.fetchName("n"))!;
      const lost = await send("phone", lines(2, "lost"));
      expect(JSON.parse(lost.stdout)).toMatchObject({ published: 5 });
      await remote.updateName("n", stale.content, (await remote.fetchName("n"))!.version);
    } finally {
      remote.close();
    }
    expect((await send("laptop", lines(1, "late"))).code).toBe(0);
    // Before, every send of the phone's from here on was CONFLICT ("its log was replaced").
    const healed = await send("phone", lines(1, "after"));
    expect(healed.code, healed.stderr).toBe(0);
    expect(healed.stderr).toMatch(/had lost 2 messages published before .*another device's update replaced them.*published again/);
    expect(JSON.parse(healed.stdout)).toMatchObject({ published: 6, resent: 2 });
    const read = await runCli(["receive", "--unsigned", "--name", "n", "--server", server.url, "--state", join(dir, "reader")]);
    expect(read.code, read.stderr).toBe(0);
    expect(bodies(parseJsonl<Delivered>(read.stdout))).toEqual([...lines(3, "phone"), ...lines(2, "laptop"), ...lines(1, "late"), ...lines(2, "lost"), ...lines(1, "after")].join("").trim().split("\n"));
  });

  it("a server restored from a copy taken before a renewal holds every message under an older record: the next send signs the head again, above the one readers saw", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const key = join(dir, "alice.key");
    expect((await runCli(["key", "gen", "--out", key])).code).toBe(0);
    const name = (await runCli(["key", "name", key])).stdout.trim();
    const send = (url: string, stdin: string, env?: NodeJS.ProcessEnv) => runCli(["send", "--key", key, "--server", url, "--data", join(dir, "alice"), "--validity", "1m", "--json"], { stdin, env });
    const receive = (url: string, env?: NodeJS.ProcessEnv) => runCli(["receive", "--name", name, "--server", url, "--state", join(dir, "bob")], { env });

    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    expect((await send(server.url, lines(3))).code).toBe(0);
    await stop(server.process);
    await cp(data, join(dir, "server-backup"), { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // 40 s on, past half the record's minute: a send with nothing new signs the head again (sequence 2).
    const later = await skewedClock(40_000);
    const renewed = await send(server.url, "", later);
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(JSON.parse(renewed.stdout)).toMatchObject({ published: 3, version: 2 });
    const first = await receive(server.url, later);
    expect(first.code, first.stderr).toBe(0);
    expect(parseJsonl(first.stdout)).toHaveLength(3);
    await stop(server.process);

    // Back on the copy: every message, under sequence 1, which Bob refuses as a rollback.
    await rm(data, { recursive: true });
    await cp(join(dir, "server-backup"), data, { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    // Before, this send found nothing to publish and its record fresh, and left the head as it was.
    const healed = await send(server.url, "");
    expect(healed.code, healed.stderr).toBe(0);
    expect(JSON.parse(healed.stdout)).toMatchObject({ published: 3, version: 3 });
    const after = await receive(server.url);
    expect(after.code, after.stderr).toBe(0);
    expect(parseJsonl(after.stdout)).toHaveLength(0);
  });

  it("retries while the services are down, says so, and delivers once they are up", async () => {
    const dir = await tempDir();
    const first = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const port = first.port;
    expect((await runCli(["send", "--unsigned", "--name", "a", "--server", first.url, "--data", join(dir, "alice")], { stdin: lines(5) })).code).toBe(0);
    await stop(first.process);

    const receiver = spawnCli(["receive", "--unsigned", "--name", "a", "--server", `http://127.0.0.1:${port}`, "--state", join(dir, "bob"), "--retry-for", "20"]);
    let stderr = "";
    receiver.stderr!.on("data", (chunk) => (stderr += chunk));
    let stdout = "";
    receiver.stdout!.on("data", (chunk) => (stdout += chunk));
    await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/UNAVAILABLE.*retrying/);
    await startServer(["--listen", `127.0.0.1:${port}`, "--data", join(dir, "server")]);
    const code = await new Promise((resolve) => receiver.once("exit", resolve));
    expect(code).toBe(0);
    expect(parseJsonl(stdout)).toHaveLength(5);
  });

  it("SIGINT or SIGTERM while send waits on stdin ends it at once: what it read is appended and published, an unfinished line is said, the data directory let go", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      for (const input of ["", "one\ntwo\nthr"]) {
        const name = `s-${signal}-${input.length}`;
        const alice = join(dir, name);
        const send = spawnCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", alice, "--json"]);
        // stdin stays open, as a pipe from a program that has more to say, or nothing yet.
        const result = collect(send, undefined, 30_000, { keepStdinOpen: true });
        if (input) {
          send.stdin!.write(input);
          // A send publishes as it reads: once the two whole lines are out, it waits on stdin, holding "thr".
          await expect.poll(async () => parseJsonl((await runCli(["cat", "--unsigned", name, "--server", server.url, "--format", "jsonl"])).stdout).length, { timeout: 20_000, interval: 200 }).toBe(2);
        } else await expect.poll(() => existsSync(join(alice, "LOCK")), { timeout: 20_000 }).toBe(true);
        send.kill(signal);
        const { code, signal: killedBy, stdout, stderr } = await result;
        // The old send waited on stdin until main ended it 5 s on, with 130 or 143 ("did not end within 5 s"), its LOCK left.
        expect(killedBy, stderr).toBeNull();
        // Not all of the input was taken: a script must not take it for done.
        expect(code, stderr).toBe(1);
        const left = input ? "; the 3 bytes read after the last line taken are not in the log: send them again" : "";
        expect(stderr).toBe(
          `remotelog send: stopped by ${signal} before the end of stdin, which is read no further${left}\n` +
            `remotelog: ABORTED: send was stopped by ${signal} before the end of its input: the ${input ? 2 : 0} line(s) taken are appended and published, the rest was not read\n`,
        );
        expect(JSON.parse(stdout)).toMatchObject(input ? { taken: 2, appended: 2, logLength: 2, published: 2 } : { taken: 0, appended: 0, logLength: 0, published: 0 });
        expect(existsSync(join(alice, "LOCK"))).toBe(false);
      }
    }
    const read = await runCli(["cat", "--unsigned", "s-SIGTERM-11", "--server", server.url, "--format", "jsonl"]);
    expect(bodies(parseJsonl<Delivered>(read.stdout))).toEqual(["one", "two"]);
  });

  it("follows a name: waits for it to exist, then delivers new messages as they arrive", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "50", "--name", "f", "--server", server.url, "--state", join(dir, "bob")]);
    const seen: Delivered[] = [];
    createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(JSON.parse(line)));
    let stderr = "";
    follower.stderr!.on("data", (chunk) => (stderr += chunk));
    await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/no remote log yet; waiting/);
    for (let round = 0; round < 3; round++) {
      expect((await runCli(["send", "--unsigned", "--name", "f", "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(5, `r${round}`) })).code).toBe(0);
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(5 * (round + 1));
    }
    expect(seen.map((d) => d.seq)).toEqual([...Array(15).keys()]);
    await stop(follower, "SIGTERM");
    expect(follower.exitCode).toBe(0);
  });

  it("reads jsonl and raw input", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const jsonl = ['{"body":"plain"}', '{"body_base64":"AAEC","group":"g2","timestamp":42}', ""].join("\n");
    expect((await runCli(["send", "--unsigned", "--format", "jsonl", "--name", "j", "--server", server.url, "--data", join(dir, "a")], { stdin: jsonl })).code).toBe(0);
    const bad = await runCli(["send", "--unsigned", "--format", "jsonl", "--name", "j", "--server", server.url, "--data", join(dir, "a")], { stdin: '{"nobody":1}\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT: stdin line 1 has neither/);
    // Text that UTF-8 cannot carry is refused, naming the line; before, U+FFFD was stored in its place, unsaid.
    const surrogate = await runCli(["send", "--unsigned", "--format", "jsonl", "--name", "j", "--server", server.url, "--data", join(dir, "a")], { stdin: '{"body":"a\\ud800b"}\n' });
    expect(surrogate.code).toBe(1);
    expect(surrogate.stderr).toMatch(/INVALID_ARGUMENT: stdin line 1: "body" holds a lone surrogate/);
    const notUtf8 = await runCli(["send", "--unsigned", "--format", "jsonl", "--name", "j", "--server", server.url, "--data", join(dir, "a")], {
      stdin: Buffer.concat([Buffer.from('{"body":"ok"}\n{"body":"x'), Buffer.from([0xff]), Buffer.from('y"}\n')]),
    });
    expect(notUtf8.code).toBe(1);
    expect(notUtf8.stderr).toMatch(/INVALID_ARGUMENT: stdin line 2 is not UTF-8 text/);
    const raw = Buffer.from([0, 10, 13, 255, 10]);
    expect((await runCli(["send", "--unsigned", "--format", "raw", "--name", "j", "--server", server.url, "--data", join(dir, "a")], { stdin: raw })).code).toBe(0);
    const got = parseJsonl<Delivered>((await runCli(["receive", "--unsigned", "--name", "j", "--server", server.url, "--state", join(dir, "b")])).stdout);
    expect(got.map((d) => [bodyBytes(d).toString("base64"), d.group, d.timestamp > 1e9 || d.timestamp === 42])).toEqual([
      [Buffer.from("plain").toString("base64"), "remotelog", true],
      ["AAEC", "g2", true],
      // The line before the one that is not UTF-8.
      [Buffer.from("ok").toString("base64"), "remotelog", true],
      [raw.toString("base64"), "remotelog", true],
    ]);
    // Text when it is UTF-8, base64 when it is not: the shape send --format jsonl reads back.
    expect(got.map((d) => Object.keys(d).filter((key) => key.startsWith("body")))).toEqual([["body"], ["body"], ["body"], ["body_base64"]]); // 00 01 02 is UTF-8; ff is not
    expect(got[1].timestamp).toBe(42);
  });

  it("inspects a name's chain, a page and a message", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    expect((await runCli(["send", "--unsigned", "--name", "i", "--server", server.url, "--data", join(dir, "a"), "--page-size", "4"], { stdin: lines(10) })).code).toBe(0);
    const chain = await runCli(["inspect", "chain", "--name", "i", "--server", server.url]);
    expect(chain.code, chain.stderr).toBe(0);
    const parsed = JSON.parse(chain.stdout);
    expect(parsed).toMatchObject({ name: "i", messages: 10, pageCount: 3 });
    expect(parsed.pages.map((p: { pairs: unknown[] }) => p.pairs.length)).toEqual([2, 4, 4]);
    const page = await runCli(["inspect", "page", parsed.pages[1].address, "--server", server.url]);
    expect(JSON.parse(page.stdout)).toMatchObject({ address: parsed.pages[1].address, tail: parsed.pages[2].address });
    // A sealed page's messages are in the CAS.
    const sealed = await runCli(["inspect", "message", parsed.pages[1].pairs[0].remoteHash, "--server", server.url]);
    expect(JSON.parse(sealed.stdout)).toMatchObject({ id: parsed.pages[1].pairs[0].localHash, body: "message 7" });
  });

  it("inspects a message that lives only in the head, embedded there by default", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    expect((await runCli(["send", "--unsigned", "--name", "h", "--server", server.url, "--data", join(dir, "a")], { stdin: lines(3) })).code).toBe(0);
    const head = JSON.parse((await runCli(["inspect", "chain", "--name", "h", "--server", server.url])).stdout).pages[0];
    const newest = head.pairs[0];
    // In no CAS: without a name to look in, NOT_FOUND says where to look.
    const bare = await runCli(["inspect", "message", newest.remoteHash, "--server", server.url]);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toMatch(/NOT_FOUND.*give --name/);
    const found = await runCli(["inspect", "message", newest.remoteHash, "--name", "h", "--server", server.url]);
    expect(found.code, found.stderr).toBe(0);
    expect(JSON.parse(found.stdout)).toMatchObject({ address: newest.remoteHash, embeddedIn: expect.stringMatching(/^bafkrei/), id: newest.localHash, body: "message 2" });
    const absent = await runCli(["inspect", "message", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "--name", "h", "--server", server.url]);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/NOT_FOUND.*nor embedded in the head of name "h"/);

    // The head page inspect chain names is in no CAS either: its NS holds it.
    const page = await runCli(["inspect", "page", head.address, "--server", server.url]);
    expect(page.code).toBe(1);
    expect(page.stderr).toMatch(/NOT_FOUND.*a name's head page is in no CAS \(its NS holds it\): give --name/);
    const headPage = await runCli(["inspect", "page", head.address, "--name", "h", "--server", server.url]);
    expect(headPage.code, headPage.stderr).toBe(0);
    expect(JSON.parse(headPage.stdout)).toMatchObject({ address: head.address, pairs: head.pairs });
  });
});

describe("cli - exit codes and help", () => {
  it("gives 0 for --help, 2 for usage errors, 1 for failures", async () => {
    for (const verb of ["serve", "send", "receive", "inspect", "demo", "mvds", "key"]) {
      const help = await runCli([verb, "--help"]);
      expect(help.code, verb).toBe(0);
      expect(help.stdout).toMatch(/Usage: remotelog/);
    }
    expect((await runCli(["--help"])).stdout).toMatch(/Verbs:/);
    expect((await runCli([])).code).toBe(2);
    expect((await runCli(["nope"])).code).toBe(2);
    expect((await runCli(["send", "--unsigned", "--name", "x"])).code).toBe(2);
    expect((await runCli(["send", "--unsigned", "--name", "x", "--data", "/tmp/x", "--page-size", "0", "--server", "http://127.0.0.1:1"])).code).toBe(2);
    expect((await runCli(["receive", "--unsigned", "--name", "x", "--state", "/tmp/x"])).code).toBe(2);
    expect((await runCli(["receive", "--unsigned", "--name", "x", "--state", "/tmp/x", "--server", "ftp://x"])).code).toBe(2);
    expect((await runCli(["mvds", "id", "zz"])).code).toBe(1);
  });

  it("mvds id prints the reference id, from the argument or stdin, and of the empty message", async () => {
    const hex = Buffer.concat([Buffer.from([0x0a, 5]), Buffer.from("group"), Buffer.from([0x10, 0x80, 0xe2, 0xcf, 0xaa, 0x06]), Buffer.from([0x1a, 5]), Buffer.from("hello")]).toString("hex");
    expect((await runCli(["mvds", "id", hex])).stdout).toBe("1747c770d69647a18734abc6f05677cce231dd8c4d09b780a1afbe5d60a6220d\n");
    expect((await runCli(["mvds", "id"], { stdin: `${hex}\n` })).stdout).toBe("1747c770d69647a18734abc6f05677cce231dd8c4d09b780a1afbe5d60a6220d\n");
    expect((await runCli(["mvds", "id"], { stdin: "" })).stdout).toBe("ea927f66de2b09b16b8be8a4abdd1f4c4485515ebe6e639881a8652c32b1072d\n");
  });
});
