/**
 * Backup and restore of a local log of 100,000 messages with 256-byte bodies, side by side with
 * restic on the same data (the log's one file, log.bin): wall time of each as a whole process, and the
 * bytes of each repository. `make bench-backup`. restic comes from Debian (`apt-get install restic`);
 * when it is not installed its rows say so. Two kinds of bodies: random bytes (encrypted messages, which
 * nothing compresses) and base64 text of random bytes (encrypted and then base64-encoded, as the other
 * benchmarks use), which restic's zstd compresses by about a quarter.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { encodeMessage, newMessage } from "../core/hash.js";
import { FileLocalLog } from "../stores/file/local-log.js";

const MAIN = resolve("dist/cli/main.js");
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

interface Row {
  tool: string;
  bodies: Bodies;
  backup: number;
  incremental: number;
  restore: number;
  repoBytes: number;
}

async function benchOne(root: string, kind: Bodies, restic: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const samples = { ours: { backup: [] as number[], incremental: [] as number[], restore: [] as number[], bytes: 0 }, restic: { backup: [] as number[], incremental: [] as number[], restore: [] as number[], bytes: 0 } };
  for (let run = 0; run < RUNS; run++) {
    const dir = join(root, `${kind}-${run}`);
    const log = join(dir, "log");
    await writeLog(log, MESSAGES, kind, 0);

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
  const row = (tool: string, s: typeof samples.ours): Row => ({ tool, bodies: kind, backup: median(s.backup), incremental: median(s.incremental), restore: median(s.restore), repoBytes: s.bytes });
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
    console.log("| tool | bodies | backup s | incremental s | restore s | repository bytes |");
    console.log("| --- | --- | ---: | ---: | ---: | ---: |");
    for (const r of rows) console.log(`| ${r.tool} | ${r.bodies} | ${r.backup.toFixed(2)} | ${r.incremental.toFixed(2)} | ${r.restore.toFixed(2)} | ${r.repoBytes.toLocaleString("en")} |`);
    if (!version) for (const kind of ["random", "base64"]) console.log(`| restic | ${kind} | not installed | | | |`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
