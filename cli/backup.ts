import { stat } from "node:fs/promises";
import { runBackup } from "../backup/backup.js";
import { DEFAULT_PACK_SIZE } from "../backup/pack-format.js";
import type { LogSource } from "../backup/source.js";
import { newCommand, runCommand, usageError, type Io } from "./command.js";
import { endpointOptions, type EndpointFlags } from "./endpoints.js";
import { packStoreFrom, printJson, progressOf, sizeOption } from "./pack-options.js";

export const summary = "back up a log (a name or a local log) as a chain of packs";

interface BackupFlags extends EndpointFlags {
  from: string;
  to: string;
  headName?: string;
  key?: string;
  packSize: number;
  logName?: string;
  unsigned?: boolean;
  compress: boolean;
  json?: boolean;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("backup", io)
      .description(
        "Back up --from (a local log directory, or a remote log's name read through --server) to --to (a directory,\n" +
          "or a CAS service URL) as a chain of packs (proto/remotelog/v1/pack.proto), writing only the messages\n" +
          "after the previous backup's last one. The head moves last (DIR/HEAD, or --head-name in the URL's NS), so\n" +
          "a backup killed half-way leaves the previous one whole, and running it again finishes it. Prints the\n" +
          "head pack's CID.",
      )
      .requiredOption("--from <name|logdir>", "an existing local log directory, or else a name to read from --server")
      .requiredOption("--to <url|dir>", "a directory of packs, or a CAS+NS service URL")
      .option("--head-name <name>", "with a URL: the NS name that records the backup's head (unsigned unless --key)")
      .option("--key <file>", "with a URL: sign the head name with this key; the name is the key's unless --head-name")
      .option("--pack-size <size>", "largest pack (a URL's CAS must accept blocks this big)", sizeOption, DEFAULT_PACK_SIZE)
      .option("--log-name <name>", "the name recorded in the packs of a local log (default: the directory's name)")
      .option("--unsigned", "back up a free-form name, whose heads nobody signs")
      .option("--no-compress", "store every pack's messages as they are (by default a body is deflated when that saves 5% or more)")
      .option("--json", "print a JSON summary instead of the CID"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog backup --from ./alice --to ./alice-backup\n" +
        "  remotelog backup --from k51qzi5uqu5d… --server http://127.0.0.1:7420 --to ./alice-backup\n" +
        "  remotelog backup --from ./alice --to http://127.0.0.1:7420 --head-name alice-backup --pack-size 1MiB",
    )
    .action(async (flags: BackupFlags) => {
      const isDir = await stat(flags.from).then(
        (s) => s.isDirectory(),
        () => false,
      );
      let source: LogSource;
      if (isDir) {
        if (flags.server || flags.cas || flags.ns) throw usageError(`--from ${flags.from} is a local log directory; --server, --cas and --ns are for names`);
        const { LocalLogSource } = await import("../backup/local-source.js");
        source = await LocalLogSource.open(flags.from, flags.logName);
      } else {
        if (flags.logName) throw usageError("--log-name is for a local log directory; a remote log's packs carry its name");
        const [{ RemoteLogSource }, { remoteFrom }] = await Promise.all([import("../backup/remote-source.js"), import("./endpoints.js")]);
        source = new RemoteLogSource(await remoteFrom(flags), flags.from, { unsigned: flags.unsigned });
      }
      try {
        const target = await packStoreFrom(flags.to, { headName: flags.headName, keyFile: flags.key });
        try {
          const result = await runBackup({ source, target, packSize: flags.packSize, compress: flags.compress, progress: progressOf(io, flags.json) });
          if (flags.json) printJson(io, result);
          else io.stdout.write(`${result.head}\n`);
        } finally {
          await target.close();
        }
      } finally {
        await source.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
