import { Argument, type Command } from "commander";
import { newCommand, runCommand, type Io } from "./command.js";
import { verbCommands } from "./verbs.js";

export const summary = "print a shell completion script (bash, zsh or fish)";

/** Each verb with its subcommands and flags, read from the verbs' own commands so that they cannot drift. */
async function verbTable(): Promise<{ verb: string; subcommands: string[]; flags: string[] }[]> {
  const flagsOf = (c: Command) => c.options.map((option) => option.long).filter((long): long is string => long !== undefined);
  return (await verbCommands()).map(({ verb, command }) => {
    const subcommands = command?.commands.map((sub) => sub.name()) ?? [];
    const flags = new Set<string>(["--help"]);
    if (command) for (const c of [command, ...command.commands]) for (const flag of flagsOf(c)) flags.add(flag);
    return { verb, subcommands, flags: [...flags] };
  });
}

function bash(table: Awaited<ReturnType<typeof verbTable>>): string {
  const cases = table.map(({ verb, subcommands, flags }) => `    ${verb}) words="${[...subcommands, ...flags].join(" ")}" ;;`).join("\n");
  return `# remotelog bash completion: source <(remotelog completion bash)
_remotelog() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${table.map(({ verb }) => verb).join(" ")} --help --version" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
    *) words="" ;;
  esac
  case "$cur" in
    -*|"") COMPREPLY=($(compgen -W "$words" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -o default -F _remotelog remotelog
`;
}

function zsh(table: Awaited<ReturnType<typeof verbTable>>): string {
  const cases = table.map(({ verb, subcommands, flags }) => `    ${verb}) compadd -- ${[...subcommands, ...flags].join(" ")} ;;`).join("\n");
  return `#compdef remotelog
# remotelog zsh completion: source <(remotelog completion zsh)
_remotelog() {
  if (( CURRENT == 2 )); then
    compadd -- ${table.map(({ verb }) => verb).join(" ")} --help --version
    return
  fi
  case "\${words[2]}" in
${cases}
  esac
  _files
}
compdef _remotelog remotelog
`;
}

function fish(table: Awaited<ReturnType<typeof verbTable>>): string {
  const lines = ["# remotelog fish completion: remotelog completion fish | source", "complete -c remotelog -f"];
  for (const { verb } of table) lines.push(`complete -c remotelog -n "__fish_use_subcommand" -a ${verb}`);
  for (const { verb, subcommands, flags } of table) {
    for (const sub of subcommands) lines.push(`complete -c remotelog -n "__fish_seen_subcommand_from ${verb}" -a ${sub}`);
    for (const flag of flags) lines.push(`complete -c remotelog -n "__fish_seen_subcommand_from ${verb}" -l ${flag.slice(2)}`);
  }
  return `${lines.join("\n")}\n`;
}

export function command(io: Io) {
  return newCommand("completion", io)
    .description("Print a completion script for SHELL on stdout: verbs, subcommands and each verb's flags.")
    .addArgument(new Argument("<shell>", "the shell").choices(["bash", "zsh", "fish"]))
    .addHelpText(
      "after",
      "\nExamples:\n  source <(remotelog completion bash)          # in ~/.bashrc\n  source <(remotelog completion zsh)           # in ~/.zshrc\n  remotelog completion fish | source           # in ~/.config/fish/config.fish",
    )
    .action(async (shell: "bash" | "zsh" | "fish") => {
      const table = await verbTable();
      io.stdout.write(shell === "bash" ? bash(table) : shell === "zsh" ? zsh(table) : fish(table));
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
