import { isDirectory, isSamePath } from "../stores/file/atomic.js";
import type { Command } from "commander";
import { HEAD_EVERY_MS, runBackup, type BackupSummary } from "../backup/backup.js";
import type { Progress } from "../backup/progress.js";
import { withRetry } from "../core/retry.js";
import { DEFAULT_PACK_SIZE } from "../backup/pack-format.js";
import { isUrl } from "../backup/pack-store.js";
import type { LogSource } from "../backup/source.js";
import { durationFlag, intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { endpointOptions, type EndpointFlags } from "./endpoints.js";
import { RetryStatus } from "./follow.js";
import { packStoreFrom, printJson, progressOf, sizeOption } from "./pack-options.js";

export const summary = "back up a log (a name or a local log) as a chain of packs";

interface BackupFlags extends EndpointFlags {
  from?: string;
  fromDir?: string;
  fromName?: string;
  to: string;
  headName?: string;
  key?: string;
  packSize: number;
  logName?: string;
  unsigned?: boolean;
  compress: boolean;
  headEvery: number;
  json?: boolean;
  retryFor?: number;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("backup", io)
      .description(
        "Back up a local log (--from-dir) or a remote log by name, read through --server (--from-name), to --to (a directory, " +
          "or a CAS service URL) as a chain of packs (proto/remotelog/v1/pack.proto), writing only the messages " +
          "after the previous backup's last one. The head (DIR/HEAD, or --head-name in the URL's NS) moves onto the packs " +
          "stored at least every --head-every and last at the end, so a backup killed half-way leaves a whole one, and " +
          "running it again finishes it. Prints the head pack's CID.",
      )
      .option("--from-dir <dir>", "back up the local log in DIR")
      .option("--from-name <name>", "back up the remote log of NAME, read through --server")
      .option("--from <name|dir>", "either: a path (./chat, /srv/chat) is a directory, anything else a name unless a directory of that name exists (said on stderr); --from-dir and --from-name say it outright")
      .requiredOption("--to <url|dir>", "a directory of packs, or a CAS+NS service URL")
      .option("--head-name <name>", "with a URL: the free-form NS name that records the backup's head, unsigned (or --key instead)")
      .option("--key <file>", "with a URL: record the head under this key's name, signed (without --head-name)")
      .option("--pack-size <size>", "largest pack (by default, for a URL, no bigger than its CAS's largest block)", sizeOption, DEFAULT_PACK_SIZE)
      .option("--log-name <name>", "the name recorded in the packs of a local log (default: the directory's name)")
      .option("--unsigned", "back up a free-form name, whose heads nobody signs")
      .option("--no-compress", "store every pack's messages as they are (by default a body is deflated when that saves 5% or more)")
      .addOption(durationFlag("--head-every <duration>", "move the head onto the packs stored at least this often, well within a server gc's grace (a pack no head reaches is garbage to it)", HEAD_EVERY_MS))
      .option("--json", "print a JSON summary instead of the CID")
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long, running the backup again from where it stands (0: forever; default: 3 s for a service that never answered, else 60)", intOption(0)),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog backup --from-dir ./alice --to ./alice-backup\n" +
        "  remotelog backup --from-name k51qzi5uqu5d… --server http://127.0.0.1:7420 --to ./alice-backup-remote\n" +
        "  remotelog backup --from-dir ./alice --to http://127.0.0.1:7420 --head-name alice-backup --pack-size 1MiB",
    )
    .action(async (flags: BackupFlags, command: Command) => {
      const from = await sourceFrom(flags, io);
      let source: LogSource;
      if (from.dir !== undefined) {
        // REMOTELOG_SERVER set in the shell does not stand against a local log; a --server given does.
        if (command.getOptionValueSource("server") === "env") flags.server = undefined;
        if (flags.server || flags.cas || flags.ns) throw usageError(`${from.flag} ${from.dir} is a local log directory; --server, --cas and --ns are for names`);
        // Packs and HEAD written among the log's own files: refused before anything is opened or written.
        if (!isUrl(flags.to) && (await isSamePath(from.dir, flags.to))) {
          throw usageError(`${from.flag} ${from.dir} and --to ${flags.to} are the same directory: a backup goes to a directory of its own, not into the local log it backs up`);
        }
        const { LocalLogSource } = await import("../backup/local-source.js");
        source = await LocalLogSource.open(from.dir, flags.logName);
      } else {
        if (flags.logName) throw usageError("--log-name is for a local log directory; a remote log's packs carry its name");
        const [{ RemoteLogSource }, { remoteFrom }, { sharedVerifier }] = await Promise.all([import("../backup/remote-source.js"), import("./endpoints.js"), import("#verify-pool")]);
        // Messages are checked on the verify threads, as a receiver checks them, while the next ones are fetched.
        source = new RemoteLogSource(await remoteFrom(flags), from.name, { unsigned: flags.unsigned, verifier: sharedVerifier() });
      }
      try {
        const target = await packStoreFrom(flags.to, { headName: flags.headName, keyFile: flags.key, tokenFile: flags.tokenFile, ca: flags.ca });
        try {
          // A backup is safe to run again (the head moves last), so a service that goes away is waited
          // for and the whole run repeated: it goes on from the previous backup's head, as a new run would.
          // Services never reached are given up on after the first-contact budget (a wrong port, say);
          // once a run has read both sides (its packs start), an outage is waited for 60 s or --retry-for.
          const status = new RetryStatus(io, "backup", flags.retryFor, 60);
          const bar = await progressOf(io, flags.json);
          const progress: Progress = {
            start: (label, total) => {
              status.succeeded(false);
              bar.start(label, total);
            },
            advance: (units) => bar.advance(units),
            stop: () => bar.stop(),
          };
          let result: BackupSummary;
          try {
            // Without --pack-size, packs fit the target's largest block when it says one: the 2 MiB default
            // is over a default server's 1 MiB, and the README's backup to a server failed on any log over it.
            const packSize = async () => (command.getOptionValueSource("packSize") === "cli" ? flags.packSize : Math.min(flags.packSize, (await target.largestPack?.()) ?? Infinity));
            result = await withRetry(async () => runBackup({ source, target, packSize: await packSize(), compress: flags.compress, headEveryMs: flags.headEvery, progress }), status.options());
          } finally {
            status.done();
          }
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

/**
 * What to back up: --from-dir and --from-name say it; --from guesses, as it always did (an existing
 * directory wins), but says so when the word could be either, and takes a path (./x, /x) as a directory.
 */
async function sourceFrom(flags: BackupFlags, io: Io): Promise<{ dir: string; flag: string; name?: undefined } | { name: string; dir?: undefined }> {
  const given = [flags.from, flags.fromDir, flags.fromName].filter((value) => value !== undefined);
  if (given.length !== 1) throw usageError("say what to back up: --from-dir DIR (a local log) or --from-name NAME (a remote log), once");
  if (flags.fromDir !== undefined) return { dir: flags.fromDir, flag: "--from-dir" };
  if (flags.fromName !== undefined) return { name: flags.fromName };
  const from = flags.from!;
  const isPath = from.startsWith(".") || from.startsWith("/") || from.includes("/") || from.startsWith("~");
  if (isPath) return { dir: from, flag: "--from" };
  if (await isDirectory(from)) {
    io.stderr.write(`remotelog backup: --from ${from} is taken as the directory ./${from}, not the name ${JSON.stringify(from)}; say --from-dir or --from-name to choose\n`);
    return { dir: from, flag: "--from" };
  }
  return { name: from };
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
