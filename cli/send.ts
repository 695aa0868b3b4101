import { Option } from "commander";
import { casBlockLimit, ErrorCodes, keyName, loadKey, RemoteLogError, Sender, withRetry, type PrivateKey } from "../lib/index.js";
import { DEFAULT_PUBLISH_STEP } from "../actors/sender.js";
import { RetryStatus } from "./follow.js";
import { encodeMessages, messageId, newMessage, toHex } from "../core/hash.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { DEFAULT_EMBED, MAX_PAGE_SIZE, parseEmbed } from "../core/page.js";
import { canonicalKeyName, freeFormNameProblem, DEFAULT_TTL_MS, DEFAULT_VALIDITY_MS, isKeyName, MIN_VALIDITY_MS } from "../core/names.js";
import { openLocalLog, openPublishedMarks } from "../lib/directories-node.js";
import { dirOption, durationFlag, formatDuration, intOption, newCommand, runCommand, stoppingSignal, usageError, type Io } from "./command.js";
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
  retryFor?: number;
  timestampMs?: boolean;
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
        "Read message bodies from stdin, append them durably to the local log in --data, upload them to the CAS " +
          "in batches and point --name at the new head. With empty input it publishes whatever was appended but " +
          "not yet published (after a crash, say).",
      )
      .addOption(new Option("--key <file>", "sign every update with this key (remotelog key gen); the name is the key's").env("REMOTELOG_KEY"))
      .option("--name <name>", "the name to publish under: the key's name (may be left out), or a free-form name with --unsigned")
      .option("--unsigned", "publish a free-form name without signing it, as clients of the draft do")
      .addOption(
        durationFlag(
          "--validity <duration>",
          `how long each signed record stays valid (a receiver may read it while the sender is away), ${formatDuration(MIN_VALIDITY_MS)} at least; a send with nothing new signs the head again once half of that is gone`,
          DEFAULT_VALIDITY_MS,
          { minMs: MIN_VALIDITY_MS },
        ),
      )
      .addOption(durationFlag("--ttl <duration>", "how long resolvers may cache a signed record", DEFAULT_TTL_MS))
      .addOption(new Option("--data <dir>", "the sender's local log directory").env("REMOTELOG_DATA").argParser(dirOption).makeOptionMandatory())
      .option("--group <group>", "MVDS group id of each message (UTF-8)", "remotelog")
      .addOption(new Option("--format <format>", "stdin format: one body per line, one JSON object per line ({\"body\"|\"body_base64\", \"group\"?, \"timestamp\"?}), or all of stdin as one body").choices(["lines", "jsonl", "raw"]).default("lines"))
      .option("--page-size <n>", `pairs per page, at most ${MAX_PAGE_SIZE} (a page of pairs must fit the CAS's block limit, 1 MiB on most servers; fewer fit a smaller one)`, intOption(1, MAX_PAGE_SIZE), 256)
      .option("--embed <mode>", "embed message data in pages: none, all, or the newest K of the head page", String(DEFAULT_EMBED))
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever; default: 3 s for a service that never answered, else 60)", intOption(0))
      .option("--timestamp-ms", "stamp messages in milliseconds, not seconds, so that a line repeated within a second is a new message (MVDS says seconds: see the README)")
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
          // usageError adds the code again: its message already starts with INVALID_ARGUMENT.
          throw usageError((err as RemoteLogError).text ?? (err as Error).message);
        }
      })();
      const { name, key } = await signingFrom(flags);
      checkKuboNames(flags, [name], isKeyName);
      const remote = await remoteFrom(flags);
      const log = await openLocalLog(flags.data, name).catch((err) => {
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
      const status = new RetryStatus(io, "send", flags.retryFor, 60);
      let publishedNow: (() => Promise<number | undefined>) | undefined;
      /** Why stdin was read no further (a signal), when it was not read to its end. */
      let stoppedBy: string | undefined;
      try {
        // A data directory belongs to one name: publishing its log under another would hand every message
        // (redacted ones too) to another author.
        const claimed = await log.claim({ name, ...(key ? { key: name } : {}) });
        if (claimed === "adopted") io.stderr.write(`remotelog send: ${flags.data} had no recorded owner; it now belongs to ${JSON.stringify(name)}, and sends under any other name are refused\n`);
        // GetLimits answered is the services answering: an outage from then on (in the first publish of a
        // long backlog, say) is retried for the reached budget, where the first contact's 3 s, counted
        // from that publish's start, had run out before it.
        const { maxMessageBytes, limitAssumed } = await casBlockLimit(remote);
        if (!limitAssumed) status.succeeded(false);
        const published = await openPublishedMarks(flags.data);
        closers.push(() => published.close());
        // A publish that fails part-way has published some of its steps (each remembered as it went): a
        // failure says that count, not the one this send began with.
        publishedNow = async () => (await published.load(name))?.delivered;
        // Unanswered, the limit is a guess: the first publish asks the CAS again.
        const sender = new Sender({ name, key, log, published, remote, pageSize: flags.pageSize, embed, validityMs: flags.validity, ttlMs: flags.ttl, maxMessageBytes, limitAssumed, data: flags.data });
        progress.published = (await published.load(name))?.delivered ?? 0;
        const defaultGroup = new TextEncoder().encode(flags.group);
        let lostRaces = 0;
        let resent = 0;
        const publish = async () => {
          // Stopped by a signal, one attempt publishes what was appended: withRetry under the aborted
          // signal makes none, and retrying an outage would hold the user's Ctrl-C.
          const result = io.signal.aborted ? await sender.publish() : await withRetry(() => sender.publish(), status.options());
          status.succeeded();
          lostRaces += result.lostRaces;
          if (result.resent > 0) {
            resent += result.resent;
            // Not an error (the sender heals it), but an operator should hear that a server lost acknowledged messages.
            io.stderr.write(`remotelog send: ${JSON.stringify(name)} on the server had lost ${result.resent} messages published before (restored from an older copy, or another device's update replaced them?); they were published again, from the local log: redact again any you had redacted since\n`);
          }
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
        // Wakes the wait for the next batch when a publish fails. One waiter at a time, dropped when it
        // settles: a Promise.race against one long-lived promise would add a reaction to it per batch,
        // and each would keep its batch (every message read from stdin) reachable to the end.
        let wakeOnFailure: (() => void) | undefined;
        const failure = (error: unknown) => {
          failed ??= { error };
          wakeOnFailure?.();
        };
        const kickPublish = () => {
          if (publishing) return;
          const before = progress.published;
          publishing = publish().then(
            () => {
              publishing = undefined;
              // What was appended while this one ran goes out at once: waiting for the next append to
              // end left the CAS with nothing to store for up to an append's time, at every step. Only
              // after a publish that got further, so that one that cannot is not repeated on and on.
              if (!failed && progress.published > before && log.length > progress.published) kickPublish();
            },
            (error) => {
              publishing = undefined;
              failure(error);
            },
          );
        };
        let lastMs = 0;
        // Group commit: lines read while an append is being made durable wait for the next one, which
        // takes all of them (one write and one fdatasync), instead of one append per pipe chunk. What
        // waits is bounded (GROUP_LINES, GROUP_BYTES): stdin is not read on while that much waits.
        let queued: IncomingBatch[] = [];
        let queuedLines = 0;
        let queuedBytes = 0;
        let appendRunning = false;
        let appendDone: Promise<void> = Promise.resolve();
        const startAppending = () => {
          if (appendRunning || queued.length === 0) return;
          appendRunning = true;
          appendDone = (async () => {
            try {
              while (queued.length > 0 && !failed) {
                const group = queued;
                queued = [];
                queuedLines = 0;
                queuedBytes = 0;
                const now = BigInt(Math.floor(Date.now() / 1000));
                // In milliseconds, each line gets its own: the clock, or one past the line before when the clock has not moved.
                const stamp = flags.timestampMs ? () => BigInt((lastMs = Math.max(Date.now(), lastMs + 1))) : () => now;
                const messages: Message[] = [];
                for (const batch of group) {
                  for (const item of batch.items) {
                    // Stamped even when the line brings its own timestamp: the next line's millisecond moves on as before.
                    const stamped = stamp();
                    messages.push(newMessage(item.group, item.timestamp ?? stamped, item.body));
                  }
                }
                // One buffer for the lot: the append copies each into its record.
                const encoded = encodeMessages(messages);
                // The publish kicked next takes these: their blocks go up while they are made durable.
                const entries = await sender.appendEncoded(encoded, { uploadAhead: true });
                for (const batch of group) progress.taken += batch.lines;
                progress.appended += entries.length;
                duplicates += encoded.length - entries.length;
                kickPublish();
              }
            } catch (error) {
              failure(error);
            } finally {
              appendRunning = false;
            }
          })();
        };
        const held = { bytes: 0 };
        const batches = readIncoming(io, flags.format, defaultGroup, held)[Symbol.asyncIterator]();
        reading = true;
        // SIGINT or SIGTERM ends the wait for stdin at once, which may never end (a pipe from a quiet
        // program): what was read is then appended and published, as at its end. The wait did not
        // hear it, and main ended the send 5 s on, its data directory still locked.
        let wakeOnStop: (() => void) | undefined;
        const onStop = () => wakeOnStop?.();
        io.signal.addEventListener("abort", onStop, { once: true });
        let ended = false;
        try {
          for (;;) {
            if (failed || io.signal.aborted) break;
            const next = await new Promise<IteratorResult<IncomingBatch> | { failed: true } | { stopped: true }>((resolve, reject) => {
              wakeOnFailure = () => resolve({ failed: true });
              wakeOnStop = () => resolve({ stopped: true });
              batches.next().then(resolve, reject);
            }).finally(() => {
              wakeOnFailure = undefined;
              wakeOnStop = undefined;
            });
            // A batch read as the signal came is taken, as every batch before it: it was read from stdin, and left here it was lost.
            if ("failed" in next || "stopped" in next) break;
            if (next.done) {
              ended = true;
              break;
            }
            queued.push(next.value);
            queuedLines += next.value.items.length;
            queuedBytes += next.value.bytes;
            startAppending();
            if (queuedLines >= GROUP_LINES || queuedBytes >= GROUP_BYTES) await appendDone;
            // Appends that ran on far ahead of the publishes would be read back from the log by them; within a
            // step of the publish in progress, the sender still holds what it appended (Sender.keep). A publish
            // that is failing ends the send (failure() above), so this waits only on one that is going on.
            while (publishing && !failed && log.length - progress.published > UNPUBLISHED_AHEAD) await publishing;
          }
          if (io.signal.aborted && !failed && !ended) {
            // A line begun but not ended (no newline yet), or bytes read but not yet split into lines:
            // not taken, and said, since nothing else would tell.
            const untaken = held.bytes + io.stdin.readableLength;
            io.stdin.destroy?.();
            const signal = stoppingSignal(io.signal);
            const by = signal ? ` by ${signal}` : "";
            const left = untaken > 0 ? `; the ${untaken} bytes read after the last line taken are not in the log: send them again` : "";
            io.stderr.write(`remotelog send: stopped${by} before the end of stdin, which is read no further${left}\n`);
            stoppedBy = by;
          }
          // What was read is appended too, at the end of stdin or on a signal; after a failure it is left unread, as before.
          while (!failed && (appendRunning || queued.length > 0)) {
            startAppending();
            await appendDone;
          }
          await appendDone;
          while (publishing) await publishing;
          if (failed) throw failed.error;
        } catch (err) {
          // stdin may never end: stop reading it so that the process can exit.
          io.stdin.destroy?.();
          await appendDone;
          while (publishing) await publishing;
          throw err;
        } finally {
          io.signal.removeEventListener("abort", onStop);
        }
        const result = await publish();
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
          // Messages published before that the server had lost, published again.
          resent,
        };
        if (flags.json) io.stdout.write(`${JSON.stringify(summaryLine)}\n`);
        else {
          // A repeated line in the same second is the same MVDS message (same group, timestamp and body, so the same id): say so, with the way out.
          const skipped = duplicates > 0 ? `; ${duplicates} skipped as duplicates (same body, group and ${flags.timestampMs ? "millisecond" : "second"} as a message in the log${flags.timestampMs ? "" : "; --timestamp-ms keeps them apart"})` : "";
          io.stderr.write(`remotelog send: appended ${progress.appended}${skipped}, ${summaryLine.published} of ${summaryLine.logLength} published to ${JSON.stringify(name)} (version ${summaryLine.version})\n`);
        }
      } catch (err) {
        status.done();
        if (!reading) throw err;
        progress.published = (await publishedNow?.().catch(() => undefined)) ?? progress.published;
        throw partWay(err, progress, log.length, flags.data, flags.json ? (line) => io.stdout.write(`${JSON.stringify({ name, ...line })}\n`) : undefined);
      } finally {
        remote.close();
        for (const close of closers) await close();
        await log.close();
      }
      // What was read is in, and said; but not all the input was taken, which `send < FILE && rm FILE`
      // must not take for success.
      if (stoppedBy !== undefined) throw RemoteLogError.aborted(`send was stopped${stoppedBy} before the end of its input: the ${progress.taken} line(s) taken are appended and published, the rest was not read`, { taken: progress.taken });
    });
}

/**
 * The error of a send that failed, saying how far it got: details.taken is how many input lines (or
 * items) were appended durably, so a retry feeds only the lines after them; with --json the closing
 * summary carries the counts and the error.
 */
function partWay(err: unknown, progress: { taken: number; appended: number; published: number }, logLength: number, dir: string, printJson?: (line: Record<string, unknown>) => void): unknown {
  if (!(err instanceof RemoteLogError)) return err;
  const counts = `took ${progress.taken} input line(s) (appended ${progress.appended}; ${progress.published} of the log's ${logLength} published)`;
  printJson?.({ taken: progress.taken, appended: progress.appended, published: progress.published, logLength, error: { code: err.code, message: err.text } });
  // What was appended is durable: say so, and how it gets out (issue 12 §10). Only an outage or lost
  // races pass by themselves; any other failure (a page over the block limit, a refused update) meets
  // the next send with the same flags again, which must not be promised to publish them.
  const pending = logLength - progress.published;
  const passes = err.code === ErrorCodes.UNAVAILABLE || err.code === ErrorCodes.ABORTED;
  const next = passes ? "will be published by the next `remotelog send`" : "a `remotelog send` publishes them once what stopped this one is dealt with";
  const kept = pending > 0 ? `; the ${pending} unpublished message(s) are kept in ${dir} and ${next} (empty stdin publishes only)` : "";
  const error = new RemoteLogError(err.code, `${err.text}; this send ${counts}${kept}`, { cause: err, details: { ...err.details, taken: progress.taken } });
  return error;
}

/** The name to publish and the key to sign with, from --key, --name and --unsigned. */
/** The name and key from --key, --name and --unsigned, as send and redact take them. */
export async function signingFrom(flags: Pick<SendFlags, "unsigned" | "key" | "name">): Promise<{ name: string; key?: PrivateKey }> {
  if (flags.unsigned) {
    if (flags.key) throw usageError("give either --key or --unsigned, not both");
    if (!flags.name) throw usageError("--unsigned needs a --name");
    if (isKeyName(flags.name) || canonicalKeyName(flags.name)) throw usageError(`${flags.name} is a key name: its updates must be signed with --key`);
    // The NS's own rule, checked before anything is appended or sent.
    const problem = freeFormNameProblem(flags.name);
    if (problem !== undefined) throw usageError(`--name ${JSON.stringify(flags.name)} ${problem}`);
    return { name: flags.name };
  }
  if (!flags.key) throw usageError("give --key FILE to sign updates (remotelog key gen makes one), or --unsigned with a free-form --name");
  const key = await loadKey(flags.key);
  const name = keyName(key);
  if (flags.name !== undefined && flags.name !== name) throw usageError(`--name ${flags.name} is not the name of the key in ${flags.key}, which is ${name}`);
  return { name, key };
}

const BATCH_LINES = 8192;
/**
 * Appended messages not yet published beyond which stdin is read no further until the publish in
 * progress is done: one publish step, so that a publish sends what the sender holds (at most two steps,
 * with the groups appended meanwhile) instead of reading it back from the log.
 */
const UNPUBLISHED_AHEAD = DEFAULT_PUBLISH_STEP;
/** Lines waiting for an append at most, and their bytes: stdin is read no further until the append in progress takes them. */
const GROUP_LINES = 4096;
const GROUP_BYTES = 1 << 20;

/** Messages to append, how many input lines they came from (blank jsonl lines count, but give none), and their bodies' bytes. */
interface IncomingBatch {
  items: Incoming[];
  lines: number;
  bytes: number;
}

/**
 * Yields stdin as batches of messages, one batch per few chunks, so appends are group-committed. A line
 * that does not parse ends it, after yielding the lines before it. held.bytes is what it has read and
 * holds back meanwhile: an unfinished last line, or with raw all of stdin so far. Waiting for stdin, it
 * holds no whole line: a chunk's lines are yielded before the next chunk is waited for.
 */
async function* readIncoming(io: Io, format: SendFlags["format"], group: Uint8Array, held: { bytes: number }): AsyncGenerator<IncomingBatch> {
  if (format === "raw") {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) {
      chunks.push(chunk as Buffer);
      held.bytes += (chunk as Buffer).length;
    }
    // stdin has ended: all of it is the body yielded now.
    held.bytes = 0;
    const body = new Uint8Array(Buffer.concat(chunks));
    if (chunks.length > 0) yield { items: [{ body, group }], lines: 1, bytes: body.length };
    return;
  }
  let rest: Buffer = Buffer.alloc(0);
  let lineNo = 0;
  let batch: Incoming[] = [];
  let batchLines = 0;
  let batchBytes = 0;
  let bad: unknown;
  const take = (line: Buffer) => {
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    // A view of the chunk read, not a copy: the append copies it into its record, and a copy a line was
    // an ArrayBuffer a line for the collector to free.
    if (format === "lines") batch.push({ body: line, group });
    else if (line.length > 0) {
      const incoming = parseJsonLine(jsonLineText(line, lineNo + 1), lineNo + 1, group);
      if (incoming) batch.push(incoming);
    }
    lineNo++;
    batchLines++;
    batchBytes += line.length;
  };
  const flush = () => {
    const out = { items: batch, lines: batchLines, bytes: batchBytes };
    batchBytes = 0;
    batch = [];
    batchLines = 0;
    return out;
  };
  for await (const chunk of io.stdin) {
    let buffer = chunk as Buffer;
    let start = 0;
    // Only the line that spans two chunks is put together: joining each whole chunk to the part line
    // before it copied every byte of stdin once more.
    const first = rest.length > 0 ? buffer.indexOf(10) : -1;
    if (rest.length > 0 && first === -1) {
      buffer = Buffer.concat([rest, buffer]);
    } else if (rest.length > 0) {
      const line = Buffer.concat([rest, buffer.subarray(0, first)]);
      start = first + 1;
      try {
        take(line);
      } catch (err) {
        bad = err;
        break;
      }
    }
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
    held.bytes = rest.length;
    if (batchLines >= BATCH_LINES || (batchLines > 0 && io.stdin.readableLength === 0)) yield flush();
  }
  // stdin has ended (or a line is bad): an unfinished last line is taken as a line now.
  held.bytes = 0;
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

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A *_base64 field's bytes; anything but canonical base64 is refused, naming the line, rather than stored cut short. */
function base64Field(value: unknown, key: string, lineNo: number): Uint8Array {
  if (typeof value !== "string") throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "${key}" must be a string`);
  if (!BASE64.test(value)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "${key}" is not base64 (A-Z, a-z, 0-9, + and /, padded with =)`);
  return new Uint8Array(Buffer.from(value, "base64"));
}

/**
 * One line of `--format jsonl`: the shape `receive` prints ({"body"|"body_base64", "group"|"group_base64",
 * "timestamp", and seq, id, address, name, which are ignored but for id, checked when present), so that
 * `receive | send --format jsonl` copies every message unchanged. A tombstone line is undefined.
 */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A jsonl line as text; INVALID_ARGUMENT naming it when it is not UTF-8, which decoding would have replaced with U+FFFD unsaid. */
function jsonLineText(line: Uint8Array, lineNo: number): string {
  try {
    return strictUtf8.decode(line);
  } catch {
    throw RemoteLogError.invalidArgument(`stdin line ${lineNo} is not UTF-8 text; give bytes that are not text as "body_base64"`);
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** field's string, refused when it holds a lone surrogate ("\ud800"): UTF-8 cannot carry one, and encoding it stored U+FFFD in its place. */
function wellFormed(text: string, field: string, lineNo: number): string {
  if (LONE_SURROGATE.test(text)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "${field}" holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text UTF-8 can carry; give the bytes as "${field}_base64"`);
  return text;
}

function parseJsonLine(text: string, lineNo: number, defaultGroup: Uint8Array): Incoming | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`stdin line ${lineNo} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo} is not a JSON object`);
  const record = value as Record<string, unknown>;
  if (record.redacted === true && record.body === undefined && record.body_base64 === undefined) return undefined;
  if (record.body !== undefined && record.body_base64 !== undefined) throw RemoteLogError.invalidArgument(`stdin line ${lineNo} has both "body" and "body_base64"; give one`);
  let body: Uint8Array;
  if (typeof record.body === "string") body = new TextEncoder().encode(wellFormed(record.body, "body", lineNo));
  else if (record.body_base64 !== undefined) body = base64Field(record.body_base64, "body_base64", lineNo);
  else throw RemoteLogError.invalidArgument(`stdin line ${lineNo} has neither a "body" nor a "body_base64" string`);
  let group = defaultGroup;
  if (record.group !== undefined && record.group_base64 !== undefined) throw RemoteLogError.invalidArgument(`stdin line ${lineNo} has both "group" and "group_base64"; give one`);
  if (record.group !== undefined) {
    if (typeof record.group !== "string") throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "group" must be a string`);
    group = new TextEncoder().encode(wellFormed(record.group, "group", lineNo));
  } else if (record.group_base64 !== undefined) group = base64Field(record.group_base64, "group_base64", lineNo);
  let timestamp: bigint | undefined;
  if (record.timestamp !== undefined) {
    if (typeof record.timestamp !== "number" || !Number.isSafeInteger(record.timestamp)) throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "timestamp" must be an integer (Unix seconds)`);
    timestamp = BigInt(record.timestamp);
  }
  if (record.id !== undefined) {
    // The id is the hash of group, timestamp and body: a line that carries one is checked against it, so a copy is proven unchanged.
    if (timestamp === undefined) throw RemoteLogError.invalidArgument(`stdin line ${lineNo} has an "id" but no "timestamp"; the id covers the timestamp`);
    const id = toHex(messageId(newMessage(group, timestamp, body)));
    if (record.id !== id) throw RemoteLogError.invalidArgument(`stdin line ${lineNo}: "id" ${JSON.stringify(record.id)} is not the id of its group, timestamp and body (${id}); drop "id" to send an edited message`);
  }
  return { body, group, timestamp };
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
