import { spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/*
 * The README runs as written: every ```sh (or ```bash) block of README.md and docs/*.md runs, in order,
 * in a fresh scratch directory, each as `bash -e -o pipefail`, and the test fails on the first block
 * that fails or outlives its time. Blocks marked `norun` are only shown; blocks marked `clone` run in
 * the clone (the install block). Shell variables a block sets (NAME=…) carry over to the blocks after
 * it, as they would in one terminal. `npm install -g .` installs into a prefix of the test's own, whose
 * bin/ is on PATH. The one thing changed is the port: 127.0.0.1:7420 becomes a free port, so that runs
 * on one machine do not meet. The whole tutorial then runs a second time in the same directory, as a
 * reader who runs it again would. Every process a block starts (a server in the background, say) is in
 * that block's process group, and every group is killed at the end of each run.
 */

const ROOT = resolve(".");
const BLOCK_TIMEOUT_MS = 60_000;

interface Block {
  file: string;
  line: number;
  where: "scratch" | "clone";
  script: string;
}

/** The runnable shell blocks of a Markdown file, in order; fences may be indented (in a list). */
export function shellBlocks(file: string, text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*(.*)$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const [language, words] = [open[2], open[3].split(/\s+/).filter(Boolean)];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(Math.min(indent, /^\s*/.exec(lines[j])![0].length)));
    if ((language === "sh" || language === "bash") && !words.includes("norun")) {
      blocks.push({ file, line: i + 1, where: words.includes("clone") ? "clone" : "scratch", script: body.join("\n") });
    }
    i = j;
  }
  return blocks;
}

async function documentBlocks(): Promise<Block[]> {
  const docs = (await readdir(join(ROOT, "docs"))).filter((name) => name.endsWith(".md")).sort();
  const files = ["README.md", ...docs.map((name) => join("docs", name))];
  const blocks: Block[] = [];
  for (const file of files) blocks.push(...shellBlocks(file, await readFile(join(ROOT, file), "utf8")));
  return blocks;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

// Variables of bash itself, and the ones the test sets, are not carried from block to block.
const NOT_CARRIED = "^(BASH.*|EUID|PPID|UID|SHELLOPTS|GROUPS|FUNCNAME|RANDOM|SRANDOM|SECONDS|LINENO|PIPESTATUS|HISTCMD|_|COMP_.*|DIRSTACK|EPOCH.*|OPTIND|OPTARG|OPTERR|IFS|PS[0-9]|PWD|OLDPWD|PATH|HOME|SHLVL|npm_config_prefix|README_.*)$";

interface Run {
  groups: number[];
}

/** Runs one block; resolves with its output, rejects naming the block when it fails or runs too long. */
function runBlock(block: Block, scratch: string, state: string, port: number, env: NodeJS.ProcessEnv, run: Run): Promise<string> {
  const script = block.script.replaceAll("127.0.0.1:7420", `127.0.0.1:${port}`);
  const wrapped = [
    `source ${JSON.stringify(state)} 2> /dev/null || true`,
    "set -eo pipefail",
    script,
    "set +e",
    `declare -p $(compgen -v | grep -Ev '${NOT_CARRIED}') > ${JSON.stringify(state)} 2> /dev/null`,
    "exit 0",
  ].join("\n");
  return new Promise((resolveRun, reject) => {
    // detached: the block's bash leads a process group that its background children (a server) join.
    const child = spawn("bash", ["-c", wrapped], { cwd: block.where === "clone" ? ROOT : scratch, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    run.groups.push(child.pid!);
    let output = "";
    // A background server keeps the pipes open after the block's bash exits: wait for the exit, not the close.
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => killGroup(child.pid!), BLOCK_TIMEOUT_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      // Children still running keep the pipes: stop listening, so that they do not hold the test.
      child.stdout!.destroy();
      child.stderr!.destroy();
      if (code === 0) return resolveRun(output);
      const why = signal ? `was killed (${signal}) after ${BLOCK_TIMEOUT_MS / 1000} s` : `exited with ${code}`;
      reject(new Error(`${block.file}:${block.line}: the block ${why}\n--- block ---\n${script}\n--- output ---\n${output}`));
    });
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // the group is gone already
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

describe("README", () => {
  it("marks every fenced shell block as run (sh, bash, sh clone) or shown (sh norun)", async () => {
    const blocks = await documentBlocks();
    expect(blocks.length).toBeGreaterThan(5);
    expect(blocks.some((block) => block.where === "clone")).toBe(true);
    // Every block the reader is told to run starts from nothing but what the blocks before it made.
    for (const block of blocks) expect(block.script.trim().length, `${block.file}:${block.line} is empty`).toBeGreaterThan(0);
  });

  it("waits only on what this run wrote: a file a background process writes is emptied before it starts", async () => {
    // `cmd > file &` opens (and empties) the file in the background, after the shell has gone on: a
    // `until grep … file` right after it can still read what the run before left there, and go on
    // before this run's server listens (CI failed once so, in the tutorial's second run).
    let waits = 0;
    for (const block of await documentBlocks()) {
      const lines = block.script.split("\n");
      lines.forEach((line, at) => {
        const background = /[^>&]>\s*(\S+)(?:\s+2>&1)?\s*&\s*$/.exec(line);
        if (!background) return;
        const file = background[1];
        const waitsOnIt = lines.slice(at + 1).some((later) => /\buntil\s+grep\b/.test(later) && later.split(/\s+/).includes(`${file};`));
        if (!waitsOnIt) return;
        waits++;
        const emptied = lines.slice(0, at).some((earlier) => earlier.trim() === `: > ${file}` || earlier.trim() === `rm -f ${file}`);
        expect(emptied, `${block.file}:${block.line + 1 + at}: empty ${file} (\`: > ${file}\`) before starting what writes it`).toBe(true);
      });
    }
    // The tutorial waits so on its server, its follower and its CORS server: the check found them.
    expect(waits).toBeGreaterThanOrEqual(3);
  });

  it("runs every shell block in order in a scratch directory, twice, against a server the README starts", async () => {
    const blocks = await documentBlocks();
    // The install block runs `make build` in this clone, which other tests are running from: it may only
    // find nothing to do (the global setup has just built and stamped dist/). A stale node_modules would
    // make it run `npm ci` under them, so that is refused here instead.
    const upToDate = await new Promise<boolean>((resolveQuery) => spawn("make", ["-q", "build"], { cwd: ROOT, stdio: "ignore" }).once("exit", (code) => resolveQuery(code === 0)));
    expect(upToDate, "make build has work to do (node_modules older than package-lock.json?): run `make build` first").toBe(true);
    const scratch = await mkdtemp(join(tmpdir(), "remotelog-readme-"));
    const prefix = await mkdtemp(join(tmpdir(), "remotelog-readme-prefix-"));
    const state = join(prefix, "state.sh");
    cleanups.push(() => rm(scratch, { recursive: true, force: true }), () => rm(prefix, { recursive: true, force: true }));
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("REMOTELOG_") && !key.startsWith("npm_")) env[key] = value;
    Object.assign(env, { npm_config_prefix: prefix, npm_config_audit: "false", npm_config_fund: "false", PATH: `${join(prefix, "bin")}:${process.env.PATH}` });
    const port = await freePort();
    for (const round of [1, 2]) {
      await writeFile(state, "");
      const run: Run = { groups: [] };
      try {
        for (const block of blocks) {
          const started = Date.now();
          await runBlock(block, scratch, state, port, env, run);
          if (process.env.README_TIMING) console.log(`round ${round} ${block.file}:${block.line} ${Date.now() - started} ms`);
        }
      } catch (err) {
        throw new Error(`round ${round}: ${(err as Error).message}`);
      } finally {
        for (const pgid of run.groups) killGroup(pgid);
      }
    }
    // The tutorial wrote into the scratch directory, not into the clone.
    const written = await readdir(scratch);
    expect(written).toEqual(expect.arrayContaining(["alice", "bob", "server-data", "alice.key"]));
    const inClone = await readdir(ROOT);
    for (const name of written) expect(inClone, `the README wrote ${name} into the clone`).not.toContain(name);
  }, 600_000);
});
