import { Remote } from "../actors/remote.js";
import { RemoteLogError } from "../core/errors.js";
import { decodeBackupHead } from "../backup/pack-format.js";
import { isUrl } from "../backup/pack-store.js";
import { verifyPackChain, verifyRemoteLog, type VerifyReport } from "../backup/verify.js";
import { clientCredentials, type CredentialFlags } from "./credentials.js";
import { newCommand, runCommand, usageError, type Io } from "./command.js";
import { readerBounds, readerOptions, type ReaderFlags } from "./endpoints.js";
import { headFrom, printJson, progressOf, fromOf, fromOptions } from "./pack-options.js";

export const summary = "check a backup's pack chain or a remote log; name every missing or corrupt object";

const PICK = "say what to check with --name NAME (a backup head, or a remote log) or --pack CID (a backup's head pack)";

interface VerifyFlags extends ReaderFlags, CredentialFlags {
  pack?: string;
  name?: string;
  from?: string;
  server?: string;
  readData?: boolean;
  json?: boolean;
}

export function command(io: Io) {
  return readerOptions(fromOptions(newCommand("verify", io), "a directory of packs, or a CAS+NS service URL"), "with a remote log: ")
    .description(
      "Check a backup (--pack CID, a backup head --name, or a directory's HEAD) or a remote log (--name of a log): " +
        "its structure always (packs: present, CID, header, contiguous links down to seq 0; logs: the head's " +
        "record, every page's hash, tail and skip links, seqids), and every message's bytes with --read-data. " +
        "Prints one line per fault, naming the object; exits 1 on any fault, 0 when clean.",
    )
    .option("--pack <cid>", "the head pack of a backup")
    .option("--name <name>", "a name in the URL's NS: a backup head, or a remote log")
    .option("--read-data", "also read and check every message")
    .option("--json", "print the report as one JSON object")
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog verify --from ./alice-backup --read-data\n  remotelog verify --name k51qzi5uqu5d… --from http://127.0.0.1:7420\n" +
        "  remotelog verify --name alice-backup --from http://127.0.0.1:7420 --read-data --json",
    )
    .action(async (given: VerifyFlags) => {
      const flags = { ...given, from: fromOf(given) };
      const progress = await progressOf(io, flags.json);
      let report: VerifyReport;
      if (flags.name && !flags.pack) {
        if (!isUrl(flags.from)) throw usageError("--name reads a name from an NS: --from must be a URL");
        const url = flags.from.replace(/\/+$/, "");
        const remote = new Remote({ casUrl: url, nsUrl: url, ...(await clientCredentials(flags)) });
        try {
          const entry = await remote.fetchName(flags.name);
          if (!entry) throw RemoteLogError.notFound(`name ${JSON.stringify(flags.name)} does not exist at ${url}`);
          if (decodeBackupHead(entry.content)) {
            const { store, head } = await headFrom(flags, PICK);
            try {
              report = await verifyPackChain(store, head, { readData: flags.readData, progress });
            } finally {
              await store.close();
            }
          } else {
            report = await verifyRemoteLog(remote, flags.name, {
              readData: flags.readData,
              progress,
              ...readerBounds(flags),
            });
          }
        } finally {
          remote.close();
        }
      } else {
        const { store, head } = await headFrom(flags, PICK);
        try {
          report = await verifyPackChain(store, head, { readData: flags.readData, progress });
        } finally {
          await store.close();
        }
      }
      if (flags.json) printJson(io, report);
      else {
        for (const fault of report.faults) io.stdout.write(`FAULT ${fault.object}: ${fault.problem}\n`);
        const what = report.kind === "backup" ? "packs" : "pages";
        // A free-form name's pages check out against each other, yet anyone its NS lets write could have made them.
        const unsigned = report.ok && report.signed === false ? `; its head is unsigned (${JSON.stringify(flags.name)} is a free-form name): nothing vouches that its writer made it` : "";
        io.stdout.write(`${report.ok ? "ok" : "FAILED"}: ${report.objects} ${what}, ${report.messages} messages, ${report.bytes} bytes checked${report.readData ? "" : " (structure only)"}, ${report.faults.length} faults${unsigned}\n`);
      }
      if (!report.ok) throw RemoteLogError.dataLoss(`verify found ${report.faults.length} fault${report.faults.length === 1 ? "" : "s"} in ${report.head}: ${report.faults[0].problem}`);
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
