import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { Readable, Writable } from "node:stream";
import { RemoteLogError, isRemoteLogError } from "../core/errors.js";

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
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    });
}

export async function runCommand(command: Command, args: string[], io: Io): Promise<number> {
  try {
    await command.parseAsync(args, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return EXIT_OK;
      return EXIT_USAGE;
    }
    if (isRemoteLogError(err, "INVALID_ARGUMENT") && (err as RemoteLogError & { usage?: boolean }).usage) {
      io.stderr.write(`remotelog: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`remotelog: ${err instanceof Error ? err.message : String(err)}\n`);
    if (io.env.REMOTELOG_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  }
}

/** A usage error found after parsing (conflicting flags, a flag missing): exit code 2. */
export function usageError(message: string): RemoteLogError {
  const err = RemoteLogError.invalidArgument(message) as RemoteLogError & { usage?: boolean };
  err.usage = true;
  return err;
}

/** commander argParser for integers within bounds. */
export function intOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got ${n}`);
    return n;
  };
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
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value.trim());
  if (!match || Number(match[1]) === 0) throw new InvalidArgumentError(`expected a duration such as 30s, 10m, 12h or 90d, got ${JSON.stringify(value)}`);
  return Number(match[1]) * UNIT_MS[match[2]];
}
