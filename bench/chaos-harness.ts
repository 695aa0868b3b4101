/*
 * The chaos harness: seeded random SIGKILLs of the real CLI (dist/cli/main.js) - sender, server,
 * receiver (receive --out), backup and mirror - on one name, then a check that nothing acknowledged
 * was lost, duplicated or reordered in the receiver's --out file, that the backup and the mirror
 * verify clean with --read-data, and that no process outlived its bound.
 *
 * test/chaos/chaos.test.ts runs it in CI with a few dozen kill points; `make chaos` runs 1,000 and
 * prints the table (bench/chaos.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { MAIN, seededRandom } from "./harness.js";

export const TARGETS = ["sender", "server", "receiver", "backup", "mirror"] as const;
export type Target = (typeof TARGETS)[number];

export interface ChaosOptions {
  seed: number;
  kills: number;
  /** A process that runs longer than this is a hang: it is killed and reported. */
  boundMs?: number;
  /** Progress, one line per kill point. */
  log?: (line: string) => void;
}

export interface ChaosResult {
  seed: number;
  killsByTarget: Record<Target, number>;
  /** Messages of sends that exited 0. */
  acknowledged: number;
  /** Lines in the --out file. */
  delivered: number;
  /** Acknowledged messages missing from the --out file. */
  lost: number;
  /** Lines whose message appears more than once in the --out file. */
  duplicated: number;
  /** Lines that come before one sent earlier. */
  reordered: number;
  /** From a kill to the end of the next successful run of the same part (a restarted server: its first acknowledged send). */
  longestRecoveryMs: number;
  longestRecoveryTarget?: Target;
  /** Processes that outlived the bound, by what they were. */
  hangs: string[];
  /** verify --read-data of the backup and of the mirror: the faults they printed (empty when clean). */
  verifyBackup: string;
  verifyMirror: string;
  /**
   * Runs that exited 1 with UNAVAILABLE in a round whose server was killed: a verb that does not
   * retry (backup) saying its service is down, as it should; the next round runs it again.
   */
  unavailableWhileServerDown: number;
  /** Runs that should have succeeded and did not, with their stderr. */
  failures: string[];
}

interface Run {
  child: ChildProcess;
  what: string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

const NAME = "chaos";

/** Runs the chaos: returns the counts; throws only when the harness itself cannot go on. */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const random = seededRandom(options.seed);
  const boundMs = options.boundMs ?? 60_000;
  const log = options.log ?? (() => {});
  const root = await mkdtemp(join(tmpdir(), "remotelog-chaos-"));
  const live = new Set<ChildProcess>();
  const result: ChaosResult = {
    seed: options.seed,
    killsByTarget: { sender: 0, server: 0, receiver: 0, backup: 0, mirror: 0 },
    acknowledged: 0,
    delivered: 0,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    longestRecoveryMs: 0,
    hangs: [],
    verifyBackup: "",
    verifyMirror: "",
    unavailableWhileServerDown: 0,
    failures: [],
  };
  const acked = new Set<number>();
  let counter = 0;

  /** Starts remotelog args; one that runs past boundMs is a hang (servers, which run until killed, are exempt). */
  const start = (what: string, args: string[], stdin = "", bounded = true): Run => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    live.add(child);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on("data", (chunk) => stdout.push(chunk));
    child.stderr!.on("data", (chunk) => stderr.push(chunk));
    child.stdin!.on("error", () => {});
    child.stdin!.end(stdin);
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
      const timer = setTimeout(() => {
        if (!bounded) return;
        result.hangs.push(`${what} (pid ${child.pid}) ran past ${boundMs} ms: remotelog ${args.join(" ")}`);
        child.kill("SIGKILL");
      }, boundMs);
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        live.delete(child);
        resolve({ code, signal, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
      });
    });
    return { child, what, done };
  };
  const mustSucceed = async (run: Run): Promise<boolean> => {
    const r = await run.done;
    if (r.code !== 0) result.failures.push(`${run.what} exited with ${r.code ?? r.signal}: ${r.stderr.trim().slice(-2000)}`);
    return r.code === 0;
  };

  // Servers: a (the source) and b (the mirror's copy), each restartable on its own port.
  const startServer = async (dir: string, port = 0): Promise<{ url: string; port: number; child: ChildProcess }> => {
    for (let attempt = 0; ; attempt++) {
      const run = start(`serve ${dir}`, ["serve", "--listen", `127.0.0.1:${port}`, "--data", join(root, dir), "--log-level", "warn", "--no-metrics"], "", false);
      const url = await new Promise<string | undefined>((resolve) => {
        createInterface({ input: run.child.stdout! }).on("line", (line) => {
          const match = /^listening on (\S+)/.exec(line);
          if (match) resolve(match[1]);
        });
        void run.done.then(() => resolve(undefined));
      });
      if (url) return { url, port: Number(new URL(url).port), child: run.child };
      // The port of a server just killed can take a moment to be free again.
      if (attempt >= 50) throw new Error(`serve ${dir} did not start: ${(await run.done).stderr}`);
      await sleep(100);
    }
  };
  let a = await startServer("a");
  const b = await startServer("b");
  const alice = join(root, "alice");
  const out = join(root, "out.jsonl");
  const backupDir = join(root, "backup");

  const sendArgs = ["send", "--unsigned", "--name", NAME, "--server", a.url, "--data", alice, "--page-size", "32", "--retry-for", "30", "--json"];
  const send = (count: number): { run: Run; first: number; count: number } => {
    const first = counter;
    let text = "";
    for (let i = 0; i < count; i++) text += `m ${counter++}\n`;
    return { run: start("send", sendArgs, text), first, count };
  };
  const acknowledge = (first: number, count: number) => {
    for (let i = first; i < first + count; i++) acked.add(i);
  };
  const argsOf: Record<Exclude<Target, "server" | "sender">, (follow: boolean) => string[]> = {
    receiver: (follow) => ["receive", "--unsigned", "--name", NAME, "--server", a.url, "--state", join(root, "bob"), "--out", out, "--batch", "20", ...(follow ? ["--follow", "--interval", "50"] : [])],
    backup: () => ["backup", "--from", NAME, "--server", a.url, "--unsigned", "--to", backupDir, "--pack-size", "4KiB"],
    mirror: (follow) => ["mirror", "--unsigned", "--name", NAME, "--server", a.url, "--to", b.url, ...(follow ? ["--follow", "--interval", "50"] : [])],
  };
  // A part killed is restarted in the next round; its recovery is the time from that restart to the
  // first run of it that finishes on its own (for the server: its first acknowledged send).
  const killed = new Set<Target>();
  const recovered = (target: Target, startedAt: number) => {
    if (!killed.has(target)) return;
    killed.delete(target);
    const took = performance.now() - startedAt;
    if (took > result.longestRecoveryMs) {
      result.longestRecoveryMs = took;
      result.longestRecoveryTarget = target;
    }
  };
  const kill = (target: Target, run: Run) => {
    if (run.child.exitCode !== null || run.child.signalCode !== null) return false;
    run.child.kill("SIGKILL");
    result.killsByTarget[target]++;
    killed.add(target);
    return true;
  };
  const total = () => Object.values(result.killsByTarget).reduce((x, y) => x + y, 0);

  try {
    // The name exists before the first kill, so that a receiver killed early has a log to read.
    const first = send(10);
    if (await mustSucceed(first.run)) acknowledge(first.first, first.count);
    // Rounds: every part runs at once, and each is killed at its own random moment (or, now and then,
    // left to finish), until there have been enough kill points.
    for (let round = 0; total() < options.kills; round++) {
      const startedAt = performance.now();
      const s = send(5 + Math.floor(random() * 120));
      const parts: { target: Target; run: Run; follow: boolean; killAt?: number }[] = [{ target: "sender", run: s.run, follow: false }];
      for (const target of ["receiver", "backup", "mirror"] as const) {
        const follow = target !== "backup" && random() < 0.3;
        parts.push({ target, run: start(target, argsOf[target](follow)), follow });
      }
      // A process takes a few hundred ms to start on a busy machine: kills land from just after the
      // start to well into the work. The sender is left to finish more often, so that much is acknowledged.
      for (const part of parts) if (part.follow || random() < (part.target === "sender" ? 0.5 : 0.75)) part.killAt = 100 + random() * 900;
      const serverKillAt = random() < 0.3 ? 100 + random() * 700 : undefined;
      const timers: Promise<void>[] = parts.map(async (part) => {
        if (part.killAt === undefined) return;
        await sleep(part.killAt);
        kill(part.target, part.run);
      });
      if (serverKillAt !== undefined) {
        timers.push(
          (async () => {
            await sleep(serverKillAt);
            a.child.kill("SIGKILL");
            await new Promise((resolve) => (a.child.exitCode !== null || a.child.signalCode !== null ? resolve(undefined) : a.child.once("close", resolve)));
            result.killsByTarget.server++;
            killed.add("server");
            await sleep(random() * 200);
            a = await startServer("a", a.port);
          })(),
        );
      }
      await Promise.all(timers);
      for (const part of parts) {
        const r = await part.run.done;
        if (r.code === 0) {
          if (part.target === "sender") {
            acknowledge(s.first, s.count);
            recovered("server", startedAt);
          }
          recovered(part.target, startedAt);
        } else if (r.signal !== "SIGKILL" && serverKillAt !== undefined && r.code === 1 && r.stderr.includes("UNAVAILABLE")) {
          result.unavailableWhileServerDown++;
        } else if (r.signal !== "SIGKILL") {
          result.failures.push(`${part.target} exited with ${r.code ?? r.signal}: ${r.stderr.trim().slice(-2000)}`);
        }
      }
      log(`round ${round + 1}: ${total()}/${options.kills} kill points, ${acked.size} acknowledged`);
    }

    // The end: everything published, received, mirrored and backed up, then checked.
    await mustSucceed(start("send (final flush)", sendArgs));
    await mustSucceed(start("receiver (final)", argsOf.receiver(false)));
    await mustSucceed(start("mirror (final)", argsOf.mirror(false)));
    await mustSucceed(start("backup (final)", argsOf.backup(false)));
    const verifyBackup = await start("verify backup", ["verify", "--from", backupDir, "--read-data"]).done;
    result.verifyBackup = verifyBackup.code === 0 ? "" : `exit ${verifyBackup.code ?? verifyBackup.signal}: ${verifyBackup.stdout}${verifyBackup.stderr}`.trim();
    const verifyMirror = await start("verify mirror", ["verify", "--name", NAME, "--from", b.url, "--read-data"]).done;
    result.verifyMirror = verifyMirror.code === 0 ? "" : `exit ${verifyMirror.code ?? verifyMirror.signal}: ${verifyMirror.stdout}${verifyMirror.stderr}`.trim();

    const text = await readFile(out, "utf8").catch(() => "");
    const numbers: number[] = [];
    for (const line of text.split("\n")) {
      if (line === "") continue;
      // Bodies are UTF-8 text, so the line carries them as text (cli/format.ts).
      const body = (JSON.parse(line) as { body: string }).body;
      numbers.push(Number(body.slice(2)));
    }
    result.delivered = numbers.length;
    result.acknowledged = acked.size;
    const seen = new Set<number>();
    let highest = -1;
    for (const n of numbers) {
      if (seen.has(n)) result.duplicated++;
      else if (n < highest) result.reordered++;
      seen.add(n);
      highest = Math.max(highest, n);
    }
    for (const n of acked) if (!seen.has(n)) result.lost++;
    return result;
  } finally {
    for (const child of live) child.kill("SIGKILL");
    await Promise.all([...live].map((child) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once("close", resolve)))));
    await rm(root, { recursive: true, force: true });
  }
}

/** What a run must show to pass; empty when it does. */
export function chaosProblems(result: ChaosResult): string[] {
  const problems: string[] = [];
  if (result.lost > 0) problems.push(`${result.lost} acknowledged messages lost`);
  if (result.duplicated > 0) problems.push(`${result.duplicated} duplicated lines in --out`);
  if (result.reordered > 0) problems.push(`${result.reordered} reordered lines in --out`);
  if (result.hangs.length > 0) problems.push(`hung: ${result.hangs.join("; ")}`);
  if (result.verifyBackup) problems.push(`verify --read-data of the backup: ${result.verifyBackup}`);
  if (result.verifyMirror) problems.push(`verify --read-data of the mirror: ${result.verifyMirror}`);
  if (result.failures.length > 0) problems.push(`failed runs: ${result.failures.join(" | ")}`);
  return problems;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
