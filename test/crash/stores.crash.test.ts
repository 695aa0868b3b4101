import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { addressOf, decodeMessage, equalBytes, messageId } from "../../core/hash.js";
import { FileLocalLog } from "../../stores/file/local-log.js";
import { FsContentStore } from "../../stores/fs/content-store.js";
import { seededRandom } from "../helpers/processes.js";

// Fault test of the durable stores: a real child process appends to a FileLocalLog and puts blocks
// into an FsContentStore, and is SIGKILLed at a seeded random moment. Whatever it acknowledged must be
// there after a reopen, whole; nothing half-written may show. A failure prints its seed; replay with
// REMOTELOG_CRASH_SEED=<seed>.

const SEED = Number(process.env.REMOTELOG_CRASH_SEED ?? Date.now() % 100_000);
const ROUNDS = 5;
const CHILD = resolve("test/crash/stores-child.mjs");
const DIST = ["dist/stores/file/local-log.js", "dist/stores/fs/content-store.js", "dist/core/hash.js"];
const SOURCES = ["core", "stores/file", "stores/fs"];

let data: typeof import("./stores-data.mjs");

/** The newest modification time of the .ts files under dirs. */
function newestSource(dirs: string[]): number {
  let newest = 0;
  for (const dir of dirs) {
    for (const name of readdirSync(dir)) {
      if (name.endsWith(".ts")) newest = Math.max(newest, statSync(join(dir, name)).mtimeMs);
    }
  }
  return newest;
}

function distIsFresh(): boolean {
  const newest = newestSource(SOURCES);
  return DIST.every((file) => existsSync(file) && statSync(file).mtimeMs >= newest);
}

beforeAll(() => {
  // test/global-setup.ts usually builds dist/ already; this covers runs that skipped it. tsc emits
  // even when files outside the stores have type errors, so its exit status is not the test's business.
  if (!distIsFresh()) {
    const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { encoding: "utf8" });
    if (!distIsFresh()) throw new Error(`dist/ is stale and tsc did not rebuild it:\n${tsc.stdout}${tsc.stderr}`);
  }
}, 120_000);

beforeAll(async () => {
  data = await import("./stores-data.mjs");
});

const children = new Set<ChildProcess>();
afterEach(async () => {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once("exit", () => done());
          child.kill("SIGKILL");
        }),
    ),
  );
  children.clear();
});

let root: string | undefined;
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface Acks {
  /** [round, i, seq] of every acknowledged message. */
  messages: [number, number, number][];
  /** [round, i] of every acknowledged block. */
  blocks: [number, number][];
}

/**
 * Runs the child for one round: waits for at least `minAcks` acknowledgments, then a random few
 * milliseconds more, then SIGKILLs it. Returns what it acknowledged.
 */
async function runRound(logDir: string, casDir: string, round: number, random: () => number): Promise<Acks> {
  const child = spawn(process.execPath, [CHILD, logDir, casDir, String(round), String(Math.floor(random() * 2 ** 31))], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const acks: Acks = { messages: [], blocks: [] };
  const minAcks = 2 + Math.floor(random() * 30);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const closed = new Promise<void>((done) => child.stdout!.once("close", () => done()));
  let lines = 0;
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`child acknowledged ${lines} writes in 20 s; stderr: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const [kind, r, first, count, seq] = line.split(" ");
      for (let j = 0; j < Number(count); j++) {
        if (kind === "L") acks.messages.push([Number(r), Number(first) + j, Number(seq) + j]);
        else if (kind === "B") acks.blocks.push([Number(r), Number(first) + j]);
      }
      if (++lines === minAcks) {
        clearTimeout(timer);
        setTimeout(done, random() * 40);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (lines < minAcks) fail(new Error(`child exited (${code ?? signal}) after ${lines} acknowledgments; stderr: ${stderr}`));
    });
  });
  child.kill("SIGKILL");
  await exited;
  // Lines printed before the kill are still in the pipe: read them all.
  await closed;
  expect(child.signalCode, stderr).toBe("SIGKILL");
  return acks;
}

describe(`crash - stores killed mid-write (seed ${SEED})`, () => {
  it(
    "every acknowledged message and block survives SIGKILL, whole, and nothing torn shows",
    async () => {
      const random = seededRandom(SEED);
      root = await mkdtemp(join(tmpdir(), "remotelog-stores-crash-"));
      const logDir = join(root, "log");
      const casDir = join(root, "cas");
      const acked: Acks = { messages: [], blocks: [] };
      for (let round = 0; round < ROUNDS; round++) {
        const acks = await runRound(logDir, casDir, round, random);
        acked.messages.push(...acks.messages);
        acked.blocks.push(...acks.blocks);

        const leftovers = (await readdir(join(casDir, "packs"))).filter((name) => name.endsWith(".tmp")).length;
        // The child's lock has a dead pid now: open takes it over.
        const log = await FileLocalLog.open(logDir);
        console.log(
          `round ${round}: ${acks.messages.length} messages and ${acks.blocks.length} blocks acknowledged; ` +
            `${leftovers} pack tmp files left; log ${log.recovered ? `cut ${log.recovered.droppedBytes} bytes` : "whole"}`,
        );
        try {
          const entries = await log.read(0, log.length);
          for (const entry of entries) {
            expect(equalBytes(entry.id, messageId(decodeMessage(entry.data))), `seq ${entry.seq} (seed ${SEED})`).toBe(true);
          }
          for (const [r, i, seq] of acked.messages) {
            const entry = entries[seq];
            expect(entry && equalBytes(entry.data, data.message(r, i)), `message ${i} of round ${r} at seq ${seq} (seed ${SEED})`).toBe(true);
          }
        } finally {
          await log.close();
        }

        const cas = await FsContentStore.open(casDir);
        try {
          expect((await readdir(join(casDir, "packs"))).filter((name) => name.endsWith(".tmp")), `seed ${SEED}`).toEqual([]);
          // Every stored block, acknowledged or not, must match its address.
          await cas.check();
          const expected = acked.blocks.map(([r, i]) => data.block(r, i));
          const got = await cas.getMany(expected.map(addressOf));
          got.forEach((block, j) => {
            const [r, i] = acked.blocks[j];
            expect(block && equalBytes(block, expected[j]), `block ${i} of round ${r} (seed ${SEED})`).toBe(true);
          });
        } finally {
          await cas.close();
        }
      }
      expect(acked.messages.length).toBeGreaterThan(0);
      expect(acked.blocks.length).toBeGreaterThan(0);
    },
    120_000,
  );
});
