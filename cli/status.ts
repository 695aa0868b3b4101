import { isDirectory } from "../stores/file/atomic.js";
import { Option } from "commander";
import { RemoteLogError } from "../core/errors.js";
import { addressOf, addressText } from "../core/hash.js";
import { ownerMismatch } from "../core/local-log.js";
import { isKeyName, keyName } from "../core/names.js";
import { decodePage } from "../core/page.js";
import { loadKeyFile } from "../stores/file/key-file.js";
import { FileLocalLog, publishedCount } from "../stores/file/local-log.js";
import { dirOption, newCommand, runCommand, type Io } from "./command.js";
import { endpointOptions, remoteFrom, type EndpointFlags } from "./endpoints.js";

export const summary = "show a sender's data directory: name, head, pending versus published, server";

interface StatusFlags extends EndpointFlags {
  data: string;
  key?: string;
  name?: string;
  json?: boolean;
}

interface Status {
  data: string;
  name: string | null;
  messages: number;
  published: number | null;
  pending: number | null;
  /** Bytes of an unfinished append at the end of the log, not counted in messages. */
  tornBytes: number;
  server: string | null;
  head: { address: string; version: number; messages: number | null } | null;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("status", io)
      .description(
        "Say what a sender's --data directory holds, as `git status` does: the name it publishes (from --key or --name, which must be the directory's owner as for send; else the owner it records), how many messages the local log holds, " +
          "how many of them are published and how many are pending (the next `remotelog send` publishes them), and, with --server, the name's head there. Reads only.",
      )
      .addOption(new Option("--data <dir>", "the sender's local log directory").env("REMOTELOG_DATA").argParser(dirOption).makeOptionMandatory())
      .addOption(new Option("--key <file>", "the key the sender signs with; its name is the log's").env("REMOTELOG_KEY"))
      .option("--name <name>", "the log's name, for a free-form (unsigned) name")
      .option("--json", "print one JSON object"),
  )
    .addHelpText("after", "\nExamples:\n  remotelog status --data ./alice --key alice.key\n  remotelog status --data ./chat --name chat --server http://127.0.0.1:7420 --json")
    .action(async (flags: StatusFlags) => {
      // Opening a log creates it: a missing directory is said, not made.
      if (!(await isDirectory(flags.data))) throw RemoteLogError.notFound(`${flags.data} is not a directory; \`remotelog send --data ${flags.data}\` makes one`);
      const given = flags.name ?? (flags.key ? keyName(await loadKeyFile(flags.key)) : undefined);
      // Read only: a torn append is the next send's to save and cut, and a directory without a log stays as it is.
      const log = await FileLocalLog.open(flags.data, { readOnly: true });
      // The directory's owner, as send judges it (the same check and words): counted under another
      // name, every message looked pending and the name empty, where send with it is refused.
      const owner = log.owner;
      const mismatch = owner && given !== undefined ? ownerMismatch(`local log ${flags.data}`, owner, isKeyName(given) ? { name: given, key: given } : { name: given }) : undefined;
      if (mismatch) {
        await log.close();
        throw mismatch;
      }
      const name = given ?? owner?.name;
      const status: Status = { data: flags.data, name: name ?? null, messages: log.length, published: null, pending: null, tornBytes: log.tornBytes, server: null, head: null };
      await log.close();
      // The mark read as send reads it, so that what send refuses (a published/ that is not a
      // directory, a mark that does not parse) status does not count as nothing published.
      if (name !== undefined) {
        status.published = await publishedCount(flags.data, name);
        status.pending = Math.max(0, status.messages - status.published);
      }
      // Fewer whole messages than were published is send's DATA_LOSS, not a torn append it would cut:
      // the counts are still printed, then the same error, so that status fails where send does.
      const short = status.published === null ? undefined : log.shortOf(status.published);
      if (log.tornBytes > 0 && !short) {
        io.stderr.write(`remotelog status: ${log.path} ends in ${log.tornBytes} bytes of an unfinished append, not counted (left as they are; the next \`remotelog send\` saves them beside the log and cuts them)\n`);
      }
      if (name !== undefined && (flags.server || flags.cas || flags.ns || flags.kuboApi)) {
        const remote = await remoteFrom(flags);
        try {
          status.server = flags.kuboApi ?? flags.ns ?? flags.server ?? null;
          const head = await remote.fetchName(name);
          if (head) {
            let messages: number | null = null;
            try {
              const page = decodePage(head.content, "head");
              if (page.info) messages = Number(page.info.firstSeqid) + page.info.count;
            } catch {
              // Not a page (a backup head, or damage): the head's address and version still say something.
            }
            status.head = { address: addressText(addressOf(head.content)), version: Number(head.version), messages };
          }
        } finally {
          remote.close();
        }
      }
      if (flags.json) io.stdout.write(`${JSON.stringify(status)}\n`);
      else io.stdout.write(statusText(status));
      if (short) throw short;
    });
}

function statusText(status: Status): string {
  const lines = [`data:      ${status.data}`, `name:      ${status.name ?? "unknown (no recorded owner: give --key FILE or --name NAME)"}`, `messages:  ${status.messages} in the local log`];
  if (status.published !== null) {
    lines.push(`published: ${status.published}`);
    lines.push(`pending:   ${status.pending}${status.pending ? " (the next `remotelog send` publishes them)" : ""}`);
  }
  if (status.server !== null) {
    lines.push(`server:    ${status.server}`);
    lines.push(
      status.head
        ? `head:      ${status.head.address} (version ${status.head.version}${status.head.messages === null ? "" : `, ${status.head.messages} messages`})`
        : "head:      none (the name has no remote log there)",
    );
  }
  return `${lines.join("\n")}\n`;
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
