/**
 * The remote log's figures: sender append + publish, fresh receiver catch-up (in-process and as a whole
 * `receive` process), incremental sync on a short and a long log, and bytes stored per message.
 * Run with `make bench`. Each server is a real `remotelog serve` process with the embedded stores.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Remote } from "../actors/remote.js";
import { Receiver, type Delivery } from "../actors/receiver.js";
import { Sender } from "../actors/sender.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import type { EmbedMode } from "../core/page.js";
import { deliveryLine } from "../cli/format.js";
import { FileCheckpointStore } from "../stores/file/checkpoint-store.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { BODY_BYTES, GROUP, bodies, ms, startServer, table, wholeReceive, wholeSend } from "./harness.js";

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** What `receive` does with a batch, minus the write: format every line, so the timer includes it. */
async function formatOnly(batch: Delivery[]): Promise<void> {
  let text = "";
  for (const d of batch) text += deliveryLine(d.seq, d.id, d.address, d.message);
  if (text.length === 0) throw new Error("nothing formatted");
}

interface Row {
  messages: number;
  embed: string;
  appendMs: number;
  publishMs: number;
  sendProcessMs: number;
  catchUpColdMs: number;
  catchUpWarmMs: number;
  receiveProcessMs: number;
  bytesPerMessage: number;
  encodedBytes: number;
}

async function runConfig(root: string, count: number, embed: EmbedMode): Promise<Row> {
  const server = await startServer(root);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const log = await FileLocalLog.open(join(root, "alice"));
  try {
    const name = `bench-${count}-${embed}`;
    // A sender that has published before: JIT-warm, as in a long-running app. The cold case is the
    // whole-process column.
    const warmLog = await FileLocalLog.open(join(root, "warm"));
    await warmLog.append(bodies(2000).map((body, i) => encodeMessage(newMessage(GROUP, BigInt(i), body))));
    await new Sender({ published: new MemoryCheckpointStore(), name: `${name}-warm`, log: warmLog, remote, embed }).publish();
    await warmLog.close();

    const encoded = bodies(count).map((body, i) => encodeMessage(newMessage(GROUP, 1_700_000_000n + BigInt(i), body)));
    const encodedBytes = encoded.reduce((sum, bytes) => sum + bytes.length, 0) / count;
    const sender = new Sender({ published: new MemoryCheckpointStore(), name, log, remote, pageSize: 256, embed });
    const before = await dirBytes(server.dataDir);
    let start = process.hrtime.bigint();
    await log.append(encoded);
    const appendMs = ms(start);
    start = process.hrtime.bigint();
    const published = await sender.publish();
    const publishMs = ms(start);
    if (published.published !== count) throw new Error(`published ${published.published} of ${count}`);
    const stored = (await dirBytes(server.dataDir)) - before;

    // Three fresh receivers in a row: the first runs cold code, the others show the steady state.
    const catchUps: number[] = [];
    for (let run = 0; run < 3; run++) {
      const checkpoints = await FileCheckpointStore.open(join(root, `bob-${run}`));
      const receiver = new Receiver({ name, remote, checkpoints });
      let delivered = 0;
      start = process.hrtime.bigint();
      await receiver.sync(async (batch) => {
        await formatOnly(batch);
        delivered += batch.length;
      });
      catchUps.push(ms(start));
      await checkpoints.close();
      if (delivered !== count) throw new Error(`delivered ${delivered} of ${count}`);
    }

    const whole = await wholeReceive(server.url, name, join(root, `carol-${name}`));
    if (whole.lines !== count) throw new Error(`receive printed ${whole.lines} of ${count}`);
    const input = bodies(count).map((body) => Buffer.from(body).toString("utf8")).join("\n") + "\n";
    const sendProcessMs = await wholeSend(server.url, `${name}-process`, join(root, "dave"), input, ["--embed", String(embed)]);
    return {
      messages: count,
      embed: String(embed),
      appendMs,
      publishMs,
      sendProcessMs,
      catchUpColdMs: catchUps[0],
      catchUpWarmMs: Math.min(catchUps[1], catchUps[2]),
      receiveProcessMs: whole.ms,
      bytesPerMessage: stored / count,
      encodedBytes,
    };
  } finally {
    remote.close();
    await log.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

interface IncrementalRow {
  length: number;
  medianMs: number;
  p90Ms: number;
  pages: number;
}

/**
 * Time for a caught-up receiver to sync 10 new messages, on logs of different lengths served by one
 * server. Rounds alternate between the logs, so that drift in the machine's load falls on all alike.
 */
async function incremental(root: string, lengths: number[], rounds: number): Promise<IncrementalRow[]> {
  const server = await startServer(root);
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const logs: { length: number; log: FileLocalLog; sender: Sender; receiver: Receiver; checkpoints: FileCheckpointStore; times: number[]; pages: number }[] = [];
  try {
    for (const length of lengths) {
      const name = `incremental-${length}`;
      const log = await FileLocalLog.open(join(root, `alice-${length}`));
      const checkpoints = await FileCheckpointStore.open(join(root, `bob-${length}`));
      const sender = new Sender({ published: new MemoryCheckpointStore(), name, log, remote, pageSize: 256 });
      await log.append(bodies(length).map((body, i) => encodeMessage(newMessage(GROUP, BigInt(i), body))));
      await sender.publish();
      const receiver = new Receiver({ name, remote, checkpoints });
      await receiver.sync(formatOnly);
      logs.push({ length, log, sender, receiver, checkpoints, times: [], pages: 0 });
    }
    for (let round = 0; round < rounds; round++) {
      for (const entry of logs) {
        await entry.log.append(bodies(10).map((body, i) => encodeMessage(newMessage(GROUP, BigInt(entry.length + round * 10 + i), body))));
        await entry.sender.publish();
        const start = process.hrtime.bigint();
        const result = await entry.receiver.sync(formatOnly);
        entry.times.push(ms(start));
        entry.pages = Math.max(entry.pages, result.pages);
        if (result.delivered !== 10) throw new Error(`incremental sync delivered ${result.delivered}`);
      }
    }
    return logs.map(({ length, times, pages }) => {
      times.sort((a, b) => a - b);
      return { length, medianMs: times[Math.floor(times.length / 2)], p90Ms: times[Math.floor(times.length * 0.9)], pages };
    });
  } finally {
    remote.close();
    for (const entry of logs) {
      await entry.checkpoints.close();
      await entry.log.close();
    }
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

async function main() {
  const sizes = (process.env.BENCH_SIZES ?? "10000,100000").split(",").map(Number);
  const rows: Row[] = [];
  for (const count of sizes) {
    for (const embed of ["none", "all"] as const) {
      rows.push(await runConfig(await mkdtemp(join(tmpdir(), "remotelog-bench-")), count, embed));
    }
  }
  console.log(`\nremote log, ${BODY_BYTES} B bodies, page size 256, server: remotelog serve (fs packs + level) on loopback\n`);
  console.log(
    table(
      ["messages", "embed", "append ms", "publish ms", "append+publish ms", "send process ms", "catch-up cold ms", "catch-up warm ms", "receive process ms", "stored B/msg", "x body", "x message"],
      rows.map((r) => [
        r.messages,
        r.embed,
        r.appendMs,
        r.publishMs,
        r.appendMs + r.publishMs,
        r.sendProcessMs,
        r.catchUpColdMs,
        r.catchUpWarmMs,
        r.receiveProcessMs,
        r.bytesPerMessage,
        (r.bytesPerMessage / BODY_BYTES).toFixed(2),
        (r.bytesPerMessage / r.encodedBytes).toFixed(2),
      ]),
    ),
  );
  console.log(
    "\nappend+publish: in-process, a sender that has published before; send process: a whole `send` run, cold." +
      "\ncatch-up cold: the first fresh receiver in this process; warm: the best of the next two; receive process: a whole `receive` run." +
      "\nstored B/msg: growth of the server's data directory per message (message blocks, pages, pack indexes, NS);" +
      " x message: against the encoded vac.mvds.Message.",
  );
  const rounds = 101;
  const lengths = (process.env.BENCH_INCREMENTAL ?? "1000,100000").split(",").map(Number);
  const incrementalRows = await incremental(await mkdtemp(join(tmpdir(), "remotelog-bench-")), lengths, rounds);
  console.log(`\nincremental sync of 10 new messages by a caught-up receiver (${rounds} rounds, alternating between the logs)\n`);
  console.log(table(["log length", "median ms", "p90 ms", "pages read"], incrementalRows.map((r) => [r.length, r.medianMs, r.p90Ms, r.pages])));
  if (incrementalRows.length === 2) {
    const ratio = incrementalRows[1].medianMs / incrementalRows[0].medianMs;
    console.log(`\nlong/short median ratio: ${ratio.toFixed(2)} (target 0.80-1.20)`);
  }
}

await main();
