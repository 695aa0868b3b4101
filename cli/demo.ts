import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { RemoteLogError } from "../core/errors.js";
import { intOption, newCommand, runCommand, stoppingSignal, type Io } from "./command.js";

export const summary = "run a server, a sender and a receiver, and watch messages arrive";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

interface DemoFlags {
  rounds: number;
  messages: number;
  keep?: boolean;
  timeout: number;
}

/** Starts `remotelog <args>` as a real process, its stderr prefixed onto ours. */
function start(io: Io, label: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  createInterface({ input: child.stderr! }).on("line", (line) => io.stderr.write(`  [${label}] ${line}\n`));
  return child;
}

function exited(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    // One a signal ended has no exit code, and no 'exit' to wait for: waiting for one left the demo
    // with nothing to run, and Node ended it with 0, its temporary directory still there.
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? 1);
    child.once("exit", (code) => resolve(code ?? 1));
  });
}

/**
 * How long the processes of a demo that stops have to end on SIGTERM before they are killed: twice
 * this is within the 5 s main gives the demo itself after a signal.
 */
const CHILD_STOP_MS = 2_000;

/** Stops those of children still running: SIGTERM, then SIGKILL for one that has not ended in time. */
async function stopAll(children: ChildProcess[]): Promise<void> {
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  for (const child of running) child.kill("SIGTERM");
  const killer = setTimeout(() => running.forEach((child) => child.kill("SIGKILL")), CHILD_STOP_MS);
  await Promise.all(running.map(exited));
  clearTimeout(killer);
}

export function command(io: Io) {
  return newCommand("demo", io)
    .description(
      "A whole remote log on this machine, with real processes: `serve` runs the CAS and NS, Alice runs " +
        "`send` a few times and goes offline in between, Bob runs `receive --follow` and prints what arrives, " +
        "and at the end Carol, who was never online with Alice, catches up on the whole log at once.",
    )
    .option("--rounds <n>", "how many times Alice comes online to send", intOption(1, 100), 3)
    .option("--messages <n>", "messages per round", intOption(1, 10_000), 4)
    .option("--timeout <seconds>", "give up if messages have not arrived by then", intOption(1), 30)
    .option("--keep", "keep the temporary data directories and print where they are")
    .action(async (flags: DemoFlags) => {
      const dir = await mkdtemp(join(tmpdir(), "remotelog-demo-"));
      const children: ChildProcess[] = [];
      // SIGINT, SIGTERM or --timeout end every wait below at once, so that the finally stops what the
      // demo started. Waits that did not hear them (a child's exit, Bob's last line) held the demo until
      // main's grace ran out and ended it, its processes and directory left behind.
      const stop = new AbortController();
      const onSignal = () => stop.abort(io.signal.reason);
      if (io.signal.aborted) onSignal();
      else io.signal.addEventListener("abort", onSignal, { once: true });
      const deadline = setTimeout(() => stop.abort(RemoteLogError.unavailable(`demo gave up after ${flags.timeout} s: the messages had not all arrived (--timeout SECONDS waits longer)`)), flags.timeout * 1000);
      const stopped = new Promise<never>((_, reject) => {
        if (stop.signal.aborted) reject(stop.signal.reason);
        stop.signal.addEventListener("abort", () => reject(stop.signal.reason), { once: true });
      });
      stopped.catch(() => {}); // raced below; this only keeps it from being unhandled when nothing waits
      const until = <T>(promise: Promise<T>): Promise<T> => Promise.race([promise, stopped]);
      let interrupted = false;
      try {
        // The server logs JSON lines for operators; the demo shows only what goes wrong.
        const server = start(io, "serve", ["serve", "--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--log-level", "warn"]);
        children.push(server);
        const url = await until(new Promise<string>((resolve, reject) => {
          createInterface({ input: server.stdout! }).on("line", (line) => {
            const match = /^listening on (\S+)/.exec(line);
            if (match) resolve(match[1]);
          });
          server.once("exit", (code) => reject(RemoteLogError.unavailable(`serve exited with code ${code} before listening`)));
        }));
        io.stdout.write(`CAS and NS are up at ${url} (one port: Connect, gRPC and gRPC-Web)\n\n`);

        const keyFile = join(dir, "alice.key");
        const keygen = start(io, "key", ["key", "gen", "--out", keyFile]);
        children.push(keygen);
        let name = "";
        createInterface({ input: keygen.stdout! }).on("line", (line) => (name ||= line.trim()));
        if ((await until(exited(keygen))) !== 0 || !name) throw RemoteLogError.internal("key gen failed");
        io.stdout.write(`Alice's key is ${keyFile}; her log's name is the key's: ${name}\n\n`);

        const total = flags.rounds * flags.messages;
        const bob = start(io, "bob", ["receive", "--follow", "--interval", "100", "--name", name, "--server", url, "--state", join(dir, "bob")]);
        children.push(bob);
        let bobSeen = 0;
        const bobDone = new Promise<void>((resolve) => {
          createInterface({ input: bob.stdout! }).on("line", (line) => {
            const m = JSON.parse(line) as { seq: number; id: string; body?: string; body_base64?: string };
            io.stdout.write(`  bob   <= seq ${String(m.seq).padStart(3)}  ${m.id.slice(0, 12)}…  ${m.body ?? `(${Buffer.from(m.body_base64 ?? "", "base64").length} bytes, not UTF-8)`}\n`);
            if (++bobSeen >= total) resolve();
          });
        });

        for (let round = 1; round <= flags.rounds; round++) {
          io.stdout.write(`Alice comes online (round ${round}) and sends ${flags.messages} messages:\n`);
          const alice = start(io, "alice", ["send", "--key", keyFile, "--server", url, "--data", join(dir, "alice"), "--group", "demo-chat", "--page-size", "4"]);
          children.push(alice);
          const lines = Array.from({ length: flags.messages }, (_, i) => `round ${round}, message ${i + 1}`);
          for (const line of lines) io.stdout.write(`  alice => ${line}\n`);
          alice.stdin!.end(`${lines.join("\n")}\n`);
          const code = await until(exited(alice));
          if (code !== 0) throw RemoteLogError.internal(`send exited with code ${code}`);
          io.stdout.write("  alice goes offline\n");
          await until(new Promise((resolve) => setTimeout(resolve, 400)));
        }
        await until(bobDone);
        io.stdout.write(`\nBob received all ${total} messages, in order: every head's signature checked against the name, every page and message against its hash.\n`);

        io.stdout.write("\nCarol arrives later, while Alice is offline, and catches up in one go:\n");
        const carol = start(io, "carol", ["receive", "--name", name, "--server", url, "--state", join(dir, "carol")]);
        children.push(carol);
        let carolSeen = 0;
        createInterface({ input: carol.stdout! }).on("line", () => carolSeen++);
        const carolCode = await until(exited(carol));
        if (carolCode !== 0 || carolSeen !== total) throw RemoteLogError.internal(`carol received ${carolSeen} of ${total} (exit ${carolCode})`);
        io.stdout.write(`  carol <= ${carolSeen} messages from ${Math.ceil(total / 4)} pages (page size 4)\n`);
        io.stdout.write(`\nTry it by hand: see README.md, "Running it by hand".\n`);
      } catch (err) {
        // Stopped by SIGINT or SIGTERM (or its output closed): the user's way to end it, as a follower's.
        // A failure after it is the stop's doing (Ctrl-C in a terminal reaches the children too).
        if (!io.signal.aborted) throw err;
        interrupted = true;
      } finally {
        clearTimeout(deadline);
        io.signal.removeEventListener("abort", onSignal);
        // The server last: stopped under them, Bob and Alice printed its connection errors as they went.
        const [server, ...clients] = children;
        await stopAll(clients);
        if (server) await stopAll([server]);
        if (flags.keep) io.stdout.write(`data kept in ${dir}\n`);
        else await rm(dir, { recursive: true, force: true });
      }
      const signal = stoppingSignal(io.signal);
      if (interrupted && signal) {
        io.stderr.write(`remotelog demo: stopped by ${signal}; its processes are stopped${flags.keep ? "" : " and its data removed"}\n`);
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
