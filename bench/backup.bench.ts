/**
 * Backup and restore of a local log of 100,000 messages with 256-byte bodies, side by side with
 * restic on the same data (the log's one file, log.bin): wall time of each as a whole process, and the
 * bytes of each repository. The same log is also published (default flags, unsigned) to a `serve`
 * process and backed up by name through it (`backup --from-name`: the head, pages and messages read and
 * checked over Connect), the "backup by name" column. `make bench-backup`. restic comes from Debian (`apt-get install restic`);
 * when it is not installed its rows say so. Two kinds of bodies: random bytes (encrypted messages, which
 * nothing compresses) and base64 text of random bytes (encrypted and then base64-encoded, as the other
 * benchmarks use), which restic's zstd compresses by about a quarter.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { startServer, writeBenchResult } from "./harness.js";

// BENCH_MAIN: another build of the CLI to time (e.g. an older bundle made with scripts/bundle-cli.mjs and BUNDLE_OUTDIR).
const MAIN = resolve(process.env.BENCH_MAIN ?? "dist/cli/main.js");
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 100_000);
const MORE = 1_000;
const BODY_BYTES = 256;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const GROUP = new TextEncoder().encode("bench");
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: "bench", RESTIC_CACHE_DIR: "" };

type Bodies = "random" | "base64";

function body(kind: Bodies): Uint8Array {
  return kind === "random" ? randomBytes(BODY_BYTES) : new TextEncoder().encode(randomBytes(BODY_BYTES).toString("base64").slice(0, BODY_BYTES));
}

async function writeLog(dir: string, count: number, kind: Bodies, from: number): Promise<void> {
  const log = await FileLocalLog.open(dir);
  const messages = Array.from({ length: count }, (_, i) => encodeMessage(newMessage(GROUP, BigInt(1_700_000_000 + from + i), body(kind))));
  for (let i = 0; i < messages.length; i += 10_000) await log.append(messages.slice(i, i + 10_000));
  await log.close();
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Wall time of a command run to completion, in seconds; throws with its stderr when it fails. */
function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const started = performance.now();
  const result = spawnSync(command, args, { env, stdio: ["ignore", "ignore", "pipe"], maxBuffer: 64 << 20 });
  const seconds = (performance.now() - started) / 1000;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr}`);
  return seconds;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function resticVersion(): string | undefined {
  try {
    return execFileSync("restic", ["version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

/** Publishes the log in dir to a name on url, as `send` would with default flags (unsigned). */
async function publish(dir: string, url: string, name: string): Promise<void> {
  const remote = new Remote({ casUrl: url, nsUrl: url });
  const log = await FileLocalLog.open(dir);
  try {
    const published = await new Sender({ published: new MemoryCheckpointStore(), name, log, remote }).publish();
    if (published.published !== MESSAGES) throw new Error(`published ${published.published} of ${MESSAGES}`);
  } finally {
    await log.close();
    remote.close();
  }
}

interface Row {
  tool: string;
  bodies: Bodies;
  backup: number;
  /** remotelog only: `backup --from-name` of the same log, published to a `serve` process. */
  backupByName?: number;
  incremental: number;
  restore: number;
  repoBytes: number;
}

async function benchOne(root: string, kind: Bodies, restic: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const sampleSet = () => ({ backup: [] as number[], byName: [] as number[], incremental: [] as number[], restore: [] as number[], bytes: 0 });
  const samples = { ours: sampleSet(), restic: sampleSet() };
  for (let run = 0; run < RUNS; run++) {
    const dir = join(root, `${kind}-${run}`);
    const log = join(dir, "log");
    await writeLog(log, MESSAGES, kind, 0);

    const server = await startServer(dir);
    try {
      const name = `backup-${kind}-${run}`;
      await publish(log, server.url, name);
      samples.ours.byName.push(timed(process.execPath, [MAIN, "backup", "--from-name", name, "--unsigned", "--server", server.url, "--to", join(dir, "packs-by-name")]));
    } finally {
      await server.stop();
    }

    const packs = join(dir, "packs");
    samples.ours.backup.push(timed(process.execPath, [MAIN, "backup", "--from", log, "--to", packs]));
    samples.ours.bytes = await dirBytes(packs);
    const repo = join(dir, "restic");
    if (restic) {
      execFileSync("restic", ["init", "--repo", repo], { env: RESTIC_ENV, stdio: "ignore" });
      samples.restic.backup.push(timed("restic", ["--repo", repo, "backup", "--quiet", join(log, "log.bin")], RESTIC_ENV));
      samples.restic.bytes = await dirBytes(repo);
    }

    await writeLog(log, MORE, kind, MESSAGES);
    samples.ours.incremental.push(timed(process.execPath, [MAIN, "backup", "--from", log, "--to", packs]));
    if (restic) samples.restic.incremental.push(timed("restic", ["--repo", repo, "backup", "--quiet", join(log, "log.bin")], RESTIC_ENV));

    samples.ours.restore.push(timed(process.execPath, [MAIN, "restore", "--from", packs, "--to", join(dir, "restored")]));
    if (restic) samples.restic.restore.push(timed("restic", ["--repo", repo, "restore", "latest", "--target", join(dir, "restic-restored")], RESTIC_ENV));
    await rm(dir, { recursive: true, force: true });
  }
  const row = (tool: string, s: typeof samples.ours): Row => ({
    tool,
    bodies: kind,
    backup: median(s.backup),
    backupByName: s.byName.length > 0 ? median(s.byName) : undefined,
    incremental: median(s.incremental),
    restore: median(s.restore),
    repoBytes: s.bytes,
  });
  rows.push(row("remotelog backup", samples.ours));
  if (restic) rows.push(row("restic", samples.restic));
  return rows;
}

async function main(): Promise<void> {
  const version = resticVersion();
  const root = await mkdtemp(join(tmpdir(), "remotelog-bench-backup-"));
  try {
    const rows: Row[] = [];
    for (const kind of ["random", "base64"] as const) rows.push(...(await benchOne(root, kind, version !== undefined)));
    console.log(`\nBackup and restore of ${MESSAGES.toLocaleString("en")} messages of ${BODY_BYTES} B (then ${MORE.toLocaleString("en")} more), median of ${RUNS} runs, each a whole process`);
    console.log(`restic: ${version ?? "not installed (apt-get install restic)"}\n`);
    const headers = ["tool", "bodies", "backup s", "backup by name s", "incremental s", "restore s", "repository bytes"];
    const cells = rows.map((r) => [r.tool, r.bodies, r.backup, r.backupByName ?? "-", r.incremental, r.restore, r.repoBytes]);
    if (!version) for (const kind of ["random", "base64"]) cells.push(["restic", kind, "not installed", "-", "-", "-", "-"]);
    console.log(`| ${headers.join(" | ")} |`);
    console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    const shown = (cell: string | number, i: number) => (typeof cell !== "number" ? cell : i === 6 ? cell.toLocaleString("en") : cell.toFixed(2));
    for (const row of cells) console.log(`| ${row.map(shown).join(" | ")} |`);
    await writeBenchResult("backup", { backup: { headers, rows: cells } }, { messages: MESSAGES, runs: RUNS, restic: version ?? "not installed" });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
