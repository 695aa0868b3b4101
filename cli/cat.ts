import { Option } from "commander";
import { Receiver, type Delivery } from "../actors/receiver.js";
import { canonicalKeyName, checkVouched, isKeyName } from "../core/names.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { checkKuboNames, endpointOptions, refusingBackupHeads, remoteFrom, type EndpointFlags } from "./endpoints.js";
import { deliveryLine, deliveryText } from "./format.js";
import { answering, followName, RetryStatus } from "./follow.js";

export const summary = "print a remote log, stateless (like git log or ipfs cat): text or JSONL";

interface CatFlags extends EndpointFlags {
  unsigned?: boolean;
  limit?: number;
  fromSeq?: number;
  reverse?: boolean;
  format: "text" | "jsonl";
  maxPages: number;
  retryFor?: number;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("cat", io)
      .description(
        "Print the log of NAME, checked as `receive` checks it (signed head, every page and message by its hashes), oldest first, " +
          "without keeping any state: every run reads it afresh. Text by default (seq, time in UTC, and the body as UTF-8, escaped when it is not), " +
          "or JSONL, the shape `receive` prints and `send --format jsonl` reads.",
      )
      .argument("<name>", "the log's name: a key name (k51…), or a free-form name with --unsigned")
      .option("--unsigned", "read a free-form name, whose heads nobody signs")
      .option("--limit <n>", "print at most this many messages (with --reverse, the newest ones)", intOption(1))
      .option("--from-seq <seq>", "start at this seqid (logs with seqids)", intOption(0))
      .option("--reverse", "newest first")
      .addOption(new Option("--format <format>", "text for people, or jsonl").choices(["text", "jsonl"]).default("text"))
      .option("--max-pages <n>", "refuse a chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever; default: 3 s for a service that never answered, else 60)", intOption(0)),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog cat k51qzi5uqu5d… --server http://127.0.0.1:7420\n" +
        "  remotelog cat --unsigned chat --limit 10 --reverse --server http://127.0.0.1:7420\n" +
        "  remotelog cat k51qzi5uqu5d… --from-seq 100 --format jsonl --server http://127.0.0.1:7420 | jq .body",
    )
    .action(async (name: string, flags: CatFlags) => {
      const canonical = canonicalKeyName(name);
      if (canonical) throw usageError(`${name} spells key name ${canonical} another way; use ${canonical}`);
      checkVouched([name], flags.unsigned, "pass --unsigned to read it anyway", usageError);
      checkKuboNames(flags, [name], isKeyName);
      const remote = refusingBackupHeads(await remoteFrom(flags));
      const line = (d: Delivery) => (flags.format === "text" ? deliveryText(d.seq, d.message) : deliveryLine(d.seq, d.id, d.address, d.message));
      const write = (text: string) => new Promise<void>((resolve, reject) => io.stdout.write(text, (err) => (err ? reject(err) : resolve())));
      // --reverse holds what it prints: the whole log, or with --limit only the newest N.
      const held: Delivery[] = [];
      let printed = 0;
      // Once --limit messages are out, delivery throws to stop the read; the error that comes back (wrapped by the retry) is that stop.
      let enough = false;
      const deliver = async (given: Delivery[]) => {
        // A receiver seeking to a seq also hands over the tombstones of messages before it, which a
        // consumer that holds them must drop; cat prints from the seq asked for, and counts only those.
        const from = flags.fromSeq;
        const batch = from === undefined ? given : given.filter((d) => d.seq >= from);
        if (flags.reverse) {
          held.push(...batch);
          if (flags.limit !== undefined && held.length > flags.limit) held.splice(0, held.length - flags.limit);
          return;
        }
        const wanted = flags.limit === undefined ? batch : batch.slice(0, flags.limit - printed);
        await write(wanted.map(line).join(""));
        printed += wanted.length;
        if (flags.limit !== undefined && printed >= flags.limit) {
          enough = true;
          throw new Error("limit reached");
        }
      };
      try {
        const status = RetryStatus.forFollow(io, "cat", flags.retryFor, false);
        const receiver = new Receiver({ name, remote: answering(remote, status), checkpoints: new MemoryCheckpointStore(), maxPages: flags.maxPages, fromSeq: flags.fromSeq });
        await followName({
          verb: "cat",
          io,
          name,
          ns: remote,
          follow: false,
          intervalMs: 0,
          status,
          notFound: `name ${JSON.stringify(name)} has no remote log`,
          sync: (pushed, signal) => receiver.sync(deliver, pushed, signal),
        });
        if (flags.reverse) await write(held.reverse().map(line).join(""));
      } catch (err) {
        if (!enough) throw err;
      } finally {
        remote.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
