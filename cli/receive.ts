import { Receiver, type Delivery } from "../actors/receiver.js";
import { sleep, withRetry } from "../actors/remote.js";
import { FileCheckpointStore } from "../stores/file/checkpoint-store.js";
import { RemoteLogError } from "../core/errors.js";
import { canonicalKeyName, isKeyName } from "../core/names.js";
import { intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { endpointOptions, remoteFrom, type EndpointFlags } from "./endpoints.js";
import { deliveryLine } from "./format.js";

export const summary = "fetch a remote log and print new messages as JSONL";

interface ReceiveFlags extends EndpointFlags {
  name: string;
  unsigned?: boolean;
  state: string;
  follow?: boolean;
  interval: number;
  batch: number;
  maxPages: number;
  retryFor?: number;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("receive", io)
      .description(
        "Fetch --name, walk its pages back only as far as the last message delivered before, fetch and verify\n" +
          "the missing messages, and print them oldest first as JSONL on stdout:\n" +
          '  {"seq":0,"id":"<64 hex>","group":"…","timestamp":1700000000,"body":"<base64>","address":"bafk…"}\n' +
          "(group_base64 instead of group when the group id is not UTF-8). The checkpoint in --state moves after\n" +
          "each printed batch, so a restart goes on where the last one stopped; after a crash the batch in\n" +
          "flight may be printed again, with the same seq and id.",
      )
      .requiredOption("--name <name>", "the name to read: a key name (k51…), whose heads must carry a valid signed record")
      .option("--unsigned", "also read a free-form name, whose heads nobody signs")
      .requiredOption("--state <dir>", "the receiver's checkpoint directory")
      .option("--follow", "keep polling and print new messages as they arrive")
      .option("--interval <ms>", "poll interval with --follow", intOption(10, 3_600_000), 500)
      .option("--batch <n>", "messages per fetched and checkpointed batch", intOption(1, 65_536), 1024)
      .option("--max-pages <n>", "refuse a chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever; default 60, forever with --follow)", intOption(0)),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog receive --name k51qzi5uqu5d… --server http://127.0.0.1:7420 --state ./bob\n" +
        "  remotelog receive --name k51qzi5uqu5d… --cas http://127.0.0.1:7421 --ns http://127.0.0.1:7422 --state ./bob --follow\n" +
        "  remotelog receive --unsigned --name chat --server http://127.0.0.1:7420 --state ./bob",
    )
    .action(async (flags: ReceiveFlags) => {
      const canonical = canonicalKeyName(flags.name);
      if (canonical) throw usageError(`${flags.name} spells key name ${canonical} another way; use --name ${canonical}`);
      if (!isKeyName(flags.name) && !flags.unsigned) {
        throw usageError(`${JSON.stringify(flags.name)} is not a key name (k51…), so nothing vouches for its heads; pass --unsigned to read it anyway`);
      }
      const remote = remoteFrom(flags);
      const checkpoints = await FileCheckpointStore.open(flags.state).catch((err) => {
        remote.close();
        throw err;
      });
      try {
        const receiver = new Receiver({ name: flags.name, remote, checkpoints, batchSize: flags.batch, maxPages: flags.maxPages });
        const deliver = async (batch: Delivery[]) => {
          let text = "";
          for (const d of batch) text += deliveryLine(d.seq, d.id, d.address, d.message);
          // The callback fires once the kernel has the bytes; only then may the checkpoint move past them.
          await new Promise<void>((resolve, reject) => io.stdout.write(text, (err) => (err ? reject(err) : resolve())));
        };
        const retryFor = (flags.retryFor ?? (flags.follow ? 0 : 60)) * 1000;
        let warnedMissing = false;
        let lastRetryMessage = "";
        for (;;) {
          const result = await withRetry(() => receiver.sync(deliver), {
            timeoutMs: retryFor,
            signal: io.signal,
            onRetry: (err, delay) => {
              // A service that stays down is said once per distinct cause, not on every attempt.
              if (err.message !== lastRetryMessage) io.stderr.write(`remotelog receive: ${err.message}; retrying with backoff (next in ${(delay / 1000).toFixed(1)} s)\n`);
              lastRetryMessage = err.message;
            },
          });
          if (lastRetryMessage) {
            io.stderr.write("remotelog receive: services reachable again\n");
            lastRetryMessage = "";
          }
          if (!result.found) {
            if (!flags.follow) throw RemoteLogError.notFound(`name ${JSON.stringify(flags.name)} has no remote log yet`);
            if (!warnedMissing) io.stderr.write(`remotelog receive: name ${JSON.stringify(flags.name)} has no remote log yet; waiting for it\n`);
            warnedMissing = true;
          }
          if (!flags.follow || io.signal.aborted) break;
          await sleep(flags.interval, io.signal);
          if (io.signal.aborted) break;
        }
      } finally {
        remote.close();
        await checkpoints.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
