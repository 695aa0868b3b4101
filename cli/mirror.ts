import { Mirror } from "../lib/index.js";
import { RemoteLogError } from "../core/errors.js";
import { canonicalKeyName, checkVouched, isKeyName } from "../core/names.js";
import { intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { endpointOptions, refusingBackupHeads, remoteFrom, type EndpointFlags } from "./endpoints.js";
import { answering, followName, RetryStatus } from "./follow.js";

export const summary = "keep a verified copy of a remote log on a second CAS and NS";

interface MirrorFlags extends EndpointFlags {
  name: string;
  to?: string;
  toCas?: string;
  toNs?: string;
  unsigned?: boolean;
  follow?: boolean;
  interval: number;
  maxPages: number;
  retryFor?: number;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("mirror", io)
      .description(
        "Copy --name's remote log from the services given by --server (or --cas and --ns) to those given by " +
          "--to (or --to-cas and --to-ns): every page and message the copy lacks, each checked as a receiver " +
          "checks it, then the head with its signed record unchanged, so that receivers can read from either and " +
          "verify with the same key. What the copy holds is read from the copy's own head: the mirror keeps no " +
          "state, and running it again after a crash finishes the job. Prints a JSON line for each head copied.",
      )
      .requiredOption("--name <name>", "the name to mirror: a key name (k51…), whose heads must carry a valid signed record")
      .option("--to <url>", "the combined CAS and NS that holds the copy")
      .option("--to-cas <url>", "the copy's CAS, when it runs apart from its NS")
      .option("--to-ns <url>", "the copy's NS, when it runs apart from its CAS")
      .option("--unsigned", "mirror a free-form name, whose heads nobody signs")
      .option("--follow", "keep copying new heads as they are published")
      .option("--interval <ms>", "poll interval with --follow (pushed heads wake it sooner)", intOption(10, 3_600_000), 1000)
      .option("--max-pages <n>", "refuse a chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever; default 60, forever with --follow)", intOption(0)),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog mirror --name k51qzi5uqu5d… --server http://10.0.0.1:7420 --to http://10.0.0.2:7420\n" +
        "  remotelog mirror --name k51qzi5uqu5d… --server http://10.0.0.1:7420 --to http://10.0.0.2:7420 --follow",
    )
    .action(async (flags: MirrorFlags) => {
      const canonical = canonicalKeyName(flags.name);
      if (canonical) throw usageError(`${flags.name} spells key name ${canonical} another way; use --name ${canonical}`);
      checkVouched([flags.name], flags.unsigned, "pass --unsigned to mirror it anyway", usageError);
      if (flags.to && (flags.toCas || flags.toNs)) throw usageError("give either --to, or --to-cas and --to-ns, not both");
      if (!flags.to && !(flags.toCas && flags.toNs)) throw usageError("say where the copy goes: --to URL, or --to-cas URL and --to-ns URL");
      const source = refusingBackupHeads(await remoteFrom(flags));
      const target = await remoteFrom({ server: flags.to, cas: flags.toCas, ns: flags.toNs, ca: flags.ca, tokenFile: flags.tokenFile });
      if (source.casUrl === target.casUrl || source.nsUrl === target.nsUrl) {
        source.close();
        target.close();
        throw usageError("the copy must go to other services than the ones it is read from");
      }
      const status = RetryStatus.forFollow(io, "mirror", flags.retryFor, flags.follow ?? false);
      const mirror = new Mirror({ name: flags.name, source: answering(source, status), target: answering(target, status), maxPages: flags.maxPages, signed: isKeyName(flags.name) });
      let lastFailure = "";
      // Following, a head that cannot be copied (a source behind the copy, a bad page) is said and
      // tried again on the next head; once, it is the command's failure.
      const syncOrSay = async () => {
        try {
          const result = await mirror.sync();
          lastFailure = "";
          return result;
        } catch (err) {
          if (!flags.follow || !(err instanceof RemoteLogError) || err.code === "UNAVAILABLE") throw err;
          if (err.message !== lastFailure) io.stderr.write(`remotelog mirror: ${err.message}\n`);
          lastFailure = err.message;
          return { found: true, updated: false, pages: 0, messages: 0 };
        }
      };
      try {
        await followName({
          verb: "mirror",
          io,
          name: flags.name,
          ns: source,
          follow: flags.follow ?? false,
          intervalMs: flags.interval,
          status,
          notFound: `name ${JSON.stringify(flags.name)} has no remote log at ${source.nsUrl}`,
          sync: async () => {
            const result = await syncOrSay();
            if (result.updated) {
              const line = { name: flags.name, pages: result.pages, messages: result.messages, ...(result.sequence !== undefined ? { sequence: Number(result.sequence) } : {}) };
              io.stdout.write(`${JSON.stringify(line)}\n`);
            }
            return result;
          },
        });
      } finally {
        source.close();
        target.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
