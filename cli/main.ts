#!/usr/bin/env node
import type { Io } from "./command.js";
import { EXIT_OK, EXIT_USAGE } from "./command.js";

interface Verb {
  summary: string;
  run(args: string[], io: Io): Promise<number>;
}

// Verbs load lazily: a `receive` should not pay for loading the server's code.
const verbs: Record<string, () => Promise<Verb>> = {
  serve: () => import("./serve.js"),
  send: () => import("./send.js"),
  receive: () => import("./receive.js"),
  mirror: () => import("./mirror.js"),
  redact: () => import("./redact.js"),
  key: () => import("./key.js"),
  inspect: () => import("./inspect.js"),
  demo: () => import("./demo.js"),
  mvds: () => import("./mvds.js"),
  backup: () => import("./backup.js"),
  restore: () => import("./restore.js"),
  verify: () => import("./verify.js"),
  export: () => import("./export.js"),
  import: () => import("./import.js"),
  gc: () => import("./gc.js"),
  repair: () => import("./repair.js"),
};

const summaries: Record<string, string> = {
  serve: "run the CAS and NS services on one port",
  send: "append messages to the local log and publish them",
  receive: "fetch a remote log and print new messages as JSONL",
  mirror: "keep a verified copy of a remote log on a second CAS and NS",
  redact: "remove messages from a remote log, leaving tombstones receivers honour",
  key: "make a name key (key gen) or print a key file's name (key name)",
  inspect: "decode a page, a message, a name's chain or a local log as JSON",
  demo: "run a server, a sender and a receiver, and watch messages arrive",
  mvds: "MVDS helpers (mvds id)",
  backup: "back up a log (a name or a local log) as a chain of packs",
  restore: "rebuild a local log from a backup, checking every hash",
  verify: "check a backup or a remote log; name every missing or corrupt object",
  export: "write a backup or a remote log as a CAR file",
  import: "load every block of a CAR file into a CAS or a directory",
  gc: "delete CAS blocks that no name and no backup head reaches",
  repair: "salvage a damaged local log, keeping a copy of everything it sets aside",
};

function usage(): string {
  const lines = Object.keys(verbs).map((verb) => `  ${verb.padEnd(9)}${summaries[verb]}`);
  return `Usage: remotelog <verb> [options]\n\nVerbs:\n${lines.join("\n")}\n\nRun 'remotelog <verb> --help' for a verb's options.\n`;
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "--help" || verb === "-h" || verb === "help") {
    (verb === undefined ? io.stderr : io.stdout).write(usage());
    return verb === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const load = verbs[verb];
  if (!load) {
    io.stderr.write(`remotelog: unknown verb ${JSON.stringify(verb)}\n\n${usage()}`);
    return EXIT_USAGE;
  }
  return (await load()).run(rest, io);
}

const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => controller.abort(new Error(signal)));
}
const io: Io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`remotelog: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
