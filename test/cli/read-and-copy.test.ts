import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { BlockService } from "../../gen/remotelog/v1/blocks_pb.js";
import { NS, RemoteLogSchema, type RemoteLog_PageInfoSchema } from "../../gen/vac/cas/cas_pb.js";
import { addressOf } from "../../core/hash.js";
import { bodyBytes, cleanup, lines, MAIN, parseJsonl, runCli, startServer, tempDir, type Server } from "../helpers/processes.js";

interface Line {
  seq: number;
  id: string;
  group?: string;
  group_base64?: string;
  timestamp: number;
  body?: string;
  body_base64?: string;
}

let server: Server;
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
});
afterAll(cleanup);

/** Runs a shell line (a real pipe between real processes), with `remotelog` standing for the built CLI. */
function shell(line: string, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    const child = spawn("bash", ["-c", `set -o pipefail; remotelog() { "${process.execPath}" "${MAIN}" "$@"; }; ${line}`], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

describe("cli - reading a log as text, statelessly (issue 12 §2)", () => {
  it("receive --format text, receive without --state, and cat with --limit, --from-seq, --reverse and --format", async () => {
    const input = ['{"body":"hello","timestamp":1700000000}', '{"body":"tab\\there\\\\","timestamp":1700000001}', '{"body_base64":"/wA=","timestamp":1700000002}', ""].join("\n");
    const sent = await runCli(["send", "--unsigned", "--name", "text", "--format", "jsonl", "--server", server.url, "--data", join(dir, "text")], { stdin: input });
    expect(sent.code, sent.stderr).toBe(0);
    const text = await runCli(["receive", "--unsigned", "--name", "text", "--server", server.url, "--format", "text"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe("0\t2023-11-14T22:13:20Z\thello\n1\t2023-11-14T22:13:21Z\ttab\\there\\\\\n2\t2023-11-14T22:13:22Z\t\\xff\\x00\n");
    // Without --state nothing is kept: a second run prints the whole log again.
    expect((await runCli(["receive", "--unsigned", "--name", "text", "--server", server.url, "--format", "text"])).stdout).toBe(text.stdout);
    const all = text.stdout.split("\n").filter(Boolean);
    const cat = async (...args: string[]) => {
      const result = await runCli(["cat", "--unsigned", "text", "--server", server.url, ...args]);
      expect(result.code, result.stderr).toBe(0);
      return result.stdout;
    };
    expect(await cat()).toBe(text.stdout);
    expect(await cat("--limit", "1")).toBe(`${all[0]}\n`);
    expect(await cat("--reverse", "--limit", "2")).toBe(`${all[2]}\n${all[1]}\n`);
    expect(await cat("--reverse")).toBe(`${all[2]}\n${all[1]}\n${all[0]}\n`);
    expect(await cat("--from-seq", "1")).toBe(`${all[1]}\n${all[2]}\n`);
    const jsonl = await runCli(["receive", "--unsigned", "--name", "text", "--server", server.url]);
    expect(await cat("--format", "jsonl")).toBe(jsonl.stdout);
    expect(parseJsonl<Line>(jsonl.stdout).map((line) => line.body ?? `base64:${line.body_base64}`)).toEqual(["hello", "tab\there\\", "base64:/wA="]);
  });
});

describe("cli - one JSONL shape both ways (issue 12 §3, issue 10 §9)", () => {
  it("receive | send --format jsonl copies arbitrary bytes unchanged, ids included", async () => {
    const bodies = [
      Buffer.from("plain text"),
      Buffer.from("\ufeffstarts with a BOM"),
      Buffer.from("line\nbreaks\r\nand \u0000 NUL"),
      Buffer.alloc(0),
      Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
      ...Array.from({ length: 20 }, (_, i) => randomBytes(1 + i * 13)),
    ];
    const groups = ["remotelog", "ü group", Buffer.from([0xff, 1]).toString("base64")];
    const input = bodies
      .map((body, i) => {
        const group = i % 3 === 2 ? { group_base64: groups[2] } : { group: groups[i % 3] };
        return JSON.stringify({ body_base64: body.toString("base64"), ...group, timestamp: 1_700_000_000 + i });
      })
      .join("\n");
    const sent = await runCli(["send", "--unsigned", "--name", "src", "--format", "jsonl", "--server", server.url, "--data", join(dir, "src")], { stdin: `${input}\n` });
    expect(sent.code, sent.stderr).toBe(0);
    const copied = await shell(
      `remotelog receive --unsigned --name src --server ${server.url} | remotelog send --format jsonl --unsigned --name dst --server ${server.url} --data ${join(dir, "dst")}`,
    );
    expect(copied.code, copied.stderr).toBe(0);
    const src = parseJsonl<Line & { address: string }>((await runCli(["cat", "--unsigned", "src", "--format", "jsonl", "--server", server.url])).stdout);
    const dst = parseJsonl<Line & { address: string }>((await runCli(["cat", "--unsigned", "dst", "--format", "jsonl", "--server", server.url])).stdout);
    expect(dst).toEqual(src);
    expect(src.map((line) => bodyBytes(line).toString("hex"))).toEqual(bodies.map((body) => body.toString("hex")));
    // Text where it is UTF-8 (a BOM kept), base64 where it is not.
    expect(src[1].body).toBe("\ufeffstarts with a BOM");
    expect(src[4].body_base64).toBe(Buffer.from([0xc3, 0x28, 0xff, 0xfe]).toString("base64"));
    expect(src[2].group_base64).toBe(groups[2]);
  });

  it('refuses {"body_base64":"!!!"} as INVALID_ARGUMENT naming the line, storing nothing, and an id that is not the message\'s', async () => {
    const data = join(dir, "bad");
    const bad = await runCli(["send", "--unsigned", "--name", "bad", "--format", "jsonl", "--server", server.url, "--data", data], { stdin: '{"body":"fine"}\n{"body_base64":"!!!"}\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT: stdin line 2: "body_base64" is not base64/);
    // The line before it is appended, as a send that stops part-way does; nothing empty is stored for line 2.
    const log = JSON.parse((await runCli(["inspect", "log", "--data", data])).stdout);
    expect(log.messages.map((m: { body?: string }) => m.body)).toEqual(["fine"]);
    const forged = await runCli(["send", "--unsigned", "--name", "bad", "--format", "jsonl", "--server", server.url, "--data", data], {
      stdin: `{"body":"edited","timestamp":1,"id":"${"00".repeat(32)}"}\n`,
    });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/INVALID_ARGUMENT: stdin line 1: "id" .* is not the id of its group, timestamp and body/);
  });
});

describe("cli - a reader that goes away (issue 12 §4, issue 10 §9)", () => {
  it("every verb ends quietly with 0 under `| head -1`", async () => {
    const data = join(dir, "long");
    const sent = await runCli(["send", "--unsigned", "--name", "long", "--server", server.url, "--data", data, "--page-size", "64"], { stdin: lines(20_000, "a long line of text to fill the pipe") });
    expect(sent.code, sent.stderr).toBe(0);
    const verbs = [
      `remotelog receive --unsigned --name long --server ${server.url}`,
      `remotelog receive --unsigned --name long --server ${server.url} --format text`,
      `remotelog cat --unsigned long --server ${server.url}`,
      `remotelog inspect log --data ${data} --limit 20000`,
      `remotelog inspect chain --name long --server ${server.url}`,
      `remotelog completion bash`,
    ];
    for (const verb of verbs) {
      const result = await shell(`${verb} | head -1`);
      expect(result.stdout.split("\n").filter(Boolean).length, verb).toBe(1);
      expect(result.stderr, verb).toBe("");
      expect(result.code, verb).toBe(0);
    }
  });
});

describe("cli - a page chain longer than its pages claim (report §4)", () => {
  it("export and inspect chain refuse it at the first page that is not the one its link promised, as receive and cat do", async () => {
    // A free-form name's NS can serve any head: here 50 pages that each say "I am page 1, my tail is
    // page 0 from seqid 0", over one real page 0. Each page is well formed alone; only its link lies.
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
    const pageBytes = (tail: Uint8Array, info: MessageInitShape<typeof RemoteLog_PageInfoSchema>) => toBinary(RemoteLogSchema, create(RemoteLogSchema, { pair: [], tail, info }));
    const blocks: Uint8Array[] = [];
    let bytes = pageBytes(new Uint8Array(0), { firstSeqid: 0n, count: 0, number: 0n, skips: [] });
    for (let i = 1; i < 50; i++) {
      blocks.push(bytes);
      const tail = addressOf(bytes);
      bytes = pageBytes(tail, { firstSeqid: 1n, count: 0, number: 1n, skips: [{ address: tail, firstSeqid: 0n, number: 0n }] });
    }
    await createClient(BlockService, transport).addMany({ blocks });
    await createClient(NS, transport).update({ name: "liar", content: bytes });

    const promised = /^remotelog: DATA_LOSS: page bafkrei\w+ is not the page its link promised \(number 0, from seqid 0\)$/m;
    const cat = await runCli(["cat", "--unsigned", "liar", "--server", server.url]);
    expect(cat.code, cat.stderr).toBe(1);
    expect(cat.stderr).toMatch(promised);

    const car = join(dir, "liar.car");
    const exported = await runCli(["export", "--name", "liar", "--car", car, "--server", server.url]);
    expect(exported.code, exported.stdout + exported.stderr).toBe(1);
    expect(exported.stderr).toMatch(promised);
    expect(exported.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(car), "no CAR is left behind").toBe(false);

    const inspected = await runCli(["inspect", "chain", "--name", "liar", "--server", server.url]);
    expect(inspected.code, inspected.stderr).toBe(1);
    expect(inspected.stderr).toMatch(promised);
    expect(inspected.stdout).toBe("");
  });
});
