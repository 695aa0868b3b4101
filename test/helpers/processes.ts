import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const MAIN = resolve("dist/cli/main.js");

const started = new Set<ChildProcess>();
const dirs = new Set<string>();

/** A fresh directory under the system temp dir, removed by cleanup(). */
export async function tempDir(prefix = "remotelog-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Kills every process a test started and removes its directories; call from afterEach/afterAll. */
export async function cleanup(): Promise<void> {
  await Promise.all([...started].map((child) => stop(child, "SIGKILL")));
  started.clear();
  await Promise.all([...dirs].map((dir) => rm(dir, { recursive: true, force: true })));
  dirs.clear();
}

/** openFiles: the process's descriptor limit, lowered with bash's `ulimit -n` before it starts. */
export function spawnCli(args: string[], options: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; openFiles?: number } = {}): ChildProcess {
  const [command, commandArgs] =
    options.openFiles === undefined ? [process.execPath, [MAIN, ...args]] : ["bash", ["-c", `ulimit -n ${options.openFiles} && exec "$0" "$@"`, process.execPath, MAIN, ...args]];
  const child = spawn(command, commandArgs, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...options.env }, uid: options.uid, gid: options.gid });
  started.add(child);
  child.once("exit", () => started.delete(child));
  return child;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `remotelog args` to completion with stdin, killing it if it outlives timeoutMs. */
export async function runCli(args: string[], options: { stdin?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Promise<CliResult> {
  const child = spawnCli(args, options);
  return collect(child, options.stdin, options.timeoutMs ?? 30_000);
}

export function collect(child: ChildProcess, stdin?: string | Buffer, timeoutMs = 30_000, options: { keepStdinOpen?: boolean } = {}): Promise<CliResult> {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout!.on("data", (chunk) => stdout.push(chunk));
  child.stderr!.on("data", (chunk) => stderr.push(chunk));
  child.stdin!.on("error", () => {}); // a child that exits before reading all of stdin is not our failure
  if (!options.keepStdinOpen) child.stdin!.end(stdin ?? "");
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      // 'exit' can come before the pipes are drained; 'close' comes after.
      child.once("close", () => resolvePromise({ code, signal, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") }));
      if (child.stdout!.closed && child.stderr!.closed) child.emit("close");
    });
  });
}

export function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolvePromise();
    child.once("exit", () => resolvePromise());
    child.kill(signal);
  });
}

export interface Server {
  url: string;
  /** The admin listener's URL (serve --admin-listen): http://127.0.0.1:PORT or unix:PATH. */
  admin?: string;
  port: number;
  process: ChildProcess;
  stderr: () => string;
}

/** Starts `remotelog serve` as a real process and waits for the line that says where it listens. */
export async function startServer(args: string[], timeoutMs = 15_000, env?: NodeJS.ProcessEnv, options: { openFiles?: number } = {}): Promise<Server> {
  const child = spawnCli(["serve", ...args], { env, openFiles: options.openFiles });
  let stderr = "";
  let admin: string | undefined;
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const url = await new Promise<string>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const adminMatch = /^admin listening on (\S+)/.exec(line);
      if (adminMatch) admin = adminMatch[1];
      const match = /^listening on (https?:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${stderr}`));
    });
  });
  return { url, admin, port: Number(new URL(url).port), process: child, stderr: () => stderr };
}

export function parseJsonl<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as T);
}

/** Deterministic pseudo-random numbers, so a failing fault test can be replayed from its seed (one copy, shared with bench/). */
export { seededRandom } from "../../bench/harness.js";

/**
 * The env of a process whose clock is offsetMs off (Date.now() and new Date() moved; a Date of a given
 * time is left as it is): a sender whose clock is behind, or a reader some minutes later, without
 * waiting for a record to expire. faketime is not on every machine.
 */
export async function skewedClock(offsetMs: number): Promise<NodeJS.ProcessEnv> {
  const hook = join(await tempDir("remotelog-clock-"), "clock.mjs");
  await writeFile(
    hook,
    `const RealDate = Date, realNow = RealDate.now.bind(RealDate), offset = ${offsetMs};\n` +
      "globalThis.Date = class extends RealDate {\n" +
      "  constructor(...args) { if (args.length === 0) super(realNow() + offset); else super(...args); }\n" +
      "  static now() { return realNow() + offset; }\n" +
      "};\n",
  );
  return { NODE_OPTIONS: `--import ${hook}` };
}

export function lines(count: number, prefix = "message", from = 0): string {
  let text = "";
  for (let i = from; i < from + count; i++) text += `${prefix} ${i}\n`;
  return text;
}

/** The body bytes of a JSONL line of `receive` or `cat`: "body" as UTF-8 text, or "body_base64". */
export function bodyBytes(line: { body?: string; body_base64?: string }): Buffer {
  return line.body_base64 !== undefined ? Buffer.from(line.body_base64, "base64") : Buffer.from(line.body ?? "", "utf8");
}

/** The body of a JSONL line as text. */
export function bodyText(line: { body?: string; body_base64?: string }): string {
  return bodyBytes(line).toString("utf8");
}
