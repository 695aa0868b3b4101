/**
 * Append and catch-up through the Kubo backends: a `remotelog serve --cas kubo --ns ipns` process in
 * front of an IPFS node, the sender and receiver talking to the node directly (`--kubo-api`), and the
 * embedded stores on the same machine for scale. The node is the js-ipfs harness (test/ipfs-harness),
 * or a real Kubo with KUBO_API=URL. Run with `make bench-kubo`; BENCH_KUBO_SIZES (default 1000,5000).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { KuboRemote } from "../actors/kubo-remote.js";
import { Receiver, type Delivery } from "../actors/receiver.js";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import { generateNameKey, keyName } from "../core/names.js";
import { deliveryLine } from "../cli/format.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { startIpfs } from "../test/kubo/ipfs-node.js";
import { writeBenchResult } from "./harness.js";

const MAIN = resolve("dist/cli/main.js");
const BODY_BYTES = 256;
const GROUP = new TextEncoder().encode("bench");

type AnyRemote = Remote | KuboRemote;

async function startServe(args: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [MAIN, "serve", "--listen", "127.0.0.1:0", "--log-level", "warn", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((ok, fail) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const match = /^listening on (\S+)/.exec(line);
      if (match) ok(match[1]);
    });
    child.once("exit", (code) => fail(new Error(`serve exited with ${code}`)));
  });
  return {
    url,
    stop: () =>
      new Promise((ok) => {
        child.once("exit", () => ok());
        child.kill("SIGTERM");
      }),
  };
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function messages(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) =>
    encodeMessage(newMessage(GROUP, 1_700_000_000n + BigInt(i), new TextEncoder().encode(randomBytes(BODY_BYTES).toString("base64").slice(0, BODY_BYTES)))),
  );
}

async function formatOnly(batch: Delivery[]): Promise<void> {
  let text = "";
  for (const d of batch) text += deliveryLine(d.seq, d.id, d.address, d.message);
  if (text.length === 0) throw new Error("nothing formatted");
}

interface Row {
  path: string;
  messages: number;
  appendPublishMs: number;
  catchUpMs: number;
  incrementalMs: number;
}

/** One signed log of count messages: append+publish, a fresh receiver's catch-up, then 10 more and their sync. */
async function run(path: string, remote: AnyRemote, count: number): Promise<Row> {
  const root = await mkdtemp(join(tmpdir(), "remotelog-bench-kubo-"));
  const log = await FileLocalLog.open(join(root, "alice"));
  try {
    const key = await generateNameKey();
    const name = keyName(key);
    const sender = new Sender({ name, key, log, remote, published: new MemoryCheckpointStore(), pageSize: 256 });
    let start = process.hrtime.bigint();
    await log.append(messages(count));
    const published = await sender.publish();
    const appendPublishMs = ms(start);
    if (published.published !== count) throw new Error(`${path}: published ${published.published} of ${count}`);

    const receiver = new Receiver({ name, remote, checkpoints: new MemoryCheckpointStore() });
    let delivered = 0;
    start = process.hrtime.bigint();
    await receiver.sync(async (batch) => {
      await formatOnly(batch);
      delivered += batch.length;
    });
    const catchUpMs = ms(start);
    if (delivered !== count) throw new Error(`${path}: delivered ${delivered} of ${count}`);

    await log.append(messages(10));
    await sender.publish();
    start = process.hrtime.bigint();
    const result = await receiver.sync(formatOnly);
    const incrementalMs = ms(start);
    if (result.delivered !== 10) throw new Error(`${path}: incremental sync delivered ${result.delivered}`);
    return { path, messages: count, appendPublishMs, catchUpMs, incrementalMs };
  } finally {
    await log.close();
    await rm(root, { recursive: true, force: true });
  }
}

function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (typeof cell === "number" ? cell.toFixed(cell < 10 ? 2 : 0) : cell)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => String(row[i]).length)));
  const line = (row: (string | number)[]) => `| ${row.map((cell, i) => String(cell).padStart(widths[i])).join(" | ")} |`;
  return [line(cells[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.slice(1).map(line)].join("\n");
}

async function main() {
  const sizes = (process.env.BENCH_KUBO_SIZES ?? "1000,5000").split(",").map(Number);
  const node = await startIpfs();
  const dataDir = await mkdtemp(join(tmpdir(), "remotelog-bench-kubo-serve-"));
  const kuboServe = await startServe(["--cas", "kubo", "--ns", "ipns", "--kubo-api", node.url]);
  const embeddedServe = await startServe(["--data", dataDir]);
  const rows: Row[] = [];
  try {
    const paths: [string, () => AnyRemote][] = [
      ["serve, fs + level", () => new Remote({ casUrl: embeddedServe.url, nsUrl: embeddedServe.url })],
      ["serve --cas kubo --ns ipns", () => new Remote({ casUrl: kuboServe.url, nsUrl: kuboServe.url })],
      ["direct --kubo-api", () => new KuboRemote({ kuboApi: node.url })],
    ];
    // A short warm-up per path, so that the first row does not carry the JIT of every process.
    for (const [path, make] of paths) {
      const remote = make();
      await run(path, remote, 50);
      remote.close();
    }
    for (const count of sizes) {
      for (const [path, make] of paths) {
        const remote = make();
        try {
          rows.push(await run(path, remote, count));
        } finally {
          remote.close();
        }
      }
    }
  } finally {
    await kuboServe.stop();
    await embeddedServe.stop();
    await node.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  console.log(`\nremote log through the Kubo backends, ${BODY_BYTES} B bodies, page size 256, signed name; node: ${node.external ? `Kubo at ${node.url}` : "js-ipfs 0.18.1 harness"} on loopback\n`);
  const cells = rows.map((r) => [r.messages, r.path, r.appendPublishMs, (r.messages / r.appendPublishMs) * 1000, r.catchUpMs, (r.messages / r.catchUpMs) * 1000, r.incrementalMs]);
  console.log(table(["messages", "path", "append+publish ms", "msgs/s", "catch-up ms", "msgs/s", "sync of 10 more ms"], cells));
  const headers = ["messages", "path", "append+publish ms", "append+publish msgs/s", "catch-up ms", "catch-up msgs/s", "sync of 10 more ms"];
  await writeBenchResult("kubo", { kubo: { headers, rows: cells } }, { node: node.external ? `Kubo at ${node.url}` : "js-ipfs harness" });
  console.log("\nappend+publish: FileLocalLog.append then Sender.publish (blocks, pages, signed name update); catch-up: a fresh Receiver.sync to the last delivery.");
}

await main();
