import { runRestore } from "../backup/restore.js";
import { newCommand, runCommand, type Io } from "./command.js";
import { headFrom, printJson, progressOf, fromOf, fromOptions } from "./pack-options.js";

export const summary = "rebuild a local log from a backup, checking every hash";

interface RestoreFlags {
  pack?: string;
  name?: string;
  from?: string;
  server?: string;
  to: string;
  force?: boolean;
  json?: boolean;
}

export function command(io: Io) {
  return fromOptions(newCommand("restore", io), "where the packs are: a directory (its HEAD by default) or a CAS+NS service URL")
    .description(
      "Read a backup's pack chain from its head back to its first pack, check every pack's CID, header and " +
        "link (contiguous seqs, matching counts) and every message's id, and only then write the local log in " +
        "--to, which a sender can go on from. Refuses a non-empty --to unless --force, which moves it aside whole " +
        "(to <to>.replaced-<time>, kept for you to remove) and restores into a fresh one.",
    )
    .option("--pack <cid>", "the head pack")
    .option("--name <name>", "a backup head name in the URL's NS (backup --head-name)")
    .requiredOption("--to <logdir>", "the local log directory to create")
    .option("--force", "move a non-empty --to aside (to <to>.replaced-<time>) and replace it")
    .option("--json", "print a JSON summary")
    .addHelpText("after", "\nExamples:\n  remotelog restore --from ./alice-backup --to ./alice\n  remotelog restore --name alice-backup --from http://127.0.0.1:7420 --to ./alice --force")
    .action(async (given: RestoreFlags) => {
      const flags = { ...given, from: fromOf(given) };
      const { store, head } = await headFrom(flags, "say which backup to restore with --name NAME (the name backup --head-name gave it) or --pack CID (its head pack)");
      try {
        const result = await runRestore({ store, head, to: flags.to, force: flags.force, progress: await progressOf(io, flags.json) });
        // Said even with --json: a directory the user did not make now stands beside theirs.
        if (result.replaced) io.stderr.write(`remotelog restore: what was in ${result.to} is now in ${result.replaced}; remove it once you no longer need it\n`);
        if (flags.json) printJson(io, result);
        else io.stdout.write(`restored ${result.messages} messages of ${JSON.stringify(result.logName)} from ${result.packs} packs into ${result.to}\n`);
      } finally {
        await store.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
