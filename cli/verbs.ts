import { PassThrough } from "node:stream";
import type { Command } from "commander";
import type { Io } from "./command.js";

/*
 * The verbs, as main dispatches them and as completion and --help list them.
 */

export interface Verb {
  summary: string;
  run(args: string[], io: Io): Promise<number>;
}

// Verbs load lazily: a `receive` should not pay for loading the server's code.
export const verbs: Record<string, () => Promise<Verb>> = {
  serve: () => import("./serve.js"),
  send: () => import("./send.js"),
  receive: () => import("./receive.js"),
  cat: () => import("./cat.js"),
  status: () => import("./status.js"),
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
  completion: () => import("./completion.js"),
};

/** Each verb with its summary and its own command, built with an io that goes nowhere: --help and completion read their flags. */
export async function verbCommands(): Promise<{ verb: string; summary: string; command?: Command }[]> {
  const quiet: Io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), env: {}, signal: new AbortController().signal };
  return Promise.all(
    Object.entries(verbs).map(async ([verb, load]) => {
      // A verb a bundle leaves out (scripts/bundle-cli.mjs) is a stand-in with a summary and no command.
      const module = (await load()) as Verb & { command?: (io: Io) => Command };
      return { verb, summary: module.summary, command: module.command?.(quiet) };
    }),
  );
}
