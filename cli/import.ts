import { importCar } from "../backup/car.js";
import { newCommand, runCommand, type Io } from "./command.js";
import { credentialOptions, type CredentialFlags } from "./credentials.js";
import { packStoreFrom, printJson, progressOf } from "./pack-options.js";

export const summary = "load every block of a CAR file into a CAS or a directory";

interface ImportFlags extends CredentialFlags {
  car: string;
  to: string;
  json?: boolean;
}

export function command(io: Io) {
  return credentialOptions(newCommand("import", io))
    .description(
      "Load every block of a CAR file into --to (a CAS service URL, or a directory with one file per block named " +
        "by its CID), checking each block against its CID first: only raw sha2-256 CIDv1 blocks are taken. " +
        "Prints the CAR's roots, one a line; `remotelog restore --pack ROOT` then reads a backup from there.",
    )
    .requiredOption("--car <file>", "the CAR file to read")
    .requiredOption("--to <url|dir>", "a CAS service URL or a directory")
    .option("--json", "print a JSON summary")
    .addHelpText("after", "\nExamples:\n  remotelog import --car alice.car --to ./restored-packs\n  remotelog import --car alice.car --to http://127.0.0.1:7420")
    .action(async (flags: ImportFlags) => {
      const store = await packStoreFrom(flags.to, { tokenFile: flags.tokenFile, ca: flags.ca });
      try {
        const result = await importCar(flags.car, store, await progressOf(io, flags.json));
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
