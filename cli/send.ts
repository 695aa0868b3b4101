import { Option } from "commander";
import { blockLimit, keyName, loadKey, RemoteLogError, Sender, withRetry, type PrivateKey } from "../lib/index.js";
import { encodeMessage, newMessage } from "../core/hash.js";
import { parseEmbed } from "../core/page.js";
import { join } from "node:path";
import { canonicalKeyName, DEFAULT_TTL_MS, DEFAULT_VALIDITY_MS, isKeyName } from "../core/names.js";
import { FileCheckpointStore } from "../stores/file/checkpoint-store.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { durationOption, intOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { checkKuboNames, endpointOptions, remoteFrom, type EndpointFlags } from "./endpoints.js";

export const summary = "append messages to the local log and publish them";

interface SendFlags extends EndpointFlags {
  name?: string;
  key?: string;
  unsigned?: boolean;
  validity: number;
  ttl: number;
  data: string;
  group: string;
  format: "lines" | "jsonl" | "raw";
  pageSize: number;
  embed: string;
  json?: boolean;
  retryFor: number;
}

/** One message to append, as read from stdin. */
interface Incoming {
  body: Uint8Array;
  group: Uint8Array;
  timestamp?: bigint;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("send", io)
      .description(
        "Read message bodies from stdin, append them durably to the local log in --data, upload them to the CAS\n" +
          "in batches and point --name at the new head. With empty input it publishes whatever was appended but\n" +
          "not yet published (after a crash, say).",
      )
      .option("--key <file>", "sign every update with this key (remotelog key gen); the name is the key's")
      .option("--name <name>", "the name to publish under: the key's name (may be left out), or a free-form name with --unsigned")
      .option("--unsigned", "publish a free-form name without signing it, as clients of the draft do")
      .option("--validity <duration>", "how long each signed record stays valid (a receiver may read it while the sender is away)", durationOption, DEFAULT_VALIDITY_MS)
      .option("--ttl <duration>", "how long resolvers may cache a signed record", durationOption, DEFAULT_TTL_MS)
      .requiredOption("--data <dir>", "the sender's local log directory")
      .option("--group <group>", "MVDS group id of each message (UTF-8)", "remotelog")
      .addOption(new Option("--format <format>", "stdin format: one body per line, one JSON object per line ({\"body\"|\"body_base64\", \"group\"?, \"timestamp\"?}), or all of stdin as one body").choices(["lines", "jsonl", "raw"]).default("lines"))
      .option("--page-size <n>", "pairs per page", intOption(1, 1_000_000), 256)
      .option("--embed <mode>", "embed message data in pages: none, all, or the newest K of the head page", "none")
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever)", intOption(0), 60)
      .option("--json", "print a JSON summary on stdout"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog key gen --out alice.key\n" +
        "  printf 'hello\\nworld\\n' | remotelog send --key alice.key --server http://127.0.0.1:7420 --data ./alice\n" +
        "  remotelog send --key alice.key --server http://127.0.0.1:7420 --data ./alice < /dev/null   # publish only\n" +
        "  echo hi | remotelog send --unsigned --name chat --server http://127.0.0.1:7420 --data ./chat\n" +
        "  echo hi | remotelog send --key alice.key --kubo-api http://127.0.0.1:5001 --data ./alice   # straight to IPFS",
    )
    .action(async (flags: SendFlags) => {
      const embed = (() => {
        try {
          return parseEmbed(flags.embed);
        } catch (err) {
          throw usageError((err as Error).message);
        }
      })();
      const { name, key } = await signingFrom(flags);
      checkKuboNames(flags, [name], isKeyName);
      const remote = await remoteFrom(flags);
      const log = await FileLocalLog.open(flags.data).catch((err) => {
        remote.close();
        throw err;
      });
      const recovered = log.recovered;
      if (recovered) {
        // Those bytes were never acknowledged (a crash mid-append), but say so rather than drop them quietly.
        io.stderr.write(`remotelog send: the local log ended in ${recovered.droppedBytes} bytes of a torn append (an incomplete last record); cut at byte ${recovered.truncatedAt} and saved to ${recovered.savedTo}\n`);
      }
      // What this send took from stdin, appended and published so far: a send that fails part-way says
      // so, and a caller retries with the lines after `taken` without duplicating any.
      const progress = { taken: 0, appended: 0, published: 0 };
      // Set once stdin is being read: a send refused before that took nothing, and says only why.
      let reading = false;
      const closers: (() => Promise<void>)[] = [];
      try {
        // A data directory belongs to one name: publishing its log under another would hand every message
        // (redacted ones too) to another author.
        const claimed = await log.claim({ name, ...(key ? { key: name } : {}) });
        if (claimed === "adopted") io.stderr.write(`remotelog send: ${flags.data} had no recorded owner; it now belongs to ${JSON.stringify(name)}, and sends under any other name are refused\n`);
        const retry = { timeoutMs: flags.retryFor * 1000, signal: io.signal, onRetry: (err: RemoteLogError, delay: number) => io.stderr.write(`remotelog send: ${err.message}; retrying in ${(delay / 1000).toFixed(1)} s\n`) };
        const maxMessageBytes = await blockLimit(remote);
        const published = await FileCheckpointStore.open(join(flags.data, "published"));
        closers.push(() => published.close());
        const sender = new Sender({ name, key, log, published, remote, pageSize: flags.pageSize, embed, validityMs: flags.validity, ttlMs: flags.ttl, maxMessageBytes });
        progress.published = (await published.load(name))?.delivered ?? 0;
        const defaultGroup = new TextEncoder().encode(flags.group);
        let lostRaces = 0;
        const publish = async () => {
          const result = await withRetry(() => sender.publish(), retry);
          lostRaces += result.lostRaces;
          progress.published = result.published;
          return result;
        };

        // Appends are group-committed while stdin is still being read, and a publish runs whenever the
        // previous one is done, so a slow or endless stdin is published as it goes. A publish that fails
        // for good (transient failures were retried for --retry-for) ends the send: with an endless stdin
        // there would be no final publish to report it.
        let duplicates = 0;
        let publishing: Promise<void> | undefined;
        let failed: { error: unknown } | undefined;
        let failure!: (error: unknown) => void;
        const publishFailed = new Promise<{ failed: true }>((resolve) => {
          failure = (error) => {
            failed ??= { error };
            resolve({ failed: true });
          };
        });
        const kickPublish = () => {
          publishing ??= publish().then(
            () => {
              publishing = undefined;
            },
            (error) => {
              publishing = undefined;
              failure(error);
            },
          );
        };
        const batches = readIncoming(io, flags.format, defaultGroup)[Symbol.asyncIterator]();
        reading = true;
        try {
          for (;;) {
            const next = await Promise.race([batches.next(), publishFailed]);
            if ("failed" in next || next.done || io.signal.aborted) break;
            const batch = next.value;
            const now = BigInt(Math.floor(Date.now() / 1000));
            const entries = await sender.appendEncoded(batch.items.map((item) => encodeIncoming(item, now)));
            progress.taken += batch.lines;
            progress.appended += entries.length;
            duplicates += batch.items.length - entries.length;
            kickPublish();
          }
          while (publishing) await publishing;
          if (failed) throw failed.error;
        } catch (err) {
          // stdin may never end: stop reading it so that the process can exit.
          io.stdin.destroy?.();
          while (publishing) await publishing;
          throw err;
        }
        const result = await publish();
        if (duplicates > 0) io.stderr.write(`remotelog send: skipped ${duplicates} message(s) whose id was already in the log\n`);
        const summaryLine = {
          name,
          taken: progress.taken,
          appended: progress.appended,
          duplicates,
          logLength: log.length,
          published: result.published,
          version: Number(result.version),
          // Updates another writer of the name got in first; each was retried on the new head.
          lostRaces,
        };
        if (flags.json) io.stdout.write(`${JSON.stringify(summaryLine)}\n`);
        else io.stderr.write(`remotelog send: appended ${progress.appended}, ${summaryLine.published} of ${summaryLine.logLength} published to ${JSON.stringify(name)} (version ${summaryLine.version})\n`);
      } catch (err) {
        if (!reading) throw err;
        throw partWay(err, progress, log.length, flags.json ? (line) => io.stdout.write(`${JSON.stringify({ name, ...line })}\n`) : undefined);
      } finally {
        remote.close();
        for (const close of closers) await close();
        await log.close();
      }
    });
}

/**
 * The error of a send that failed, saying how far it got: details.taken is how many input lines (or
 * items) were appended durably, so a retry feeds only the lines after them; with --json the closing
 * summary carries the counts and the error.
 */
function partWay(err: unknown, progress: { taken: number; appended: number; published: number }, logLength: number, printJson?: (line: Record<string, unknown>) => void): unknown {
  if (!(err instanceof RemoteLogError)) return err;
  const counts = `took ${progress.taken} input line(s) (appended ${progress.appended}; ${progress.published} of the log's ${logLength} published)`;
  printJson?.({ taken: progress.taken, appended: progress.appended, published: progress.published, logLength, error: { code: err.code, message: err.text } });
  const error = new RemoteLogError(err.code, `${err.text}; this send ${counts}`, { cause: err, details: { ...err.details, taken: progress.taken } });
  return error;
}

/** The name to publish and the key to sign with, from --key, --name and --unsigned. */
/** The name and key from --key, --name and --unsigned, as send and redact take them. */
export async function signingFrom(flags: Pick<SendFlags, "unsigned" | "key" | "name">): Promise<{ name: string; key?: PrivateKey }> {
  if (flags.unsigned) {
    if (flags.key) throw usageError("give either --key or --unsigned, not both");
    if (!flags.name) throw usageError("--unsigned needs a --name");
    if (isKeyName(flags.name) || canonicalKeyName(flags.name)) throw usageError(`${flags.name} is a key name: its updates must be signed with --key`);
    return { name: flags.name };
  }
  if (!flags.key) throw usageError("give --key FILE to sign updates (remotelog key gen makes one), or --unsigned with a free-form --name");
  const key = await loadKey(flags.key);
  const name = keyName(key);
  if (flags.name !== undefined && flags.name !== name) throw usageError(`--name ${flags.name} is not the name of the key in ${flags.key}, which is ${name}`);
  return { name, key };
}

function encodeIncoming(item: Incoming, now: bigint): Uint8Array {
  return encodeMessage(newMessage(item.group, item.timestamp ?? now, item.body));
}

const BATCH_LINES = 8192;

/** Messages to append, and how many input lines they came from (blank jsonl lines count, but give none). */
interface IncomingBatch {
  items: Incoming[];
  lines: number;
}

/**
 * Yields stdin as batches of messages, one batch per few chunks, so appends are group-committed. A line
 * that does not parse ends it, after yielding the lines before it.
 */
async function* readIncoming(io: Io, format: SendFlags["format"], group: Uint8Array): AsyncGenerator<IncomingBatch> {
  if (format === "raw") {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(chunk as Buffer);
    if (chunks.length > 0) yield { items: [{ body: new Uint8Array(Buffer.concat(chunks)), group }], lines: 1 };
    return;
  }
  let rest: Buffer = Buffer.alloc(0);
  let lineNo = 0;
  let batch: Incoming[] = [];
  let batchLines = 0;
  let bad: unknown;
  const take = (line: Buffer) => {
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (format === "lines") batch.push({ body: new Uint8Array(line), group });
    else if (line.length > 0) batch.push(parseJsonLine(line.toString("utf8"), lineNo + 1, group));
    lineNo++;
    batchLines++;
  };
  const flush = () => {
    const out = { items: batch, lines: batchLines };
    batch = [];
    batchLines = 0;
    return out;
  };
  for await (const chunk of io.stdin) {
    let buffer = rest.length > 0 ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    try {
      for (let nl = buffer.indexOf(10, start); nl !== -1; nl = buffer.indexOf(10, start)) {
        take(buffer.subarray(start, nl));
        start = nl + 1;
      }
    } catch (err) {
      bad = err;
      break;
    }
    rest = Buffer.from(buffer.subarray(start));
    if (batchLines >= BATCH_LINES || (batchLines > 0 && io.stdin.readableLength === 0)) yield flush();
  }
  if (bad === undefined && rest.length > 0) {
    try {
      take(rest);
    } catch (err) {
      bad = err;
    }
  }
  if (batchLines > 0) yield flush();
  if (bad !== undefined) throw bad;
}

function parseJsonLine(text: string, lineNo: number, defaultGroup: Uint8Array): Incoming {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`stdin line ${lineNo} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo} is not a JSON object`);
  const record = value as Record<string, unknown>;
  let body: Uint8Array;
  if (typeof record.body === "string") body = new TextEncoder().encode(record.body);
  else if (typeof record.body_base64 === "string") body = new Uint8Array(Buffer.from(record.body_base64, "base64"));
  else throw RemoteLogError.invalidArgument(`stdin line ${lineNo} has neither a "body" nor a "body_base64" string`);
  let group = defaultGroup;
  if (record.group !== undefined) {
    if (typeof record.group !== "string") throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "group" must be a string`);
    group = new TextEncoder().encode(record.group);
  }
  let timestamp: bigint | undefined;
  if (record.timestamp !== undefined) {
    if (typeof record.timestamp !== "number" || !Number.isSafeInteger(record.timestamp)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "timestamp" must be an integer (Unix seconds)`);
    timestamp = BigInt(record.timestamp);
  }
  return { body, group, timestamp };
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
