import { afterEach, describe, expect, it } from "vitest";
import type http from "node:http";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS } from "../../gen/vac/cas/cas_pb.js";
import { createInterface } from "node:readline";
import { cleanup, lines, runCli, spawnCli, startServer, stop, tempDir, bodyText } from "../helpers/processes.js";
import { startSilentProxy } from "../helpers/silent-proxy.js";

/** Calls of method the server has answered, with any code, from its metrics. */
async function ended(url: string, method: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^remotelog_rpc_requests_total\{method="([^"]+)",code="[^"]+"\} (\d+)$/.exec(line);
    if (match && match[1] === method) total += Number(match[2]);
  }
  return total;
}

afterEach(cleanup);

describe("follow - pushed heads", () => {
  it("receive --follow delivers as soon as a head is pushed, long before its poll interval", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const send = (batch: string) => runCli(["send", "--unsigned", "--name", "p", "--server", server.url, "--data", join(dir, "alice")], { stdin: batch });
    expect((await send(lines(3, "first"))).code).toBe(0);
    // A poll every minute: only a pushed head can bring the next messages within the test's time.
    const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", "--name", "p", "--server", server.url, "--state", join(dir, "bob")]);
    const seen: string[] = [];
    createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
    await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(3);
    for (let round = 0; round < 3; round++) {
      expect((await send(lines(2, `push${round}`))).code).toBe(0);
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(5 + round * 2);
    }
    expect(seen.slice(3)).toEqual(["push0 0", "push0 1", "push1 0", "push1 1", "push2 0", "push2 1"]);
    await stop(follower, "SIGTERM");
    expect(follower.exitCode).toBe(0);
  });

  it("a follower whose connection goes silent (no FIN, no RST) finds out by its keepalive PING, connects again and delivers what came meanwhile", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const proxy = await startSilentProxy(server.url);
    try {
      const send = (batch: string) => runCli(["send", "--unsigned", "--name", "s", "--server", server.url, "--data", join(dir, "alice")], { stdin: batch });
      expect((await send(lines(1, "before"))).code).toBe(0);
      // A poll a minute: only a push on a live connection brings the next message within the test's time.
      const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", "--name", "s", "--server", proxy.url, "--state", join(dir, "bob")]);
      const seen: string[] = [];
      createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
      await expect.poll(() => seen, { timeout: 10_000 }).toEqual(["before 0"]);
      proxy.silence();
      expect((await send(lines(1, "after"))).code).toBe(0);
      // Before, the follower waited on the dead connection for good (its poll too went to it).
      await expect.poll(() => seen, { timeout: 50_000, interval: 250 }).toEqual(["before 0", "after 0"]);
      expect(proxy.connections()).toBeGreaterThan(1);
      await stop(follower, "SIGTERM");
    } finally {
      await proxy.close();
    }
  }, 70_000);

  it("the server drops a watcher whose connection went silent, after its idle timeout and an unanswered PING, so its watches stop counting", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--idle-timeout", "1s"]);
    const proxy = await startSilentProxy(server.url);
    try {
      expect((await runCli(["send", "--unsigned", "--name", "w", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(1) })).code).toBe(0);
      const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", "--name", "w", "--server", proxy.url, "--state", join(dir, "bob")]);
      let out = "";
      follower.stdout!.on("data", (chunk) => (out += chunk));
      await expect.poll(() => out.split("\n").length, { timeout: 10_000 }).toBe(2);
      // A waiting Watch is not idle: answered PINGs keep it.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await ended(server.url, "vac.cas.NS/Watch")).toBe(0);
      proxy.silence();
      // Before, the server kept the vanished client's Watch until it restarted.
      await expect.poll(() => ended(server.url, "vac.cas.NS/Watch"), { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(1);
      await stop(follower, "SIGTERM");
    } finally {
      await proxy.close();
    }
  }, 40_000);

  it("a follower whose Watch the NS refuses (a limit a stranger may have filled) says so once, and still delivers by polling", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--max-watches-per-address", "1"]);
    const send = (name: string, batch: string) => runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", join(dir, `alice-${name}`)], { stdin: batch });
    expect((await send("first", lines(1))).code).toBe(0);
    expect((await send("second", lines(1))).code).toBe(0);
    // The address's one watch goes to the first follower.
    const first = spawnCli(["receive", "--unsigned", "--follow", "--name", "first", "--server", server.url, "--state", join(dir, "bob1")]);
    let firstOut = "";
    first.stdout!.on("data", (chunk) => (firstOut += chunk));
    await expect.poll(() => firstOut.split("\n").length, { timeout: 10_000 }).toBe(2);
    const second = spawnCli(["receive", "--unsigned", "--follow", "--interval", "200", "--name", "second", "--server", server.url, "--state", join(dir, "bob2")]);
    const seen: string[] = [];
    createInterface({ input: second.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
    let stderr = "";
    second.stderr!.on("data", (chunk) => (stderr += chunk));
    // Before, the refusal went unsaid, and was asked again every 5 s.
    await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/remotelog receive: the NS refused to push updates of "second" \(TOO_LARGE: .*per client address\); it is polled instead/);
    expect((await send("second", lines(1, "later"))).code).toBe(0);
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(["message 0", "later 0"]);
    expect(stderr.match(/refused to push/g)).toHaveLength(1);
    await stop(second, "SIGTERM");
    await stop(first, "SIGTERM");
  }, 40_000);

  it("a follower of many names, made to give one watch way to a stranger's, is still pushed the others' updates, and says which name it polls", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--max-watches", "4"]);
    const names = ["n0", "n1", "n2", "n3"];
    const send = (name: string, batch: string) => runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", join(dir, `alice-${name}`)], { stdin: batch });
    for (const name of names) expect((await send(name, lines(1, `${name}-first`))).code).toBe(0);
    // One WatchMany of the four names: the whole budget. A poll a minute: only pushes deliver in time.
    const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", ...names.flatMap((name) => ["--name", name]), "--server", server.url, "--state", join(dir, "bob")]);
    const seen: string[] = [];
    createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
    let stderr = "";
    follower.stderr!.on("data", (chunk) => (stderr += chunk));
    await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(4);
    // Pushed: the follower's stream is open and watching.
    expect((await send("n0", lines(1, "n0-pushed"))).code).toBe(0);
    await expect.poll(() => seen.includes("n0-pushed 0"), { timeout: 10_000 }).toBe(true);

    // A stranger, from another loopback address, watches one name: the follower gives one of its four way.
    const stranger = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", nodeOptions: { localAddress: "127.0.0.2", agent: false } as http.RequestOptions }));
    const leave = new AbortController();
    await stranger.update({ name: "s", content: new TextEncoder().encode("x") });
    const watching = (async () => {
      for await (const _ of stranger.watch({ name: "s" }, { signal: leave.signal })) void _;
    })().catch(() => {});
    try {
      await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/remotelog receive: the NS stopped pushing updates of name "n3", and maybe of more names, to make room for other clients' watches; they are polled instead/);
      // Before, the follower's stream ended whole, and none of the four was pushed any more.
      for (const name of ["n0", "n1", "n2"]) expect((await send(name, lines(1, `${name}-kept`))).code).toBe(0);
      await expect.poll(() => seen.filter((line) => line.endsWith("-kept 0")).sort(), { timeout: 10_000 }).toEqual(["n0-kept 0", "n1-kept 0", "n2-kept 0"]);
      expect(stderr).not.toMatch(/refused to push/);
      await stop(follower, "SIGTERM");
    } finally {
      leave.abort();
      await watching;
    }
  }, 40_000);

  it("a stranger holding all of --max-watches gives one way: an honest follower is let in and delivers by push", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory", "--max-watches", "6"]);
    const send = (batch: string) => runCli(["send", "--unsigned", "--name", "p", "--server", server.url, "--data", join(dir, "alice")], { stdin: batch });
    expect((await send(lines(1, "first"))).code).toBe(0);
    // The stranger, from another loopback address, watches 6 names of its own: the whole budget.
    const stranger = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", nodeOptions: { localAddress: "127.0.0.2", agent: false } as http.RequestOptions }));
    const leave = new AbortController();
    const ended: (Code | undefined)[] = [];
    for (let i = 0; i < 6; i++) {
      await stranger.update({ name: `s${i}`, content: new TextEncoder().encode("x") });
      await new Promise<void>((admitted) => {
        void (async () => {
          try {
            for await (const _ of stranger.watch({ name: `s${i}` }, { signal: leave.signal })) admitted();
          } catch (err) {
            ended.push(ConnectError.from(err).code);
            admitted();
          }
        })();
      });
    }
    expect(ended).toEqual([]);
    try {
      const follower = spawnCli(["receive", "--unsigned", "--follow", "--interval", "60000", "--name", "p", "--server", server.url, "--state", join(dir, "bob")]);
      const seen: string[] = [];
      createInterface({ input: follower.stdout! }).on("line", (line) => seen.push(bodyText(JSON.parse(line))));
      let stderr = "";
      follower.stderr!.on("data", (chunk) => (stderr += chunk));
      await expect.poll(() => seen, { timeout: 10_000 }).toEqual(["first 0"]);
      // Before, the follower was refused its watch and, polling once a minute, did not deliver in time.
      expect((await send(lines(1, "pushed"))).code).toBe(0);
      await expect.poll(() => seen, { timeout: 10_000 }).toEqual(["first 0", "pushed 0"]);
      expect(stderr).not.toMatch(/refused to push/);
      // One of the stranger's watches ended as a refusal does (its client polls and asks again later).
      await expect.poll(() => ended, { timeout: 10_000 }).toEqual([Code.ResourceExhausted]);
      await stop(follower, "SIGTERM");
    } finally {
      leave.abort();
    }
  }, 40_000);
});
