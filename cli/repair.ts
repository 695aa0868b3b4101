import type { RemoteLogError } from "../core/errors.js";
import { repairLog } from "../lib/repair.js";
import { readOwner } from "../stores/file/local-log.js";
import { dirOption, intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { endpointOptions, remoteFrom, type AnyRemote, type EndpointFlags } from "./endpoints.js";

export const summary = "salvage a damaged local log, keeping a copy of everything it sets aside";

interface RepairFlags extends EndpointFlags {
  data: string;
  name?: string;
  fromRemote?: boolean;
  maxPages: number;
  retryFor: number;
  json?: boolean;
  dryRun?: boolean;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("repair", io)
      .description(
        "Salvage the local log in --data on purpose, where send and the read-only verbs refuse a damaged one: " +
          "keep every whole, checksummed record; set aside damaged byte ranges, a torn append, repeated ids and, " +
          "given a service, messages larger than its CAS takes. Everything set aside, the old log.bin and the " +
          "published marks are copied to DIR/repair-<time>/ first. With --from-remote, also refill the messages " +
          "the log lost from the sender's own remote log, checking every page, record and message. A healthy " +
          "log is left alone, so running it again is safe. --dry-run says all of that, and which files it would write, and writes nothing.",
      )
      .requiredOption("--data <dir>", "the sender's local log directory", dirOption)
      .option("--name <name>", "the log's name, for --from-remote (default: the name the data directory belongs to)")
      .option("--from-remote", "refill lost messages from the log's remote log (needs --server, or --cas and --ns, or --kubo-api)")
      .option("--max-pages <n>", "refuse a remote chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever)", intOption(0), 60)
      .option("--dry-run", "report what the repair would set aside, keep, mend, refill and write; write nothing (no lock, no copy, no log, no mark)")
      .option("--json", "print the report as one JSON object"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog repair --data ./alice --dry-run\n  remotelog repair --data ./alice\n" +
        "  remotelog repair --data ./alice --server http://127.0.0.1:7420                 # also set aside messages too large to publish\n" +
        "  remotelog repair --data ./alice --server http://127.0.0.1:7420 --from-remote   # and refill what was lost",
    )
    .action(async (flags: RepairFlags) => {
      const hasEndpoint = Boolean(flags.server || flags.cas || flags.ns || flags.kuboApi);
      if (flags.fromRemote && !hasEndpoint) throw usageError("--from-remote needs the service: --server URL (or --cas and --ns, or --kubo-api)");
      if (flags.name && !flags.fromRemote) throw usageError("--name is for --from-remote");
      // The owner is read here too, for the usage error a missing --name is; repairLog checks it again.
      const name = flags.name ?? (await readOwner(flags.data))?.name;
      if (flags.fromRemote && !name) throw usageError(`${flags.data} records no owner: say which remote log to refill from with --name`);
      const remote: AnyRemote | undefined = hasEndpoint ? await remoteFrom(flags) : undefined;
      try {
        const retry = { timeoutMs: flags.retryFor * 1000, signal: io.signal, onRetry: (err: RemoteLogError, delay: number) => io.stderr.write(`remotelog repair: ${err.message}; retrying in ${(delay / 1000).toFixed(1)} s\n`) };
        // A dry run is the same repair, worked out from the same bytes by the same code, and not carried out.
        const report = await repairLog({ data: flags.data, remote, fromRemote: flags.fromRemote, name: flags.name, maxPages: flags.maxPages, retry, dryRun: flags.dryRun });
        const redacted = report.redactedNotRefilled ?? 0;
        if (flags.json) {
          io.stdout.write(`${JSON.stringify(report)}\n`);
          return;
        }
        if (!report.changed) {
          io.stdout.write(`nothing to repair: ${flags.data} holds ${report.before} whole messages${flags.fromRemote ? `, and none that the remote log of ${JSON.stringify(name)} holds is missing` : ""}\n`);
          return;
        }
        // Each line in the words of what was done, or with --dry-run of what would be.
        const said = (done: string, would: string) => (flags.dryRun ? would : done);
        for (const part of report.setAside) {
          io.stdout.write(`${said("set aside", "would set aside")} ${part.bytes} bytes at byte ${part.offset} (seq ${part.seq}): ${part.why}; ${said("saved", "would be saved")} to ${part.savedTo}\n`);
        }
        for (const part of report.mended) {
          io.stdout.write(`${said("kept", "would keep")} seq ${part.seq} at byte ${part.offset}, whose length field was damaged: ${part.why}; ${said("written", "would be written")} again with its length\n`);
        }
        if (flags.fromRemote) {
          io.stdout.write(
            `${said("refilled", "would refill")} ${report.refilled} message(s) from the remote log of ${JSON.stringify(name)}, each checked against its address and id${redacted > 0 ? `; ${redacted} redacted there could not be` : ""}\n`,
          );
        }
        for (const mark of report.marks) {
          io.stdout.write(
            mark.to === 0
              ? `published mark of ${JSON.stringify(mark.name)} (${mark.from}) ${said("removed", "would be removed")}: its last message is gone; the next send compares the whole remote log\n`
              : `published mark of ${JSON.stringify(mark.name)} ${said("moved", "would move")} from ${mark.from} to ${mark.to}, where its last message now is\n`,
          );
        }
        if (flags.dryRun) {
          io.stdout.write(`would repair ${flags.data}: ${report.before} whole messages before, ${report.kept} of them kept, ${report.after} after; it would write:\n`);
          for (const file of report.writes) io.stdout.write(`  ${file}\n`);
          if (report.removes.length > 0) io.stdout.write(`and remove:\n${report.removes.map((file) => `  ${file}\n`).join("")}`);
          io.stdout.write(`nothing was written (--dry-run); the same command without --dry-run does this, its copies in a repair-<time>/ of the time it runs\n`);
          return;
        }
        io.stdout.write(`repaired ${flags.data}: ${report.before} whole messages before, ${report.after} now; the old log.bin and everything set aside are in ${report.savedIn}\n`);
      } finally {
        remote?.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
