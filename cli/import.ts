import { importCar } from "../backup/car.js";
import { isUrl } from "../backup/pack-store.js";
import { newCommand, runCommand, usageError, type Io } from "./command.js";
import { credentialOptions, type CredentialFlags } from "./credentials.js";
import { packStoreFrom, printJson, progressOf } from "./pack-options.js";

export const summary = "load every block of a CAR file into a CAS or a directory";

interface ImportFlags extends CredentialFlags {
  car: string;
  to: string;
  headName?: string;
  key?: string;
  unnamed?: boolean;
  json?: boolean;
}

export function command(io: Io) {
  return credentialOptions(newCommand("import", io))
    .description(
      "Load every block of a CAR file into --to (a CAS service URL, or a directory with one file per block named " +
        "by its CID), checking each block against its CID first: only raw sha2-256 CIDv1 blocks are taken. " +
        "Prints the CAR's roots, one a line; `remotelog restore --pack ROOT` then reads a backup from there. " +
        "A server's gc removes blocks that no name reaches, so into a URL a backup's CAR goes under a head name " +
        "(--head-name or --key, as `backup` records one), or with --unnamed on purpose.",
    )
    .requiredOption("--car <file>", "the CAR file to read")
    .requiredOption("--to <url|dir>", "a CAS service URL or a directory")
    .option("--head-name <name>", "with a URL: record the CAR's root pack as the backup head of this free-form NS name, unsigned")
    .option("--key <file>", "with a URL: record the head under this key's name, signed (without --head-name)")
    .option("--unnamed", "with a URL: store the blocks under no name (a log's CAR, say); the server's gc removes them after its grace")
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog import --car alice.car --to ./restored-packs\n  remotelog import --car alice.car --to http://127.0.0.1:7420 --head-name alice-imported",
    )
    .action(async (flags: ImportFlags) => {
      const named = flags.headName !== undefined || flags.key !== undefined;
      if (isUrl(flags.to) && !named && !flags.unnamed) {
        throw usageError(
          `${flags.to}'s gc removes blocks that no name reaches, after its grace: give --head-name NAME (or --key FILE) to name the backup this CAR holds, or --unnamed to store them anyway`,
        );
      }
      if (flags.unnamed && named) throw usageError("--unnamed stores no head: leave out --head-name and --key");
      const store = await packStoreFrom(flags.to, { headName: flags.headName, keyFile: flags.key, tokenFile: flags.tokenFile, ca: flags.ca });
      try {
        const headName = named ? store.headName : undefined;
        const result = await importCar(flags.car, store, await progressOf(io, flags.json), { headName });
        if (flags.json) printJson(io, result);
        else io.stdout.write(result.roots.map((root) => `${root}\n`).join(""));
      } finally {
        await store.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
