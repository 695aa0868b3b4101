import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import type { Readable, Writable } from "node:stream";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";
import { DEBUG_VARIABLE } from "./environment.js";

/** Where a verb reads and writes; tests pass their own streams, main passes the process's. */
export interface Io {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
  /** Aborted on SIGINT/SIGTERM, so long-running verbs (serve, receive --follow) stop cleanly. */
  signal: AbortSignal;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * A verb's command, wired to io and made to throw instead of exiting, so that run() maps every
 * outcome to one exit code: 0 success, 1 failure, 2 usage.
 */
export function newCommand(name: string, io: Io): Command {
  return new Command(`remotelog ${name}`)
    .exitOverride()
    .allowExcessArguments(false)
    .showHelpAfterError(`(run 'remotelog ${name} --help' for usage)`)
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Help wraps to the terminal, or to $COLUMNS when set (as in a pipe), else 80.
      getOutHelpWidth: () => Number(io.env.COLUMNS) || (io.stdout as { columns?: number }).columns || 80,
      getErrHelpWidth: () => Number(io.env.COLUMNS) || (io.stderr as { columns?: number }).columns || 80,
      // commander's own errors ("error: unknown option '--nmae'") carry the code the README promises.
      outputError: (text, write) => write(`remotelog ${name}: USAGE: ${text.replace(/^error: /, "")}`),
    });
}

/** True for the error of a write to a pipe whose reader has gone (`remotelog … | head -1`). */
export function isBrokenPipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "EPIPE" || code === "ERR_STREAM_DESTROYED";
}

export async function runCommand(command: Command, args: string[], io: Io): Promise<number> {
  try {
    await command.parseAsync(args, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, help gen) ends 0; help shown because a verb with subcommands got none
      // (remotelog key) is a usage error, as commander's own exit code 1 there says.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    // The reader went away (`| head -1`): what it wanted it has, so end quietly, as cat and grep do.
    if (isBrokenPipe(err) || isBrokenPipe((err as Error | undefined)?.cause)) return EXIT_OK;
    const stoppedBy = (err as RemoteLogError & { stoppedBy?: string } | undefined)?.stoppedBy;
    if (isRemoteLogError(err) && stoppedBy !== undefined) {
      io.stderr.write(`remotelog: stopped by ${stoppedBy}: ${err.text}\n`);
      return EXIT_SIGNAL[stoppedBy] ?? EXIT_FAILURE;
    }
    if (isRemoteLogError(err, "INVALID_ARGUMENT") && (err as RemoteLogError & { usage?: boolean }).usage) {
      io.stderr.write(`remotelog: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`remotelog: ${err instanceof Error ? err.message : String(err)}\n`);
    if (io.env[DEBUG_VARIABLE] && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  }
}

/** A usage error found after parsing (conflicting flags, a flag missing): exit code 2. */
export function usageError(message: string): RemoteLogError {
  const err = RemoteLogError.invalidArgument(message) as RemoteLogError & { usage?: boolean };
  err.usage = true;
  return err;
}

/** The exit code of a verb a signal stopped before its work was done: 128 + the signal's number, as a shell reports a process the signal ended. */
const EXIT_SIGNAL: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * The error of a verb that SIGINT or SIGTERM (signal) stopped before its work was done, its calls in
 * progress cancelled: runCommand prints "stopped by SIGINT: what" and exits 130 or 143.
 */
export function stoppedError(signal: string, what: string): RemoteLogError {
  const err = RemoteLogError.aborted(what) as RemoteLogError & { stoppedBy?: string };
  err.stoppedBy = signal;
  return err;
}

/** commander argParser for integers within bounds. */
/** A flag's parser that keeps every value given, for a flag repeated (--name A --name B). */
export function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function intOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/**
 * commander argParser for a directory's path: an empty one (`--data ""`, or REMOTELOG_DATA set empty)
 * was taken as given and failed deep in a store, INTERNAL ("mkdir ''") or naming a parameter no flag
 * has ("dir takes the path of a directory").
 */
export function dirOption(value: string): string {
  if (value.length === 0 || value.includes("\0")) throw new InvalidArgumentError(`expected the path of a directory, got ${JSON.stringify(value)}`);
  return value;
}

/** The signal that stopped a verb ("SIGINT", "SIGTERM": cli/main.ts aborts io.signal with it), or undefined when something else did (stdout closed). */
export function stoppingSignal(signal: AbortSignal): string | undefined {
  return signal.reason instanceof Error && /^SIG[A-Z]+$/.test(signal.reason.message) ? signal.reason.message : undefined;
}

/** Reads a whole stream into one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** commander argParser for durations such as 500ms, 30s, 10m, 12h, 90d; returns milliseconds. */
export function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === 0) throw new InvalidArgumentError(`expected a duration above zero, such as 30s, 10m, 12h or 90d, got ${JSON.stringify(value)}`);
  return ms;
}

/** durationOption that also takes zero (0, 0s): "no grace at all" is a fair thing to ask for. */
export function durationOrZeroOption(value: string): number {
  return value.trim() === "0" ? 0 : parseDuration(value);
}

function parseDuration(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration such as 30s, 10m, 12h or 90d, got ${JSON.stringify(value)}`);
  return Number(match[1]) * UNIT_MS[match[2]];
}

/** Milliseconds as the largest unit that divides them (90d, 1m, 1h, 1500ms), as a duration flag takes them. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const unit of ["d", "h", "m", "s"] as const) if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}

/**
 * A duration flag whose default shows in --help as a duration (90d), not in milliseconds. With minMs, a
 * shorter duration is a usage error saying the least it takes.
 */
export function durationFlag(flags: string, description: string, defaultMs: number, options: { zero?: boolean; minMs?: number } = {}): Option {
  const parse = options.zero ? durationOrZeroOption : durationOption;
  const minMs = options.minMs;
  const parser =
    minMs === undefined
      ? parse
      : (value: string) => {
          const ms = parse(value);
          if (ms < minMs) throw new InvalidArgumentError(`expected a duration of ${formatDuration(minMs)} or more, got ${JSON.stringify(value)}`);
          return ms;
        };
  return new Option(flags, description).argParser(parser).default(defaultMs, formatDuration(defaultMs));
}
