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

/** The environment variables that stand in for flags, as every verb that has the flag reads them. */
export const ENVIRONMENT: [string, string][] = [
  ["REMOTELOG_SERVER", "--server URL (every verb that talks to the services)"],
  ["REMOTELOG_KEY", "--key FILE (send, redact)"],
  ["REMOTELOG_DATA", "--data DIR (send, status, inspect log)"],
  ["REMOTELOG_STATE", "--state DIR (receive)"],
  ["REMOTELOG_DEBUG", "print the stack of an unexpected error"],
];
