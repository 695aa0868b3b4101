import type { Command } from "commander";

/*
 * The environment variables remotelog reads, as --help lists them. Those that stand in for a flag are
 * read from the verbs' own commands (the .env() of an option), so that the list cannot drift from the
 * flags; the two that stand for no flag are named here, and read by this name where they are read.
 */

/** Any value: runCommand (cli/command.ts) prints the stack of an unexpected error. */
export const DEBUG_VARIABLE = "REMOTELOG_DEBUG";

/** Set by the build alone (scripts/bundle-cli.mjs) to the script whose code cache it writes (cli/code-cache.ts). */
export const WRITE_CODE_CACHE_VARIABLE = "REMOTELOG_WRITE_CODE_CACHE";

const UNFLAGGED: [string, string][] = [
  [DEBUG_VARIABLE, "any value: print the stack of an unexpected error"],
  [WRITE_CODE_CACHE_VARIABLE, "the build's own (it writes that script's code cache); leave it unset"],
];

/**
 * Each variable with what it stands for: first those of flags, in the order the verbs and their
 * options come, each with its flag and the verbs (and subcommands) that read it, then the others.
 */
export function environmentTable(commands: { verb: string; command?: Command }[]): [string, string][] {
  const byVariable = new Map<string, { flags: Set<string>; verbs: Set<string> }>();
  for (const { verb, command } of commands) {
    if (!command) continue;
    for (const [path, each] of [[verb, command] as const, ...command.commands.map((sub) => [`${verb} ${sub.name()}`, sub] as const)]) {
      for (const option of each.options) {
        if (option.envVar === undefined) continue;
        const entry = byVariable.get(option.envVar) ?? { flags: new Set<string>(), verbs: new Set<string>() };
        entry.flags.add(option.flags);
        entry.verbs.add(path);
        byVariable.set(option.envVar, entry);
      }
    }
  }
  const flagged = [...byVariable].map(([variable, { flags, verbs }]): [string, string] => [variable, `${[...flags].join(" or ")} of ${joinSubcommands([...verbs]).join(", ")}`]);
  return [...flagged, ...UNFLAGGED];
}

/** "inspect page", "inspect chain" as "inspect page/chain": a verb's subcommands together. */
function joinSubcommands(paths: string[]): string[] {
  const joined = new Map<string, string[]>();
  for (const path of paths) {
    const [verb, sub] = path.split(" ");
    const subs = joined.get(verb) ?? [];
    if (sub !== undefined) subs.push(sub);
    joined.set(verb, subs);
  }
  return [...joined].map(([verb, subs]) => (subs.length === 0 ? verb : `${verb} ${subs.join("/")}`));
}

/** The table as --help prints it: two columns, the second wrapped to width under itself. */
export function environmentText(table: [string, string][], width = 80): string {
  const column = Math.max(...table.map(([variable]) => variable.length)) + 4;
  const lines: string[] = [];
  for (const [variable, meaning] of table) {
    let line = `  ${variable}`.padEnd(column);
    let words = 0;
    for (const word of meaning.split(" ")) {
      if (words > 0 && line.length + 1 + word.length > width) {
        lines.push(line);
        line = " ".repeat(column);
        words = 0;
      }
      line += words === 0 ? word : ` ${word}`;
      words++;
    }
    lines.push(line);
  }
  return lines.join("\n");
}
