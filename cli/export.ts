import { Remote } from "../actors/remote.js";
import { RemoteLogError } from "../core/errors.js";
import { exportPackChain, exportRemoteLog } from "../backup/car.js";
import { decodeBackupHead } from "../backup/pack-format.js";
import { isUrl } from "../backup/pack-store.js";
import { clientCredentials, type CredentialFlags } from "./credentials.js";
import { newCommand, runCommand, type Io } from "./command.js";
import { readerBounds, readerOptions, type ReaderFlags } from "./endpoints.js";
import { headFrom, printJson, progressOf, fromOf, fromOptions } from "./pack-options.js";

export const summary = "write a backup or a remote log as a CAR file";

interface ExportFlags extends ReaderFlags, CredentialFlags {
  car: string;
  pack?: string;
  name?: string;
  from?: string;
  server?: string;
  json?: boolean;
}

export function command(io: Io) {
  return readerOptions(fromOptions(newCommand("export", io), "a directory of packs, or a CAS+NS service URL"), "with a remote log: ")
    .description(
      "Write a backup's pack chain (--pack, a backup head --name, or a directory's HEAD), or a remote log by --name " +
        "(its pages and messages), as a CAR v1 file whose root is the head. Every block is a raw CIDv1 sha2-256, " +
        "so `ipfs dag import FILE` takes it. Every block is checked on the way.",
    )
    .requiredOption("--car <file>", "the CAR file to write (replaced atomically)")
    .option("--pack <cid>", "the head pack of a backup")
    .option("--name <name>", "a name in the URL's NS: a backup head, or a remote log")
    .option("--json", "print a JSON summary")
    .addHelpText("after", "\nExamples:\n  remotelog export --car alice.car --from ./alice-backup\n  remotelog export --car log.car --name k51qzi5uqu5d… --from http://127.0.0.1:7420")
    .action(async (given: ExportFlags) => {
      const flags = { ...given, from: fromOf(given) };
      const progress = await progressOf(io, flags.json);
      let result;
      const url = flags.from.replace(/\/+$/, "");
      const remote = flags.name && !flags.pack && isUrl(url) ? new Remote({ casUrl: url, nsUrl: url, ...(await clientCredentials(flags)) }) : undefined;
      try {
        const entry = remote && flags.name ? await remote.fetchName(flags.name) : undefined;
        if (remote && !entry) throw RemoteLogError.notFound(`name ${JSON.stringify(flags.name)} does not exist at ${url}`);
        if (remote && entry && !decodeBackupHead(entry.content)) {
          result = await exportRemoteLog(remote, flags.name!, flags.car, progress, readerBounds(flags));
        } else {
          const { store, head } = await headFrom(flags, "say what to write with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)");
          try {
            result = await exportPackChain(store, head, flags.car, progress);
          } finally {
            await store.close();
          }
        }
      } finally {
        remote?.close();
      }
      if (flags.json) printJson(io, result);
      else io.stdout.write(`${result.root}\n`);
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
