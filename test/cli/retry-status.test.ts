import { createServer } from "node:net";
import { PassThrough } from "node:stream";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RetryStatus } from "../../cli/follow.js";
import type { Io } from "../../cli/command.js";
import { RemoteLogError } from "../../core/errors.js";
import { cleanup, collect, runCli, spawnCli, startServer, stop, tempDir } from "../helpers/processes.js";
import { writeLog } from "../backup/helpers.js";

afterAll(cleanup);

/** A port nothing listens on: bound, then closed. */
function refusedPort(): Promise<number> {
  return new Promise((resolvePort) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

describe("cli - a service that never answers (issue 12 §1)", () => {
  it("send, receive and cat give up on a refused port in about 3 s unless --retry-for, with one status line", async () => {
    const dir = await tempDir();
    const url = `http://127.0.0.1:${await refusedPort()}`;
    // The old code retried for 60 s: the 20 s bound kills it (code null) and the test fails.
    const runs = await Promise.all([
      runCli(["receive", "--unsigned", "--name", "chat", "--server", url], { timeoutMs: 20_000 }),
      runCli(["receive", "--unsigned", "--name", "chat", "--server", url, "--follow"], { timeoutMs: 20_000 }),
      runCli(["receive", "--unsigned", "--name", "chat", "--name", "news", "--server", url], { timeoutMs: 20_000 }),
      runCli(["send", "--unsigned", "--name", "chat", "--server", url, "--data", join(dir, "a")], { stdin: "hello\n", timeoutMs: 20_000 }),
      runCli(["cat", "--unsigned", "chat", "--server", url], { timeoutMs: 20_000 }),
    ]);
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/UNAVAILABLE/);
      expect(run.stderr).toContain("--retry-for");
      // Not a TTY: the cause is said once, not on every attempt (send printed 9 lines in 3 s).
      expect(run.stderr.split("\n").filter((line) => line.includes("retrying")).length, run.stderr).toBe(1);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    // The message send appended is kept, and the error says so.
    expect(runs[3].stderr).toMatch(/the 1 unpublished message\(s\) are kept in .* will be published by the next `remotelog send`/);
    const status = await runCli(["status", "--data", join(dir, "a"), "--name", "chat", "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ messages: 1, published: 0, pending: 1 });
  });

  it("send, once the server has answered, retries an outage in its first publish for 60 s, not the first contact's 3 s", async () => {
    const dir = await tempDir();
    const data = join(dir, "a");
    // A backlog whose first publish outlasts the moment the server is killed.
    await writeLog(data, 100_000);
    const port = await refusedPort();
    const serve = ["--listen", `127.0.0.1:${port}`, "--data", join(dir, "server"), "--log-level", "debug"];
    let server = await startServer(serve);
    const sending = collect(spawnCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", data, "--json"]), "", 120_000);
    // The server answered GetLimits (the publish has begun: its first block upload came in); it goes away
    // during that first publish, for longer than the first contact's 3 s.
    for (let tries = 0; tries < 2000 && !server.stderr().includes("AddMany"); tries++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(server.stderr()).toContain("AddMany");
    await stop(server.process, "SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    server = await startServer(serve);
    const sent = await sending;
    // The old send gave up at once: "gave up after 0.0 s and 1 attempts".
    expect(sent.code, `${sent.stderr}\n${sent.stdout.slice(-2000)}`).toBe(0);
    expect(JSON.parse(sent.stdout.trim().split("\n").at(-1)!)).toMatchObject({ logLength: 100_000, published: 100_000 });
    await stop(server.process);
  }, 120_000);

  it("an https:// URL of a plain-HTTP server is INVALID_ARGUMENT at once, saying so, and not retried (it was OpenSSL's 'wrong version number', retried for 3 s)", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const url = server.url.replace(/^http:/, "https:");
    const run = await runCli(["cat", "--unsigned", "chat", "--server", url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`remotelog: INVALID_ARGUMENT: NS ${url} Fetch "chat": the server answered without TLS: is it an http:// URL rather than https://?\n`);
  });

  it("with --retry-for, keeps trying for that long instead", async () => {
    const url = `http://127.0.0.1:${await refusedPort()}`;
    const run = await runCli(["receive", "--unsigned", "--name", "chat", "--server", url, "--retry-for", "5"], { timeoutMs: 30_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/UNAVAILABLE: gave up after/);
    // Its code once: the reason it gives is the last attempt's text (it said "attempts: UNAVAILABLE: …").
    expect(run.stderr.trimEnd().split("\n").at(-1)!.match(/UNAVAILABLE/g)).toHaveLength(1);
    // The first-contact budget is not what it went by.
    expect(run.stderr).not.toContain("giving up after 3 s");
  });

  it("backup gives up on a server that never answers in about 3 s, and with --retry-for waits for one that comes up", async () => {
    const dir = await tempDir();
    const log = join(dir, "alice");
    await writeLog(log, 50);
    const port = await refusedPort();
    const url = `http://127.0.0.1:${port}`;
    const backup = ["backup", "--from-dir", log, "--to", url, "--head-name", "alice-backup", "--json"];
    // The old code said UNAVAILABLE at once, with no retry and no word of --retry-for.
    const never = await runCli(backup, { timeoutMs: 20_000 });
    expect(never.code).toBe(1);
    expect(never.stderr).toMatch(/UNAVAILABLE/);
    expect(never.stderr).toContain("--retry-for");

    const waiting = runCli([...backup, "--retry-for", "60"], { timeoutMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const server = await startServer(["--listen", `127.0.0.1:${port}`, "--memory"]);
    const done = await waiting;
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ messages: 50, added: 50 });
    const verify = await runCli(["verify", "--from", server.url, "--name", "alice-backup", "--read-data"]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  }, 60_000);

  it("on a terminal, redraws one status line in place and ends it before the error", async () => {
    const stderr = Object.assign(new PassThrough(), { isTTY: true });
    let text = "";
    stderr.on("data", (chunk) => (text += chunk));
    const io: Io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr, env: {}, signal: new AbortController().signal };
    const status = new RetryStatus(io, "receive", undefined, 60);
    const { onRetry } = status.options();
    for (let attempt = 1; attempt <= 4; attempt++) onRetry!(RemoteLogError.unavailable("connect ECONNREFUSED"), 100 * attempt, attempt);
    expect(text.split("\r\x1b[K").length - 1).toBe(4);
    expect(text).not.toContain("\n");
    status.done();
    expect(text.endsWith("\n")).toBe(true);
  });
});
