import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, collect, spawnCli } from "../helpers/processes.js";

// A server that takes every call and never answers it: a wedged server, a half-open connection, a
// slowloris. No read verb may wait on it for ever, and a signal must end one that waits.

const servers: Http2Server[] = [];
const sessions = new Set<ServerHttp2Session>();
afterEach(async () => {
  await cleanup();
  // close() waits for the sessions, which a silent server never ends.
  for (const session of sessions) session.destroy();
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

/** An h2c server that keeps every stream open and silent; calls counts the calls it has taken. */
async function silentServer(): Promise<{ url: string; calls: () => number }> {
  const server = createServer();
  servers.push(server);
  let calls = 0;
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", (stream) => {
    stream.on("error", () => {});
    calls++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, calls: () => calls };
}

async function untilCalled(server: { calls: () => number }, count = 1): Promise<void> {
  while (server.calls() < count) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe("hostile - a server that never answers", () => {
  it("the first SIGTERM or SIGINT ends a verb waiting on it, with 143 or 130, saying so", async () => {
    const server = await silentServer();
    for (const [signal, code] of [
      ["SIGTERM", 143],
      ["SIGINT", 130],
    ] as const) {
      const before = server.calls();
      const child = spawnCli(["cat", "--unsigned", "chat", "--server", server.url]);
      const result = collect(child, undefined, 25_000);
      await untilCalled(server, before + 1);
      child.kill(signal);
      // The old CLI heard the signal but nothing waiting on the call did: it ran until the collector's SIGKILL.
      const { code: exitCode, signal: killedBy, stderr } = await result;
      expect(killedBy, stderr).toBeNull();
      expect(exitCode, stderr).toBe(code);
      expect(stderr).toContain(`remotelog: stopped by ${signal}`);
    }
  }, 60_000);

  it("a call that gets no answer fails UNAVAILABLE after the idle limit, and is retried as an outage: cat and receive end", async () => {
    const server = await silentServer();
    const verbs = [
      ["cat", "--unsigned", "chat", "--server", server.url, "--retry-for", "1"],
      ["receive", "--unsigned", "--name", "chat", "--server", server.url, "--retry-for", "1"],
    ];
    // Both at once: each waits out the 30 s limit.
    const results = await Promise.all(verbs.map((args) => collect(spawnCli(args), undefined, 100_000)));
    for (const { code, signal, stderr } of results) {
      // The old client waited for ever (here: until the collector's SIGKILL).
      expect(signal, stderr).toBeNull();
      expect(code, stderr).toBe(1);
      expect(stderr).toMatch(/UNAVAILABLE: .*no answer for 30 s/);
    }
  }, 120_000);
});
