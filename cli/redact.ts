import { Option } from "commander";
import { redact } from "../actors/redactor.js";
import { withRetry } from "../actors/remote.js";
import { fromHex } from "../core/hash.js";
import { DEFAULT_TTL_MS, DEFAULT_VALIDITY_MS, MIN_VALIDITY_MS } from "../core/names.js";
import { durationFlag, formatDuration, intOption, newCommand, runCommand, usageError, repeatable, type Io } from "./command.js";
import { endpointOptions, remoteFrom, type EndpointFlags } from "./endpoints.js";
import { signingFrom } from "./send.js";

export const summary = "remove messages from a remote log, leaving tombstones receivers honour";

interface RedactFlags extends EndpointFlags {
  key?: string;
  name?: string;
  unsigned?: boolean;
  id: string[];
  validity: number;
  ttl: number;
  maxPages: number;
  retryFor: number;
}

export function command(io: Io) {
  return endpointOptions(
    newCommand("redact", io)
      .description(
        "Remove the messages with the given ids (H1, 64 hex digits) from the remote log of --name. Their pairs " +
          "become tombstones that keep their seq and id; the pages from the oldest of them up to the head are " +
          "rewritten and the head is published again, signed with --key. Receivers that already delivered a " +
          "removed message print a tombstone line for it on their next sync: {\"seq\":…,\"id\":…,\"redacted\":true}. " +
          "The old pages and the removed message stay in the CAS until `remotelog gc` sweeps what no name reaches. " +
          "Prints {\"redacted\":[seq…],\"pages\":N,\"version\":V,\"redactions\":R} (R: the redactions made of the log so far, one a run however many ids it takes; a receiver that saw fewer looks back for tombstones); redacting a tombstone again changes nothing.",
      )
      .addOption(new Option("--key <file>", "the name's key, to sign the new head; the name is the key's").env("REMOTELOG_KEY"))
      .option("--name <name>", "the log: the key's name (may be left out), or a free-form name with --unsigned")
      .option("--unsigned", "redact a free-form name, whose heads nobody signs")
      .requiredOption("--id <hex>", "a message id (H1) to remove; repeat for several", repeatable)
      .addOption(durationFlag("--validity <duration>", `how long the new head's record stays valid, ${formatDuration(MIN_VALIDITY_MS)} at least`, DEFAULT_VALIDITY_MS, { minMs: MIN_VALIDITY_MS }))
      .addOption(durationFlag("--ttl <duration>", "how long resolvers may cache the new head's record", DEFAULT_TTL_MS))
      .option("--max-pages <n>", "refuse a chain longer than this many pages", intOption(1), 10_000_000)
      .option("--retry-for <seconds>", "keep retrying an unreachable service this long (0: forever)", intOption(0), 60),
  )
    .addHelpText("after", "\nExamples:\n  remotelog redact --key alice.key --server http://127.0.0.1:7420 --id 3f1c…e2\n")
    .action(async (flags: RedactFlags) => {
      const ids = flags.id.map((hex) => {
        if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw usageError(`--id takes a message id of 64 hex digits, not ${JSON.stringify(hex)}`);
        return fromHex(hex.toLowerCase(), "--id");
      });
      const { name, key } = await signingFrom(flags);
      const remote = await remoteFrom(flags);
      try {
        const result = await withRetry(() => redact({ name, remote, key, validityMs: flags.validity, ttlMs: flags.ttl, maxPages: flags.maxPages }, ids), {
          timeoutMs: flags.retryFor * 1000,
          signal: io.signal,
        });
        io.stdout.write(`${JSON.stringify({ redacted: result.redacted, pages: result.pages, version: Number(result.version), redactions: result.redactions })}\n`);
      } finally {
        remote.close();
      }
    });
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
