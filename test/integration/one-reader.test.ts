import { randomBytes } from "node:crypto";
import { cp } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { addressOf, decodeMessage, encodeMessage, messageId, newMessage } from "../../core/hash.js";
import { RemoteLogError } from "../../core/errors.js";
import { LogReader, messageVerdicts } from "../../core/log-reader.js";
import { encodePage } from "../../core/page.js";
import { RemoteLogSchema, RemoteLog_PairSchema, type RemoteLog_Pair } from "../../gen/vac/cas/cas_pb.js";
import type { Message } from "../../gen/vac/mvds/mvds_pb.js";
import { LogExplorer, openRemote } from "../../lib/index.js";
import { cleanup, lines, parseJsonl, runCli, startServer, stop, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/** Runs a verb that must fail with exit 1 and say what pattern says (on stdout or stderr). */
async function refuses(args: string[], pattern: RegExp): Promise<void> {
  const result = await runCli(args);
  expect(result.code, result.stdout + result.stderr).toBe(1);
  expect(result.stdout + result.stderr).toMatch(pattern);
}

/*
 * Every verb that reads a remote log reads it through core/log-reader.ts, so each applies a rollback
 * floor and a page bound. Before, backup, verify, export and inspect had no rollback floor, and export
 * no page bound (inspect did not even verify the head's record).
 */
describe("one reader - every verb that reads a log refuses a rollback and a chain over its bound", () => {
  it("a server rolled back to an older, validly signed head: backup, verify, export, inspect and mirror refuse it", async () => {
    const dir = await tempDir();
    const data = join(dir, "server");
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    let server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const send = (count: number, from: number) => runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(count, "m", from) });
    expect((await send(10, 0)).code).toBe(0);
    // The server's state as it was after the first publish (record sequence 1), kept aside.
    await stop(server.process);
    await cp(data, join(dir, "old-server"), { recursive: true });
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
    const sent = await send(10, 10);
    expect(sent.code, sent.stderr).toBe(0);
    // Readers that keep state see sequence 2: a backup and a mirror.
    const backup = await runCli(["backup", "--from", name, "--server", server.url, "--to", join(dir, "backup")]);
    expect(backup.code, backup.stderr).toBe(0);
    const mirror = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "mirror")]);
    expect((await runCli(["mirror", "--name", name, "--server", server.url, "--to", mirror.url])).code).toBe(0);

    // The server comes back from the old copy: it serves the first head, validly signed, sequence 1.
    await stop(server.process);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "old-server")]);
    const rollback = /CONFLICT: .*is a rollback: its record has sequence 1, and sequence 2 was accepted before/;
    await refuses(["backup", "--from", name, "--server", server.url, "--to", join(dir, "backup")], rollback);
    const mirrored = await runCli(["mirror", "--name", name, "--server", server.url, "--to", mirror.url, "--retry-for", "0"]);
    expect(mirrored.code).not.toBe(0);
    expect(mirrored.stderr).toMatch(/is a rollback/);
    // Stateless verbs take the floor from the caller.
    await refuses(["verify", "--name", name, "--from", server.url, "--min-sequence", "2"], /is a rollback/);
    await refuses(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--min-sequence", "2"], rollback);
    await refuses(["inspect", "chain", "--name", name, "--server", server.url, "--min-sequence", "2"], rollback);
    // At or below the head's own sequence, each reads the log as it is.
    expect((await runCli(["inspect", "chain", "--name", name, "--server", server.url, "--min-sequence", "1"])).code).toBe(0);
  });

  it("a chain longer than --max-pages: verify, export and inspect stop at the bound with DATA_LOSS", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const keyFile = join(dir, "alice.key");
    const name = (await runCli(["key", "gen", "--out", keyFile])).stdout.trim();
    expect((await runCli(["send", "--key", keyFile, "--server", server.url, "--data", join(dir, "alice"), "--page-size", "4"], { stdin: lines(30) })).code).toBe(0);
    const bound = /DATA_LOSS: .*page chain is longer than 3 pages/;
    await refuses(["verify", "--name", name, "--from", server.url, "--max-pages", "3"], bound);
    await refuses(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--max-pages", "3"], bound);
    await refuses(["inspect", "chain", "--name", name, "--server", server.url, "--max-pages", "3"], bound);
    // With room for the whole chain (8 pages), each reads it.
    expect((await runCli(["export", "--name", name, "--from", server.url, "--car", join(dir, "log.car"), "--max-pages", "8"])).code).toBe(0);
    expect((await runCli(["verify", "--name", name, "--from", server.url, "--max-pages", "8"])).code).toBe(0);
  });
});

const GET_MANY = "remotelog.v1.BlockService/GetMany";
const GET = "vac.cas.CAS/Get";

/** Calls of method the server has answered, with any code or with code, from its metrics. */
async function calls(url: string, method: string, code?: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^remotelog_rpc_requests_total\{method="([^"]+)",code="([^"]+)"\} (\d+)$/.exec(line);
    if (match && match[1] === method && (code === undefined || match[2] === code)) total += Number(match[3]);
  }
  return total;
}

/** The pair of a stored message; id, when given, in place of the message's own. */
function pairOf(block: Uint8Array, id = messageId(decodeMessage(block))) {
  return create(RemoteLog_PairSchema, { localHash: id, remoteHash: addressOf(block) });
}

/** Publishes a free-form name whose head page holds pairs and nothing else. */
async function publish(remote: ReturnType<typeof openRemote>, name: string, pairs: ReturnType<typeof pairOf>[]): Promise<void> {
  await remote.updateName(name, encodePage(create(RemoteLogSchema, { pair: pairs })), 0n);
}

/*
 * What a page names is a stranger's choice: pairs that repeat one block, or name blocks the CAS lacks,
 * must cost the reader what the distinct blocks cost, not a fetch per pair. Before, 300 pairs naming a
 * 1 MiB block were 300 MiB fetched and held, and each absent block was a Get of its own.
 */
describe("one reader - a page's pairs cost what their distinct blocks cost", () => {
  it("300 pairs naming one 1 MiB block: cat and the explorer fetch it once, still refuse ids that are not its message's, and cat still prints a repeated message each time", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const remote = openRemote(server.url);
    try {
      const group = new Uint8Array(32);
      const big = encodeMessage(newMessage(group, 1n, randomBytes(1024 * 1024 - 200)));
      const small = encodeMessage(newMessage(group, 2n, new TextEncoder().encode("said three times")));
      await remote.putBlocks([big, small]);
      await publish(remote, "one-block", Array.from({ length: 300 }, () => pairOf(big, randomBytes(32))));
      await publish(remote, "repeats", [pairOf(small), pairOf(small), pairOf(small)]);

      // 300 copies of a 1 MiB block take at least 38 of the server's 8 MiB answers; one copy, one.
      let before = await calls(server.url, GET_MANY);
      const cat = await runCli(["cat", "--unsigned", "one-block", "--server", server.url]);
      expect(cat.code, cat.stderr).toBe(1);
      expect(cat.stderr).toMatch(/DATA_LOSS: name "one-block" seq 0: /);
      expect((await calls(server.url, GET_MANY)) - before).toBe(1);

      before = await calls(server.url, GET_MANY);
      const view = await new LogExplorer(remote, "one-block").view();
      expect((await calls(server.url, GET_MANY)) - before).toBe(1);
      expect(view.pages[0].messages).toHaveLength(300);
      expect(view.pages[0].messages.every((message) => message.status === "failed" && message.fault?.code === "DATA_LOSS")).toBe(true);

      const repeats = await runCli(["cat", "--unsigned", "repeats", "--server", server.url, "--format", "jsonl"]);
      expect(repeats.code, repeats.stderr).toBe(0);
      expect(parseJsonl(repeats.stdout).map((line) => line.body)).toEqual(["said three times", "said three times", "said three times"]);
    } finally {
      remote.close();
    }
  });

  it("2,000 pairs naming blocks the CAS lacks: the explorer and verify --read-data find them all in one GetMany, with no Get per pair", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const remote = openRemote(server.url);
    try {
      const stored = encodeMessage(newMessage(new Uint8Array(32), 1n, new TextEncoder().encode("the one stored")));
      await remote.putBlocks([stored]);
      const absent = Array.from({ length: 2000 }, (_, i) => encodeMessage(newMessage(new Uint8Array(32), BigInt(i + 2), randomBytes(40))));
      await publish(remote, "absent", [pairOf(stored), ...absent.map((block) => pairOf(block))]);

      let [getMany, get] = [await calls(server.url, GET_MANY), await calls(server.url, GET)];
      const view = await new LogExplorer(remote, "absent").view();
      expect((await calls(server.url, GET)) - get).toBe(0);
      expect((await calls(server.url, GET_MANY)) - getMany).toBe(1);
      const statuses = view.pages[0].messages.map((message) => message.status);
      expect(statuses[0]).toBe("ok");
      expect(statuses.slice(1).every((status) => status === "missing")).toBe(true);
      expect(statuses).toHaveLength(2001);

      [getMany, get] = [await calls(server.url, GET_MANY), await calls(server.url, GET)];
      const verify = await runCli(["verify", "--name", "absent", "--from", server.url, "--read-data", "--json"]);
      expect(verify.code, verify.stderr).toBe(1);
      const faults = (JSON.parse(verify.stdout) as { faults: { code: string }[] }).faults;
      expect(faults.filter((fault) => fault.code === "NOT_FOUND")).toHaveLength(2000);
      expect(faults).toHaveLength(2000);
      expect((await calls(server.url, GET)) - get).toBe(0);
      expect((await calls(server.url, GET_MANY)) - getMany).toBe(1);
    } finally {
      remote.close();
    }
  });
});

describe("one reader - a block a page names many times is checked once", () => {
  it("3,000 pairs naming one 64 KiB block under ids of the page's choosing: the block is hashed once, not handed to the checking threads per pair, and each pair still gets its own verdict", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const remote = openRemote(server.url);
    try {
      const block = encodeMessage(newMessage(new Uint8Array(32), 1n, randomBytes(64 * 1024)));
      await remote.putBlocks([block]);
      // Pair 1 carries the block's own id; every other pair an id of its own.
      const pairs = Array.from({ length: 3000 }, (_, i) => pairOf(block, i === 1 ? undefined : randomBytes(32)));
      await publish(remote, "one-block-many-ids", pairs);

      const reader = new LogReader(remote, "one-block-many-ids");
      const head = await reader.open();
      if (!head) throw new Error("no head");
      const data = await reader.messageData(head.page.pair);
      // A real verifier (the one the threads run), counting the pairs handed to it: before, all 3,000 were,
      // each hashing the 64 KiB block again.
      let handed = 0;
      const counting = { verify: (p: RemoteLog_Pair[], d: Uint8Array[]) => ((handed += p.length), Promise.resolve(messageVerdicts(p, d))) };
      const checked = await reader.checkMessages(head.page.pair, data, counting);
      expect(handed).toBe(0);
      expect(checked[1]).not.toBeInstanceOf(RemoteLogError);
      expect(messageId(checked[1] as Message)).toEqual(messageId(decodeMessage(block)));
      const faults = checked.filter((result, i) => i !== 1 && result instanceof RemoteLogError && /has id [0-9a-f]{64}, not [0-9a-f]{64} as the page says/.test(result.text));
      expect(faults).toHaveLength(2999);

      const view = await new LogExplorer(remote, "one-block-many-ids").view({ maxMessages: 3000 });
      const statuses = view.pages[0].messages.map((message) => message.status);
      expect(statuses.filter((status) => status === "ok")).toHaveLength(1);
      expect(statuses[1]).toBe("ok");
      expect(statuses.filter((status) => status === "failed")).toHaveLength(2999);
    } finally {
      remote.close();
    }
  });
});
