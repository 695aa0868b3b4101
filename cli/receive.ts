import { readFile } from "node:fs/promises";
import { ManyReceiver } from "../actors/many-receiver.js";
import { WriteThroughCheckpoints } from "../core/checkpoint-store.js";
import { canonicalKeyName, checkVouched } from "../core/names.js";
import { Receiver } from "../actors/receiver.js";
import { FileCheckpointStore, isKeyName, MemoryCheckpointStore, openGateway, RemoteLogError, withRetry, type CheckpointStore, type Delivery, type ErrorCode } from "../lib/index.js";
import { Option, type Command } from "commander";
import { dirOption, intOption, newCommand, runCommand, usageError, repeatable, type Io } from "./command.js";
import { checkKuboNames, endpointOptions, refusingBackupHeads, remoteFrom, type AnyRemote, type EndpointFlags } from "./endpoints.js";
import { deliveryLine, deliveryLines, deliveryText } from "./format.js";
import { answering, followName, RetryStatus } from "./follow.js";
import { OutFile } from "./out-file.js";

export const summary = "fetch a remote log and print new messages as JSONL";

interface ReceiveFlags extends EndpointFlags {
  name?: string[];
  names?: string;
  concurrency: number;
  unsigned?: boolean;
  state?: string;
  format: "jsonl" | "text";
  follow?: boolean;
  interval?: number;
  batch: number;
  maxPages: number;
  retryFor?: number;
  fromSeq?: number;
  gateway?: string;
  router?: string;
  out?: string;
}

/** What receive reads from: our services, a Kubo node, or any IPFS gateway. */
type ReadRemote = AnyRemote | ReturnType<typeof openGateway>;

export function command(io: Io) {
  return endpointOptions(
    newCommand("receive", io)
      .description(
        "Fetch --name, walk its pages back only as far as the last message delivered before, fetch and verify the missing messages, " +
          "and print them oldest first on stdout, as JSONL by default:\n\n" +
          '  {"seq":0,"id":"<64 hex>","group":"chat","timestamp":1700000000,"body":"hello","address":"bafk…"}\n\n' +
          "body and group are text when they are valid UTF-8, else body_base64 and group_base64; `send --format jsonl` reads this shape back unchanged. " +
          "The checkpoint in --state moves after each printed batch (saved while the next one is printed), so a restart goes on where the last one stopped; after a crash the last two batches may be printed again, with the same seq and id. " +
          "Without --state, every run reads the whole log (`remotelog cat` does the same, with --limit and --reverse).\n\n" +
          "Several names (--name repeated, or --names FILE) are read at once, --concurrency at a time, over one connection, with a checkpoint per name in --state; " +
          "a name that fails is reported and retried without holding back the others (without --follow, the exit code is then 1).",
      )
      .option("--name <name>", "a name to read: a key name (k51…), whose heads must carry a valid signed record; repeat it to read several", repeatable)
      .option("--names <file>", "read the names from FILE, one a line (blank lines and lines starting with # are skipped)")
      .option("--unsigned", "also read free-form names, whose heads nobody signs")
      .addOption(new Option("--state <dir>", "the receiver's checkpoint directory; without it, every run reads the whole log (stateless)").env("REMOTELOG_STATE").argParser(dirOption))
      .addOption(new Option("--format <format>", "jsonl: one JSON object per message, the shape `send --format jsonl` reads back; text: seq, time and body, for people").choices(["jsonl", "text"]).default("jsonl"))
      .option("--from-seq <seq>", "start at this seqid instead of where the checkpoint stands (one name; the log must have seqids; with --out, not below the seqs FILE holds)", intOption(0))
      .option("--out <file>", "append the lines to FILE instead of stdout, exactly once: the checkpoint records FILE's length, and a restart cuts off lines written after the last checkpoint before it delivers them again (one name)")
      .option("--follow", "keep polling and print new messages as they arrive")
      .option("--interval <ms>", "poll interval with --follow (default: 30000 while the NS pushes new heads, and with --names doubling to 480000 while a name's polls find nothing new; 500 when it cannot)", intOption(10, 3_600_000))
      .option("--batch <n>", "messages per fetched and checkpointed batch", intOption(1, 65_536), 1024)
      .option("--max-pages <n>", "refuse a chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever; default: 3 s for a service that never answered, else 60, forever with --follow)", intOption(0))
      .option("--concurrency <n>", "with several names, how many are synced at once", intOption(1, 4096), 16)
      .option("--gateway <url>", "read from an IPFS Trustless Gateway instead (blocks from /ipfs/, names from /ipns/ as signed records; key names only)")
      .option("--router <url>", "with --gateway, resolve names through this Delegated Routing V1 API (/routing/v1/ipns/) instead"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog receive --name k51qzi5uqu5d… --server http://127.0.0.1:7420 --state ./bob\n" +
        "  remotelog receive --name k51qzi5uqu5d… --cas http://127.0.0.1:7421 --ns http://127.0.0.1:7422 --state ./bob --follow\n" +
        "  remotelog receive --unsigned --name chat --server http://127.0.0.1:7420 --state ./bob\n" +
        "  remotelog receive --unsigned --name chat --name news --server http://127.0.0.1:7420 --state ./bob --follow\n" +
        "  remotelog receive --names follows.txt --server http://127.0.0.1:7420 --state ./bob --follow\n" +
        "  remotelog receive --name k51qzi5uqu5d… --server http://127.0.0.1:7420 --state ./bob --from-seq 90000\n" +
        "  remotelog receive --name k51qzi5uqu5d… --kubo-api http://127.0.0.1:5001 --state ./bob --follow   # straight from IPFS, polling\n" +
        "  remotelog receive --name k51qzi5uqu5d… --gateway http://127.0.0.1:7420 --state ./bob   # any trustless gateway\n" +
        '\nWith --names, or --name given more than once, every line starts with the name of its log ({"name":"chat","seq":0,…}); each log is printed in order, and logs interleave.',
    )
    .action(async (flags: ReceiveFlags, command: Command) => {
      const names = await namesFrom(flags);
      for (const { name, from } of names) {
        const canonical = canonicalKeyName(name);
        if (canonical && from === "--name") throw usageError(`${name} spells key name ${canonical} another way; use --name ${canonical}`);
        if (canonical) throw usageError(`${name} (${from}) spells key name ${canonical} another way; use ${canonical}`);
      }
      checkVouched(names.map(({ name }) => name), flags.unsigned, "pass --unsigned to read it anyway", usageError);
      checkKuboNames(flags, names.map(({ name }) => name), isKeyName);
      // The file's length is kept with the checkpoint: without one on disk, a restart would append it all again.
      if (flags.out !== undefined && flags.state === undefined) throw usageError("--out needs --state, where the checkpoint records how much of FILE was delivered");
      // REMOTELOG_SERVER in the environment names the usual server; --gateway given on the line wins over it.
      if (flags.gateway !== undefined && command.getOptionValueSource("server") === "env") flags.server = undefined;
      const remote = refusingBackupHeads(await readRemoteFrom(flags, names.map(({ name }) => name)));
      const checkpoints: CheckpointStore = flags.state === undefined ? new MemoryCheckpointStore() : await FileCheckpointStore.open(flags.state, { exclusive: true }).catch((err) => {
        remote.close();
        throw err;
      });
      try {
        // One --name keeps the lines of a lone log as they always were; a list of names, even of one,
        // names every line.
        if (names.length > 1 || flags.names !== undefined) {
          if (flags.fromSeq !== undefined) throw usageError("--from-seq reads one name; give a single --name");
          if (flags.out !== undefined) throw usageError("--out reads one name; give a single --name");
          await receiveMany(names.map(({ name }) => name), flags, remote, checkpoints, io);
          return;
        }
        const name = names[0].name;
        // A follower loads its checkpoint on every sync; reading the file each time was on the path of every message.
        const cached = new WriteThroughCheckpoints(checkpoints);
        let out: OutFile | undefined;
        if (flags.out !== undefined) {
          const opened = await OutFile.open(flags.out, name, cached, flags.fromSeq);
          out = opened.out;
          if (opened.cut > 0) io.stderr.write(`remotelog receive: cut ${opened.cut} bytes off the end of ${out.path}: lines written after the last checkpoint, delivered again now\n`);
        }
        const status = RetryStatus.forFollow(io, "receive", flags.retryFor, flags.follow ?? false);
        const receiver = new Receiver({ name, remote: answering(remote, status), checkpoints: out ?? cached, batchSize: flags.batch, maxPages: flags.maxPages, fromSeq: flags.fromSeq, waitForSeq: flags.follow });
        const deliver = async (batch: Delivery[]) => {
          // --out always holds JSONL: its lines carry the seq and id that make them checkable.
          if (out) return out.append(batch.map((d) => deliveryLine(d.seq, d.id, d.address, d.message)).join(""));
          const chunk = flags.format === "text" ? batch.map((d) => deliveryText(d.seq, d.message)).join("") : deliveryLines(batch);
          // The callback fires once the kernel has the bytes; only then may the checkpoint move past them.
          await new Promise<void>((resolve, reject) => io.stdout.write(chunk, (err) => (err ? reject(err) : resolve())));
        };
        await followName({
          verb: "receive",
          io,
          name,
          ns: remote,
          follow: flags.follow ?? false,
          intervalMs: flags.interval,
          status,
          notFound: `name ${JSON.stringify(name)} has no remote log yet`,
          sayRecovered: true,
          stopped: flags.state === undefined ? undefined : `the checkpoint in ${flags.state} stands after the last batch printed, where the next receive goes on`,
          sync: (pushed, signal) => receiver.sync(deliver, pushed, signal),
        }).finally(() => out?.close());
      } finally {
        remote.close();
        await checkpoints.close();
      }
    });
}

/** The names of --name and --names, each with where it came from; duplicates and no names at all are usage errors. */
async function namesFrom(flags: ReceiveFlags): Promise<{ name: string; from: string }[]> {
  const names = (flags.name ?? []).map((name) => ({ name, from: "--name" }));
  if (flags.names !== undefined) {
    let text: string;
    try {
      text = await readFile(flags.names, "utf8");
    } catch (err) {
      throw usageError(`cannot read --names ${flags.names}: ${(err as Error).message}`);
    }
    // Surrounding blanks (a \r of CRLF included) are dropped: a name file is edited by hand, and
    // a name that ends in a space would be invisible in it.
    text.split("\n").forEach((line, i) => {
      const name = line.trim();
      if (name.length > 0 && !name.startsWith("#")) names.push({ name, from: `${flags.names} line ${i + 1}` });
    });
    if (names.length === (flags.name ?? []).length) throw usageError(`--names ${flags.names} holds no name`);
  }
  if (names.length === 0) throw usageError("say which log to read: --name NAME (repeatable) or --names FILE");
  const seen = new Map<string, string>();
  for (const { name, from } of names) {
    const before = seen.get(name);
    if (before !== undefined) throw usageError(`name ${JSON.stringify(name)} is given twice (${before}, ${from}); each name is read once`);
    seen.set(name, from);
  }
  return names;
}

/**
 * Several names: one ManyReceiver over the shared connection and checkpoint directory. A failing name
 * is said on stderr, with its name, and retried; without --follow the exit code is 1 if any name was
 * not read, once all the others were.
 */
/** --gateway (and --router), or the endpoints every verb takes. */
async function readRemoteFrom(flags: ReceiveFlags, names: string[]): Promise<ReadRemote> {
  if (flags.gateway === undefined) {
    if (flags.router !== undefined) throw usageError("--router goes with --gateway");
    return remoteFrom(flags);
  }
  if (flags.server || flags.cas || flags.ns || flags.kuboApi) throw usageError("give either --gateway, or --server (or --cas and --ns, or --kubo-api), not both");
  const unsigned = names.find((name) => !isKeyName(name));
  if (unsigned !== undefined) throw usageError(`${JSON.stringify(unsigned)} is not a key name (k51…), and --gateway reaches IPNS, which holds signed names only`);
  try {
    return openGateway(flags.gateway, { router: flags.router });
  } catch (err) {
    throw usageError((err as RemoteLogError).text ?? String(err));
  }
}

async function receiveMany(names: string[], flags: ReceiveFlags, remote: ReadRemote, checkpoints: CheckpointStore, io: Io): Promise<void> {
  if (flags.retryFor === undefined) {
    // As with one name: services that never answer are said within about 3 s, not after the 60 s an outage gets.
    const status = new RetryStatus(io, "receive", undefined, 0);
    await withRetry(() => remote.fetchName(names[0]), status.options());
    status.succeeded(false);
  }
  const many = new ManyReceiver({ names, remote, checkpoints, concurrency: flags.concurrency, batchSize: flags.batch, maxPages: flags.maxPages });
  const say = (text: string) => io.stderr.write(`remotelog receive: ${text}\n`);
  const result = await many.run(
    async (name, batch) => {
      const chunk = flags.format === "text" ? batch.map((d) => deliveryText(d.seq, d.message, name)).join("") : deliveryLines(batch, name);
      await new Promise<void>((resolve, reject) => io.stdout.write(chunk, (err) => (err ? reject(err) : resolve())));
    },
    {
      follow: flags.follow,
      intervalMs: flags.interval,
      signal: io.signal,
      retryForMs: (flags.retryFor ?? 60) * 1000,
      events: {
        failed: (name, error, retry) => {
          if (retry.inMs === undefined) say(`name ${JSON.stringify(name)}: ${error.message}`);
          // A name that keeps failing for the same reason is said once, not on every attempt.
          else if (!retry.repeated) say(`name ${JSON.stringify(name)}: ${error.message}; retrying with backoff (next in ${(retry.inMs / 1000).toFixed(1)} s)`);
        },
        recovered: (name) => say(`name ${JSON.stringify(name)} reads again`),
        missing: (name) => say(`name ${JSON.stringify(name)} has no remote log yet; waiting for it`),
        watchRefused: (count, error) => say(`the NS refused to push updates of ${count} names (${error.message}); they are polled instead, and the watch asked for again now and then`),
        watchLetGo: (name) => say(`the NS stopped pushing updates of name ${JSON.stringify(name)}, and maybe of more names, to make room for other clients' watches; they are polled instead`),
      },
    },
  );
  if (flags.follow) return;
  if (result.failed.length > 0) {
    const listed = result.failed.slice(0, 10).map(({ name }) => JSON.stringify(name)).join(", ");
    const code: ErrorCode = result.failed[0].error.code;
    throw new RemoteLogError(code, `${result.failed.length} of ${names.length} names failed: ${listed}${result.failed.length > 10 ? ", …" : ""}`);
  }
  if (result.unread.length > 0) throw RemoteLogError.unavailable(`stopped before reading ${result.unread.length} of ${names.length} names`);
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
