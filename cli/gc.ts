import { stat } from "node:fs/promises";
import { isDirectory } from "../stores/file/atomic.js";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GcService } from "../gen/remotelog/v1/gc_pb.js";
import { bearer, fromConnectError } from "../actors/remote.js";
import { caOption, clientCredentials } from "./credentials.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { collectGarbage, DEFAULT_GRACE_MS, type GcSummary, type Unreadable } from "../backup/gc.js";
import { Option, type Command } from "commander";
import { dirOption, durationFlag, newCommand, repeatable, runCommand, usageError, type Io } from "./command.js";
import { checkName, MAX_NAME_BYTES } from "../core/name-checks.js";
import { printJson, progressOf } from "./pack-options.js";
import { checkUrl } from "./endpoints.js";

export const summary = "delete CAS blocks that no name and no backup head reaches (mark and sweep)";

interface GcFlags {
  data?: string;
  server?: string;
  grace: number;
  /** --grace was not given: a running server uses its own. */
  serverGrace?: boolean;
  dryRun?: boolean;
  dropName?: string[];
  json?: boolean;
  adminTokenFile?: string;
  ca?: string;
}

export function command(io: Io) {
  return newCommand("gc", io)
    .description(
      "Delete the blocks of the embedded CAS that no name in its NS reaches (log heads and backup heads), by mark " +
        "and sweep: packs holding garbage are rewritten without it. Blocks written or put again less than --grace " +
        "before the mark began, or while it runs, are always kept, so a sender publishing at the same time loses " +
        "nothing. --data DIR works on a stopped server's directory (a running one holds it locked); --server URL " +
        "asks a running `remotelog serve` to collect its own store: URL is its admin listener (serve --admin-listen, " +
        "http://127.0.0.1:PORT or unix:/path/to/socket), or its public port with --admin-token-file. A running " +
        "server's --gc-grace is the least grace there; --grace may only lengthen it.",
    )
    .option("--data <dir>", "a stopped server's data directory (blocks in DIR/cas, names in DIR/ns)", dirOption)
    .addOption(new Option("--server <url>", "a running remotelog serve with the fs CAS and its NS: its admin listener, or its public port with --admin-token-file").env("REMOTELOG_SERVER"))
    .addOption(new Option("--admin-token-file <file>", "send the admin token in this file (serve --admin-token-file)").env("REMOTELOG_ADMIN_TOKEN_FILE"))
    .addOption(caOption("an https:// server"))
    .addOption(durationFlag("--grace <duration>", "keep what was written this recently (0s: no grace); with --server, the server's --gc-grace unless longer", DEFAULT_GRACE_MS, { zero: true }))
    .option("--dry-run", "report what would be deleted; delete nothing")
    .option(
      "--drop-name <name>",
      "forget this name first, so that what it alone reaches is deleted (a retired backup head name, a stranger's junk); a key name then takes only a newer record from its key; repeatable; with --dry-run, forget nothing and report as if it were gone",
      repeatable,
    )
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog gc --data ./server-data --dry-run\n  remotelog gc --server http://127.0.0.1:7421 --grace 2h --json\n" +
        "  remotelog gc --server https://cas.example.org --admin-token-file admin.token\n" +
        "  remotelog gc --server unix:./admin.sock --drop-name nightly-1 --dry-run",
    )
    .action(async (flags: GcFlags, command: Command) => {
      // REMOTELOG_SERVER set in the shell does not stand against an explicit --data.
      // A running server keeps its own grace: only a --grace given here is sent, to lengthen it.
      if (command.getOptionValueSource("grace") !== "cli") flags.serverGrace = true;
      if (flags.data && command.getOptionValueSource("server") === "env") flags.server = undefined;
      if (Boolean(flags.data) === Boolean(flags.server)) throw usageError("give either --data DIR (a stopped server) or --server URL (a running one)");
      // Checked as every verb's --server is (the same words, a usage error), before any call is made.
      if (flags.server) flags.server = checkUrl(flags.server, "--server", { unixSocket: true });
      for (const name of flags.dropName ?? []) checkName(name, MAX_NAME_BYTES);
      const result = flags.server ? await remoteGc(flags) : await localGc(flags.data!, flags, io);
      if (flags.json) printJson(io, result);
      else {
        const dropped = new Set(result.droppedNames);
        for (const name of flags.dropName ?? []) {
          io.stderr.write(dropped.has(name) ? `${flags.dryRun ? "would drop" : "dropped"} name ${JSON.stringify(name)}\n` : `name ${JSON.stringify(name)} is not there (dropped before?)\n`);
        }
        io.stdout.write(
          `${flags.dryRun ? "would remove" : "removed"} ${result.removedBlocks} blocks (${result.freedBytes} bytes) from ${result.sweptPacks} of ${result.packs} packs; ` +
            `${result.marked} blocks reachable from ${result.roots} names\n`,
        );
        for (const cid of result.missing) io.stderr.write(`missing: ${cid} (a name reaches it, the CAS lacks it)\n`);
        if (result.missingCount > result.missing.length) io.stderr.write(`missing: ${result.missingCount - result.missing.length} more\n`);
        for (const { name, address, kind, reason } of result.unreadable) {
          io.stderr.write(`unreadable: ${kind === "name" ? `the content of name ${JSON.stringify(name)}` : `${kind} ${address}, which name ${JSON.stringify(name)} reaches,`} is kept but could not be read as such (${reason}); the links its fields hold were followed\n`);
        }
        if (result.unreadableCount > result.unreadable.length) io.stderr.write(`unreadable: ${result.unreadableCount - result.unreadable.length} more\n`);
      }
    });
}

async function localGc(dir: string, flags: GcFlags, io: Io): Promise<GcSummary> {
  await requireServerData(dir);
  const [{ FsContentStore }, { LevelNameStore }] = await Promise.all([import("../stores/fs/content-store.js"), import("../stores/level/name-store.js")]);
  let names;
  try {
    // A dry run writes nothing in dir: both stores are opened read-only (the names from a throwaway copy).
    names = await LevelNameStore.open(join(dir, "ns"), { readOnly: flags.dryRun });
  } catch (err) {
    if (isRemoteLogError(err, ErrorCodes.CONFLICT)) {
      throw RemoteLogError.conflict(`${dir} is in use, by a running \`remotelog serve --data ${dir}\`?; run \`remotelog gc --server URL\` against it instead`);
    }
    throw err;
  }
  try {
    // A damaged pack stops gc here, said and left in place: the open would otherwise move it into
    // quarantine/ (even for a dry run) and the sweep go on as if its blocks were simply not stored.
    const store = await FsContentStore.open(join(dir, "cas"), { quarantine: false, readOnly: flags.dryRun }).catch((err: unknown) => {
      if (!isRemoteLogError(err, ErrorCodes.DATA_LOSS)) throw err;
      throw RemoteLogError.dataLoss(`gc stopped, nothing swept: ${err.text}. \`remotelog serve --data ${dir}\` sets damaged packs aside into ${join(dir, "cas", "quarantine")} as it starts`, err, err.details);
    });
    try {
      return await collectGarbage({ store, names, graceMs: flags.grace, dryRun: flags.dryRun, dropNames: flags.dropName, progress: await progressOf(io, flags.json) });
    } finally {
      await store.close();
    }
  } finally {
    await names.close();
  }
}

/**
 * NOT_FOUND unless dir holds both of a stopped server's stores, before either is opened: opening
 * makes a store that is missing, and a name store made empty here would reach no block, so the
 * sweep would remove them all (the blocks of a CAS served alone, `serve --only cas`, say). A
 * mistyped directory, or one of the user's own, is left as it was.
 */
async function requireServerData(dir: string): Promise<void> {
  if (!(await isDirectory(dir))) throw RemoteLogError.notFound(`${dir} is not a directory: give a stopped \`remotelog serve --data DIR\`'s DIR`);
  if (!(await isDirectory(join(dir, "cas")))) throw RemoteLogError.notFound(`${dir} holds no CAS (no ${join(dir, "cas")}): it is not the data directory of a \`remotelog serve\` with the fs CAS`);
  const hasNames = await stat(join(dir, "ns", "CURRENT")).then((info) => info.isFile(), () => false);
  if (!hasNames) {
    throw RemoteLogError.notFound(
      `${dir} holds no name store (no ${join(dir, "ns")}), so gc cannot tell which blocks a name reaches and removes nothing; ` +
        "a CAS served alone (serve --only cas) keeps blocks that names elsewhere reach",
    );
  }
}

async function remoteGc(flags: GcFlags): Promise<GcSummary> {
  const url = flags.server!;
  const { token, ca } = await clientCredentials({ tokenFile: flags.adminTokenFile, ca: flags.ca });
  const interceptors = token ? [bearer(token)] : [];
  // unix:/path reaches an admin listener on a Unix socket; the host in the base URL is then a placeholder.
  const transport = url.startsWith("unix:")
    ? createConnectTransport({ baseUrl: "http://localhost", httpVersion: "1.1", nodeOptions: { socketPath: url.slice("unix:".length) }, interceptors })
    : createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: ca ? { ca } : undefined, interceptors });
  const client = createClient(GcService, transport);
  try {
    // grace_ms 0 is "unset" on the wire (the server's own grace); a --grace given here is at least 1 ms.
    const response = await client.collect({ graceMs: flags.serverGrace ? 0n : BigInt(Math.max(1, flags.grace)), dryRun: flags.dryRun ?? false, dropNames: flags.dropName ?? [] });
    return {
      roots: Number(response.roots),
      marked: Number(response.marked),
      packs: Number(response.packs),
      sweptPacks: Number(response.sweptPacks),
      removedBlocks: Number(response.removedBlocks),
      freedBytes: Number(response.freedBytes),
      missing: response.missing,
      missingCount: Number(response.missingCount),
      unreadable: response.unreadable.map(({ name, address, kind, reason }) => ({ name, address, kind: kind as Unreadable["kind"], reason })),
      unreadableCount: Number(response.unreadableCount),
      droppedNames: response.droppedNames,
      dryRun: flags.dryRun ?? false,
      ms: Number(response.ms),
    };
  } catch (err) {
    // The service is mounted only beside an fs CAS and an NS that lists its names: say which is missing, not "HTTP 404".
    if (ConnectError.from(err).code === Code.Unimplemented) {
      throw RemoteLogError.conflict(
        `the server at ${url} does not collect garbage: gc needs the fs CAS and an NS on the same server, to know what the names reach, and this one has no NS (serve --only cas) or no fs CAS (serve --only ns, --memory, --cas kubo)`,
      );
    }
    throw fromConnectError(err, `GcService ${url} Collect`);
  }
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
