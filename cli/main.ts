#!/usr/bin/env node
// First: protobuf-es looks for Uint8Array.prototype.toBase64 as it loads (see services/native-base64.ts).
import "../services/native-base64.js";
import type { Io } from "./command.js";
import { EXIT_OK, EXIT_USAGE, isBrokenPipe } from "./command.js";
import { environmentTable, environmentText } from "./environment.js";
import { verbCommands, verbs } from "./verbs.js";
import { asksForVersion, versionLine } from "./version.js";

async function usage(): Promise<string> {
  // From each verb's own summary and options, so that neither table can drift from the verbs.
  const loaded = await verbCommands();
  const lines = loaded.map(({ verb, summary }) => `  ${verb.padEnd(11)}${summary}`);
  return (
    `Usage: remotelog <verb> [options]\n\nVerbs:\n${lines.join("\n")}\n\n` +
    `Environment (a flag given wins):\n${environmentText(environmentTable(loaded))}\n\n` +
    `Exit codes: 0 success, 1 failure, 2 usage error. 'remotelog --version' prints the version.\n` +
    `Run 'remotelog <verb> --help' for a verb's options.\n`
  );
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [verb, ...rest] = argv;
  if (asksForVersion(verb)) {
    io.stdout.write(versionLine());
    return EXIT_OK;
  }
  if (verb === undefined || verb === "--help" || verb === "-h" || verb === "help") {
    (verb === undefined ? io.stderr : io.stdout).write(await usage());
    return verb === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const load = verbs[verb];
  if (!load) {
    io.stderr.write(`remotelog: USAGE: unknown verb ${JSON.stringify(verb)}\n\n${await usage()}`);
    return EXIT_USAGE;
  }
  return (await load()).run(rest, io);
}

/** How long a verb has to stop cleanly after SIGINT or SIGTERM before the process ends anyway. */
const STOP_GRACE_MS = 5_000;
const controller = new AbortController();
for (const [signal, exitCode] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  process.once(signal, () => {
    controller.abort(new Error(signal));
    // Verbs stop on the abort; one waiting on what does not hear it (a call a wedged server never answers)
    // ignored the signal, and only a second one ended it. Every write is atomic (a SIGKILL at any point
    // is safe: make chaos), so ending here loses nothing. A verb that stops in time never sees this.
    setTimeout(() => {
      process.stderr.write(`remotelog: stopped by ${signal}: the work in progress did not end within ${STOP_GRACE_MS / 1000} s of it\n`);
      process.exit(exitCode);
    }, STOP_GRACE_MS).unref();
  });
}
let pipeClosed = false;
// A reader that goes away (`remotelog receive | head -1`) is not a failure: stop and end quietly.
process.stdout.on("error", (err) => {
  if (!isBrokenPipe(err)) throw err;
  pipeClosed = true;
  controller.abort(err);
});
const io: Io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = pipeClosed ? EXIT_OK : code;
  },
  (err) => {
    if (pipeClosed || isBrokenPipe(err)) return void (process.exitCode = EXIT_OK);
    process.stderr.write(`remotelog: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
